"""Faces from a webcam (or a video file): enroll and unlock a person frame by frame.

A camera frame is a scene, not a face crop, and it holds colour only. So the model must be a
face model that finds the face itself (``face_detect = true``) and takes ``gray`` or ``rgb``;
``check_camera_model`` refuses any other with the reason. ``frame_to_image`` turns OpenCV's BGR
frame into exactly the array ``Preprocessor.load`` gives for an image file of the same pixels,
so a frame and a saved picture of it have the same signature, and everything after it (quality
verdict, signature, decision, adaptation) is the Gallery's own code.

``enroll_from_frames`` looks at one frame in ``every``, keeps those that pass the quality check
until it has enough, and enrolls them as one template. ``unlock_from_frames`` verifies frame
after frame until one is accepted or the frames, the frame budget or the time run out. Both
count the frames refused by reason and report each frame to an optional ``on_frame`` callback
(the CLI draws its progress and prints attempts from it); neither prints.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .config import PreprocessConfig
from .dataset import to_uint8_array
from .errors import ConfigError, DatasetError, ModelError, QualityError, SensorError, TemplateError
from .lockout import Lockout
from .faces.detect import detect_faces, opencv
from .faces.pipeline import face_gray
from .preprocess import to_float
from .runtime import EnrollResult, Gallery, default_model_path
from .types import MatchResult

__all__ = [
    "CAMERA_CHANNELS",
    "CameraEnrollResult",
    "FrameCounts",
    "FrameEvent",
    "FrameSource",
    "UnlockResult",
    "camera_model_path",
    "check_camera_model",
    "enroll_from_frames",
    "face_boxes",
    "frame_to_image",
    "open_source",
    "save_frame",
    "unlock_from_frames",
]

#: The face inputs a webcam can feed: it gives colour, never depth or infrared.
CAMERA_CHANNELS = ("gray", "rgb")

# Why unlock_from_frames stopped.
ACCEPTED = "accepted"
SOURCE_ENDED = "source ended"
MAX_FRAMES = "max frames"
TIMEOUT = "timeout"
LOCKED = "locked out"


def camera_model_path() -> Path:
    """The gray face model shipped beside the other models: ``siamid/models/face_gray.onnx``."""
    return default_model_path().with_name("face_gray.onnx")


def check_camera_model(config: PreprocessConfig, source: str = "model") -> None:
    """ModelError unless a model with this preprocessing can read webcam frames.

    It must be a face model (``modality = "face"``) that detects the face in the frame
    (``face_detect = true``) and takes colour only (``face_channels`` gray or rgb).
    """
    if config.modality != "face":
        raise ModelError(
            f"{source} is a {config.modality} model; a camera needs a face model (one exported "
            f"from a run with [preprocess] modality = \"face\"), such as {camera_model_path()}")
    if config.face_channels not in CAMERA_CHANNELS:
        raise ModelError(
            f"{source} takes face_channels = {config.face_channels!r}, which needs depth or "
            "infrared images beside the colour; a webcam gives colour only: use a gray or rgb "
            f"face model, such as {camera_model_path()}")
    if not config.face_detect:
        raise ModelError(
            f"{source} takes face crops (face_detect = false) but a camera frame is a whole "
            "scene: the model would see the room, not the face; use a face model exported with "
            f"[preprocess] face_detect = true, such as {camera_model_path()}")


def frame_to_image(frame: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """An OpenCV frame (BGR uint8 (H, W, 3), or gray (H, W)) as the face model takes it.

    Exactly what ``Preprocessor.load`` returns for an image file of the same pixels (gray
    content comes back (H, W), colour as RGB (H, W, 3)): the frame goes through the same
    decoder's last step as a file does. DatasetError for a frame of another shape or type, or
    larger than ``config.max_pixels``, as ``load`` refuses such a file.
    """
    check_camera_model(config)
    arr = np.asarray(frame)
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise DatasetError(f"a camera frame must be uint8 (H, W, 3) BGR or (H, W) gray, got "
                           f"{arr.dtype} {arr.shape}")
    height, width = arr.shape[:2]
    if height * width > config.max_pixels:
        raise DatasetError(f"camera frames of {width}x{height} pixels are too large; at most "
                           f"{config.max_pixels:,} pixels are read: set the camera to a lower "
                           "resolution")
    picture = Image.fromarray(np.ascontiguousarray(arr if arr.ndim == 2 else arr[:, :, ::-1]))
    return to_uint8_array(picture)


def face_boxes(image: np.ndarray, config: PreprocessConfig) -> list[tuple[int, int, int, int]]:
    """The faces the model's preprocessing finds in ``image`` (as ``frame_to_image`` gives it):
    (x, y, width, height), largest first; the largest is the one it crops."""
    gray = face_gray(to_float(image, config.channels), config.face_channels)
    return detect_faces(np.clip(np.rint(gray * 255.0), 0, 255).astype(np.uint8),
                        config.min_face_side)


def save_frame(path: Path, image: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> Path:
    """Write ``image`` as PNG at ``path`` with the largest face box in green, others in red."""
    cv2 = opencv()
    # a copy: the boxes must never reach the pixels that are enrolled or compared
    canvas = (np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2
              else np.array(image[:, :, :3], dtype=np.uint8, order="C", copy=True))
    thickness = max(1, round(max(canvas.shape[:2]) / 200))
    for rank, (x, y, w, h) in reversed(list(enumerate(boxes))):
        colour = (0, 200, 0) if rank == 0 else (220, 0, 0)  # RGB: the array is RGB here
        cv2.rectangle(canvas, (x, y), (x + w - 1, y + h - 1), colour, thickness)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(canvas).save(path, format="PNG")
    except OSError as exc:
        raise DatasetError(f"cannot write {path}: {exc}; save the frames to a writable "
                           "folder") from exc
    return path


def parse_source(text: str | int | Path) -> int | Path:
    """A camera index (an int, or a string of digits such as "0") or a video file's path."""
    if isinstance(text, int):
        return text
    if isinstance(text, str) and text.isdigit():
        return int(text)
    return Path(text)


