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
