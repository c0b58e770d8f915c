"""Guided dataset capture from an R503-class sensor into the standard layout.

    session = CaptureSession(sensor, "data/mine", "alice", quality=model_quality(None))
    summary = session.run(on_event=print)

Walks the subject's fingers (left hand then right, thumb to little finger), ``takes`` takes each,
and writes every accepted image to ``<out>/<subject>/<hand>/<finger>/<take>.png``, the layout
``siamid.dataset.scan_dataset`` reads and ``siamid train`` / ``siamid calibrate`` take. For each
take the ring LED asks for the finger, the sensor is polled until a finger is on the glass, the
image is uploaded and judged by the model's own quality check (the one its preprocessing runs at
training and at run time); a poor take is refused with the reason and taken again.

Files are written atomically and never overwritten: a take already on disk is skipped, so an
interrupted subject resumes where it stopped, and a take that appears on disk while this one
was being captured (another session writing the same subject) is refused, not replaced.
``<out>/capture.json`` records what the images came from (sensor, size, resolution, model).

Library code: nothing is printed; progress is reported through ``on_event`` with the events
below, so the CLI (or any other front end) decides what a person sees.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from .errors import DatasetError, SensorError

__all__ = [
    "FINGERS",
    "HANDS",
    "CaptureSession",
    "CaptureSummary",
    "Slot",
    "check_subject",
    "model_quality",
    "parse_choice",
]

HANDS = ("left", "right")
FINGERS = ("thumb", "index", "middle", "ring", "little")
META_FILE = "capture.json"
DPI = 500  # R503-class sensors: about 500 dpi
_IMAGE_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".pgm", ".jpg", ".jpeg")
_SUBJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
NO_FINGER = 0x02  # the module's confirmation code for "no finger on the sensor"


class Sensor(Protocol):
    """What a capture needs from a sensor: ``siamid.sensors.R503`` has it."""

    def set_led(self, mode: Any = ..., colour: Any = ..., speed: int = ...,
                cycles: int = ...) -> None: ...
    def capture(self, timeout: float = ..., poll: float = ...) -> None: ...
    def upload_image(self) -> np.ndarray: ...
    def wait_for_lift(self, timeout: float = ..., poll: float = ...) -> bool: ...


@dataclass(frozen=True)
class Verdict:
    """A quality verdict: ``reason`` is '' when ``ok``."""

    ok: bool
    reason: str = ""


QualityCheck = Callable[[np.ndarray], Verdict]


def model_quality(model: str | Path | None = None, dpi: int = DPI) -> QualityCheck:
    """The quality check of a model's preprocessing (None: the shipped model), rebuilt from
    its card exactly as the Embedder does, as a function image -> Verdict."""
    from .preprocess import Preprocessor
    from .runtime import default_model_path, read_card

    path = Path(model) if model is not None else default_model_path()
    preprocessor = Preprocessor.from_card(read_card(path), str(path))

    def check(image: np.ndarray) -> Verdict:
        quality = preprocessor.process(image, dpi).quality
        return Verdict(quality.ok, quality.reason)

    return check


def check_subject(name: str) -> str:
    """``name`` stripped, if it is a safe folder name: letters, digits, ``_ . -``, at most 64
    characters, starting with a letter or digit. DatasetError saying so otherwise."""
    text = name.strip() if isinstance(name, str) else ""
    if not _SUBJECT_RE.match(text):
        raise DatasetError(
            f"subject id {name!r} cannot be a folder name: use 1 to 64 letters, digits, '_', "
            "'.' or '-', starting with a letter or digit (for example 'p017')")
    return text


def parse_choice(text: str | Sequence[str] | None, allowed: Sequence[str], what: str
                 ) -> tuple[str, ...]:
    """``"index,middle"`` -> the named items in ``allowed``'s order; None or '' -> all of them.
    DatasetError naming an unknown item."""
    if text is None:
        return tuple(allowed)
    items = text.split(",") if isinstance(text, str) else list(text)
    wanted = {item.strip().lower() for item in items if item.strip()}
    if not wanted:
        return tuple(allowed)
    unknown = sorted(wanted.difference(allowed))
    if unknown:
        raise DatasetError(f"unknown {what} {unknown[0]!r}; use some of {', '.join(allowed)} "
                           "(comma-separated)")
    return tuple(a for a in allowed if a in wanted)


@dataclass(frozen=True)
class Slot:
    """One take to capture: ``take`` counts from 1."""

    hand: str
    finger: str
    take: int

    @property
    def trait(self) -> str:
        """``hand/finger``, the trait of ``siamid.types.SampleId``."""
        return f"{self.hand}/{self.finger}"

    def relative(self, subject: str) -> Path:
        """``<subject>/<hand>/<finger>/<take>.png``."""
        return Path(subject, self.hand, self.finger, f"{self.take}.png")


# -- events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    """Put ``slot``'s finger on the sensor (``attempt`` 1 first, more after poor takes)."""

    slot: Slot
    attempt: int


