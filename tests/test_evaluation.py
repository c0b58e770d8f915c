from __future__ import annotations

import json
import sys
import subprocess

import numpy as np
import pytest

from siamid.errors import ConfigError, DatasetError, SiamidError
from siamid.evaluation import (
    classifier_view,
    curve_points,
    evaluate_embeddings,
    evaluate_scores,
    report_to_dict,
    roc_auc,
)
from siamid.types import Pair, SampleId

GENUINE = [0.1, 0.2, 0.3]
IMPOSTOR = [0.25, 0.4, 0.5, 0.6]


def test_hand_computed_small_case():
    r = evaluate_scores(GENUINE, IMPOSTOR)
    # Every distinct score, then one just above the largest.
    np.testing.assert_allclose(r.thresholds[:-1], [0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6])
    assert r.thresholds[-1] > 0.6
    # FMR = impostors < t; FNMR = genuine >= t.
    np.testing.assert_allclose(r.fmr, [0, 0, 0, 1 / 4, 1 / 4, 2 / 4, 3 / 4, 1])
    np.testing.assert_allclose(r.fnmr, [1, 2 / 3, 1 / 3, 1 / 3, 0, 0, 0, 0])
    # Crossing between t=0.3 (FMR 1/4, FNMR 1/3) and t=0.4 (1/4, 0): the ROC segment is
    # vertical at FMR 1/4, so it meets FMR = FNMR at 1/4, a quarter of the way along.
    assert r.eer == pytest.approx(0.25)
    assert r.eer_threshold == pytest.approx(0.325)
    # FMR stays 0 up to t = 0.25, where genuine 0.3 is still rejected.
    assert r.zero_fmr == pytest.approx(1 / 3)
    # 11 of 12 (genuine, impostor) pairs are ordered right (0.3 > 0.25 is the exception).
    assert r.roc_auc == pytest.approx(11 / 12)
    assert (r.n_genuine, r.n_impostor) == (3, 4)
    assert r.fmr100 is None and r.fmr1000 is None and r.fmr10000 is None
    np.testing.assert_allclose(r.genuine, GENUINE)
    np.testing.assert_allclose(r.impostor, IMPOSTOR)


def test_perfect_separation_gives_zero_eer_and_midpoint_threshold():
    r = evaluate_scores([0.1, 0.2, 0.3], [0.7, 0.8, 0.9])
    assert r.eer == 0.0
    assert r.eer_threshold == pytest.approx(0.5)  # halfway between 0.3 and 0.7
    assert r.zero_fmr == 0.0
    assert r.roc_auc == 1.0


def test_identical_distributions_give_eer_one_half():
    assert evaluate_scores([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]).eer == pytest.approx(0.5)
    rng = np.random.default_rng(1)
    r = evaluate_scores(rng.normal(size=3000), rng.normal(size=3000))
    assert r.eer == pytest.approx(0.5, abs=0.03)
    assert r.roc_auc == pytest.approx(0.5, abs=0.03)


def test_reversed_scores_give_eer_one():
    r = evaluate_scores([0.7, 0.8], [0.1, 0.2])
    assert r.eer == pytest.approx(1.0)
    assert r.roc_auc == 0.0


def test_eer_is_between_rates_at_the_crossing():
    rng = np.random.default_rng(2)
    r = evaluate_scores(rng.normal(0.0, 1.0, 500), rng.normal(1.5, 1.0, 2000))
    k = int(np.argmax(r.fnmr <= r.fmr))
    lo = min(r.fmr[k - 1], r.fnmr[k - 1], r.fmr[k], r.fnmr[k])
    hi = max(r.fmr[k - 1], r.fnmr[k - 1], r.fmr[k], r.fnmr[k])
    assert lo <= r.eer <= hi
    assert r.thresholds[k - 1] <= r.eer_threshold <= r.thresholds[k]
    # Normal(0,1) vs Normal(1.5,1): EER = Phi(-0.75) = 0.2266
    assert r.eer == pytest.approx(0.2266, abs=0.03)


def test_curves_are_monotone_and_span_both_ends():
    rng = np.random.default_rng(3)
    r = evaluate_scores(rng.random(200), rng.random(300) + 0.3)
    assert np.all(np.diff(r.thresholds) > 0)
    assert np.all(np.diff(r.fmr) >= 0) and np.all(np.diff(r.fnmr) <= 0)
    assert (r.fmr[0], r.fnmr[0], r.fmr[-1], r.fnmr[-1]) == (0.0, 1.0, 1.0, 0.0)


