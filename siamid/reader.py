"""The live authenticator: a sensor, a Gallery and a lockout, looping on each touch.

    reader = Reader(sensor, gallery, Lockout(lockout_path("gallery.db")), on_event=show)
    reader.enroll("alice")            # 3 takes of one finger, checked as `siamid enroll` does
    reader.verify("alice")            # 1:1 on every touch
    reader.identify(max_touches=10)   # 1:N on every touch

Every decision is the Gallery's own (``Gallery.verify`` / ``Gallery.identify`` /
``Gallery.enroll``): the same thresholds, rules and quality check as ``siamid verify``,
``identify`` and ``enroll``; this module only adds the sensor, the LED and the lockout.

States and the ring LED (``LEDS``): waiting for a finger, breathing blue; accepted (or an
enrollment take kept), green; rejected, red flashing; poor quality, purple flashing; locked
out, steady red; the LED goes off when the reader stops, Ctrl-C included. Modules without the
newer colours (green, yellow, cyan, white) get the nearest of red, blue and purple.

Lockout (``siamid.lockout``): five rejected good-quality attempts lock the reader for 30 s,
each further lockout twice as long; poor-quality touches never count; a success clears the
count. While locked no touch is taken. The state is kept on disk, so a restart does not lift it.

Nothing here prints: progress goes to ``on_event`` as the event records below; ``sleep`` is
injectable so tests (and the lockout's clock) need not wait for real.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from .errors import NotEnrolledError, QualityError, SensorError, TemplateError
from .lockout import Lockout
from .runtime import EnrollResult, Gallery
from .sensors.protocol import NO_FINGER
from .sensors.touch import TouchSensor
from .types import MatchResult

__all__ = ["LEDS", "Led", "Reader", "ReaderSummary", "State", "Timings"]

# Link failures in a row (corrupted uploads, no answer) after which the reader gives up.
MAX_SENSOR_ERRORS = 3


class State(StrEnum):
    """What the reader is doing, as the LED shows it."""

    WAITING = "waiting"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    POOR = "poor quality"
    LOCKED = "locked"
    OFF = "off"


@dataclass(frozen=True)
class Led:
    """One AuraLedConfig setting: ``siamid.sensors.R503.set_led``'s arguments."""

    mode: str
    colour: str
    speed: int = 128
    cycles: int = 0


LEDS: dict[State, Led] = {
    State.WAITING: Led("breathing", "blue", speed=100),
    State.ACCEPTED: Led("on", "green"),
    State.REJECTED: Led("flashing", "red", speed=40, cycles=3),
    State.POOR: Led("flashing", "purple", speed=40, cycles=2),
    State.LOCKED: Led("on", "red"),
    State.OFF: Led("off", "blue"),
}
# The colours every R503 has (red, blue, purple) standing in for the newer modules' others.
_BASIC = {"green": "blue", "yellow": "purple", "cyan": "blue", "white": "blue"}


Sensor = TouchSensor  # what this module needs from a sensor (siamid.sensors.touch)


@dataclass
class Timings:
    """Seconds one touch took: GenImg until the finger was seen, the image upload, and the
    Gallery's decision (quality check, preprocessing, embedding and matching)."""

    capture_s: float = 0.0
    upload_s: float = 0.0
    decide_s: float = 0.0

    @property
    def total_s(self) -> float:
        """Touch to decision."""
        return self.capture_s + self.upload_s + self.decide_s


# -- events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StateChanged:
    """The reader entered ``state``; the LED now shows ``led``."""

    state: State
    led: Led


@dataclass(frozen=True)
class Waiting:
    """Waiting for a touch; ``take``/``of`` during enrollment (else 0)."""

    take: int = 0
    of: int = 0


@dataclass(frozen=True)
class NoTouch:
    """No finger within ``waited`` seconds; still waiting."""

    waited: float


@dataclass(frozen=True)
class PoorQuality:
    """The touch was refused by the quality check (``reason``); it counts as no attempt."""

    reason: str
    timings: Timings


@dataclass(frozen=True)
class SensorProblem:
    """The capture or upload failed (``message``); the touch is taken again."""

    message: str


@dataclass(frozen=True)
class Decision:
    """A verify or identify decision. ``results``: the Gallery's MatchResults (verify: one;
    identify: the closest, empty for an empty gallery). ``failures_left`` before a lockout;
    ``locked_for``: seconds of the lockout this failure started (0: none)."""

    accepted: bool
    results: list[MatchResult]
    timings: Timings
    failures_left: int = 0
    locked_for: float = 0.0


@dataclass(frozen=True)
class Locked:
    """Attempts are refused for ``seconds`` more (lockout number ``lockouts``)."""

    seconds: float
    lockouts: int


@dataclass(frozen=True)
class Unlocked:
    """The lockout is over: attempts are taken again."""


