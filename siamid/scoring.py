"""Score an exported model on a dataset: embed every image with the runtime, then evaluate.

This measures exactly what ships (the ONNX file and the preprocessing in its card), not a
training checkpoint. Images failing the quality check are counted (failure to acquire, FTA) but
still compared, so rates stay comparable with matchers that never reject.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .dataset import Dataset, load_image
from .errors import ConfigError, DatasetError, QualityError
from .evaluation import evaluate_protocol
from .pairs import Protocol
from .types import EvalReport, SampleId


@dataclass(frozen=True)
class ModelScore:
    """A model's reports on one dataset, per protocol, with its failure-to-acquire count."""

    dataset: str
    reports: dict[str, EvalReport]
    n_images: int
    n_quality_rejected: int

    @property
    def fta(self) -> float:
        """Fraction of images the quality check would reject."""
        return self.n_quality_rejected / max(self.n_images, 1)


#: Turns a dataset image and its dpi into what another sensor would deliver (e.g. the R503 view).
View = Callable[[np.ndarray, int], tuple[np.ndarray, int]]


def r503(image: np.ndarray, dpi: int) -> tuple[np.ndarray, int]:
    """The ``View`` of an R503-class sensor: 192 x 192 at 500 dpi, 16 gray levels."""
    from .sensors import R503_DPI, r503_view

    return r503_view(image, dpi), R503_DPI


#: The views ``siamid evaluate --view`` and the benchmarks offer; ``full`` is the image as stored.
VIEWS: dict[str, View | None] = {"full": None, "r503": r503}


def viewed_images(dataset: Dataset, view: View | None = None,
                  load: Callable[[Path], np.ndarray] = load_image
                  ) -> Iterator[tuple[SampleId, np.ndarray, int]]:
    """(id, image, dpi) of every image sorted by id, read by ``load`` (a Preprocessor's, for
    multi-channel faces), through ``view`` when one is given."""
    for entry in sorted(dataset.entries, key=lambda e: e.id):
        image, dpi = load(entry.path), entry.dpi
        if view is not None:
            image, dpi = view(image, dpi)
        yield entry.id, image, dpi


def embed_dataset(embedder, dataset: Dataset,
                  progress: Callable[[str, int, int], None] | None = None,
                  view: View | None = None) -> tuple[np.ndarray, list[SampleId], int]:
    """Signatures of every image (sorted by id) and how many failed the quality check.

    Each image is preprocessed once: its verdict is counted, its network input embedded
    whatever the verdict. ``view``, when given, transforms each image (and its dpi) before
    anything else sees it. An image that cannot be preprocessed at all (outside the size
    limits) raises DatasetError naming it.
    """
    emb, ids, ok = embed_with_quality(embedder, dataset, progress, view)
    return emb, ids, int(np.count_nonzero(~ok))


def embed_with_quality(embedder, dataset: Dataset,
                       progress: Callable[[str, int, int], None] | None = None,
                       view: View | None = None
                       ) -> tuple[np.ndarray, list[SampleId], np.ndarray]:
    """Like ``embed_dataset``, but says which images passed: (signatures, ids, ok), where
    ``ok[i]`` is image i's quality verdict (bool array), for callers that drop poor images."""
    rows, ids, ok = [], [], []
    for i, (sample_id, image, dpi) in enumerate(
            viewed_images(dataset, view, embedder.preprocessor.load)):
        try:
            result = embedder.preprocessor.process(image, dpi)
        except QualityError as exc:
            raise DatasetError(f"image {sample_id} of {dataset.name}: {exc}") from exc
        ok.append(bool(result.quality.ok))
        rows.append(embedder.embed_prepared(result.as_float()[None])[0])
        ids.append(sample_id)
        if progress:
            progress(f"embed {dataset.name}"[:16], i + 1, len(dataset.entries))
    return np.stack(rows), ids, np.array(ok, dtype=bool)


def score_model(embedder, dataset: Dataset, protocols: tuple[Protocol, ...],
                progress: Callable[[str, int, int], None] | None = None,
                view: View | None = None, rule: str = "min") -> ModelScore:
    """Evaluate ``embedder`` on ``dataset`` under each protocol; reports keyed by its name.

    ``view`` (e.g. ``r503``) evaluates what another sensor would have seen of the same fingers;
    ``rule`` is the Gallery's comparison rule for K-image templates.
    """
    protocols = tuple(protocols)
    for protocol in protocols:  # a wrong argument fails now, not after embedding every image
        if not isinstance(protocol, Protocol):
            raise ConfigError(f"expected a Protocol, got {protocol!r}; use Protocol.parse(name)")
    emb, ids, rejected = embed_dataset(embedder, dataset, progress, view)
    reports = {str(p): evaluate_protocol(emb, ids, p, rule) for p in protocols}
    return ModelScore(dataset.name, reports, len(ids), rejected)


def calibrate_on(embedder, dataset: Dataset, target_fmr: float | None = None, sensor: str = "",
                 synthetic: bool = False,
                 progress: Callable[[str, int, int], None] | None = None):
    """Calibrate ``embedder``'s model on a user's own labelled set (``siamid calibrate``).

    Every image is embedded through the model's own preprocessing (images failing the quality
    check included, as ``siamid evaluate`` compares them), then ``calibration.calibrate`` picks
    the thresholds at ``target_fmr`` (default: the model's current target). Returns the
    Calibration with the set's provenance: its name, manifest hash, counts, ``sensor`` and
    whether it is ``synthetic``.
    """
    from .calibration import Provenance, calibrate, today

    fmr = embedder.calibration.target_fmr if target_fmr is None else target_fmr
    emb, ids, _ = embed_dataset(embedder, dataset, progress)
    source = Provenance("user", name=dataset.name, set_hash=dataset.manifest_hash(),
                        n_images=len(ids), n_identities=len(dataset.identities),
                        sensor=sensor, synthetic=synthetic, date=today())
    return calibrate(emb, ids, fmr, source, progress=progress)
