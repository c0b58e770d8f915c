"""Lockout after repeated failed attempts, kept in a small JSON file that survives restarts.

The rule Android's and Apple's biometric requirements share: after ``max_failures`` (5)
consecutive rejected attempts of good quality, the authenticator refuses every attempt for
``base_seconds`` (30 s); each further lockout, without a success in between, lasts twice as long
as the one before (up to ``max_seconds``). A success clears the count. Poor-quality captures
never count: they are failures to acquire, not comparisons.

The state lives in a JSON file (``lockout_path(gallery)``: next to the gallery), rewritten
atomically at each change, so neither a crash nor a restart of the reader lifts a lockout.
Times are wall-clock seconds (``clock``, ``time.time`` by default, injectable for tests),
because a monotonic clock restarts with the process. A clock set back never lengthens a
lockout past its own duration, and never ends it early either.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .atomic import write_atomic
from .errors import ConfigError

__all__ = ["Lockout", "LockoutPolicy", "LockoutState", "lockout_path"]

_FORMAT = "siamid-lockout/1"


@dataclass(frozen=True)
class LockoutPolicy:
    """When to lock and for how long (seconds)."""

    max_failures: int = 5
    base_seconds: float = 30.0
    factor: float = 2.0
    max_seconds: float = 24 * 3600.0

    def __post_init__(self) -> None:
        if self.max_failures < 1:
            raise ConfigError(f"lockout max_failures must be >= 1, got {self.max_failures}")
        if not 0 < self.base_seconds <= self.max_seconds:
            raise ConfigError("lockout base_seconds must be positive and at most max_seconds, "
                              f"got {self.base_seconds} and {self.max_seconds}")
        if self.factor < 1:
            raise ConfigError(f"lockout factor must be >= 1, got {self.factor}")

    def duration(self, lockouts: int) -> float:
        """Seconds of lockout number ``lockouts`` (1 for the first)."""
        return min(self.base_seconds * self.factor ** max(lockouts - 1, 0), self.max_seconds)


@dataclass(frozen=True)
class LockoutState:
    """``failures`` since the last success or lockout; ``lockouts`` since the last success;
    the current (or last) lockout began at ``locked_at`` (wall-clock s) for ``seconds``."""

    failures: int = 0
    lockouts: int = 0
    locked_at: float = 0.0
    seconds: float = 0.0

    def remaining(self, now: float) -> float:
        """Seconds of lockout left at ``now`` (0: not locked)."""
        if self.seconds <= 0:
            return 0.0
        if now < self.locked_at:  # the clock went back: the whole lockout is still to serve
            return self.seconds
        return max(0.0, self.locked_at + self.seconds - now)


def lockout_path(gallery: str | Path) -> Path:
    """Where the lockout state of ``gallery`` lives: ``<gallery>.lockout.json`` beside it."""
    gallery = Path(gallery)
    return gallery.with_name(gallery.name + ".lockout.json")


class Lockout:
    """The persistent failure count and lockout of one authenticator (one gallery).

    ``path``: the JSON file (created at the first change; a missing file is a clean state).
    ``clock``: wall-clock seconds. Not safe for two processes writing at once: run one reader
    per gallery.
    """

    def __init__(self, path: str | Path, policy: LockoutPolicy | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.policy = policy or LockoutPolicy()
        self.clock = clock
        self.state = self._load()

    def remaining(self) -> float:
        """Seconds until attempts are allowed again (0: allowed now)."""
        return self.state.remaining(self.clock())

    @property
    def locked(self) -> bool:
        """Whether attempts are refused now."""
        return self.remaining() > 0

    @property
    def failures_left(self) -> int:
        """Failed attempts still allowed before the next lockout."""
        return self.policy.max_failures - self.state.failures

    def record_failure(self) -> float:
        """Count a rejected good-quality attempt; the lockout it starts in seconds (0: none).

        A failure while locked is a caller's bug (attempts are refused then): ConfigError.
        """
        if self.locked:
            raise ConfigError("an attempt was made during a lockout; check `remaining()` first")
        failures = self.state.failures + 1
        if failures < self.policy.max_failures:
            self._save(replace(self.state, failures=failures))
            return 0.0
        lockouts = self.state.lockouts + 1
        seconds = self.policy.duration(lockouts)
        self._save(LockoutState(0, lockouts, self.clock(), seconds))
        return seconds

    def record_success(self) -> None:
        """An accepted attempt: the count and the doubling start again."""
        if self.state != LockoutState():
            self._save(LockoutState())

    def _load(self) -> LockoutState:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return LockoutState()
        except OSError as exc:
            raise ConfigError(f"cannot read the lockout file {self.path}: {exc.strerror}") from exc
        try:
            data = json.loads(text)
            if data.pop("format") != _FORMAT:
                raise ValueError("unknown format")
            state = LockoutState(int(data["failures"]), int(data["lockouts"]),
                                 float(data["locked_at"]), float(data["seconds"]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(
                f"lockout file {self.path} is damaged ({exc}); it holds the failed-attempt "
                "count: delete it only if you know no one is guessing") from exc
        if min(state.failures, state.lockouts) < 0 or state.seconds < 0:
            raise ConfigError(f"lockout file {self.path} holds negative counts; delete it only "
                              "if you know no one is guessing")
        return state

    def _save(self, state: LockoutState) -> None:
        """Write through a private temporary file and rename: never half a file."""
        data = json.dumps({"format": _FORMAT, **asdict(state)}, indent=2) + "\n"
        try:
            write_atomic(self.path, data.encode(), private=True)
        except OSError as exc:
            raise ConfigError(f"cannot write the lockout file {self.path}: "
                              f"{exc.strerror or exc}") from exc
        self.state = state
