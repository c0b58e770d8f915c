"""The learned signature space in two dimensions: PCA and t-SNE maps of a dataset's signatures.

Compute only (numpy; scikit-learn for t-SNE, imported when asked for); ``plots_embed`` draws the
result. Every image is embedded by the runtime through ``scoring.embed_with_quality``, the same
path ``siamid evaluate`` measures, so the map shows exactly what the exported model computes.
Images failing the quality check are left off the map and counted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import numpy as np

from .dataset import Dataset
from .errors import ConfigError, DatasetError
from .types import SampleId

__all__ = ["METHODS", "EmbeddingMap", "check_methods", "embedding_map", "pca_2d", "pose_of",
           "select_identities", "tsne_2d", "tsne_perplexity"]

#: Projections ``embedding_map`` offers, in the order they are drawn.
METHODS = ("pca", "tsne")
#: t-SNE's usual perplexity; fewer points get a smaller one (``tsne_perplexity``).
DEFAULT_PERPLEXITY = 30.0
#: The pose of a take that is only a number (fingerprint impressions 1..8, ORL's 1..10).
NO_POSE = "-"

_TRAILING_NUMBER = re.compile(r"_\d+$")


def pose_of(take: str) -> str:
    """The group a take belongs to: its name without a trailing ``_<digits>``.

    ``front_2`` -> ``front``, ``left_1`` -> ``left``, ``smile`` -> ``smile``; a take that is only
    digits (``1``..``8``, an impression number) carries no pose: ``-``.
    """
    pose = _TRAILING_NUMBER.sub("", take)
    return NO_POSE if not pose or pose.isdigit() else pose


def check_methods(methods: Sequence[str]) -> tuple[str, ...]:
    """``methods`` as a tuple in drawing order; ConfigError naming an unknown or missing one."""
    methods = tuple(methods)
    for m in methods:
        if m not in METHODS:
            raise ConfigError(f"unknown projection {m!r}; use one of {', '.join(METHODS)}")
    if not methods:
        raise ConfigError(f"no projection asked for; use one or more of {', '.join(METHODS)}")
    return tuple(m for m in METHODS if m in methods)


def check_tsne_available() -> None:
    """ConfigError naming the extra to install when scikit-learn (t-SNE) is missing."""
    try:
        import sklearn.manifold  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"t-SNE needs scikit-learn ({exc}); install the training extra with: "
            "pip install 'siamid[train]', or ask for the PCA map only (--method pca)"
        ) from None


def pca_2d(points: np.ndarray) -> np.ndarray:
    """(n, 2) coordinates of ``points`` (n, d) on their first two principal axes.

    Centred, unscaled (distances along the axes stay in signature units), by SVD. Each axis's
    sign is fixed so that its largest loading is positive: the same data always gives the same
    picture. Fewer than two axes of variation leave zeros in the missing columns.
    """
    x = np.asarray(points, dtype=np.float64)
    if x.ndim != 2:
        raise ConfigError(f"expected an (n, d) array of signatures, got shape {x.shape}")
    out = np.zeros((x.shape[0], 2))
    if x.shape[0] < 2:
        return out
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:2]
    signs = np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])
    axes = axes * np.where(signs == 0, 1.0, signs)[:, None]
    out[:, :len(axes)] = centred @ axes.T
    return out


def tsne_perplexity(n_points: int, requested: float = DEFAULT_PERPLEXITY) -> float:
    """The perplexity t-SNE can use on ``n_points``: ``requested``, clamped below the count.

    t-SNE needs perplexity < n; the usual rule of thumb keeps 3 x perplexity < n - 1, so a few
    points get (n - 1) / 3 (at least 0.5, still below n for any n >= 2).
    """
    if requested <= 0:
        raise ConfigError(f"t-SNE perplexity must be positive, got {requested!r}")
    if n_points < 2:
        raise ConfigError(f"t-SNE needs at least 2 points, got {n_points}")
    return float(min(requested, max((n_points - 1) / 3.0, 0.5)))


def tsne_2d(points: np.ndarray, seed: int = 0,
            perplexity: float = DEFAULT_PERPLEXITY) -> tuple[np.ndarray, float]:
    """(n, 2) t-SNE coordinates of ``points`` and the perplexity used (``tsne_perplexity``).

    Initialised from PCA and seeded, so a seed gives one picture. Fewer than two points map to
    the origin (perplexity 0). Needs scikit-learn (the ``train`` extra): ConfigError naming it
    otherwise.
    """
    x = np.asarray(points, dtype=np.float64)
    check_tsne_available()
    if x.shape[0] < 2:
        return np.zeros((x.shape[0], 2)), 0.0
    from sklearn.manifold import TSNE

    from .parallel import single_threaded_numerics

    used = tsne_perplexity(x.shape[0], perplexity)
    # One OpenMP thread: t-SNE's gradient threads spin while they wait, and on a busy 2-core
    # machine 5 points took 20-100 s with the default pool against about 1 s with one thread.
    with single_threaded_numerics():
        coords = TSNE(n_components=2, perplexity=used, init="pca",
                      random_state=seed).fit_transform(x)
    return np.asarray(coords, dtype=np.float64), used


def select_identities(dataset: Dataset, max_identities: int) -> Dataset:
    """The first ``max_identities`` identities of ``dataset`` (natural order), all their images.

    Deterministic: the same dataset always gives the same identities.
    """
    if not isinstance(max_identities, int) or isinstance(max_identities, bool) \
            or max_identities < 1:
        raise ConfigError(f"max_identities must be an integer >= 1, got {max_identities!r}")
    keep = set(dataset.identities[:max_identities])
    return Dataset(dataset.name, tuple(e for e in dataset.entries if e.id.identity in keep))


@dataclass(frozen=True)
class EmbeddingMap:
    """Signatures of a dataset projected to 2-D, one row per image that passed the quality check.

    ``coords[method]`` is (n, 2) for each method in ``methods``; ``ids[i]`` and ``poses[i]`` name
    row i. ``n_identities`` is how many identities the dataset has, ``n_selected`` how many were
    embedded (the first ones in natural order); ``skipped`` lists the images whose quality
    check failed (left off the map). ``training_data``: the model was trained on this dataset,
    so its identities separate more cleanly than new ones would.
    """

    model_id: str
    dataset: str
    ids: tuple[SampleId, ...]
    coords: dict[str, np.ndarray]
    n_identities: int
    n_selected: int
    skipped: tuple[SampleId, ...] = ()
    seed: int = 0
    tsne_perplexity: float | None = None
    training_data: bool = False
    poses: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "poses", tuple(pose_of(i.take) for i in self.ids))

    @property
    def methods(self) -> tuple[str, ...]:
        """The projections held, in drawing order."""
        return tuple(m for m in METHODS if m in self.coords)

    @property
    def identities(self) -> list[str]:
        """Identities on the map (those with at least one accepted image), in first-seen order."""
        return list(dict.fromkeys(i.identity for i in self.ids))

    @property
    def pose_names(self) -> list[str]:
        """Poses on the map, in first-seen order."""
        return list(dict.fromkeys(self.poses))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record: counts, settings and one entry per point with x/y per method."""
        return {
            "model_id": self.model_id,
            "dataset": self.dataset,
            "methods": list(self.methods),
            "seed": self.seed,
            "tsne_perplexity": self.tsne_perplexity,
            "training_data": self.training_data,
            "n_identities": self.n_identities,
            "n_identities_selected": self.n_selected,
            "n_identities_shown": len(self.identities),
            "n_images": len(self.ids),
            "n_skipped_quality": len(self.skipped),
            "skipped_quality": [str(i) for i in self.skipped],
            "points": [
                {"identity": sid.identity, "subject": sid.subject, "trait": sid.trait,
                 "take": sid.take, "pose": pose,
                 **{m: {"x": float(self.coords[m][k, 0]), "y": float(self.coords[m][k, 1])}
                    for m in self.methods}}
                for k, (sid, pose) in enumerate(zip(self.ids, self.poses))
            ],
        }


