"""siamid capture: guided capture of a subject's fingers from the sensor into the standard layout."""

from pathlib import Path

import numpy as np
import typer
from rich.color import Color
from rich.style import Style
from rich.text import Text

from .common import EXIT_REJECTED, console, err_console, line, styled

PREVIEW_COLUMNS = 32  # the preview is 32 characters wide and 16 lines high for a square image


def preview(image: np.ndarray, columns: int = PREVIEW_COLUMNS) -> Text:
    """A small terminal picture of a gray image: each character is two pixels, one above the
    other (the upper half block in the top pixel's colour on the bottom pixel's)."""
    height, width = image.shape
    rows = max(2, round(columns * height / width) // 2 * 2)
    ys = (np.arange(rows) * height // rows).clip(0, height - 1)
    xs = (np.arange(columns) * width // columns).clip(0, width - 1)
    small = image[np.ix_(ys, xs)].astype(int)
    text = Text()
    for y in range(0, rows, 2):
        for top, bottom in zip(small[y], small[y + 1]):
            text.append("\u2580", Style(color=Color.from_rgb(top, top, top),
                                        bgcolor=Color.from_rgb(bottom, bottom, bottom)))
        text.append("\n")
    return text


OUT = typer.Argument(..., help="Dataset folder: images go to OUT/SUBJECT/HAND/FINGER/TAKE.png.")
MODEL = typer.Option(None, help="Model whose quality check judges each take (default: the "
                     "shipped one).")


def command(
    out: Path = OUT,
    port: str | None = typer.Option(None, help="Serial port of the sensor (/dev/ttyUSB0, COM3) "
                                    "or a simulator URL such as r503sim://?lift=1."),
    subject: str | None = typer.Option(None, help="Subject id (asked for when not given): "
                                          "letters, digits, '_', '.', '-'."),
    takes: int = typer.Option(5, help="Takes of each finger."),
    hands: str = typer.Option("left,right", help="Hands to capture, in this order: left,right."),
    fingers: str = typer.Option("thumb,index,middle,ring,little",
                                help="Fingers to capture, e.g. index,middle."),
    model: Path | None = MODEL,
    baud: int = typer.Option(57600, help="The module's baud rate."),
    touch_timeout: float = typer.Option(10.0, help="Seconds before saying no finger came "
                                        "(it keeps waiting)."),
    lift_timeout: float = typer.Option(5.0, help="Seconds to wait for the finger to lift "
                                       "between takes (0: do not wait)."),
    max_attempts: int = typer.Option(5, help="Poor takes in a row before a finger is left "
                                     "for later."),
    show_preview: bool = typer.Option(True, "--preview/--no-preview",
                                      help="Show each accepted take (on a terminal)."),
    check: bool = typer.Option(False, "--check", help="Capture nothing: verify OUT against "
                               "its capture.json (every take's sha256, takes missing or not "
                               "recorded); exit 1 if anything is wrong."),
) -> None:
    """Capture a subject's fingers, K takes each, into a dataset folder.

    Walks left hand then right, thumb to little finger. Each take is judged by the model's
    quality check; a poor one is refused with the reason and taken again. Takes already on
    disk are skipped (an interrupted subject resumes) and never overwritten. OUT/capture.json
    records each take (sha256, time, refused takes); --check verifies the folder against it.
    """
    if check:
        _check(out)
        return
    if port is None:
        raise typer.BadParameter("give the sensor's port to capture (only --check works "
                                 "without one)", param_hint="'--port'")
    from ..capture import (
        FINGERS,
        HANDS,
        CaptureSession,
        check_subject,
        model_quality,
        parse_choice,
    )
    from ..runtime import default_model_path, read_card
    from ..sensors import R503

    hand_list = parse_choice(hands, HANDS, "hand")
    finger_list = parse_choice(fingers, FINGERS, "finger")
    if subject is None:
        subject = typer.prompt("subject id")
    subject = check_subject(subject)
    model_path = model if model is not None else default_model_path()
    quality = model_quality(model_path)
    model_id = read_card(model_path).model_id

    def show(event) -> None:
        from .. import capture as c

        name = f"{event.slot.hand} {event.slot.finger}" if hasattr(event, "slot") else ""
        take = f"take {event.slot.take}/{takes}" if hasattr(event, "slot") else ""
        if isinstance(event, c.Prompt):
            again = "" if event.attempt == 1 else " again"
            console.print(f"place the {name} finger{again} ({take})")
        elif isinstance(event, c.NoFinger):
            console.print(line(styled("waiting", "yellow"), f": no finger within "
                               f"{event.waited:g} s; place the {name} finger on the sensor"))
        elif isinstance(event, c.Rejected):
            console.print(line(styled("poor take", "red"), f" {name} {take}: {event.reason}; "
                               "try again"))
        elif isinstance(event, c.Saved):
            if show_preview and console.is_terminal:  # block characters mean nothing in a log
                console.print(preview(event.image), end="")
            console.print(line(styled("saved", "green"), f" {event.path}"))
        elif isinstance(event, c.Skipped):
            console.print(f"already on disk: {event.path}")
        elif isinstance(event, c.LiftFinger):
            console.print("lift the finger off the sensor")
        elif isinstance(event, c.GaveUp):
            console.print(line(styled("skipping", "yellow"), f" the {name} finger after "
                               f"{event.attempts} poor takes; run again later to resume"))

    with R503(port, baudrate=baud) as sensor:
        info = {"port": port, "image_size": list(sensor.image_size or ())}
        if sensor.info is not None:
            info.update(model=sensor.info.model, serial=sensor.info.serial)
        session = CaptureSession(sensor, out, subject, quality, hands=hand_list,
                                 fingers=finger_list, takes=takes, touch_timeout=touch_timeout,
                                 lift_timeout=lift_timeout, max_attempts=max_attempts,
                                 sensor_info=info, model_id=model_id)
        todo = len(session.pending())
        console.print(f"capturing {subject}: {', '.join(hand_list)} hand(s), "
                      f"{', '.join(finger_list)}; {takes} takes each, {todo} to go")
        try:
            summary = session.run(show)
        except KeyboardInterrupt:
            err_console.print(f"stopped; run the same command again to resume {subject}")
            raise typer.Exit(130) from None
    console.print(f"done: {len(summary.saved)} saved, {len(summary.skipped)} already there, "
                  f"{summary.rejected} poor takes refused"
                  + (f", {len(summary.gave_up)} finger(s) left for later" if summary.gave_up
                     else ""))


def _check(out: Path) -> None:
    """Print what is wrong with OUT's takes against its manifest; exit 1 if anything is."""
    from ..capture import read_manifest

    manifest = read_manifest(out)
    for problem in manifest.problems:
        console.print(line(styled(problem.kind, "red"), f" {out / problem.path}: "
                           f"{problem.detail}"))
    total = len(manifest.takes)
    note = (" (format version 1: no take records; resume each subject with siamid capture to "
            "record its takes)" if manifest.version == 1 else "")
    if manifest.problems:
        kinds: dict[str, int] = {}
        for problem in manifest.problems:
            kinds[problem.kind] = kinds.get(problem.kind, 0) + 1
        counts = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
        console.print(f"{manifest.path}: {total} takes recorded; {counts}{note}")
        raise typer.Exit(EXIT_REJECTED)
    console.print(line(styled("ok", "green"), f" {manifest.path}: {total} takes recorded, all "
                       f"present and unchanged{note}"))