class FrameSource:
    """Frames from a camera (by index) or a video file, through OpenCV's VideoCapture.

    Iterating yields BGR uint8 frames until the source ends (a file's last frame, or a camera
    that stops answering). DatasetError for a video file that is missing or cannot be decoded,
    SensorError for a camera that cannot be opened. Close it (or use ``with``) to free the
    camera.
    """

    def __init__(self, source: str | int | Path) -> None:
        self.source = parse_source(source)
        cv2 = opencv()
        if isinstance(self.source, Path):
            if not self.source.is_file():
                raise DatasetError(f"video file {self.source} not found; give a video file or a "
                                   "camera index such as 0")
            self._capture = _quietly(cv2, lambda: cv2.VideoCapture(str(self.source)))
            if not self._capture.isOpened():
                raise DatasetError(f"cannot read video {self.source}: OpenCV "
                                   f"{cv2.__version__} cannot decode it; give a video file "
                                   "(.avi, .mp4) or a camera index such as 0")
        else:
            self._capture = _quietly(cv2, lambda: cv2.VideoCapture(self.source))
            if not self._capture.isOpened():
                raise SensorError(f"camera {self.source} cannot be opened: there is no such "
                                  "camera, or another program is using it; try another index "
                                  "(0, 1, ...) or close the other program")

    @property
    def name(self) -> str:
        """The source as a user names it: "camera 0" or the file's path."""
        return f"camera {self.source}" if isinstance(self.source, int) else str(self.source)

    def read(self) -> np.ndarray | None:
        """The next frame, or None when the source has no more."""
        ok, frame = self._capture.read()
        return frame if ok and frame is not None else None

    def __iter__(self) -> Iterator[np.ndarray]:
        while (frame := self.read()) is not None:
            yield frame

    def close(self) -> None:
        """Release the camera or file."""
        self._capture.release()

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _quietly(cv2: Any, open_capture: Callable[[], Any]) -> Any:
    """``open_capture()`` with OpenCV's own warnings off: a camera that is not there makes its
    backends print to stderr, and the DatasetError or SensorError raised here says it better."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None:
        return open_capture()
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    try:
        return open_capture()
    finally:
        logging.setLogLevel(level)


def open_source(source: str | int | Path) -> FrameSource:
    """``FrameSource(source)``: a camera index ("0") or a video file's path."""
    return FrameSource(source)


