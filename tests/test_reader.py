"""The live authenticator over the simulated R503: enrollment, verification and identification
through the Gallery, the LED per state, and the lockout with a fake clock."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from siamid import reader as rd
from siamid.cli.main import app
from siamid.errors import NotEnrolledError, SensorError, TemplateError
from siamid.lockout import Lockout, lockout_path
from siamid.reader import LEDS, Reader, State
from siamid.runtime import Embedder, Gallery
from siamid.sensors import R503, LedColour, LedMode
from siamid.store import KEY_ENV, TemplateStore

BLANK = np.full((192, 192), 255, np.uint8)
GREEN_ON = (LedMode.ON, 128, LedColour.GREEN, 0)
BLUE_BREATHING = (LedMode.BREATHING, 100, LedColour.BLUE, 0)
RED_FLASHING = (LedMode.FLASHING, 40, LedColour.RED, 3)
PURPLE_FLASHING = (LedMode.FLASHING, 40, LedColour.PURPLE, 2)
RED_ON = (LedMode.ON, 128, LedColour.RED, 0)


@pytest.fixture(scope="module")
def fingers():
    """alice: a finger whose takes the shipped model enrolls and whose later impressions it
    accepts; bob: another finger, far from alice's."""
    from siamid.synth import generate_finger

    return {"alice": generate_finger(17, 6, sensor="r503", index=17)[1],
            "bob": generate_finger(1, 6, sensor="r503", index=7)[1]}


@pytest.fixture(scope="module")
def embedder():
    return Embedder()


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)


@pytest.fixture
def gallery(tmp_path, embedder):
    store = TemplateStore(tmp_path / "g.db", create=True)
    yield Gallery(embedder, store)
    store.close()


def served(folder, images):
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:02d}.png")
    return f"r503sim://?images={folder}&lift=1"