@dataclass(frozen=True)
class NoFinger:
    """No finger came within ``waited`` seconds; still waiting."""

    slot: Slot
    waited: float


@dataclass(frozen=True)
class LiftFinger:
    """The finger stayed on the glass ``waited`` seconds after a take; going on anyway."""

    slot: Slot
    waited: float


@dataclass(frozen=True)
class Rejected:
    """A poor take: ``reason`` is the quality check's (or the sensor's)."""

    slot: Slot
    attempt: int
    reason: str
    image: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Saved:
    """An accepted take, written to ``path``."""

    slot: Slot
    path: Path
    image: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class Skipped:
    """A take already on disk (``path``): kept as it is."""

    slot: Slot
    path: Path


@dataclass(frozen=True)
class GaveUp:
    """``attempts`` poor takes in a row: this finger is left for a later session."""

    slot: Slot
    attempts: int


Event = Prompt | NoFinger | LiftFinger | Rejected | Saved | Skipped | GaveUp


@dataclass
class CaptureSummary:
    """What a session did: paths saved and skipped, poor takes refused, fingers given up."""

    saved: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    rejected: int = 0
    gave_up: list[Slot] = field(default_factory=list)


# -- the session -----------------------------------------------------------------------------


class CaptureSession:
    """One subject's capture into ``out`` (see the module docstring).

    ``quality``: image -> Verdict (``model_quality(model)``). ``touch_timeout``: seconds of
    GenImg polling before a ``NoFinger`` event (then it keeps waiting, up to ``max_waits``
    such events if given). ``lift_timeout``: seconds to wait for the finger to leave the glass
    after each take (0: do not wait). ``max_attempts``: poor takes in a row before a finger is
    given up. ``sensor_info``: recorded in ``capture.json``.
    """

    def __init__(self, sensor: Sensor, out: str | Path, subject: str, quality: QualityCheck,
                 *, hands: Sequence[str] = HANDS, fingers: Sequence[str] = FINGERS,
                 takes: int = 5, touch_timeout: float = 10.0, lift_timeout: float = 5.0,
                 max_attempts: int = 5, max_waits: int | None = None,
                 sensor_info: dict[str, Any] | None = None, model_id: str = "") -> None:
        if not isinstance(takes, int) or takes < 1:
            raise DatasetError(f"takes must be a whole number >= 1, got {takes!r}")
        if max_attempts < 1:
            raise DatasetError(f"max_attempts must be >= 1, got {max_attempts}")
        self.sensor = sensor
        self.out = Path(out)
        self.subject = check_subject(subject)
        self.quality = quality
        self.hands = parse_choice(list(hands), HANDS, "hand")
        self.fingers = parse_choice(list(fingers), FINGERS, "finger")
        self.takes = takes
        self.touch_timeout = touch_timeout
        self.lift_timeout = lift_timeout
        self.max_attempts = max_attempts
        self.max_waits = max_waits
        self.sensor_info = dict(sensor_info or {})
        self.model_id = model_id
        if self.out.exists() and not self.out.is_dir():
            raise DatasetError(f"output {self.out} is a file, not a folder; choose a folder")

    def slots(self) -> Iterator[Slot]:
        """Every take of the session in order: left then right, thumb to little, 1..takes."""
        for hand in self.hands:
            for finger in self.fingers:
                for take in range(1, self.takes + 1):
                    yield Slot(hand, finger, take)

    def existing(self, slot: Slot) -> Path | None:
        """The file already holding ``slot`` (any image extension), or None."""
        folder = self.out / slot.relative(self.subject).parent
        for suffix in _IMAGE_SUFFIXES:
            for name in (f"{slot.take}{suffix}", f"{slot.take}{suffix.upper()}"):
                if (folder / name).is_file():
                    return folder / name
        return None

    def pending(self) -> list[Slot]:
        """The takes not yet on disk."""
        return [s for s in self.slots() if self.existing(s) is None]

    def run(self, on_event: Callable[[Event], None] | None = None) -> CaptureSummary:
        """Capture every pending take; the LED is switched off at the end, whatever happens."""
        emit = on_event or (lambda event: None)
        summary = CaptureSummary()
        self.out.mkdir(parents=True, exist_ok=True)
        self._write_meta()
        given_up: set[tuple[str, str]] = set()
        try:
            for slot in self.slots():
                if (slot.hand, slot.finger) in given_up:
                    continue
                found = self.existing(slot)
                if found is not None:
                    summary.skipped.append(found)
                    emit(Skipped(slot, found))
                    continue
                path = self._take(slot, emit, summary)
                if path is None:
                    given_up.add((slot.hand, slot.finger))
                    summary.gave_up.append(slot)
                    emit(GaveUp(slot, self.max_attempts))
                else:
                    summary.saved.append(path)
        finally:
            try:
                self.sensor.set_led("off")
            except SensorError:
                pass  # the link is gone: the module's LED is not ours to fix from here
        return summary

    def _take(self, slot: Slot, emit: Callable[[Event], None],
              summary: CaptureSummary) -> Path | None:
        for attempt in range(1, self.max_attempts + 1):
            self.sensor.set_led("breathing", "blue")
            emit(Prompt(slot, attempt))
            if not self._touch(slot, emit):
                return None
            try:
                image = self.sensor.upload_image()
            except SensorError as exc:  # a noisy line: the driver resyncs, the take is redone
                image, verdict = None, Verdict(False, f"upload failed: {exc}")
            else:
                verdict = self.quality(image)
            if not verdict.ok:
                summary.rejected += 1
                self.sensor.set_led("flashing", "red", speed=40, cycles=3)
                emit(Rejected(slot, attempt, verdict.reason, image))
                self._lift(slot, emit)
                continue
            path = self.out / slot.relative(self.subject)
            write_png_new(path, image)
            self.sensor.set_led("on", "green")
            emit(Saved(slot, path, image))
            self._lift(slot, emit)
            return path
        return None

    def _touch(self, slot: Slot, emit: Callable[[Event], None]) -> bool:
        """Poll until a finger is on the glass; False after ``max_waits`` timeouts."""
        waits = 0
        while True:
            try:
                self.sensor.capture(timeout=self.touch_timeout)
            except SensorError as exc:
                if exc.code != NO_FINGER:
                    raise
                waits += 1
                emit(NoFinger(slot, self.touch_timeout))
                if self.max_waits is not None and waits >= self.max_waits:
                    return False
                continue
            return True

    def _lift(self, slot: Slot, emit: Callable[[Event], None]) -> None:
        if self.lift_timeout > 0 and not self.sensor.wait_for_lift(self.lift_timeout):
            emit(LiftFinger(slot, self.lift_timeout))

    def _write_meta(self) -> None:
        """``<out>/capture.json``: what the set was captured with, subjects in order."""
        path = self.out / META_FILE
        meta: dict[str, Any] = {}
        if path.is_file():
            try:
                meta = json.loads(path.read_text())
            except ValueError as exc:
                raise DatasetError(f"{path} is not readable JSON ({exc}); fix or delete it") \
                    from exc
            if not isinstance(meta, dict):
                raise DatasetError(f"{path}: expected a JSON object; fix or delete it")
        subjects = list(meta.get("subjects", []))
        if self.subject not in subjects:
            subjects.append(self.subject)
        meta.update({
            "format": "siamid-capture/1",
            "layout": "<subject>/<hand>/<finger>/<take>.png",
            "dpi": DPI,
            "sensor": self.sensor_info or meta.get("sensor", {}),
            "quality_model": self.model_id or meta.get("quality_model", ""),
            "subjects": subjects,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })
        _write_atomic(path, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())


def write_png_new(path: Path, pixels: np.ndarray) -> None:
    """Write ``pixels`` as a PNG at ``path`` atomically, never replacing a file already there.

    The image goes to a temporary file first, which is then hard-linked to ``path``: the link
    fails if ``path`` exists, so no take is ever overwritten, and readers never see half a PNG.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(tmp, format="PNG")
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise DatasetError(f"{path} already exists; a take is never overwritten (another "
                               "capture of this subject is running?)") from None
        except OSError:
            # A file system without hard links: exclusive create keeps the no-overwrite rule.
            try:
                with open(path, "xb") as fh:
                    fh.write(tmp.read_bytes())
            except FileExistsError:
                raise DatasetError(f"{path} already exists; a take is never overwritten") \
                    from None
    finally:
        tmp.unlink(missing_ok=True)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
