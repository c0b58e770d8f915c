"""Guided capture over the simulated R503: the standard layout, poor takes retried with the
reason, resuming, never overwriting, and a folder that scan_dataset loads."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from siamid import capture as cap
from siamid.capture import CaptureSession, model_quality, write_png_new
from siamid.cli.main import app
from siamid.dataset import load_samples, scan_dataset
from siamid.errors import DatasetError
from siamid.sensors import R503, LedColour, LedMode

BLANK = np.full((192, 192), 255, np.uint8)  # bare glass: "too light, no finger?"


@pytest.fixture(scope="module")
def finger():
    from siamid.synth import generate_finger

    return generate_finger(0, 6, sensor="r503", index=6)[1]


@pytest.fixture(scope="module")
def quality():
    return model_quality(None)


def served(folder, images):
    """A folder the simulator serves in this order (sorted names), round robin."""
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:02d}.png")
    return f"r503sim://?images={folder}&lift=1"


def session(sensor, out, quality, **kw):
    kw = {"hands": ["right"], "fingers": ["index"], "takes": 2, "lift_timeout": 1.0} | kw
    return CaptureSession(sensor, out, "p01", quality, **kw)


def test_capture_writes_the_layout_and_retries_a_poor_take(tmp_path, finger, quality):
    url = served(tmp_path / "srv", [BLANK, *finger[:4]])
    out, events = tmp_path / "data", []
    with R503(url) as sensor:
        summary = session(sensor, out, quality, fingers=["index", "middle"]).run(events.append)
        leds = sensor.port.simulator.led_history
        assert len(sensor.port.simulator.served) == 5
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert files == ["p01/right/index/1.png", "p01/right/index/2.png",
                     "p01/right/middle/1.png", "p01/right/middle/2.png"]
    # The first take was the blank image: refused with the quality check's reason, retaken.
    rejected = [e for e in events if isinstance(e, cap.Rejected)]
    assert len(rejected) == 1 and "too light" in rejected[0].reason
    assert summary.rejected == 1 and len(summary.saved) == 4
    prompts = [(e.slot.finger, e.slot.take, e.attempt) for e in events
               if isinstance(e, cap.Prompt)]
    assert prompts[:3] == [("index", 1, 1), ("index", 1, 2), ("index", 2, 1)]
    # The saved pixels are the ones served, in order.
    saved = np.asarray(Image.open(out / "p01/right/index/1.png"))
    assert np.array_equal(saved, finger[0])
    # LED: breathing blue asks, red flashing refuses, green accepts, off at the end.
    red = (LedMode.FLASHING, 40, LedColour.RED, 3)
    assert leds[0] == (LedMode.BREATHING, 128, LedColour.BLUE, 0)
    assert leds[1] == red and leds[3][::2] == (LedMode.ON, LedColour.GREEN)
    assert leds[-1][0] == LedMode.OFF
    # The folder is a dataset: two identities of two takes, at 500 dpi.
    ds = scan_dataset(out)
    assert ds.identities == ["p01/right/index", "p01/right/middle"] and len(ds) == 4
    samples = load_samples(ds)
    assert samples[0].dpi == 500 and samples[0].pixels.shape == (192, 192)
    assert (out / "capture.json").is_file()


def test_an_interrupted_subject_resumes_and_nothing_is_overwritten(tmp_path, finger, quality):
    out = tmp_path / "data"
    with R503(served(tmp_path / "a", finger[:2])) as sensor:
        session(sensor, out, quality).run()
    before = {p: p.read_bytes() for p in out.rglob("*.png")}
    events = []
    with R503(served(tmp_path / "b", finger[3:5])) as sensor:
        summary = session(sensor, out, quality, takes=4).run(events.append)
    assert [p.name for p in summary.skipped] == ["1.png", "2.png"]
    assert [p.name for p in summary.saved] == ["3.png", "4.png"]
    assert all(p.read_bytes() == data for p, data in before.items())
    assert [type(e).__name__ for e in events[:2]] == ["Skipped", "Skipped"]
    assert np.array_equal(np.asarray(Image.open(out / "p01/right/index/3.png")), finger[3])
    # A take in another image format counts as taken too (scan_dataset would see a duplicate).
    Image.fromarray(finger[0]).save(out / "p01/right/index/5.bmp")
    with R503(served(tmp_path / "c", finger[:1])) as sensor:
        assert session(sensor, out, quality, takes=5).pending() == []


def test_write_png_new_never_replaces_a_file(tmp_path, finger):
    path = tmp_path / "s/right/index/1.png"
    write_png_new(path, finger[0])
    data = path.read_bytes()
    with pytest.raises(DatasetError, match="never overwritten"):
        write_png_new(path, finger[1])
    assert path.read_bytes() == data
    assert sorted(p.name for p in path.parent.iterdir()) == ["1.png"]  # no temporary left


def test_no_finger_is_reported_and_waited_for(tmp_path, finger, quality):
    url = served(tmp_path / "srv", finger[:1]) + "&faults=nofinger:4"
    events = []
    with R503(url) as sensor:
        session(sensor, tmp_path / "d", quality, takes=1, touch_timeout=0.05).run(events.append)
    assert any(isinstance(e, cap.NoFinger) for e in events)
    assert (tmp_path / "d/p01/right/index/1.png").is_file()


def test_a_finger_that_keeps_failing_is_left_for_later(tmp_path, quality):
    events = []
    with R503(served(tmp_path / "srv", [BLANK])) as sensor:
        summary = session(sensor, tmp_path / "d", quality, max_attempts=2).run(events.append)
    assert [s.take for s in summary.gave_up] == [1] and summary.rejected == 2
    assert not list((tmp_path / "d").rglob("*.png"))


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "x" * 65, "a b", "[red]"])
def test_bad_subject_ids_are_refused(name):
    with pytest.raises(DatasetError, match="cannot be a folder name"):
        cap.check_subject(name)


def test_finger_and_hand_choices():
    assert cap.parse_choice("middle, index", cap.FINGERS, "finger") == ("index", "middle")
    assert cap.parse_choice(None, cap.HANDS, "hand") == ("left", "right")
    with pytest.raises(DatasetError, match="unknown finger 'pinky'"):
        cap.parse_choice("index,pinky", cap.FINGERS, "finger")


def test_the_cli_captures_and_resumes(tmp_path, finger):
    url = served(tmp_path / "srv", [BLANK, *finger[:3]])
    runner = CliRunner()
    args = ["capture", str(tmp_path / "out"), "--port", url, "--subject", "p7",
            "--hands", "left", "--fingers", "thumb", "--takes", "2", "--no-preview"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "poor take left thumb take 1/2: too light" in res.output
    assert "saved" in res.output and "done: 2 saved, 0 already there, 1 poor takes" in res.output
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and "done: 0 saved, 2 already there" in res.output
    res = runner.invoke(app, [*args[:4], "--subject", "../p7", *args[6:]])
    assert res.exit_code == 3 and "cannot be a folder name" in res.output
    res = runner.invoke(app, [*args[:-1], "--fingers", "pinky"])
    assert res.exit_code == 3 and "unknown finger 'pinky'" in res.output


# -- the manifest: capture.json's take records -----------------------------------------------


def sha256(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def records(out):
    return {r.path: r for r in cap.read_manifest(out).takes}


def test_every_saved_take_is_recorded_with_its_hash_time_size_and_refusals(tmp_path, finger,
                                                                            quality):
    from datetime import UTC, datetime

    url = served(tmp_path / "srv", [BLANK, *finger[:2]])
    out = tmp_path / "data"
    start = datetime.now(UTC)
    with R503(url) as sensor:
        session(sensor, out, quality).run()
    end = datetime.now(UTC)
    manifest = cap.read_manifest(out)
    assert manifest.ok and manifest.version == 2
    assert manifest.meta["format"] == "siamid-capture/2" and manifest.meta["subjects"] == ["p01"]
    assert [r.path for r in manifest.takes] == ["p01/right/index/1.png", "p01/right/index/2.png"]
    first, second = manifest.takes
    for record in manifest.takes:
        assert record.sha256 == sha256(out / record.path)
        assert record.image_size == (192, 192)
        assert record.captured.endswith("Z")
        when = datetime.fromisoformat(record.captured)
        assert start.replace(microsecond=0) <= when <= end
    # The blank image was refused before take 1 was accepted; take 2 went through at once.
    assert first.refused == 1 and len(first.reasons) == 1 and "too light" in first.reasons[0]
    assert second.refused == 0 and second.reasons == ()
    assert first.captured <= second.captured
    # write_png_new hands back the hash of what it wrote.
    assert write_png_new(tmp_path / "x/1.png", finger[0]) == sha256(tmp_path / "x/1.png")


class Crash(Exception):
    pass


def test_each_take_is_recorded_at_once_so_a_crash_loses_none(tmp_path, finger, quality):
    out, seen = tmp_path / "data", []

    def crash_on_third(image):
        if len(seen) == 2:
            raise Crash("power cut")
        return quality(image)

    def on_event(event):
        if isinstance(event, cap.Saved):  # already on disk, whole, when the take is announced
            manifest = cap.read_manifest(out)
            assert manifest.ok and manifest.takes[-1].path == event.path.relative_to(
                out).as_posix()
            seen.append(event.path)

    with R503(served(tmp_path / "a", finger[:4])) as sensor, pytest.raises(Crash):
        session(sensor, out, crash_on_third, takes=4).run(on_event)
    before = records(out)
    assert sorted(before) == ["p01/right/index/1.png", "p01/right/index/2.png"]
    assert cap.read_manifest(out).ok
    # Resuming keeps those records as they are and adds the new takes'.
    with R503(served(tmp_path / "b", finger[2:4])) as sensor:
        session(sensor, out, quality, takes=4).run()
    after = records(out)
    assert sorted(after) == [f"p01/right/index/{k}.png" for k in (1, 2, 3, 4)]
    assert all(after[path] == record for path, record in before.items())
    assert all(r.captured is not None for r in after.values())


def test_resuming_records_takes_found_on_disk_and_keeps_the_others(tmp_path, finger, quality):
    out = tmp_path / "data"
    with R503(served(tmp_path / "a", finger[:2])) as sensor:
        session(sensor, out, quality).run()
    before = records(out)
    # A take copied in by hand (in another format), one of a finger this session does not
    # capture, and a take that crashed before its record was written: none is recorded yet.
    Image.fromarray(finger[4]).save(out / "p01/right/index/3.bmp")
    (out / "p01/left/thumb").mkdir(parents=True)
    Image.fromarray(finger[5]).save(out / "p01/left/thumb/1.png")
    assert {p.path: p.kind for p in cap.read_manifest(out).problems} == {
        "p01/right/index/3.bmp": "unrecorded", "p01/left/thumb/1.png": "unrecorded"}
    with R503(served(tmp_path / "b", finger[2:3])) as sensor:
        summary = session(sensor, out, quality, takes=4).run()
    assert [p.name for p in summary.saved] == ["4.png"]
    manifest = cap.read_manifest(out)
    assert manifest.ok
    after = {r.path: r for r in manifest.takes}
    assert sorted(after) == ["p01/left/thumb/1.png", "p01/right/index/1.png",
                             "p01/right/index/2.png", "p01/right/index/3.bmp",
                             "p01/right/index/4.png"]
    assert all(after[path] == record for path, record in before.items())
    for path in ("p01/right/index/3.bmp", "p01/left/thumb/1.png"):
        found = after[path]
        assert found.sha256 == sha256(out / path)
        assert found.captured is None and found.image_size is None and found.refused is None
    assert after["p01/right/index/4.png"].captured is not None
    # A second subject in the same folder adds its records beside the first one's.
    with R503(served(tmp_path / "c", finger[:1])) as sensor:
        CaptureSession(sensor, out, "p02", quality, hands=["left"], fingers=["index"],
                       takes=1, lift_timeout=1.0).run()
    manifest = cap.read_manifest(out)
    assert manifest.ok and manifest.meta["subjects"] == ["p01", "p02"]
    assert len(manifest.takes) == 6 and manifest.takes[-1].path == "p02/left/index/1.png"


def test_verification_finds_changed_missing_and_unrecorded_takes(tmp_path, finger, quality):
    out = tmp_path / "data"
    with R503(served(tmp_path / "a", finger[:3])) as sensor:
        session(sensor, out, quality, takes=3).run()
    assert cap.read_manifest(out).ok
    # One changed pixel is a changed take; a deleted take is missing; a stray one unrecorded.
    pixels = np.asarray(Image.open(out / "p01/right/index/1.png")).copy()
    pixels[0, 0] ^= 1
    Image.fromarray(pixels).save(out / "p01/right/index/1.png")
    (out / "p01/right/index/2.png").unlink()
    (out / "p09/left/ring").mkdir(parents=True)
    Image.fromarray(finger[0]).save(out / "p09/left/ring/1.png")
    manifest = cap.read_manifest(out)
    assert not manifest.ok
    assert [(p.path, p.kind) for p in manifest.problems] == [
        ("p01/right/index/1.png", "changed"), ("p01/right/index/2.png", "missing"),
        ("p09/left/ring/1.png", "unrecorded")]
    assert len(manifest.takes) == 3  # reading does not change the records
    assert cap.read_manifest(out, verify=False).problems == []
    # The CLI prints each problem and exits 1; a sound folder exits 0.
    runner = CliRunner()
    res = runner.invoke(app, ["capture", str(out), "--check"])
    assert res.exit_code == 1, res.output
    assert "changed" in res.output and "1.png" in res.output and "missing" in res.output
    assert "3 takes recorded; 1 changed, 1 missing, 1 unrecorded" in res.output
    for path in ("p01/right/index/1.png", "p09/left/ring/1.png"):
        (out / path).unlink()
    write_png_new(out / "p01/right/index/1.png", finger[0])
    write_png_new(out / "p01/right/index/2.png", finger[1])
    res = runner.invoke(app, ["capture", str(out), "--check"])
    assert res.exit_code == 0 and "3 takes recorded, all present and unchanged" in res.output
    res = runner.invoke(app, ["capture", str(tmp_path / "nothing"), "--check"])
    assert res.exit_code == 3 and "capture.json not found" in res.output


def test_version_1_files_are_read_and_upgraded_on_resume(tmp_path, finger, quality):
    import json

    out = tmp_path / "data"
    write_png_new(out / "p01/right/index/1.png", finger[0])
    v1 = {"format": "siamid-capture/1", "layout": "<subject>/<hand>/<finger>/<take>.png",
          "dpi": 500, "sensor": {"model": "R503"}, "quality_model": "m", "subjects": ["p01"],
          "updated": "2025-01-01T00:00:00+0000"}
    (out / "capture.json").write_text(json.dumps(v1))
    manifest = cap.read_manifest(out)
    assert manifest.version == 1 and manifest.takes == []
    assert [(p.path, p.kind) for p in manifest.problems] == [("p01/right/index/1.png",
                                                               "unrecorded")]
    with R503(served(tmp_path / "a", finger[1:2])) as sensor:
        session(sensor, out, quality).run()
    manifest = cap.read_manifest(out)
    assert manifest.ok and manifest.version == 2 and manifest.meta["subjects"] == ["p01"]
    first, second = manifest.takes
    assert first.path.endswith("1.png") and first.captured is None
    assert first.sha256 == sha256(out / first.path)
    assert second.path.endswith("2.png") and second.captured is not None
    # A format this siamid does not know, or a record pointing out of the folder, is refused.
    (out / "capture.json").write_text(json.dumps(v1 | {"format": "siamid-capture/9"}))
    with pytest.raises(DatasetError, match="siamid-capture/9"):
        cap.read_manifest(out)
    bad = v1 | {"format": "siamid-capture/2",
                "takes": [{"path": "../outside.png", "sha256": "0" * 64}]}
    (out / "capture.json").write_text(json.dumps(bad))
    with pytest.raises(DatasetError, match="malformed take record"):
        cap.read_manifest(out)
    with (R503(served(tmp_path / "b", finger[1:2])) as sensor,
          pytest.raises(DatasetError, match="malformed take record")):
        session(sensor, out, quality, takes=3).run()
