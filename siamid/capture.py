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

``<out>/capture.json`` (format ``siamid-capture/2``) records what the images came from (sensor,
resolution, model, subjects) and is the set's manifest: one record per take, its relative path,
the sha256 of the file, when it was captured (UTC, ISO 8601), the image size the sensor
reported and the poor takes refused before it (with their reasons). The record is written,
atomically, right after each accepted take, so a crash loses none; resuming a subject keeps the
records there and adds one (``"captured": null``) for each of its takes found on disk but not
recorded (copied in by hand, or saved just before a crash). ``read_manifest(out)`` reads the
file (version 1 too, which has no records) and checks every recorded file against its sha256.

Library code: nothing is printed; progress is reported through ``on_event`` with the events
below, so the CLI (or any other front end) decides what a person sees.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .atomic import write_atomic
from .dataset import read_json_object
from .errors import DatasetError, SensorError
from .sensors.protocol import NO_FINGER
from .sensors.touch import TouchSensor

__all__ = [
    "FINGERS",
    "HANDS",
    "CaptureSession",
    "CaptureSummary",
    "Manifest",
    "Problem",
    "Slot",
    "TakeRecord",
    "check_subject",
    "model_quality",
    "parse_choice",
    "read_manifest",
]

HANDS = ("left", "right")
FINGERS = ("thumb", "index", "middle", "ring", "little")
META_FILE = "capture.json"
FORMAT = "siamid-capture/2"
FORMATS = ("siamid-capture/1", FORMAT)  # what read_manifest reads; version 1 has no records
LAYOUT = "<subject>/<hand>/<finger>/<take>.png"
DPI = 500  # R503-class sensors: about 500 dpi
_IMAGE_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".pgm", ".jpg", ".jpeg")
_SUBJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


Sensor = TouchSensor  # what this module needs from a sensor (siamid.sensors.touch)


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
        self._write_meta(reconcile=True)
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
        refused: list[str] = []
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
                refused.append(verdict.reason)
                self.sensor.set_led("flashing", "red", speed=40, cycles=3)
                emit(Rejected(slot, attempt, verdict.reason, image))
                self._lift(slot, emit)
                continue
            captured = _utc_now()
            relative = slot.relative(self.subject)
            path = self.out / relative
            digest = write_png_new(path, image)
            size = getattr(self.sensor, "image_size", None) or (image.shape[1], image.shape[0])
            record = TakeRecord(relative.as_posix(), digest, captured,
                                (int(size[0]), int(size[1])), len(refused), tuple(refused))
            self._write_meta([record])
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

    def _write_meta(self, records: Sequence[TakeRecord] = (), reconcile: bool = False) -> None:
        """Update ``<out>/capture.json``: what the set was captured with, subjects in order, and
        the take records, with ``records`` added (each replacing a record of its path) and,
        with ``reconcile``, one for each take of the subject on disk that has none. The file is
        read again, merged and replaced atomically under a lock on the folder, so sessions of
        other subjects writing the same folder lose nothing."""
        path = self.out / META_FILE
        with _folder_lock(self.out):
            meta = _load_meta(path) if path.is_file() else {}
            takes = {record["path"]: record for record in _raw_records(meta, path)}
            if reconcile:
                records = [*records, *self._unrecorded(takes)]
            for record in records:
                takes[record.path] = record.to_json()
            subjects = list(meta.get("subjects", []))
            if self.subject not in subjects:
                subjects.append(self.subject)
            meta.update({
                "format": FORMAT,
                "layout": LAYOUT,
                "dpi": DPI,
                "sensor": self.sensor_info or meta.get("sensor", {}),
                "quality_model": self.model_id or meta.get("quality_model", ""),
                "subjects": subjects,
                "updated": _utc_now(),
                "takes": list(takes.values()),
            })
            write_atomic(path, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())

    def _unrecorded(self, takes: dict[str, Any]) -> list[TakeRecord]:
        """Records (``captured`` None) for the subject's takes on disk that have none."""
        return [TakeRecord(rel, _sha256_file(self.out / rel), None, None, None, ())
                for rel in _takes_on_disk(self.out, self.subject) if rel not in takes]


# -- the manifest ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TakeRecord:
    """One take in ``capture.json``: ``path`` relative to the set, with ``/``; ``captured``:
    UTC ISO 8601 time, None for a take found on disk rather than captured (then
    ``image_size`` and ``refused`` are None too); ``image_size``: (width, height) the sensor
    reported; ``refused``: poor takes refused before this one, ``reasons`` theirs."""

    path: str
    sha256: str
    captured: str | None
    image_size: tuple[int, int] | None
    refused: int | None
    reasons: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "captured": self.captured,
                "image_size": list(self.image_size) if self.image_size else None,
                "refused": self.refused, "refused_reasons": list(self.reasons)}

    @classmethod
    def from_json(cls, raw: Any, where: Path) -> TakeRecord:
        try:
            path, digest = raw["path"], raw["sha256"]
            size = raw.get("image_size")
            record = cls(path, digest, raw.get("captured"),
                         (int(size[0]), int(size[1])) if size else None, raw.get("refused"),
                         tuple(str(r) for r in raw.get("refused_reasons") or ()))
        except (TypeError, KeyError, IndexError, ValueError, AttributeError):
            record = None
        if (record is None or not isinstance(record.path, str) or not _safe_relative(record.path)
                or not isinstance(record.sha256, str)
                or not re.fullmatch(r"[0-9a-f]{64}", record.sha256)):
            raise DatasetError(f"{where}: malformed take record {raw!r}; fix or delete it")
        return record


