"""siamid camera: enroll and unlock a face from a webcam, or from a video file.

Exit codes: enroll 0 enrolled; unlock 0 accepted, 1 no frame accepted; 3 a siamid error (no
such camera or file, a model a camera cannot feed, not enough good frames).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import gallery_options as opt
from .common import EXIT_REJECTED, console, handle_errors, line, progress_bar, styled

app = typer.Typer(
    help="Enroll and unlock a face from a webcam (OpenCV; --source 0) or a video file.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

SOURCE = typer.Option("0", help="Camera index (0, 1, ...) or a video file's path.")
MODEL = typer.Option(None, help="Face model (.onnx) taking gray or rgb with face detection "
                     "(default: siamid/models/face_gray.onnx).")
SAVE = typer.Option(None, "--save", help="Folder for the frames used, as PNG with the face "
                    "box drawn (green: the face the model crops; red: other faces).")
SAVE_TRIED = typer.Option(None, "--save", help="Folder for the frames compared, as PNG with "
                          "the face box drawn, named by decision.")


def _open(model: Optional[Path], gallery: Path, key_file: Optional[Path],
          threshold: Optional[float], create: bool, source: str):
    """The Gallery on a model a camera can feed, and the opened source, in the order that
    leaves nothing behind on failure: model, then source, then the gallery file."""
    from ..camera import camera_model_path, check_camera_model, open_source
    from ..errors import ModelError
    from ..runtime import Embedder, Gallery

    if model is None and not camera_model_path().is_file():
        raise ModelError(f"the camera's face model {camera_model_path()} is not installed; "
                         "pass --model with an exported gray or rgb face model trained with "
                         "face detection (configs/faces/gray.toml makes one)")
    embedder = Embedder(model if model is not None else camera_model_path())
    check_camera_model(embedder.preprocess_config, str(embedder.path))
    frames = open_source(source)
    store = None
    try:
        store = opt.open_store(gallery, key_file, create=create)
        return Gallery(embedder, store, threshold=threshold), frames
    except BaseException:
        if store is not None:
            store.close()
        frames.close()
        raise


def _frames_line(counts, every: int = 1) -> str:
    looked = f", {counts.looked} looked at (one in {every})" if every > 1 else ""
    refused = counts.describe_refused()
    refused = f" ({refused})" if refused else ""
    return (f"frames: {counts.read} read{looked}, {sum(counts.refused.values())} refused"
            f"{refused}, {counts.used} used")


@app.command("enroll")
@handle_errors
def enroll(
    subject: str = typer.Argument(..., help="Who is enrolling (any name or id)."),
    gallery: Path = opt.GALLERY,
    key_file: Optional[Path] = opt.KEY_FILE,
    source: str = SOURCE,
    model: Optional[Path] = MODEL,
    frames: int = typer.Option(5, min=1, help="Good frames to enroll (the template's signatures)."),
    every: int = typer.Option(5, min=1, help="Look at one frame in EVERY, so that the frames "
                              "used differ."),
    max_frames: int = typer.Option(300, min=1, help="Give up after this many frames read."),
    replace: bool = typer.Option(False, help="Replace an existing template of this subject."),
    save: Optional[Path] = SAVE,
) -> None:
    """Enroll a face from the camera (creating the gallery if needed).

    Looks at one frame in EVERY and keeps those that pass the model's quality check (one face,
    not too dark or light) until FRAMES are kept, then enrolls them as one template.
    """
    from ..camera import enroll_from_frames

    created = not gallery.exists()
    g, source_frames = _open(model, gallery, key_file, None, True, source)
    with opt.removed_if_refused(gallery, g, created), source_frames, progress_bar() as progress:
        console.print(f"enrolling {subject} from {source_frames.name}: look at the camera")
        result = enroll_from_frames(
            g, subject, source_frames, count=frames, every=every, max_frames=max_frames,
            replace=replace, save_dir=save,
            on_frame=lambda e: progress("frames", e.index + 1, max_frames))
    console.print(_frames_line(result.counts, every)
                  + f" (frames {', '.join(map(str, result.frames))})")
    for text in opt.enrolled_lines(subject, result.enrolled, gallery, "frames"):
        console.print(text)
    if result.saved:
        console.print(f"wrote {len(result.saved)} frames to {save}")


@app.command("unlock")
@handle_errors
def unlock(
    subject: str = typer.Argument(..., help="The claimed identity."),
    gallery: Path = opt.GALLERY,
    key_file: Optional[Path] = opt.KEY_FILE,
    source: str = SOURCE,
    model: Optional[Path] = MODEL,
    max_frames: int = typer.Option(50, min=1, help="Give up after this many frames (each "
                                   "compared frame is one more chance for a stranger)."),
    timeout: Optional[float] = typer.Option(None, help="Give up after this many seconds."),
    rule: str = opt.RULE,
    threshold: Optional[float] = opt.THRESHOLD,
    adapt: bool = typer.Option(
        False, "--adapt",
        help="After an accept, let the frame join the template under the same policy as "
        "`siamid verify --adapt` (stricter update threshold, close to the enrollment frames, "
        "no near-duplicate; bounded, oldest adapted signature out first)."),
    save: Optional[Path] = SAVE_TRIED,
) -> None:
    """Verify camera frames against one subject until one is accepted (exit 0), or the frames,
    --max-frames or --timeout run out (exit 1).

    Every frame that passes the quality check is one verification attempt, printed with its
    distance and threshold; refused frames are counted by reason. Five failed unlocks in a row
    lock the gallery out for 30 s (each further lockout twice as long), kept in
    GALLERY.lockout.json as for `siamid reader`; an unlock that compared no frame (no usable
    face) does not count.
    """
    from ..camera import ACCEPTED, LOCKED, MAX_FRAMES, TIMEOUT, unlock_from_frames
    from ..lockout import Lockout, lockout_path

    g, source_frames = _open(model, gallery, key_file, threshold, False, source)

    def show(event) -> None:
        progress("frames", event.index + 1, max_frames)
        if event.result is not None:
            console.print(line(f"frame {event.index}: ", opt.describe(event.result)))

    lockout = Lockout(lockout_path(gallery))
    try:
        size = len(g.store.get(subject).signatures)
        with source_frames, progress_bar() as progress:
            if not lockout.locked:
                console.print(f"unlocking {subject} from {source_frames.name}: look at the "
                              "camera")
            result = unlock_from_frames(g, subject, source_frames, max_frames=max_frames,
                                        timeout=timeout, rule=rule, adapt=adapt, save_dir=save,
                                        on_frame=show, lockout=lockout)
        after = g.store.get(subject) if adapt and result.accepted is not None else None
    finally:
        g.store.close()
    if result.stopped == LOCKED:
        console.print(line(styled("locked out", "red"), f": {result.locked_for:.0f} s more after "
                           f"{lockout.policy.max_failures} failed unlocks in a row; no frame was "
                           f"read (the lockout is kept in {lockout.path})"))
        raise typer.Exit(EXIT_REJECTED)
    console.print(_frames_line(result.counts).replace(" used", " compared"))
    if result.attempts:
        console.print(opt.provenance(g, size, rule))
        decided_at = result.attempts[-1][1].threshold
        if threshold is None and decided_at != g.threshold_for(size, rule):
            console.print(f"the template holds {size} signatures, adapted ones among them, more "
                          "than the calibration has a threshold for: decided at the threshold "
                          "that keeps its FMR within the target by a union bound "
                          "(docs/runtime.md, adaptive templates)")
    if result.saved:
        console.print(f"wrote {len(result.saved)} frames to {save}")
    if result.stopped == ACCEPTED:
        console.print(line(styled("unlocked", "green"), f" {subject} at frame "
                           f"{result.attempts[-1][0]}"))
        if result.accepted.update is not None:
            console.print(opt.describe_update(result.accepted.update, after))
        return
    why = {MAX_FRAMES: f"--max-frames {max_frames} reached",
           TIMEOUT: f"--timeout {timeout} s passed"}.get(result.stopped, "the source ended")
    console.print(line(styled("not unlocked", "red"),
                       f": no frame accepted in {len(result.attempts)} attempts ({why})"))
    if result.locked_for:
        console.print(line(styled("locked out", "red"), f" for {result.locked_for:.0f} s: "
                           f"{lockout.policy.max_failures} failed unlocks in a row"))
    elif result.attempts:
        console.print(f"{lockout.failures_left} failed unlocks left before a lockout")
    raise typer.Exit(EXIT_REJECTED)