class FakeTime:
    """A wall clock for the lockout whose sleep only moves it forward."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def make_reader(sensor, gallery, lockout=None, events=None, clock=None):
    return Reader(sensor, gallery, lockout, hold=0, lift_timeout=1.0,
                  sleep=(clock.sleep if clock else lambda s: None),
                  on_event=(events.append if events is not None else None))


def test_enroll_verify_genuine_and_reject_another_finger(tmp_path, gallery, fingers):
    alice, bob = fingers["alice"], fingers["bob"]
    url = served(tmp_path / "srv", [*alice[:3], alice[3], alice[4], bob[0]])
    clock = FakeTime()
    lockout = Lockout(tmp_path / "g.db.lockout.json", clock=clock)
    events = []
    with R503(url) as sensor:
        reader = make_reader(sensor, gallery, lockout, events, clock)
        result = reader.enroll("alice")
        assert result is not None and result.accepted == [0, 1, 2] and "alice" in gallery.store
        summary = reader.verify("alice", max_touches=3)
        leds = sensor.port.simulator.led_history
    assert (summary.touches, summary.accepted, summary.rejected) == (3, 2, 1)
    decisions = [e for e in events if isinstance(e, rd.Decision)]
    assert [d.accepted for d in decisions] == [True, True, False]
    # The Gallery's own decision, with the threshold siamid verify uses for a 3-image template.
    expected = gallery.verify("alice", alice[3])
    assert decisions[0].results[0] == expected
    assert decisions[0].results[0].threshold == gallery.threshold_for(3)
    assert decisions[2].results[0].distance > decisions[2].results[0].threshold
    assert decisions[2].failures_left == 4 and lockout.state.failures == 1
    t = decisions[0].timings
    assert t.capture_s >= 0 and t.upload_s > 0 and t.decide_s > 0
    # LED: enrollment takes (blue, green) x 3; then blue/green, blue/green, blue/red; off.
    assert leds[:6] == [BLUE_BREATHING, GREEN_ON] * 3
    assert leds[7:13] == [BLUE_BREATHING, GREEN_ON, BLUE_BREATHING, GREEN_ON,
                          BLUE_BREATHING, RED_FLASHING]
    assert leds[6][0] == LedMode.OFF and leds[-1][0] == LedMode.OFF


def test_identify_names_the_finger_and_refuses_a_stranger(tmp_path, gallery, fingers):
    alice, bob = fingers["alice"], fingers["bob"]
    gallery.enroll("alice", alice[:3])
    events = []
    with R503(served(tmp_path / "srv", [bob[1], alice[5]])) as sensor:
        summary = make_reader(sensor, gallery, None, events).identify(max_touches=2)
    decisions = [e for e in events if isinstance(e, rd.Decision)]
    assert [d.accepted for d in decisions] == [False, True]
    assert decisions[1].results[0].subject == "alice"
    assert decisions[0].results == gallery.identify(bob[1], top_k=1)
    assert summary.accepted == 1 and summary.rejected == 1


def test_poor_takes_are_retaken_and_never_counted(tmp_path, gallery, fingers):
    alice = fingers["alice"]
    url = served(tmp_path / "srv", [alice[0], BLANK, alice[1], alice[2], BLANK, alice[3]])
    clock = FakeTime()
    lockout = Lockout(tmp_path / "l.json", clock=clock)
    events = []
    with R503(url) as sensor:
        reader = make_reader(sensor, gallery, lockout, events, clock)
        assert reader.enroll("alice") is not None
        summary = reader.verify("alice", max_touches=2)
        leds = sensor.port.simulator.led_history
    poor = [e for e in events if isinstance(e, rd.PoorQuality)]
    assert len(poor) == 2 and all("too light" in e.reason for e in poor)
    assert (summary.poor, summary.accepted, summary.rejected) == (1, 1, 0)
    assert lockout.state.failures == 0
    assert PURPLE_FLASHING in leds


def test_enrollment_of_mixed_fingers_is_refused_and_started_again(tmp_path, gallery, fingers):
    alice, bob = fingers["alice"], fingers["bob"]
    url = served(tmp_path / "srv", [alice[0], bob[0], bob[1], *alice[1:4]])
    events = []
    with R503(url) as sensor:
        result = make_reader(sensor, gallery, None, events).enroll("alice")
    refused = [e for e in events if isinstance(e, rd.EnrollRefused)]
    assert len(refused) == 1 and "image 0 matches none of the others" in refused[0].reason
    assert result is not None and [type(e).__name__ for e in events].count("TakeKept") == 6
    assert gallery.verify("alice", alice[4]).accepted


def test_five_failures_lock_30_s_then_60_s_and_a_new_reader_stays_locked(
        tmp_path, gallery, fingers):
    alice, bob = fingers["alice"], fingers["bob"]
    gallery.enroll("alice", alice[:3])
    clock = FakeTime()
    path = lockout_path(tmp_path / "g.db")
    events = []
    with R503(served(tmp_path / "srv", bob)) as sensor:
        reader = make_reader(sensor, gallery, Lockout(path, clock=clock), events, clock)
        reader.verify("alice", max_touches=10)
        leds = sensor.port.simulator.led_history
    locks = [d.locked_for for d in events if isinstance(d, rd.Decision)]
    assert locks == [0, 0, 0, 0, 30.0, 0, 0, 0, 0, 60.0]
    waits = [e for e in events if isinstance(e, rd.Locked)]
    assert [w.seconds for w in waits] == [30.0] and clock.slept == [30.0]
    assert RED_ON in leds and leds[leds.index(RED_ON) - 1] == RED_FLASHING
    # No touch was taken while locked: the touch after the lockout is the sixth image.
    assert sum(isinstance(e, rd.Unlocked) for e in events) == 1
    # A new Lockout and Reader on the same file (a restart) are still locked for 60 s.
    clock.now += 15
    events.clear()
    with R503(served(tmp_path / "srv2", alice[3:4])) as sensor:
        again = make_reader(sensor, gallery, Lockout(path, clock=clock), events, clock)
        summary = again.verify("alice", max_touches=1)
        leds = sensor.port.simulator.led_history
    assert [e.seconds for e in events if isinstance(e, rd.Locked)] == [45.0]
    assert leds[0] == RED_ON and summary.accepted == 1
    assert Lockout(path, clock=clock).state.failures == 0  # the success cleared the count


def test_the_led_of_each_state_and_a_module_without_green(gallery):
    assert (LEDS[State.WAITING].mode, LEDS[State.WAITING].colour) == ("breathing", "blue")
    assert LEDS[State.LOCKED].colour == "red" and LEDS[State.REJECTED].mode == "flashing"

    class OldModule:
        def __init__(self) -> None:
            self.calls = []

        def set_led(self, mode, colour, speed=128, cycles=0):
            if colour in ("green", "yellow", "cyan", "white"):
                raise SensorError("setting the LED failed (code 0x01)", 0x01)
            self.calls.append((mode, colour))

    sensor = OldModule()
    reader = Reader(sensor, gallery)
    reader._show(State.ACCEPTED)
    reader._show(State.ACCEPTED)
    assert sensor.calls == [("on", "blue"), ("on", "blue")]


def test_reader_refuses_unknown_subjects_and_empty_galleries(tmp_path, gallery):
    reader = Reader(object(), gallery)
    with pytest.raises(NotEnrolledError, match="not enrolled"):
        reader.verify("nobody")
    with pytest.raises(NotEnrolledError, match="holds no templates"):
        reader.identify()


def test_the_cli_enrolls_and_verifies(tmp_path, fingers):
    alice, bob = fingers["alice"], fingers["bob"]
    runner = CliRunner()
    g = tmp_path / "g.db"
    url = served(tmp_path / "a", alice[:3])
    common = ["--gallery", str(g), "--hold", "0", "--lift-timeout", "1"]
    res = runner.invoke(app, ["reader", "enroll", "eve[/x]", "--port", url, *common])
    assert res.exit_code == 0, res.output
    assert "enrolled eve[/x] with 3 signatures" in res.output
    res = runner.invoke(app, ["reader", "enroll", "eve[/x]", "--port", url, *common])
    assert res.exit_code == 3 and "already enrolled" in res.output
    url = served(tmp_path / "b", [alice[3], bob[0]])
    res = runner.invoke(app, ["reader", "verify", "eve[/x]", "--port", url, *common,
                              "--max-touches", "2"])
    assert res.exit_code == 1, res.output  # the last touch (bob) was rejected
    assert "ACCEPTED eve[/x]: distance" in res.output
    assert "REJECTED eve[/x]: distance" in res.output
    assert "failed attempts left before a lockout: 4" in res.output
    res = runner.invoke(app, ["reader", "identify", "--port", url, *common, "--max-touches", "1"])
    assert res.exit_code == 0 and "ACCEPTED eve[/x]" in res.output
    res = runner.invoke(app, ["reader", "verify", "bob", "--port", url, *common])
    assert res.exit_code == 3 and "'bob' is not enrolled" in res.output
    res = runner.invoke(app, ["reader", "verify", "x", "--port", url, "--gallery",
                              str(tmp_path / "none.db")])
    assert res.exit_code == 3 and "does not exist" in res.output
    res = runner.invoke(app, ["reader", "dance", "--port", url, *common])
    assert res.exit_code == 3 and "unknown reader mode" in res.output
    res = runner.invoke(app, ["reader", "verify", "x", "--port", "/dev/nonexistent-port",
                              *common])
    assert res.exit_code == 3 and "cannot open the sensor port" in res.output


def test_a_refused_first_enrollment_leaves_no_gallery(tmp_path):
    runner = CliRunner()
    g = tmp_path / "g.db"
    url = served(tmp_path / "a", [BLANK])
    res = runner.invoke(app, ["reader", "enroll", "al", "--port", url, "--gallery", str(g),
                              "--hold", "0", "--max-touches", "2"])
    assert res.exit_code == 1 and "poor quality" in res.output
    assert not g.exists()


def test_enroll_refuses_an_existing_subject_before_any_touch(gallery, fingers):
    gallery.enroll("alice", fingers["alice"][:3])
    with pytest.raises(TemplateError, match="already enrolled"):
        Reader(object(), gallery).enroll("alice")