def test_matches_sklearn_roc_curve_and_auc():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(4)
    # Rounded so there are ties both within and across the two sets.
    genuine = np.round(rng.gamma(2.0, 0.3, 400), 2)
    impostor = np.round(rng.gamma(4.0, 0.35, 900), 2)
    r = evaluate_scores(genuine, impostor)
    labels = np.r_[np.ones(genuine.size), np.zeros(impostor.size)]
    scores = -np.r_[genuine, impostor]
    fpr, tpr, _ = sk.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(r.fmr, fpr)
    np.testing.assert_allclose(1.0 - r.fnmr, tpr)
    assert r.roc_auc == pytest.approx(sk.roc_auc_score(labels, scores), abs=1e-12)
    assert roc_auc(genuine, impostor) == pytest.approx(sk.roc_auc_score(labels, scores), abs=1e-12)


def test_fmr_levels_need_enough_impostors():
    rng = np.random.default_rng(5)
    few = evaluate_scores(rng.random(50), rng.random(99) + 0.5)
    assert few.fmr100 is None and few.fmr1000 is None and few.fmr10000 is None
    enough = evaluate_scores(rng.random(50), rng.random(1000) + 0.5)
    assert enough.fmr100 is not None and enough.fmr1000 is not None
    assert enough.fmr10000 is None


def test_fmr100_is_lowest_fnmr_with_fmr_at_most_one_percent():
    # 200 impostors at 1..200, genuine at 0.5, 1.5, 2.5, 3.5 (interleaved with the first ones).
    impostor = np.arange(1, 201, dtype=float)
    genuine = np.array([0.5, 1.5, 2.5, 3.5])
    r = evaluate_scores(genuine, impostor)
    # FMR <= 1% allows 2 impostors accepted: threshold up to 3, accepting genuine 0.5..2.5.
    assert r.fmr100 == pytest.approx(1 / 4)
    # FMR = 0: threshold up to 1, only genuine 0.5 accepted.
    assert r.zero_fmr == pytest.approx(3 / 4)
    # Brute force over every admissible operating point.
    assert r.fmr100 == pytest.approx(r.fnmr[r.fmr <= 0.01].min())


def test_classifier_view_counts():
    view = classifier_view(GENUINE, IMPOSTOR, 0.35)
    assert view["counts"] == {
        "true_accept": 3, "false_reject": 0, "false_accept": 1, "true_reject": 3,
        "n_genuine": 3, "n_impostor": 4,
    }
    assert view["accuracy"] == pytest.approx(6 / 7)
    assert view["match_accuracy"] == 1.0
    assert view["nomatch_accuracy"] == pytest.approx(3 / 4)
    assert view["fmr"] == pytest.approx(1 / 4) and view["fnmr"] == 0.0
    assert view["roc_auc"] == pytest.approx(11 / 12)
    # Accept is strict: a distance equal to the threshold is rejected.
    assert classifier_view(GENUINE, IMPOSTOR, 0.3)["counts"]["false_reject"] == 1


@pytest.mark.parametrize(
    ("genuine", "impostor", "word"),
    [([], [0.1], "genuine"), ([0.1], [], "impostor"),
     ([0.1, float("nan")], [0.2], "genuine"), ([0.1], [0.2, float("inf")], "impostor")],
)
def test_bad_scores_raise_naming_which(genuine, impostor, word):
    with pytest.raises(DatasetError, match=word) as info:
        evaluate_scores(genuine, impostor)
    assert isinstance(info.value, SiamidError)


def test_report_to_dict_is_json_and_downsampled():
    rng = np.random.default_rng(6)
    r = evaluate_scores(rng.random(3000), rng.random(5000) + 0.4)
    d = report_to_dict(r)
    text = json.dumps(d, allow_nan=False)
    back = json.loads(text)
    assert back["summary"]["n_genuine"] == 3000 and back["summary"]["n_impostor"] == 5000
    assert back["summary"]["eer"] == pytest.approx(r.eer)
    assert back["summary"]["fmr10000"] is None
    assert back["classifier"]["threshold"] == pytest.approx(r.eer_threshold)
    n = len(back["curves"]["thresholds"])
    assert 2 < n <= 500
    assert len(back["curves"]["fmr"]) == len(back["curves"]["fnmr"]) == n
    assert back["curves"]["fmr"][0] == 0.0 and back["curves"]["fmr"][-1] == 1.0
    assert np.all(np.diff(back["curves"]["thresholds"]) > 0)
    assert report_to_dict(r, threshold=0.5)["classifier"]["threshold"] == 0.5