@dataclass(frozen=True)
class TakeKept:
    """Enrollment take ``take`` of ``of`` passed the quality check."""

    take: int
    of: int


@dataclass(frozen=True)
class EnrollRefused:
    """The takes were not distinct captures of one finger (``reason``): start again."""

    reason: str


@dataclass(frozen=True)
class Enrolled:
    """The template is stored."""

    result: EnrollResult = field(repr=False)


@dataclass(frozen=True)
class LiftFinger:
    """The finger stayed on the glass ``waited`` seconds after a touch; going on anyway."""

    waited: float


Event = (StateChanged | Waiting | NoTouch | PoorQuality | SensorProblem | Decision | Locked
         | Unlocked | TakeKept | EnrollRefused | Enrolled | LiftFinger)


@dataclass
class ReaderSummary:
    """What a verify or identify run did."""

    touches: int = 0
    accepted: int = 0
    rejected: int = 0
    poor: int = 0


# -- the reader ------------------------------------------------------------------------------


class Reader:
    """Enroll, verify or identify on each touch of ``sensor`` against ``gallery``.

    ``lockout``: the persistent failure count (None: no lockout, for enrollment-only use).
    ``dpi``: the sensor's resolution; ``rule``: the template rule (as ``siamid verify
    --rule``). ``touch_timeout``: seconds of GenImg polling before a ``NoTouch`` event (the
    reader keeps waiting). ``lift_timeout``: seconds to wait for the finger to leave the glass
    after a touch (0: do not wait). ``hold``: seconds a result stays on the LED at least.
    ``sleep``: ``time.sleep`` or a test's fake that advances the lockout's clock.
    """

    def __init__(self, sensor: Sensor, gallery: Gallery, lockout: Lockout | None = None, *,
                 dpi: int = 500, rule: str = "min", touch_timeout: float = 10.0,
                 lift_timeout: float = 5.0, hold: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep,
                 on_event: Callable[[Event], None] | None = None) -> None:
        self.sensor = sensor
        self.gallery = gallery
        self.lockout = lockout
        self.dpi = dpi
        self.rule = rule
        self.touch_timeout = touch_timeout
        self.lift_timeout = lift_timeout
        self.hold = hold
        self.sleep = sleep
        self.on_event = on_event or (lambda event: None)
        self.state = State.OFF
        self._basic_colours = False

    # -- modes -----------------------------------------------------------------------------

    def verify(self, subject: str, max_touches: int | None = None) -> ReaderSummary:
        """1:1 on every touch: is it ``subject``? NotEnrolledError before any touch if
        ``subject`` has no template."""
        self.gallery.store.get(subject)  # NotEnrolledError now, not at the first touch

        def decide(image: np.ndarray) -> tuple[bool, list[MatchResult]]:
            result = self.gallery.verify(subject, image, dpi=self.dpi, rule=self.rule)
            return result.accepted, [result]

        return self._loop(decide, max_touches)

    def identify(self, max_touches: int | None = None, top_k: int = 1) -> ReaderSummary:
        """1:N on every touch: who is it? Accepted when the closest template is accepted, as
        ``siamid identify`` decides. NotEnrolledError if the gallery is empty."""
        if len(self.gallery.store) == 0:
            raise NotEnrolledError(f"gallery {self.gallery.store.path} holds no templates; "
                                   "enroll someone first (`siamid reader enroll NAME`)")

        def decide(image: np.ndarray) -> tuple[bool, list[MatchResult]]:
            results = self.gallery.identify(image, dpi=self.dpi, rule=self.rule, top_k=top_k)
            return bool(results) and results[0].accepted, results

        return self._loop(decide, max_touches)

    def enroll(self, subject: str, takes: int = 3, replace: bool = False,
               max_touches: int | None = None) -> EnrollResult | None:
        """Take ``takes`` good images of one finger and store them with ``Gallery.enroll``,
        which refuses takes that are not distinct captures of one finger (then the takes start
        again). Returns the EnrollResult, or None when ``max_touches`` ran out first."""
        if not isinstance(subject, str) or not subject.strip():
            raise TemplateError(f"subject must be a non-empty name, got {subject!r}")
        if not replace and subject in self.gallery.store:
            raise TemplateError(f"subject {subject!r} is already enrolled; pass --replace to "
                                "re-enroll")
        images: list[np.ndarray] = []
        touches = 0
        try:
            while max_touches is None or touches < max_touches:
                self._show(State.WAITING)
                self.on_event(Waiting(len(images) + 1, takes))
                timings = Timings()
                image = self._touch(timings)
                if image is None:
                    continue
                touches += 1
                try:
                    # The check Gallery.enroll runs, now, so a poor take is retaken at once.
                    self.gallery.embedder.prepare(image, self.dpi, check=True)
                except QualityError as exc:
                    self._show(State.POOR)
                    self.on_event(PoorQuality(exc.reason or str(exc), timings))
                    self._after_touch()
                    continue
                images.append(image)
                self._show(State.ACCEPTED)
                self.on_event(TakeKept(len(images), takes))
                if len(images) < takes:
                    self._after_touch()
                    continue
                try:
                    result = self.gallery.enroll(subject, images, dpi=self.dpi,
                                                 min_images=takes, replace=replace)
                except QualityError as exc:
                    images.clear()
                    self._show(State.REJECTED)
                    self.on_event(EnrollRefused(exc.reason or str(exc)))
                    self._after_touch()
                    continue
                self.on_event(Enrolled(result))
                self._after_touch()
                return result
            return None
        finally:
            self._off()

    # -- the loop --------------------------------------------------------------------------

    def _loop(self, decide: Callable[[np.ndarray], tuple[bool, list[MatchResult]]],
              max_touches: int | None) -> ReaderSummary:
        summary = ReaderSummary()
        try:
            while max_touches is None or summary.touches < max_touches:
                self._wait_out_lockout()
                self._show(State.WAITING)
                self.on_event(Waiting())
                timings = Timings()
                image = self._touch(timings)
                if image is None:
                    continue
                summary.touches += 1
                start = time.perf_counter()
                try:
                    accepted, results = decide(image)
                except QualityError as exc:
                    timings.decide_s = time.perf_counter() - start
                    summary.poor += 1
                    self._show(State.POOR)
                    self.on_event(PoorQuality(exc.reason or str(exc), timings))
                    self._after_touch()
                    continue
                timings.decide_s = time.perf_counter() - start
                locked_for = 0.0
                if accepted:
                    summary.accepted += 1
                    if self.lockout is not None:
                        self.lockout.record_success()
                    self._show(State.ACCEPTED)
                else:
                    summary.rejected += 1
                    if self.lockout is not None:
                        locked_for = self.lockout.record_failure()
                    self._show(State.REJECTED)
                left = self.lockout.failures_left if self.lockout is not None else 0
                self.on_event(Decision(accepted, results, timings, left, locked_for))
                self._after_touch()
            return summary
        finally:
            self._off()

    def _wait_out_lockout(self) -> None:
        """While locked: steady red, no touch taken, sleep until the lockout ends."""
        if self.lockout is None:
            return
        was_locked = False
        while (left := self.lockout.remaining()) > 0:
            was_locked = True
            self._show(State.LOCKED)
            self.on_event(Locked(left, self.lockout.state.lockouts))
            self.sleep(left)
        if was_locked:
            self.on_event(Unlocked())

    def _touch(self, timings: Timings) -> np.ndarray | None:
        """Wait for a finger and upload its image; None after a link failure (reported), so
        the caller asks again. Too many failures in a row raise the last SensorError."""
        errors = 0
        while True:
            start = time.perf_counter()
            try:
                self.sensor.capture(timeout=self.touch_timeout)
                timings.capture_s = time.perf_counter() - start
                start = time.perf_counter()
                image = self.sensor.upload_image()
                timings.upload_s = time.perf_counter() - start
                return image
            except SensorError as exc:
                if exc.code == NO_FINGER:
                    self.on_event(NoTouch(self.touch_timeout))
                    continue
                errors += 1
                if errors >= MAX_SENSOR_ERRORS:
                    raise
                self.on_event(SensorProblem(str(exc)))

    def _after_touch(self) -> None:
        """Keep the result on the LED for ``hold`` s, then wait for the finger to lift."""
        if self.hold > 0:
            self.sleep(self.hold)
        if self.lift_timeout > 0 and not self.sensor.wait_for_lift(self.lift_timeout):
            self.on_event(LiftFinger(self.lift_timeout))

    # -- the LED ---------------------------------------------------------------------------

    def _show(self, state: State) -> None:
        """Set the LED for ``state``; a module without the newer colours gets a basic one."""
        led = LEDS[state]
        colour = _BASIC.get(led.colour, led.colour) if self._basic_colours else led.colour
        try:
            self.sensor.set_led(led.mode, colour, led.speed, led.cycles)
        except SensorError as exc:
            if exc.code is None or colour not in _BASIC:
                raise
            self._basic_colours = True  # the module refused the colour: an older R503
            colour = _BASIC[colour]
            self.sensor.set_led(led.mode, colour, led.speed, led.cycles)
        self.state = state
        self.on_event(StateChanged(state, Led(led.mode, colour, led.speed, led.cycles)))

    def _off(self) -> None:
        """LED off on the way out; a link already gone is not an error here."""
        try:
            self._show(State.OFF)
        except SensorError:
            self.state = State.OFF