@dataclass
class FrameCounts:
    """What became of the frames: ``read`` from the source, ``looked`` at (the others were
    dropped between looks), ``refused`` by the quality check (reason -> frames; the reason
    without its numbers, e.g. "too dark"), ``used`` (enrolled, or compared)."""

    read: int = 0
    looked: int = 0
    refused: Counter = field(default_factory=Counter)
    used: int = 0
    #: One full reason (with its numbers) for each short reason in ``refused``.
    examples: dict[str, str] = field(default_factory=dict)

    def refuse(self, reason: str) -> str:
        """Count one refused frame; returns the short reason it is counted under."""
        short = short_reason(reason)
        self.refused[short] += 1
        self.examples.setdefault(short, reason)
        return short

    def describe_refused(self) -> str:
        """"no face found 12, too dark 3": the refusals, most frequent first ('' if none)."""
        return ", ".join(f"{reason} {count}" for reason, count in self.refused.most_common())


def short_reason(reason: str) -> str:
    """A quality reason without its numbers: "too dark (mean 0.05 < 0.08)" -> "too dark"."""
    return re.split(r" \(|: |; ", reason, maxsplit=1)[0].strip() or reason


@dataclass(frozen=True)
class FrameEvent:
    """One frame's fate, for progress displays. ``outcome``: "skipped" (not looked at),
    "refused" (``reason`` says why), "used" (enroll) or "compared" (unlock: ``result``)."""

    index: int
    outcome: str
    reason: str = ""
    result: MatchResult | None = None
    saved: Path | None = None


@dataclass(frozen=True)
class CameraEnrollResult:
    """``enroll_from_frames``: the Gallery's EnrollResult, the frame counts, the indices of the
    frames used, and the PNG files written (with ``save_dir``)."""

    enrolled: EnrollResult
    counts: FrameCounts
    frames: list[int]
    saved: list[Path]


@dataclass(frozen=True)
class UnlockResult:
    """``unlock_from_frames``: every comparison made as (frame index, MatchResult), the
    frame counts, why it stopped (``accepted``, ``source ended``, ``max frames``, ``timeout``)
    and the PNG files written (with ``save_dir``). ``accepted`` is the accepting decision."""

    attempts: list[tuple[int, MatchResult]]
    counts: FrameCounts
    stopped: str
    saved: list[Path]
    #: With a lockout: seconds of the lockout this failed unlock started (0: none), or, when
    #: ``stopped`` is ``locked out``, the seconds left of the one already running.
    locked_for: float = 0.0

    @property
    def accepted(self) -> MatchResult | None:
        """The decision that unlocked, or None."""
        return self.attempts[-1][1] if self.stopped == ACCEPTED else None


def _check_counts(**values: float | None) -> None:
    for name, value in values.items():
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")


def enroll_from_frames(
    gallery: Gallery,
    subject: str,
    frames: Iterable[np.ndarray],
    count: int = 5,
    every: int = 5,
    max_frames: int = 300,
    replace: bool = False,
    save_dir: Path | None = None,
    on_frame: Callable[[FrameEvent], None] | None = None,
) -> CameraEnrollResult:
    """Enroll ``subject`` from ``count`` good frames of ``frames`` (BGR, as OpenCV reads them).

    Frame 0, ``every``, 2 x ``every``, ... are looked at (so the frames used are at least
    ``every`` apart and differ more than neighbours do); one that passes the model's quality
    check is used. Stops after ``count`` are used or ``max_frames`` are read. Then
    ``Gallery.enroll`` makes and stores the template (it refuses frames that are not of one
    face). QualityError saying how many good frames were found and why the others were refused
    if the frames run out first; TemplateError before any frame is read if ``subject`` is
    enrolled and not ``replace``; ModelError for a model a camera cannot feed.
    """
    config = gallery.embedder.preprocess_config
    check_camera_model(config, str(gallery.embedder.path))
    _check_counts(frames=count, every=every, max_frames=max_frames)
    if not replace and subject in gallery.store:
        raise TemplateError(f"subject {subject!r} is already enrolled; pass replace=True "
                            "(--replace) to re-enroll")
    counts = FrameCounts()
    images: list[np.ndarray] = []
    used: list[int] = []
    saved: list[Path] = []
    for index, frame in enumerate(frames):
        counts.read += 1
        event = FrameEvent(index, "skipped")
        if index % every == 0:
            counts.looked += 1
            image = frame_to_image(frame, config)
            try:
                gallery.embedder.prepare(image, check=True)
            except QualityError as exc:
                event = FrameEvent(index, "refused", counts.refuse(exc.reason or str(exc)))
            else:
                counts.used += 1
                images.append(image)
                used.append(index)
                path = None
                if save_dir is not None:
                    path = save_frame(Path(save_dir) / f"frame_{index:06d}_used.png", image,
                                      face_boxes(image, config))
                    saved.append(path)
                event = FrameEvent(index, "used", saved=path)
        if on_frame is not None:
            on_frame(event)
        if len(images) >= count or counts.read >= max_frames:
            break
    if len(images) < count:
        ended = (f"the limit of {max_frames} frames reached" if counts.read >= max_frames
                 else "the source ended")
        refused = counts.describe_refused() or "none"
        raise QualityError(
            f"cannot enroll {subject!r}: {len(images)} good frames of {count} needed in "
            f"{counts.read} frames read ({ended}; looked at {counts.looked}, one in {every}); "
            f"refused: {refused}. Face the camera alone, in even light, close enough for the "
            "face to fill a good part of the frame, and try again",
            refused)
    try:
        enrolled = gallery.enroll(subject, images, min_images=count, replace=replace)
    except QualityError as exc:  # its "image k" is the k-th frame used: name the frames
        frames_used = ", ".join(f"image {k} = frame {index}" for k, index in enumerate(used))
        raise QualityError(f"{exc} (the images are the frames used: {frames_used})",
                           exc.reason) from exc
    return CameraEnrollResult(enrolled, counts, used, saved)


