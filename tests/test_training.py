"""End to end on a tiny synthetic set: train for seconds, the tower must beat chance."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from siamid.config import AugmentConfig, Config, DataConfig, PreprocessConfig, TrainConfig
from siamid.errors import TrainingError
from siamid.training import augment, train


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    from siamid.synth import generate_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, identities=40, impressions=4, sensor="r503", seed=3, workers=1)
    return root


def _config(root, **train) -> Config:
    base = dict(tower="tiny", embedding_size=16, epochs=3, steps_per_epoch=70,
                identities_per_batch=8, samples_per_identity=4, patience=5, seed=1,
                lr=3e-3, target_fmr=0.05)
    base.update(train)
    return Config(data=DataConfig(root=str(root), val_fraction=0.25, test_fraction=0.25, seed=0),
                  preprocess=PreprocessConfig(size=64),
                  train=TrainConfig(**base))


def test_training_beats_chance_and_writes_the_run(tiny_set, tmp_path):
    run = tmp_path / "run"
    result = train(_config(tiny_set), run)
    for name in ("config.toml", "checkpoint.pt", "best.pt", "metrics.jsonl", "report.json",
                 "splits.json", "training.png"):
        assert (run / name).exists(), name
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    report = json.loads((run / "report.json").read_text())
    test = report["test"]["fvc"]["summary"]
    # Better than chance on subjects never seen in training: a random tower has AUC ~0.5.
    assert test["roc_auc"] > 0.7, test
    assert test["eer"] < 0.4, test
    assert 0.0 < result.threshold <= 2.0
    assert (run / "test_fvc" / "det.png").exists()


def test_resume_after_a_crash_and_refuse_to_overwrite(tiny_set, tmp_path):
    run = tmp_path / "run"
    cfg = _config(tiny_set, epochs=2, steps_per_epoch=4)

    def crash_in_epoch_2(stage: str, done: int, total: int) -> None:
        if stage.startswith("epoch 2"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, run, progress=crash_in_epoch_2)
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1]  # epoch 1 survived the crash
    with pytest.raises(TrainingError, match="already holds a run"):
        train(cfg, run)
    with pytest.raises(TrainingError, match="nothing to resume"):
        train(cfg, tmp_path / "nothing", resume=True)
    result = train(cfg, run, resume=True)
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2]
    assert (run / "report.json").exists() and result.best_epoch in (1, 2)


@pytest.mark.parametrize("loss", ["contrastive", "cosface", "arcface"])
def test_other_losses_train(tiny_set, tmp_path, loss):
    result = train(_config(tiny_set, loss=loss, epochs=1, steps_per_epoch=6), tmp_path / "c")
    assert np.isfinite(result.best_val_eer)
    head = torch.load(tmp_path / "c" / "checkpoint.pt", weights_only=False)["head"]
    # the proxy head (one row per training identity) is kept for --resume, and only then
    assert (head is None) == (loss == "contrastive")
    if head is not None:
        assert head["proxies"].shape == (20, 16)


def test_bad_loss_or_mining_fails_before_any_work(tiny_set, tmp_path):
    from siamid.errors import ConfigError

    for bad in (dict(loss="sphereface"), dict(mining="hardest"), dict(val_protocol="fvx")):
        with pytest.raises(ConfigError, match="sphereface|hardest|fvx"):
            train(_config(tiny_set, **bad), tmp_path / "bad")
        assert not (tmp_path / "bad" / "splits.json").exists()


def test_augment_keeps_range_shape_and_is_seeded():
    x = torch.rand(6, 1, 32, 32)
    cfg = AugmentConfig()
    a = augment(x, cfg, torch.Generator().manual_seed(0))
    b = augment(x, cfg, torch.Generator().manual_seed(0))
    c = augment(x, cfg, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b) and not torch.equal(a, c)
    # With every variation off, augmentation is the identity (up to resampling error).
    off = AugmentConfig(rotation_deg=0, translate=0, partial_contact=0, contrast=0, noise=0)
    assert torch.allclose(augment(x, off, torch.Generator().manual_seed(0)), x, atol=1e-5)


def test_fine_tuning_starts_from_the_given_weights(tiny_set, tmp_path):
    from siamid.training import build_tower, load_weights

    first = _config(tiny_set, epochs=1, steps_per_epoch=2)
    train(first, tmp_path / "a")
    tuned = _config(tiny_set, epochs=1, steps_per_epoch=1, init=str(tmp_path / "a"), lr=1e-9)
    train(tuned, tmp_path / "b")
    a, b = build_tower(first), build_tower(tuned)
    load_weights(a, tmp_path / "a")
    load_weights(b, tmp_path / "b")
    # With a vanishing learning rate the fine-tuned weights stay those it started from.
    wa, wb = a.state_dict()["head.weight"], b.state_dict()["head.weight"]
    assert torch.allclose(wa, wb, atol=1e-4)
    with pytest.raises(TrainingError, match="not found"):
        train(_config(tiny_set, init=str(tmp_path / "missing")), tmp_path / "c")
    with pytest.raises(TrainingError, match="another architecture"):
        train(_config(tiny_set, tower="small", embedding_size=32, init=str(tmp_path / "a")),
              tmp_path / "d")


def test_init_proxies_start_at_the_class_mean_directions():
    from siamid.losses import MarginSoftmax
    from siamid.nets import create_tower
    from siamid.training import ImageSet, embed_images, init_proxies

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (9, 1, 32, 32), dtype=np.uint8)
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    data = ImageSet(images, tuple(range(9)), labels)
    tower = create_tower("tiny", 16, 1, 32)
    head = MarginSoftmax(3, 16, "cosface")
    init_proxies(head, tower, data)
    emb = embed_images(tower, images)
    for k in range(3):
        mean = emb[labels == k].mean(axis=0)
        np.testing.assert_allclose(head.proxies[k].detach().numpy(), mean / np.linalg.norm(mean),
                                   atol=1e-5)


def test_sensor_views_add_labelled_copies_of_every_training_image(tiny_set, tmp_path):
    from siamid.dataset import scan_dataset
    from siamid.errors import ConfigError
    from siamid.scoring import r503
    from siamid.training import image_set, prepare_images, sensor_views

    assert sensor_views(" r503 ,") == ["r503"] and sensor_views("") == []
    with pytest.raises(ConfigError, match="'r505'"):
        sensor_views("r503,r505")
    with pytest.raises(ConfigError, match="sensor_views"):  # before any data is read
        train(_config(tiny_set, sensor_views="full"), tmp_path / "bad")
    assert not (tmp_path / "bad" / "splits.json").exists()

    ds = scan_dataset(tiny_set)
    ds = ds.subset(ds.subjects[:1])
    cfg = PreprocessConfig(size=64)
    plain, both = image_set(ds, cfg, workers=1), image_set(ds, cfg, workers=1, views=["r503"])
    n = len(plain)
    assert len(both) == 2 * n and both.ids == plain.ids * 2
    np.testing.assert_array_equal(both.labels, np.tile(plain.labels, 2))
    np.testing.assert_array_equal(both.images[:n], plain.images)
    # the copies are what the R503 view of each image gives the preprocessor
    entry = sorted(ds.entries, key=lambda e: e.id)[0]
    from siamid.dataset import load_image
    from siamid.preprocess import Preprocessor

    viewed, dpi = r503(load_image(entry.path), entry.dpi)
    np.testing.assert_array_equal(both.images[n], Preprocessor(cfg).network_input(viewed, dpi))
    assert prepare_images([entry], cfg, 1, view="r503").shape == (1, 1, 64, 64)


def test_best_epoch_can_be_chosen_on_all_validation_pairs(tiny_set, tmp_path):
    import json

    train(_config(tiny_set, epochs=1, steps_per_epoch=2), tmp_path / "fvc")
    train(_config(tiny_set, epochs=1, steps_per_epoch=2, val_protocol="all"), tmp_path / "all")
    rows = [json.loads((tmp_path / run / "metrics.jsonl").read_text().splitlines()[0])
            for run in ("fvc", "all")]
    assert rows[0]["val_n_genuine"] == rows[1]["val_n_genuine"]
    assert rows[1]["val_n_impostor"] > 5 * rows[0]["val_n_impostor"]


def test_owner_vs_others_training_reports_the_owner(tiny_set, tmp_path):
    from siamid.dataset import scan_dataset
    from siamid.errors import ConfigError

    owner = scan_dataset(tiny_set).subjects[3]
    run = tmp_path / "owner"
    result = train(_config(tiny_set, epochs=1, steps_per_epoch=3, owner=owner), run)
    held_out = json.loads((run / "owner.json").read_text())
    assert held_out["owner"] == owner and held_out["holdout"]
    splits = json.loads((run / "splits.json").read_text())
    assert owner in splits["train"] and owner not in splits["val"] + splits["test"]
    report = json.loads((run / "report.json").read_text())["owner"]
    assert result.owner_report == report
    counts = report["classifier"]["counts"]
    assert counts["n_genuine"] == len(held_out["holdout"])
    test_images = sum(1 for e in scan_dataset(tiny_set).entries if e.id.subject in splits["test"])
    assert counts["n_impostor"] == test_images > 0
    assert report["template_images"] + counts["n_genuine"] == sum(
        1 for e in scan_dataset(tiny_set).entries if e.id.subject == owner)
    with pytest.raises(ConfigError, match="triplet"):
        train(_config(tiny_set, epochs=1, steps_per_epoch=3, owner=owner, loss="contrastive"),
              tmp_path / "contrastive")


def test_scale_augmentation_zooms_about_the_centre():
    # A centred square: zooming in makes it larger, zooming out smaller; never both in a batch
    # drawn with scale 0.
    x = torch.zeros(64, 1, 33, 33)
    x[:, :, 12:21, 12:21] = 1.0
    only_scale = AugmentConfig(rotation_deg=0, translate=0, partial_contact=0, contrast=0,
                               noise=0, pad=0.0, scale=0.5)
    area = augment(x, only_scale, torch.Generator().manual_seed(0)).sum(dim=(1, 2, 3))
    assert float(area.min()) < 0.7 * 81 and float(area.max()) > 1.4 * 81
    plain = AugmentConfig(rotation_deg=0, translate=0, partial_contact=0, contrast=0, noise=0,
                          pad=0.0)
    assert torch.allclose(augment(x, plain, torch.Generator().manual_seed(0)), x, atol=1e-5)


@pytest.mark.parametrize("steps", [2, 10])
def test_very_short_runs_train(tiny_set, tmp_path, steps):
    # OneCycleLR's warm-up divides by (fraction x steps - 1): a run of 10 steps once hit zero.
    result = train(_config(tiny_set, epochs=1, steps_per_epoch=steps), tmp_path / "run")
    assert result.best_epoch == 1
