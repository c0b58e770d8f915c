"""The one home of the decision: thresholds, FMR estimates, calibrations, cards inside files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from siamid.calibration import (
    Calibration,
    ImpostorTable,
    Provenance,
    calibrate,
    card_calibration,
    threshold_at_fmr,
    with_calibration,
)
from siamid.errors import ConfigError, DatasetError, ModelError
from siamid.evaluation import evaluate_trials
from siamid.pairs import Protocol, all_pairs, enrollment_trials
from siamid.types import ModelCard, SampleId


def test_threshold_at_fmr_hand_case():
    impostor = [0.5, 0.1, 0.4, 0.3, 0.2]
    assert threshold_at_fmr(impostor, 0.0) == 0.1  # nothing below 0.1 is accepted
    assert threshold_at_fmr(impostor, 0.2) == 0.2  # one impostor (0.1) may be accepted
    assert threshold_at_fmr(impostor, 0.39) == 0.2  # 1.95 rounds down to one
    assert threshold_at_fmr(impostor, 0.4) == 0.3
    assert threshold_at_fmr(impostor, 0.99) == 0.5


@pytest.mark.parametrize("seed", range(5))
def test_threshold_at_fmr_guarantees_target_and_is_largest(seed):
    rng = np.random.default_rng(seed)
    impostor = np.round(rng.random(rng.integers(1, 400)), 2)  # ties included
    for target in [0.0, 0.001, 0.01, 0.05, 0.29, rng.random() * 0.99]:
        t = threshold_at_fmr(impostor, target)
        assert np.mean(impostor < t) <= target
        # Any larger threshold accepts at least one more impostor and breaks the target.
        bigger = impostor[impostor > t]
        if bigger.size:
            assert np.mean(impostor < np.nextafter(t, np.inf)) > target


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2.0, float("nan"), True, "0.01"])
def test_threshold_at_fmr_rejects_bad_target(bad):
    with pytest.raises(ConfigError, match="target FMR"):
        threshold_at_fmr([0.1, 0.2], bad)


def test_impostor_table_estimates_fmr_with_ties():
    table = ImpostorTable.from_scores([0.4, 0.2, 0.1, 0.2])
    assert table.estimate(0.05) == 0.0
    assert table.estimate(0.2) == 0.75  # "at least this close" includes ties
    assert table.estimate(1.0) == 1.0
    assert table.n_impostor == 4
    with pytest.raises(DatasetError):
        table.estimate(float("nan"))
    assert ImpostorTable((), (), 0).estimate(0.3) is None


def test_impostor_table_is_compact_and_never_overstates():
    rng = np.random.default_rng(1)
    impostor = rng.random(50_000)
    table = ImpostorTable.from_scores(impostor, points=160)
    assert len(table.distances) <= 160
    exact = np.sort(impostor)
    for d in np.concatenate([rng.random(200), exact[:20]]):
        true = np.mean(exact <= d)
        got = table.estimate(d)
        assert got <= true + 1e-12
    # The low tail, where decisions are made, keeps every one of its first ranks.
    assert table.estimate(exact[0] + 1e-6) == pytest.approx(1 / 50_000)
    assert table.estimate(exact[4] + 1e-6) == pytest.approx(5 / 50_000)


def _clusters(n_fingers=30, takes=6, dim=8, spread=0.35, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_fingers, dim))
    ids, rows = [], []
    for f in range(n_fingers):
        for t in range(1, takes + 1):
            ids.append(SampleId(f"s{f}", "right/index", str(t)))
            rows.append(centres[f] + spread * rng.standard_normal(dim))
    emb = np.array(rows)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True), ids


def test_calibrate_picks_each_threshold_on_its_own_protocol():
    emb, ids = _clusters()
    cal = calibrate(emb, ids, 0.01)
    from siamid.evaluation import evaluate_embeddings

    single = evaluate_embeddings(emb, ids, all_pairs(ids))
    assert cal.threshold == threshold_at_fmr(single.impostor, 0.01)
    for rule in ("min", "mean"):
        trials = evaluate_trials(emb, ids, enrollment_trials(ids, 3), rule)
        assert cal.threshold_for(3, rule) == threshold_at_fmr(trials.impostor, 0.01)
        assert cal.points[f"{rule}:3"].table.n_impostor == trials.n_impostor
    # An impostor with more tries comes closer: the bigger min-rule template needs a lower one.
    assert cal.threshold_for(2, "min") > cal.threshold_for(5, "min")
    assert 0.0 <= cal.points["1"].fnmr <= 1.0 and cal.points["1"].n_genuine == single.n_genuine


def test_which_threshold_applies_to_which_comparison():
    emb, ids = _clusters(takes=4)  # K = 1..3 leave a probe; 4 and 5 cannot be calibrated
    cal = calibrate(emb, ids, 0.01)
    assert sorted(cal.points) == ["1", "mean:2", "mean:3", "min:2", "min:3"]
    assert cal.threshold_for(1, "mean") == cal.threshold_for(1, "min") == cal.threshold
    assert cal.threshold_for(7, "min") == cal.threshold_for(3, "min")  # largest K calibrated
    assert cal.fmr_estimate(cal.threshold_for(3), 3) <= 0.01 + 1e-12
    with pytest.raises(ConfigError):
        cal.threshold_for(0)
    with pytest.raises(ConfigError, match="rule"):
        cal.threshold_for(3, "max")


def test_calibrate_refuses_a_set_too_small_for_the_target():
    emb, ids = _clusters(n_fingers=3, takes=2)  # 12 impostor pairs
    with pytest.raises(DatasetError, match="at least 1,000 are needed"):
        calibrate(emb, ids, 0.001)


def test_calibration_round_trips_through_a_card_and_describes_its_source():
    emb, ids = _clusters()
    source = Provenance("user", name="door", set_hash="ab" * 32, n_images=len(ids),
                        n_identities=30, sensor="R503 front door", date="2026-11-27")
    cal = calibrate(emb, ids, 0.01, source)
    card = ModelCard(model_id="tiny-1", architecture="tiny", embedding_size=8,
                     input_size=(96, 96), channels=1, preprocess={}, threshold=1.0,
                     threshold_fmr=0.5)
    card = with_calibration(card, cal)
    assert card.threshold == cal.threshold and card.threshold_fmr == 0.01
    again = card_calibration(ModelCard.from_json(card.to_json()))
    assert again == Calibration.from_dict(cal.to_dict())
    assert again.threshold_for(3, "mean") == cal.threshold_for(3, "mean")
    text = again.describe(3)
    assert "your set door" in text and "R503 front door" in text and "3-image" in text
    with pytest.raises(ModelError, match="upgrade"):
        Calibration.from_dict({**cal.to_dict(), "format": 99})


def test_cards_of_older_exports_are_read_into_a_calibration():
    old = {"model_id": "small-1", "architecture": "small", "embedding_size": 32,
           "input_size": [96, 96], "channels": 1, "preprocess": {}, "threshold": 0.35,
           "threshold_fmr": 0.001, "calibration_impostor": [0.3, 0.5, 0.7, 0.9],
           "template_thresholds": {"2": 0.32, "3": 0.30}}
    cal = card_calibration(ModelCard.from_json(json.dumps(old)))
    assert cal.threshold == 0.35 and cal.threshold_for(4) == 0.30
    assert cal.fmr_estimate(0.6) == 0.5
    assert cal.fmr_estimate(0.6, size=3) is None  # no table was kept for templates
    assert "unrecorded" in cal.describe()


def test_write_card_rewrites_only_the_card(tmp_path):
    from siamid.cardfile import set_metadata, write_card
    from siamid.runtime import Embedder, default_model_path, read_card

    model = tmp_path / "m.onnx"
    shutil.copyfile(default_model_path(), model)
    card = read_card(model)
    new = card.with_changes(metrics={**card.metrics, "note": "rewritten [twice]"})
    write_card(model, new)
    write_card(model, new)
    assert read_card(model) == new
    raw = model.read_bytes()
    assert raw.count(b"siamid.model_card") == 1
    image = np.random.default_rng(0).random((1, card.channels, *card.input_size), dtype=np.float32)
    want = Embedder(default_model_path()).embed_prepared(image)
    np.testing.assert_array_equal(Embedder(model).embed_prepared(image), want)
    with pytest.raises(ValueError):
        set_metadata(b"\x0f\xff\xff", {"k": "v"})
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x0f" * 20)
    with pytest.raises(ModelError, match="not an ONNX model"):
        write_card(junk, new)


def test_evaluate_protocol_refuses_strings():
    from siamid.evaluation import evaluate_protocol

    emb, ids = _clusters(n_fingers=4, takes=3)
    with pytest.raises(ConfigError, match="Protocol"):
        evaluate_protocol(emb, ids, "fvc")
    assert evaluate_protocol(emb, ids, Protocol("fvc")).n_impostor == 6


def test_enrollment_threshold_sits_at_two_percent_of_impostors_never_below_the_decision():
    emb, ids = _clusters()
    cal = calibrate(emb, ids, 0.001)
    loose = cal.enrollment_threshold()
    table = cal.points["1"].table
    assert loose >= cal.threshold
    assert table.estimate(loose) <= 0.02
    assert table.estimate(loose + 0.05) > 0.02 or loose + 0.05 > max(table.distances)
    legacy = card_calibration(ModelCard("m", "tiny", 8, (96, 96), 1, {}, 0.4, 0.001))
    assert legacy.enrollment_threshold() == 0.4  # no table kept: the decision threshold


def test_provenance_names_the_folders_it_was_drawn_from():
    source = Provenance("validation", name="../shared/data/fvc2000/DB1_B, ../shared/data/upek")
    assert source.names_folder("/anywhere/shared/data/fvc2000/DB1_B")
    assert source.names_folder("upek") and source.names_folder("data/upek")
    assert not source.names_folder("/anywhere/fvc2000/DB2_B")
    assert not source.names_folder("/anywhere/fvc2004/DB1_B")  # same leaf, other parent
    assert not Provenance("validation", name="data/pretrain").names_folder("pretrain2")
