"""The persistent lockout: 5 failures lock for 30 s, each further lockout doubles, a success
clears it, and the state survives a new object and a new process."""

from __future__ import annotations

import json
import stat
import subprocess
import sys

import pytest

from siamid.errors import ConfigError
from siamid.lockout import Lockout, LockoutPolicy, lockout_path


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fail(lockout: Lockout, times: int) -> list[float]:
    return [lockout.record_failure() for _ in range(times)]


def test_five_failures_lock_for_30_s_then_60_then_120(tmp_path):
    clock = Clock()
    lockout = Lockout(tmp_path / "g.db.lockout.json", clock=clock)
    assert fail(lockout, 4) == [0.0] * 4 and not lockout.locked and lockout.failures_left == 1
    assert lockout.record_failure() == 30.0
    assert lockout.locked and lockout.remaining() == 30.0
    clock.now += 29.5
    assert lockout.remaining() == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="during a lockout"):
        lockout.record_failure()
    clock.now += 0.5
    assert not lockout.locked and lockout.failures_left == 5
    assert fail(lockout, 5)[-1] == 60.0
    clock.now += 60
    assert fail(lockout, 5)[-1] == 120.0


def test_a_success_clears_the_count_and_the_doubling(tmp_path):
    clock = Clock()
    lockout = Lockout(tmp_path / "l.json", clock=clock)
    fail(lockout, 5)
    clock.now += 30
    fail(lockout, 3)
    lockout.record_success()
    assert lockout.failures_left == 5
    assert fail(lockout, 5)[-1] == 30.0  # not 60: the success started the doubling again


def test_the_state_survives_a_new_object_and_a_new_process(tmp_path):
    path = lockout_path(tmp_path / "gallery.db")
    assert path.name == "gallery.db.lockout.json"
    clock = Clock()
    fail(Lockout(path, clock=clock), 5)
    clock.now += 10
    again = Lockout(path, clock=clock)
    assert again.remaining() == 20.0 and again.state.lockouts == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["seconds"] == 30.0
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    code = ("import sys; from siamid.lockout import Lockout; "
            f"print(Lockout(sys.argv[1], clock=lambda: {clock.now + 5}).remaining())")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, check=True).stdout
    assert float(out) == 15.0


def test_a_clock_set_back_neither_ends_nor_stretches_a_lockout(tmp_path):
    clock = Clock()
    lockout = Lockout(tmp_path / "l.json", clock=clock)
    fail(lockout, 5)
    clock.now -= 3600
    assert lockout.remaining() == 30.0


def test_a_damaged_file_is_an_error_that_says_what_it_holds(tmp_path):
    path = tmp_path / "l.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="damaged.*failed-attempt count"):
        Lockout(path)
    path.write_text(json.dumps({"format": "siamid-lockout/1", "failures": -1, "lockouts": 0,
                                "locked_at": 0, "seconds": 0}))
    with pytest.raises(ConfigError, match="negative"):
        Lockout(path)


def test_policy_is_checked():
    with pytest.raises(ConfigError):
        LockoutPolicy(max_failures=0)
    assert LockoutPolicy(max_seconds=100).duration(10) == 100