@dataclass(frozen=True)
class Problem:
    """What is wrong with one take: ``kind`` is ``missing`` (recorded, not on disk),
    ``changed`` (its sha256 differs from the record) or ``unrecorded`` (on disk, no record)."""

    path: str
    kind: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.path}: {self.kind}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class Manifest:
    """``capture.json`` as read by ``read_manifest``: ``version`` 1 or 2, ``meta`` the whole
    object, ``takes`` the records in the file's order, ``problems`` what verifying found."""

    path: Path
    version: int
    meta: dict[str, Any]
    takes: list[TakeRecord]
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def read_manifest(out: str | Path, verify: bool = True) -> Manifest:
    """Read ``<out>/capture.json`` (format ``siamid-capture/1`` or ``/2``; version 1 has no
    take records). With ``verify``, hash every recorded file and list as ``problems`` the
    takes missing, changed (sha256 differs) and on disk without a record. DatasetError if the
    file is absent, unreadable or of an unknown format."""
    folder = Path(out)
    path = folder / META_FILE
    if not path.is_file():
        raise DatasetError(f"{path} not found; is {folder} a folder written by siamid capture?")
    meta = _load_meta(path)
    version = FORMATS.index(meta["format"]) + 1
    takes = [TakeRecord.from_json(raw, path) for raw in _raw_records(meta, path)]
    manifest = Manifest(path, version, meta, takes)
    if verify:
        recorded = set()
        for record in takes:
            recorded.add(record.path)
            file = folder / record.path
            if not file.is_file():
                manifest.problems.append(Problem(record.path, "missing", "not on disk"))
                continue
            digest = _sha256_file(file)
            if digest != record.sha256:
                manifest.problems.append(Problem(
                    record.path, "changed",
                    f"sha256 {digest[:12]}... on disk, {record.sha256[:12]}... recorded"))
        for rel in _takes_on_disk(folder):
            if rel not in recorded:
                manifest.problems.append(Problem(rel, "unrecorded", "on disk, no record"))
    return manifest


def _load_meta(path: Path) -> dict[str, Any]:
    meta = read_json_object(path)
    if meta.get("format") not in FORMATS:
        raise DatasetError(f"{path}: format {meta.get('format')!r} is not one this siamid "
                           f"reads ({', '.join(FORMATS)}); a newer siamid may have written it")
    return meta


def _raw_records(meta: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    """The take records of a loaded capture.json, checked (none in version 1)."""
    raw = meta.get("takes", [])
    if not isinstance(raw, list):
        raise DatasetError(f"{path}: 'takes' must be a list of records; fix or delete it")
    return [TakeRecord.from_json(r, path).to_json() for r in raw]


def _takes_on_disk(out: Path, subject: str | None = None) -> list[str]:
    """Image files in the layout (``<subject>/<hand>/<finger>/<file>``, hidden names left
    out) under ``out``, or under ``out/subject`` only, as sorted relative posix paths."""
    pattern = f"{subject}/*/*/*" if subject is not None else "*/*/*/*"
    found = []
    for file in out.glob(pattern):
        rel = file.relative_to(out)
        if (file.suffix.lower() in _IMAGE_SUFFIXES and file.is_file()
                and not any(part.startswith(".") for part in rel.parts)):
            found.append(rel.as_posix())
    return sorted(found)


def _safe_relative(text: str) -> bool:
    parts = text.split("/")
    return bool(text) and not text.startswith("/") and "\\" not in text \
        and all(part not in ("", ".", "..") for part in parts)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _utc_now() -> str:
    """Now, UTC, ISO 8601 to the millisecond: ``2025-01-31T09:15:02.123Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``folder`` where the system has one (flock); else none."""
    try:
        import fcntl
        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def write_png_new(path: Path, pixels: np.ndarray) -> str:
    """Write ``pixels`` as a PNG at ``path`` atomically, never replacing a file already there;
    return the file's sha256 (hex).

    The image goes to a temporary file first, which is then hard-linked to ``path``: the link
    fails if ``path`` exists, so no take is ever overwritten, and readers never see half a PNG.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(tmp, format="PNG")
        digest = _sha256_file(tmp)
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
    return digest