def embedding_map(embedder, dataset: Dataset, methods: Sequence[str] = METHODS,
                  max_identities: int = 20, seed: int = 0,
                  progress: Callable[[str, int, int], None] | None = None,
                  folder: str | PurePath | None = None) -> EmbeddingMap:
    """Embed the first ``max_identities`` identities of ``dataset`` with ``embedder`` and project
    the signatures of the images that pass the quality check with each of ``methods``.
    ``folder``, the dataset's path, lets the map say whether the model was trained on it.

    DatasetError when no image passes; ConfigError for an unknown method, a bad count, or t-SNE
    without scikit-learn (all checked before any image is read).
    """
    from .scoring import embed_with_quality

    methods = check_methods(methods)
    if "tsne" in methods:
        check_tsne_available()
    chosen = select_identities(dataset, max_identities)
    emb, ids, ok = embed_with_quality(embedder, chosen, progress)
    skipped = tuple(i for i, good in zip(ids, ok) if not good)
    if not ok.any():
        raise DatasetError(
            f"none of the {len(ids)} images of {dataset.name} passed the model's quality check; "
            "check that the data matches the model (fingerprints or faces, resolution with --dpi)")
    kept = emb[ok]
    coords: dict[str, np.ndarray] = {}
    perplexity = None
    if "pca" in methods:
        coords["pca"] = pca_2d(kept)
    if "tsne" in methods:
        coords["tsne"], perplexity = tsne_2d(kept, seed)
    return EmbeddingMap(embedder.model_id, dataset.name,
                        tuple(i for i, good in zip(ids, ok) if good), coords,
                        len(dataset.identities), len(chosen.identities), skipped, seed, perplexity,
                        folder is not None and embedder.calibration.trained_on(folder))