def test_curve_points_keep_low_fmr_detail():
    rng = np.random.default_rng(7)
    r = evaluate_scores(rng.random(20000), rng.random(20000) + 0.5)
    c = curve_points(r, 200)
    assert c["fmr"].size <= 200
    # Log-spaced picks reach FMR values within a factor of ~2 of 1/n_impostor.
    assert c["fmr"][(c["fmr"] > 0)].min() <= 10 / r.n_impostor


def test_evaluate_embeddings_distances():
    ids = [SampleId("1", "left/index", "1"), SampleId("1", "left/index", "2"),
           SampleId("2", "left/index", "1")]
    emb = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]], dtype=np.float32)
    pairs = [Pair(ids[0], ids[1], True), Pair(ids[0], ids[2], False), Pair(ids[1], ids[2], False)]
    r = evaluate_embeddings(emb, ids, pairs)
    np.testing.assert_allclose(r.genuine, [5.0])
    np.testing.assert_allclose(r.impostor, sorted([1.0, np.hypot(3.0, 3.0)]))
    with pytest.raises(DatasetError, match="no embedding"):
        evaluate_embeddings(emb, ids, [Pair(ids[0], SampleId("9", "x", "1"), False)])
    with pytest.raises(DatasetError, match="rows"):
        evaluate_embeddings(emb[:2], ids, pairs)
    with pytest.raises(DatasetError, match="genuine"):
        evaluate_embeddings(emb, ids, pairs[1:])


def test_evaluate_trials_fuses_templates_by_rule():
    from siamid.evaluation import evaluate_trials
    from siamid.types import Trial

    a1, a2, a3 = (SampleId("a", "f", t) for t in "123")
    b1, b2 = (SampleId("b", "f", t) for t in "12")
    ids = [a1, a2, a3, b1, b2]
    emb = np.array([[1, 0], [0, 1], [0.6, 0.8], [-1, 0], [0, -1]], dtype=np.float64)
    trials = [Trial((a1, a2), a3, True), Trial((b1,), b2, True),
              Trial((a1, a2), b2, False), Trial((b1,), a3, False)]
    r = evaluate_trials(emb, ids, trials, "min")
    np.testing.assert_allclose(sorted(r.genuine), sorted([np.hypot(0.6, 0.2), np.sqrt(2)]))
    np.testing.assert_allclose(sorted(r.impostor), sorted([np.sqrt(2), np.hypot(1.6, 0.8)]))
    mean = evaluate_trials(emb, ids, trials, "mean")
    centre = np.array([1.0, 1.0]) / np.sqrt(2)  # re-normalised mean of a1 and a2
    assert np.isclose(mean.genuine, np.linalg.norm([0.6, 0.8] - centre)).sum() == 1
    with pytest.raises(DatasetError, match="no embedding"):
        evaluate_trials(emb, ids, [Trial((a1,), SampleId("z", "f", "1"), False)])
    with pytest.raises(DatasetError, match="empty"):
        evaluate_trials(emb, ids, [])
    with pytest.raises(ConfigError, match="median"):
        evaluate_trials(emb, ids, trials, "median")


def test_imports_numpy_only():
    code = ("import sys, siamid.evaluation; "
            "bad = [m for m in ('torch', 'matplotlib', 'sklearn') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_evaluate_embeddings_takes_probes_from_another_file():
    ids = [SampleId("a", "f", "1"), SampleId("a", "f", "2"), SampleId("b", "f", "1")]
    emb = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    pairs = [Pair(ids[0], ids[1], True), Pair(ids[0], ids[2], False)]
    same = evaluate_embeddings(emb, ids, pairs)
    assert evaluate_embeddings(emb, ids, pairs, probes=emb).genuine == pytest.approx(same.genuine)
    # Probes of another file: template a/1 (row 0 of emb) against probe a/2 from ``other``.
    other = emb.copy()
    other[1] = [1.0, 0.0]
    mixed = evaluate_embeddings(emb, ids, pairs, probes=other)
    assert mixed.genuine == pytest.approx([0.0]) and same.genuine == pytest.approx([np.hypot(0.2, 0.6)])
    with pytest.raises(DatasetError):
        evaluate_embeddings(emb, ids, pairs, probes=emb[:2])
