"""Adaptive templates: each guard's update and no-update cases, eviction, the decision of grown
templates, persistence, and ``siamid verify --adapt`` end to end on the shipped model."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from siamid.adaptation import (
    MAX_ADAPTED,
    NEAR_DUPLICATE_FRACTION,
    UPDATE_FMR_FACTOR,
    adapted_capacity,
    decide,
    decision_threshold,
    propose_update,
    update_threshold,
    with_adapted,
)
from siamid.calibration import (
    Calibration,
    ImpostorTable,
    OperatingPoint,
    threshold_at_fmr,
)
from siamid.store import TemplateStore, iso_time, new_key
from siamid.types import ADAPTED, ENROLLED, SignatureOrigin, Template

D = 16
TARGET = 0.01


def _calibration(n_impostor: int = 2000, largest: int = 4) -> Calibration:
    """Impostor distances over [0.3, 2] with a thin low tail (as real ones have), a little
    closer for bigger templates."""
    points = {}
    for size in range(1, largest + 1):
        impostor = 0.3 - 0.02 * size + 1.7 * np.sqrt(np.linspace(0, 1, n_impostor))
        for rule in ("min", "mean") if size > 1 else ("min",):
            key = "1" if size == 1 else f"{rule}:{size}"
            points[key] = OperatingPoint(size, rule, threshold_at_fmr(impostor, TARGET), None, 0,
                                         ImpostorTable.from_scores(impostor))
    return Calibration(TARGET, points)


CAL = _calibration()


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def _at(distance: float, towards: int = 1, base: int = 0) -> np.ndarray:
    """A unit vector at Euclidean ``distance`` from e_base, in the plane of e_base and e_towards."""
    angle = 2 * np.arcsin(distance / 2)
    v = np.zeros(D)
    v[base], v[towards] = np.cos(angle), np.sin(angle)
    return v.astype(np.float32)


def _template(**kw) -> Template:
    sigs = np.stack([_at(0.0), _at(0.05, 2), _at(0.05, 3)])
    origins = (SignatureOrigin(ENROLLED, "2026-01-01T00:00:00Z"),) * 3
    return Template("alice", "m-1", sigs, origins=origins, **kw)


def _propose(template, probe, calibration=CAL, **kw):
    decision = decide(template, probe, calibration, "min")
    return decision, *propose_update(template, probe, decision, calibration, "min",
                                     added="2026-02-01T00:00:00Z", **kw)


def test_update_when_every_guard_passes():
    limit = update_threshold(CAL, 3, "min")
    assert limit == CAL.threshold_at(UPDATE_FMR_FACTOR * TARGET, 3, "min") < CAL.threshold_for(3)
    decision, update, new = _propose(_template(), _at(0.2, 5))
    assert decision.accepted and update.updated and update.reason == "updated"
    assert update.update_threshold == limit and update.anchor_distance == pytest.approx(0.2, abs=1e-5)
    assert (new.n_enrolled, new.n_adapted) == (3, 1)
    assert new.origins[-1] == SignatureOrigin(ADAPTED, "2026-02-01T00:00:00Z",
                                              pytest.approx(decision.distance))
    np.testing.assert_allclose(new.signatures[-1], _at(0.2, 5))


def test_rejected_probes_never_join():
    decision, update, new = _propose(_template(), _at(1.2, 5))
    assert not decision.accepted and not update.updated and update.reason == "rejected"
    assert new is None


def test_accepted_above_the_update_threshold_does_not_join():
    limit = update_threshold(CAL, 3, "min")
    probe = _at((limit + CAL.threshold_for(3)) / 2, 5)
    decision, update, new = _propose(_template(), probe)
    assert decision.accepted and update.reason == "above_update_threshold" and new is None


def test_the_anchor_refuses_a_probe_close_only_to_adapted_signatures():
    # An adapted signature at the update threshold from the enrolled ones, and a probe beside it: accepted (it is
    # close to the template) but far from what was enrolled.
    limit = update_threshold(CAL, 3, "min")
    drifted = with_adapted(_template(), _at(limit, 5), limit, None)
    probe = _unit(drifted.signatures[-1] + 0.1 * np.eye(D, dtype=np.float32)[6])
    decision, update, new = _propose(drifted, probe)
    assert decision.accepted and decision.distance < limit <= update.anchor_distance
    assert update.reason == "off_anchor" and new is None
    # Without the anchor (measured only by the benchmark) the chain would grow.
    _, update, new = _propose(drifted, probe, anchor=False)
    assert update.updated and new.n_adapted == 2


def test_near_duplicates_do_not_grow_the_template():
    template = _template()
    decision, update, new = _propose(template, template.signatures[1] + 1e-4)
    assert decision.accepted and update.reason == "near_duplicate" and new is None
    assert update.nearest < NEAR_DUPLICATE_FRACTION * CAL.threshold


def test_no_update_where_the_calibration_cannot_support_the_update_fmr():
    small = _calibration(n_impostor=50)  # FMR 0.1% needs 1,000 impostor attempts
    assert update_threshold(small, 3, "min") is None
    decision, update, new = _propose(_template(), _at(0.2, 5), small)
    assert decision.accepted and update.reason == "unsupported" and new is None
    assert "50 impostor attempts" in update.detail


def test_eviction_is_oldest_first_and_enrolled_signatures_stay():
    template = _template()
    probes = [_at(0.12 + 0.02 * i, 4 + i) for i in range(MAX_ADAPTED + 2)]
    for i, probe in enumerate(probes):
        decision = decide(template, probe, CAL, "min")
        update, new = propose_update(template, probe, decision, CAL, "min", added=f"t{i}")
        assert update.updated, update.detail
        assert update.evicted == (1 if i >= MAX_ADAPTED else 0)
        template = new
    assert (template.n_enrolled, template.n_adapted) == (3, MAX_ADAPTED)
    assert [o.added for o in template.origins[3:]] == [f"t{i}" for i in range(2, MAX_ADAPTED + 2)]
    np.testing.assert_allclose(template.signatures[3:], np.stack(probes[2:]))
    np.testing.assert_allclose(template.enrolled, _template().signatures)


def test_grown_templates_are_decided_at_a_union_bound_beyond_the_calibrated_sizes():
    assert CAL.largest_size("min") == 4
    assert decision_threshold(CAL, 4, "min") == (CAL.threshold_for(4), 1)
    threshold, groups = decision_threshold(CAL, 7, "min")
    assert groups == 2 and threshold == CAL.threshold_at(TARGET / 2, 4, "min")
    assert threshold < CAL.threshold_for(7)  # threshold_for alone would let the FMR creep
    assert decision_threshold(CAL, 5, "mean") is None  # no bound for the mean of more
    assert adapted_capacity(CAL, 3, "mean") == 1 and adapted_capacity(CAL, 3, "min") == MAX_ADAPTED
    # A template whose adapted part the calibration cannot decide (recalibrated since) is
    # decided on its enrollment signatures and the newest adapted ones that fit.
    grown = _template()
    for i in range(3):
        grown = with_adapted(grown, _at(0.2, 4 + i), 0.2, None)
    result = decide(grown, grown.signatures[3], CAL, "mean")
    mean4 = np.concatenate([grown.enrolled, grown.signatures[-1:]]).mean(axis=0)
    assert result.distance == pytest.approx(np.linalg.norm(grown.signatures[3] - mean4 / np.linalg.norm(mean4)), abs=1e-5)
    assert result.threshold == CAL.threshold_for(4, "mean")
    big = with_adapted(with_adapted(grown, _at(0.25, 8), 0.2, None), _at(0.25, 9), 0.2, None)
    result = decide(big, _at(0.9, 12), CAL, "min")
    assert result.fmr_estimate == pytest.approx(min(1.0, 2 * CAL.fmr_estimate(result.distance, 4)))


def test_templates_without_adapted_signatures_are_decided_as_before():
    template, probe = _template(), _at(0.5, 7)
    result = decide(template, probe, CAL, "min")
    assert result.threshold == CAL.threshold_for(3)
    assert result.fmr_estimate == CAL.fmr_estimate(result.distance, 3)
    assert decide(template, probe, CAL, "min", fixed=0.123).threshold == 0.123


def test_template_origins_default_to_enrolled_of_unknown_date():
    t = Template("bob", "m-1", np.eye(3, D, dtype=np.float32))
    assert t.origins == (SignatureOrigin(ENROLLED, None, None),) * 3
    assert (t.n_enrolled, t.n_adapted, t.newest) == (3, 0, None)


@pytest.mark.parametrize("encrypted", [False, True])
def test_origins_persist_and_replace_if_unchanged(tmp_path, encrypted, monkeypatch):
    from siamid.store import KEY_ENV

    monkeypatch.delenv(KEY_ENV, raising=False)
    key = new_key() if encrypted else None
    adapted = with_adapted(_template(), _at(0.3, 5), 0.3, "2026-02-01T00:00:00Z")
    with TemplateStore(tmp_path / "g.db", key=key, create=True) as store:
        store.put(_template())
        assert store.replace_if_unchanged(_template(), adapted)
        assert not store.replace_if_unchanged(_template(), adapted)  # it changed meanwhile
    with TemplateStore(tmp_path / "g.db", key=key) as store:
        back = store.get("alice")
        (entry,) = store.entries()
    assert back.origins == adapted.origins
    np.testing.assert_array_equal(back.signatures, adapted.signatures)
    assert (entry.n_enrolled, entry.n_adapted, entry.newest) == (3, 1, "2026-02-01T00:00:00Z")
    assert (b"2026-02-01" in (tmp_path / "g.db").read_bytes()) is not encrypted


def test_adapted_signatures_before_enrolled_ones_are_refused(tmp_path):
    from siamid.errors import TemplateError

    bad = Template("x", "m-1", np.eye(2, D, dtype=np.float32),
                   origins=(SignatureOrigin(ADAPTED), SignatureOrigin(ENROLLED)))
    with TemplateStore(tmp_path / "g.db", key=None, create=True) as store, \
            pytest.raises(TemplateError, match="enrollment signatures first"):
        store.put(bad)


def test_iso_time_is_utc():
    assert iso_time(0) == "1970-01-01T00:00:00Z"


# -- the Gallery and the CLI on the shipped model -------------------------------------------------

runner = CliRunner()


@pytest.fixture(scope="module")
def adaptive_model(tmp_path_factory):
    """The shipped model decided at unlock FMR 1% (its card's tables read at that FMR), so the
    update FMR 0.1% is supported; and a synthetic finger it enrolls, as image files."""
    from PIL import Image

    from siamid.calibration import with_calibration
    from siamid.cardfile import write_card
    from siamid.runtime import default_model_path, read_card
    from siamid.synth import generate_finger

    root = tmp_path_factory.mktemp("adapt")
    model = root / "model.onnx"
    model.write_bytes(default_model_path().read_bytes())
    card = read_card(model)
    write_card(model, with_calibration(card, Calibration.from_dict(card.calibration)
                                       .retargeted(0.01)))
    files = []
    for take, pixels in enumerate(generate_finger(seed=1, impressions=4, index=6)[1]):
        files.append(root / f"take{take}.png")
        Image.fromarray(pixels).save(files[-1])
    return model, files


def _cli(*args):
    from siamid.cli.main import app

    return runner.invoke(app, [str(a) for a in args])


def test_verify_adapt_end_to_end(adaptive_model, tmp_path, monkeypatch):
    from siamid.store import KEY_ENV

    monkeypatch.delenv(KEY_ENV, raising=False)
    model, files = adaptive_model
    gallery = tmp_path / "g.db"
    res = _cli("enroll", "[b]alice[/b]", *files[:3], "--gallery", gallery, "--model", model)
    assert res.exit_code == 0, res.output
    before = gallery.read_bytes()
    res = _cli("verify", "[b]alice[/b]", files[3], "--gallery", gallery, "--model", model)
    assert res.exit_code == 0 and "template updated" not in res.output, res.output
    assert "template not updated" not in res.output
    assert gallery.read_bytes() == before  # without --adapt nothing is written
    res = _cli("verify", "[b]alice[/b]", files[3], "--gallery", gallery, "--model", model, "--adapt")
    assert res.exit_code == 0, res.output
    assert "template updated: added as adapted signature 1" in res.output
    assert "now 3 enrolled + 1 adapted" in res.output
    res = _cli("verify", "[b]alice[/b]", files[3], "--gallery", gallery, "--model", model, "--adapt")
    assert res.exit_code == 0 and "template not updated" in res.output
    assert "near-duplicate" in res.output
    res = _cli("gallery", "list", "--gallery", gallery)
    assert res.exit_code == 0 and "[b]alice[/b]" in res.output and "3 / 1" in res.output
    res = _cli("verify", "[b]alice[/b]", files[3], "--gallery", gallery, "--adapt")  # shipped card
    assert res.exit_code == 0 and "cannot support the update FMR" in res.output
    # The way back: drop what adaptation added, keep what enrollment made.
    res = _cli("gallery", "forget-adapted", "[b]alice[/b]", "--gallery", gallery)
    assert res.exit_code == 0 and "dropped 1 adapted signatures of [b]alice[/b]" in res.output
    res = _cli("gallery", "list", "--gallery", gallery)
    assert "3 / 0" in res.output
    res = _cli("gallery", "forget-adapted", "[b]alice[/b]", "--gallery", gallery)
    assert res.exit_code == 0 and "no adapted signatures; nothing changed" in res.output
    res = _cli("gallery", "forget-adapted", "bob", "--gallery", gallery)
    assert res.exit_code == 3 and "'bob' is not enrolled" in res.output


def test_retargeted_calibration_reads_its_tables_at_another_fmr():
    from siamid.errors import ConfigError

    stricter = CAL.retargeted(0.001)
    assert stricter.target_fmr == 0.001
    assert stricter.threshold_for(3) == CAL.threshold_at(0.001, 3) < CAL.threshold_for(3)
    assert CAL.threshold_at(TARGET, 3) == CAL.threshold_for(3)
    with pytest.raises(ConfigError, match="cannot support FMR"):
        _calibration(n_impostor=50).retargeted(0.001)


def test_enrolled_only_keeps_the_enrollment_rows_in_order():
    from siamid.adaptation import enrolled_only, with_adapted
    from siamid.types import Template

    enrolled = np.eye(3, 4, dtype=np.float32)
    template = Template("ann", "m", enrolled)
    grown = with_adapted(with_adapted(template, np.full(4, 0.5), 0.1, "2026-01-01T00:00:00Z"),
                         np.full(4, 0.25), 0.2, "2026-02-01T00:00:00Z")
    assert grown.n_adapted == 2
    back = enrolled_only(grown)
    assert back.n_adapted == 0 and back.n_enrolled == 3
    np.testing.assert_array_equal(back.signatures, enrolled)
    assert back.origins == template.origins
