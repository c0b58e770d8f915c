"""Owner-vs-others training: the owner's split, the anchored triplet loss, owner batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from siamid.dataset import Dataset, Entry
from siamid.errors import ConfigError, DatasetError
from siamid.losses import compute_loss, triplet_loss
from siamid.owner import owner_report, split_owner
from siamid.pairs import batch_indices
from siamid.types import SampleId


def _dataset(images: dict[str, int]) -> Dataset:
    entries = [Entry(SampleId(subject, "face", str(k)), Path(f"/x/{subject}/{k}.png"), 500,
                     f"{subject}/{k}.png")
               for subject, n in images.items() for k in range(1, n + 1)]
    return Dataset("faces", tuple(entries))


def test_owner_split_holds_out_part_of_the_owner_only_and_is_stable():
    ds = _dataset({"ann": 6, "bob": 4, "cy": 4})
    split = split_owner(ds, "ann", 0.34, seed=0)
    assert len(split.holdout.entries) == 2 and len(split.train.entries) == 4
    assert {e.id.subject for e in split.train.entries} == {"ann"}
    assert not {e.id for e in split.train.entries} & {e.id for e in split.holdout.entries}
    assert split.others.subjects == ["bob", "cy"]
    again = split_owner(ds, "ann", 0.34, seed=0)
    assert again.holdout.entries == split.holdout.entries
    other_seeds = {tuple(e.id.take for e in split_owner(ds, "ann", 0.34, seed=s).holdout.entries)
                   for s in range(8)}
    assert len(other_seeds) > 1


def test_owner_split_errors_name_the_problem():
    ds = _dataset({"ann": 3, "bob": 4})
    with pytest.raises(DatasetError, match="did you mean ann"):
        split_owner(ds, "an", 0.3)
    with pytest.raises(DatasetError, match="at least 2 must stay"):
        split_owner(ds, "ann", 0.5)
    with pytest.raises(ConfigError, match="owner_holdout"):
        split_owner(ds, "bob", 1.0)


def test_anchored_triplet_loss_only_counts_the_owner_anchors():
    # Owner (label 0) is tight and far from everyone; label 1 is spread out, label 2 just past
    # its spread (a semi-hard negative) and close to it.
    emb = torch.tensor([[0.0, 0.0], [0.01, 0.0], [5.0, 0.0], [7.0, 0.0], [2.9, 0.0], [2.95, 0.0]])
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    owner = labels == 0
    for mining in ("all", "batch_hard", "semi_hard"):
        assert triplet_loss(emb, labels, 0.3, mining) > 0
        assert triplet_loss(emb, labels, 0.3, mining, anchors=owner) == 0
        assert triplet_loss(emb, labels, 0.3, mining, anchors=labels == 1) > 0
    with pytest.raises(ConfigError, match="triplet"):
        compute_loss("contrastive", emb, labels, anchors=owner)


def test_owner_is_in_every_batch_and_the_plain_draw_is_unchanged():
    labels = [str(k // 3) for k in range(60)]  # 20 identities x 3
    plain = batch_indices(labels, 4, 2, np.random.default_rng(5))
    assert np.array_equal(plain, batch_indices(labels, 4, 2, np.random.default_rng(5), None))
    rng = np.random.default_rng(5)
    for _ in range(30):
        idx = batch_indices(labels, 4, 2, rng, include="7")
        assert sum(labels[i] == "7" for i in idx) == 2
        assert len({labels[i] for i in idx}) == 4
    with pytest.raises(DatasetError, match="not among"):
        batch_indices(labels, 4, 2, rng, include="nobody")


def test_owner_report_decides_on_the_nearest_template_signature():
    template = np.array([[0.0, 0.0], [1.0, 0.0]])
    genuine = np.array([[1.1, 0.0], [3.0, 0.0]])       # 0.1 and 2.0 from the template
    impostor = np.array([[0.0, 0.5], [4.0, 0.0], [0.0, 2.0]])  # 0.5, 3.0, 2.0
    report = owner_report("ann", template, genuine, impostor, 0.6, impostor_persons=2)
    counts = report["classifier"]["counts"]
    assert (counts["true_accept"], counts["false_reject"]) == (1, 1)
    assert (counts["false_accept"], counts["true_reject"]) == (1, 2)
    assert report["owner"] == "ann" and report["template_images"] == 2
    with pytest.raises(DatasetError):
        owner_report("ann", template, genuine[:0], impostor, 0.6, 1)
