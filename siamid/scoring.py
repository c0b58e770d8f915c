"""Score an exported model on a dataset: embed every image with the runtime, then evaluate.

This measures exactly what ships (the ONNX file and the preprocessing in its card), not a
training checkpoint. Images failing the quality check are counted (failure to acquire, FTA) but
still compared, so rates stay comparable with matchers that never reject.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable, Iterator

import numpy as np

from .dataset import Dataset, load_image
from .evaluation import evaluate_embeddings, evaluate_trials
from .pairs import all_pairs, enrollment_size, enrollment_trials, fvc_pairs
from .preprocess import check_quality
from .types import EvalReport, Pair, SampleId, Trial

#: All-pairs impostor comparisons beyond this are a seeded random subset (memory stays bounded).
MAX_IMPOSTOR = 1_000_000


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


def viewed_images(dataset: Dataset, view: View | None = None
                  ) -> Iterator[tuple[SampleId, np.ndarray, int]]:
    """(id, image, dpi) of every image sorted by id, through ``view`` when one is given."""
    for entry in sorted(dataset.entries, key=lambda e: e.id):
        image, dpi = load_image(entry.path), entry.dpi
        if view is not None:
            image, dpi = view(image, dpi)
        yield entry.id, image, dpi


def protocol_pairs(ids: list[SampleId], protocol: str, max_impostor: int = MAX_IMPOSTOR
                   ) -> list[Pair] | list[Trial]:
    """The comparisons of a protocol (impostors beyond ``max_impostor`` sampled): the pairs of
    ``fvc`` or ``all``, the trials of ``enrollK`` (K-image templates, see ``enrollment_trials``).
    ConfigError for an unknown protocol name."""
    k = enrollment_size(protocol)
    if k is not None:
        return enrollment_trials(ids, k, max_impostor=max_impostor)
    return fvc_pairs(ids) if protocol == "fvc" else all_pairs(ids, max_impostor=max_impostor)


def embed_dataset(embedder, dataset: Dataset,
                  progress: Callable[[str, int, int], None] | None = None,
                  view: View | None = None) -> tuple[np.ndarray, list[SampleId], int]:
    """Signatures of every image (sorted by id) and how many failed the quality check.

    ``view``, when given, transforms each image (and its dpi) before anything else sees it.
    """
    rows, ids, rejected = [], [], 0
    for i, (sample_id, image, dpi) in enumerate(viewed_images(dataset, view)):
        rejected += not check_quality(image, dpi, embedder.preprocess_config).ok
        rows.append(embedder.embed_one(image, dpi, check=False))
        ids.append(sample_id)
        if progress:
            progress(f"embed {dataset.name}"[:16], i + 1, len(dataset.entries))
    return np.stack(rows), ids, rejected


def score_model(embedder, dataset: Dataset, protocols: tuple[str, ...] = ("fvc", "all"),
                progress: Callable[[str, int, int], None] | None = None,
                view: View | None = None, rule: str = "min") -> ModelScore:
    """Evaluate ``embedder`` on ``dataset`` under each protocol (``fvc``, ``all``, ``enrollK``).

    ``view`` (e.g. ``r503``) evaluates what another sensor would have seen of the same fingers;
    ``rule`` is the Gallery's comparison rule for K-image templates.
    """
    for protocol in protocols:  # a typo fails now, not after embedding every image
        enrollment_size(protocol)
    emb, ids, rejected = embed_dataset(embedder, dataset, progress, view)
    reports = {}
    for protocol in protocols:
        compared = protocol_pairs(ids, protocol)
        reports[protocol] = (evaluate_trials(emb, ids, compared, rule)
                             if enrollment_size(protocol) else
                             evaluate_embeddings(emb, ids, compared))
    return ModelScore(dataset.name, reports, len(ids), rejected)
