"""Owner-vs-others training, the first FaceID design: a tower trained with the triplet loss on
one person's photos (the owner) against other people's.

``[train] owner`` names the owner's subject. The other subjects are split by subject as usual;
the owner's own images are split by image: ``owner_holdout`` of them (ranked by a hash of the
seed and the file, so the choice is stable) never reach training and are the owner's genuine
probes afterwards. Every training batch holds the owner, and only the owner's images are
triplet anchors: each step pulls the owner's photos together and pushes everyone else away.

``owner_report`` answers the owner's two questions on images the tower never trained on: how
often the owner is let in (their held-out photos against a template of their training photos)
and how often someone else is (the test persons' photos against the same template).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np

from .dataset import Dataset
from .errors import ConfigError, DatasetError
from .evaluation import evaluate_scores, report_to_dict


@dataclass(frozen=True)
class OwnerSplit:
    """The owner's training and held-out images, and everyone else."""

    owner: str
    train: Dataset
    holdout: Dataset
    others: Dataset


def _rank(seed: int, relative: str) -> str:
    return hashlib.sha256(f"owner\0{seed}\0{relative}".encode("utf-8")).hexdigest()


def split_owner(ds: Dataset, owner: str, holdout: float, seed: int = 0) -> OwnerSplit:
    """Take the owner's subject out of ``ds`` and split their images into train and held out."""
    if owner not in ds.subjects:
        close = [s for s in ds.subjects if owner.lower() in s.lower()][:5]
        hint = f"; did you mean {', '.join(close)}?" if close else \
            f"; subjects look like {', '.join(ds.subjects[:3])}"
        raise DatasetError(f"owner {owner!r} is not a subject of dataset {ds.name!r}{hint}")
    if not 0.0 < holdout < 1.0:
        raise ConfigError(f"owner_holdout must be in (0, 1), got {holdout!r}")
    mine = sorted((e for e in ds.entries if e.id.subject == owner),
                  key=lambda e: _rank(seed, e.manifest_path))
    n_hold = max(1, int(holdout * len(mine) + 0.5))
    if len(mine) - n_hold < 2:
        raise DatasetError(f"owner {owner!r} has {len(mine)} image(s): at least 2 must stay for "
                           f"training after holding out {n_hold}; add photos of the owner")
    others = ds.subset(s for s in ds.subjects if s != owner)
    return OwnerSplit(owner, Dataset(f"{ds.name}:owner", tuple(sorted(mine[n_hold:], key=lambda e: e.id))),
                      Dataset(f"{ds.name}:owner-holdout", tuple(sorted(mine[:n_hold], key=lambda e: e.id))),
                      replace(others, name=ds.name))


def owner_report(owner: str, template: np.ndarray, genuine: np.ndarray, impostor: np.ndarray,
                 threshold: float, impostor_persons: int) -> dict:
    """Rates of the owner's template (the training photos' signatures) against held-out owner
    photos (``genuine``) and unseen persons' photos (``impostor``): the smallest distance to the
    template decides, at the tower's ``threshold``."""
    if len(template) == 0 or len(genuine) == 0 or len(impostor) == 0:
        raise DatasetError("the owner report needs template, held-out owner and impostor images")

    def nearest(probes: np.ndarray) -> np.ndarray:
        d = np.linalg.norm(probes[:, None, :] - template[None, :, :], axis=2)
        return d.min(axis=1)

    g, i = nearest(genuine), nearest(impostor)
    out = {"owner": owner, **report_to_dict(evaluate_scores(g, i), threshold)}
    out["template_images"] = int(len(template))
    out["impostor_persons"] = int(impostor_persons)
    return out


__all__ = ["OwnerSplit", "owner_report", "split_owner"]