def unlock_from_frames(
    gallery: Gallery,
    subject: str,
    frames: Iterable[np.ndarray],
    max_frames: int = 50,
    timeout: float | None = None,
    rule: str = "min",
    adapt: bool = False,
    save_dir: Path | None = None,
    on_frame: Callable[[FrameEvent], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    lockout: Lockout | None = None,
) -> UnlockResult:
    """Verify frames of ``frames`` against ``subject`` until one is accepted.

    One call is one unlock attempt for ``lockout`` (siamid/lockout.py, as the fingerprint
    reader's): while it is locked no frame is read (``stopped`` is ``locked out``); an unlock
    that compared at least one frame and accepted none is a failure, an accept a success. A
    stranger in front of the camera thus gets ``max_failures`` sessions of ``max_frames`` frames
    before the lockouts begin, not an unlimited number of frames.

    Every frame is looked at; a frame the quality check refuses is counted by reason, the
    others are decided by ``Gallery.verify`` (with ``adapt``, an accepted frame may join the
    template under siamid/adaptation.py's policy, exactly as ``siamid verify --adapt``). Stops
    at the first accept, when the frames end, after ``max_frames`` frames or after ``timeout``
    seconds of ``clock``. NotEnrolledError before any frame is read if ``subject`` has no
    template; ModelError for a model a camera cannot feed.
    """
    config = gallery.embedder.preprocess_config
    check_camera_model(config, str(gallery.embedder.path))
    _check_counts(max_frames=max_frames)
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"timeout must be > 0 seconds, got {timeout}")
    gallery.store.get(subject)  # NotEnrolledError now, not after the person has posed
    if lockout is not None and lockout.locked:
        return UnlockResult([], FrameCounts(), LOCKED, [], lockout.remaining())
    counts = FrameCounts()
    attempts: list[tuple[int, MatchResult]] = []
    saved: list[Path] = []
    start = clock()
    stopped = SOURCE_ENDED
    iterator = iter(frames)
    while True:
        if counts.read >= max_frames:
            stopped = MAX_FRAMES
            break
        if timeout is not None and clock() - start >= timeout:
            stopped = TIMEOUT
            break
        frame = next(iterator, None)
        if frame is None:
            break
        index = counts.read
        counts.read += 1
        counts.looked += 1
        image = frame_to_image(frame, config)
        try:
            result = gallery.verify(subject, image, rule=rule, adapt=adapt)
        except QualityError as exc:
            event = FrameEvent(index, "refused", counts.refuse(exc.reason or str(exc)))
        else:
            counts.used += 1
            attempts.append((index, result))
            path = None
            if save_dir is not None:
                verdict = "accepted" if result.accepted else "rejected"
                path = save_frame(Path(save_dir) / f"frame_{index:06d}_{verdict}.png", image,
                                  face_boxes(image, config))
                saved.append(path)
            event = FrameEvent(index, "compared", result=result, saved=path)
        if on_frame is not None:
            on_frame(event)
        if event.result is not None and event.result.accepted:
            stopped = ACCEPTED
            break
    locked_for = 0.0
    if lockout is not None and stopped == ACCEPTED:
        lockout.record_success()
    elif lockout is not None and attempts:
        locked_for = lockout.record_failure()
    return UnlockResult(attempts, counts, stopped, saved, locked_for)
