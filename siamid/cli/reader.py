"""siamid reader: a live authenticator on the sensor: enroll, verify or identify on each touch."""

from pathlib import Path

import typer

from . import gallery_options as opt
from .common import EXIT_REJECTED, console, err_console, line, styled

MODES = ("enroll", "verify", "identify")


def command(
    mode: str = typer.Argument(..., help="enroll SUBJECT, verify SUBJECT, or identify."),
    subject: str | None = typer.Argument(None, help="Who enrolls, or the claimed identity."),
    port: str = typer.Option(..., help="Serial port of the sensor (/dev/ttyUSB0, COM3) or a "
                             "simulator URL such as r503sim://?lift=1."),
    baud: int = typer.Option(57600, help="The module's baud rate."),
    gallery: Path = opt.GALLERY,
    key_file: Path | None = opt.KEY_FILE,
    model: Path | None = opt.MODEL,
    dpi: int = typer.Option(500, help="The sensor's resolution in dots per inch (R503: 500)."),
    rule: str = opt.RULE,
    threshold: float | None = opt.THRESHOLD,
    takes: int = typer.Option(3, help="enroll: takes of the finger."),
    replace: bool = typer.Option(False, help="enroll: replace an existing template."),
    top: int = typer.Option(1, help="identify: candidates to list per touch."),
    max_touches: int | None = typer.Option(None, help="Stop after this many touches "
                                              "(default: run until Ctrl-C)."),
    touch_timeout: float = typer.Option(10.0, help="Seconds before saying no finger came "
                                        "(it keeps waiting)."),
    lift_timeout: float = typer.Option(5.0, help="Seconds to wait for the finger to lift "
                                       "after a touch (0: do not wait)."),
    hold: float = typer.Option(1.0, help="Seconds a result stays on the LED at least."),
) -> None:
    """Authenticate on the sensor, one decision per touch.

    Uses the gallery, model, thresholds and rules of `siamid enroll`, `verify` and `identify`.
    Five rejected good-quality touches lock the reader for 30 s (each further lockout twice
    as long), kept in GALLERY.lockout.json across restarts. Exit 0 if the last decision
    accepted (or the enrollment was stored), 1 otherwise.
    """
    from ..errors import ConfigError
    from ..lockout import Lockout, lockout_path
    from ..reader import Reader
    from ..sensors import R503

    mode = mode.strip().lower()
    if mode not in MODES:
        raise ConfigError(f"unknown reader mode {mode!r}; use enroll SUBJECT, verify SUBJECT "
                          "or identify")
    if mode in ("enroll", "verify") and not subject:
        raise ConfigError(f"reader {mode} needs a SUBJECT: siamid reader {mode} NAME --port ...")
    if mode == "identify" and subject:
        raise ConfigError("reader identify takes no SUBJECT: it searches the whole gallery")
    if max_touches is not None and max_touches < 1:
        raise ConfigError(f"--max-touches must be at least 1, got {max_touches}")

    created = mode == "enroll" and not gallery.exists()
    g = opt.open_gallery(gallery, model, threshold, key_file, create=mode == "enroll")
    last: list[bool] = []
    try:
        lockout = Lockout(lockout_path(gallery))
        with R503(port, baudrate=baud) as sensor:
            reader = Reader(sensor, g, lockout, dpi=dpi, rule=rule, touch_timeout=touch_timeout,
                            lift_timeout=lift_timeout, hold=hold,
                            on_event=_printer(mode, subject, last))
            console.print(_banner(mode, subject, gallery, lockout))
            try:
                if mode == "enroll":
                    result = reader.enroll(subject, takes=takes, replace=replace,
                                           max_touches=max_touches)
                    last.append(result is not None)
                elif mode == "verify":
                    reader.verify(subject, max_touches=max_touches)
                else:
                    reader.identify(max_touches=max_touches, top_k=top)
            except KeyboardInterrupt:
                err_console.print("stopped (the LED is off)")
    finally:
        empty = len(g.store) == 0
        g.store.close()
        if created and empty:  # a refused or interrupted first enrollment leaves no gallery
            gallery.unlink(missing_ok=True)
    if not last or not last[-1]:
        raise typer.Exit(EXIT_REJECTED)


def _banner(mode: str, subject: str | None, gallery: Path, lockout) -> str:
    what = {"enroll": f"enrolling {subject}", "verify": f"verifying {subject}",
            "identify": "identifying"}[mode]
    state = ""
    if lockout.locked:
        state = f"; locked out for {lockout.remaining():.0f} s more"
    elif lockout.state.failures:
        state = f"; failed attempts left before a lockout: {lockout.failures_left}"
    return f"{what} against {gallery} (Ctrl-C stops){state}"


def _printer(mode: str, subject: str | None, last: list[bool]):
    """The on_event callback: one line per thing a person should know."""
    from .. import reader as r

    def show(event) -> None:
        if isinstance(event, r.Waiting):
            if event.of:
                console.print(f"place the finger on the sensor (take {event.take} of {event.of})")
            else:
                console.print("place a finger on the sensor")
        elif isinstance(event, r.NoTouch):
            console.print(line(styled("waiting", "yellow"),
                               f": no finger within {event.waited:g} s"))
        elif isinstance(event, r.PoorQuality):
            console.print(line(styled("poor quality", "magenta"),
                               f": {event.reason}; try again (not counted as an attempt)"))
        elif isinstance(event, r.SensorProblem):
            console.print(line(styled("sensor", "yellow"), f": {event.message}"))
        elif isinstance(event, r.Decision):
            last.append(event.accepted)
            if not event.results:
                console.print(line(styled("REJECTED", "red"), " nobody in the gallery matches"))
            for result in event.results:
                console.print(opt.describe(result))
            if mode == "identify" and event.results and not event.accepted:
                console.print("nobody in the gallery matches")
            t = event.timings
            console.print(f"  {t.total_s * 1000:.0f} ms: capture {t.capture_s * 1000:.0f}, "
                          f"upload {t.upload_s * 1000:.0f}, decision {t.decide_s * 1000:.0f}")
            if event.locked_for:
                console.print(line(styled("locked out", "red"), f" for {event.locked_for:.0f} s: "
                                   "too many failed attempts"))
            elif not event.accepted:
                console.print(f"  failed attempts left before a lockout: {event.failures_left}")
        elif isinstance(event, r.Locked):
            console.print(line(styled("locked", "red"), f": {event.seconds:.0f} s left (lockout "
                               f"{event.lockouts}); touches are ignored until then"))
        elif isinstance(event, r.Unlocked):
            console.print("lockout over")
        elif isinstance(event, r.TakeKept):
            console.print(line(styled("take kept", "green"), f" ({event.take} of {event.of})"))
        elif isinstance(event, r.EnrollRefused):
            console.print(line(styled("refused", "red"), f": {event.reason}; starting the "
                               "takes again"))
        elif isinstance(event, r.Enrolled):
            res = event.result
            console.print(line(styled("enrolled", "green"), f" {subject} with "
                               f"{res.template.signatures.shape[0]} signatures, spread "
                               f"{res.spread:.4f} (enrollment threshold {res.threshold:.4f})"))
        elif isinstance(event, r.LiftFinger):
            console.print("lift the finger off the sensor")

    return show
