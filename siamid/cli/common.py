"""What every verb shares: the consoles, styled text, progress bars, exit codes, image loading.

Nothing a user typed (names, paths, file names) may ever be read as rich markup or emoji codes:
a name such as ``eve[/x]`` would crash the print after the work was done, and ``[admin]`` would
vanish. So every console here has markup, emoji and highlighting off, and colour comes only from
``styled`` (rich Text with a style), never from square brackets inside a string.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

# Exit codes: a decision is 0 (accepted) or 1 (rejected); Typer/Click use 2 for usage errors.
EXIT_ACCEPTED = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_ERROR = 3

# Strings printed through these consoles are shown exactly as they are.
_LITERAL = {"markup": False, "emoji": False, "highlight": False}
# Piped or logged output has no terminal width: rich would fall back to 80 columns and cut the
# wide tables' headers and numbers, so such output gets room for a whole row (COLUMNS overrides).
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160,
                  **_LITERAL)
err_console = Console(stderr=True, soft_wrap=True, **_LITERAL)  # whole lines for grep and logs


def styled(text: str, style: str) -> Text:
    """``text`` in ``style`` (e.g. "red"), never parsed for markup."""
    return Text(text, style=style)


def line(*parts: str | Text) -> Text:
    """Pieces of plain and styled text joined into one printable line."""
    return Text.assemble(*parts)


def print_error(message: object) -> None:
    """A red ``error:`` then the message, as written, on stderr."""
    err_console.print(line(styled("error:", "red"), " ", str(message)))


@contextlib.contextmanager
def progress_bar() -> Iterator:
    """A rich progress bar; yields a ``progress(stage, done, total)`` callback for the library."""
    bar = Progress(TextColumn("{task.description:<16}", markup=False), BarColumn(),
                   MofNCompleteColumn(), TimeRemainingColumn(), console=err_console,
                   transient=False)
    tasks: dict[str, int] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    with bar:
        yield update


def read_images(paths: list[Path], preprocessor) -> list[np.ndarray]:
    """Load image files as ``preprocessor`` takes them (a face with its depth file, for an
    RGB-D model); DatasetError naming a bad one."""
    return [preprocessor.load(p) for p in paths]


def percent(rate: float | None) -> str:
    """A rate (fraction) as a percentage for people; '-' where not supported."""
    return "-" if rate is None else f"{100.0 * rate:.2f}%"


def handle_errors(func):
    """Wrap a verb so a SiamidError becomes a red message and exit code 3, never a traceback."""
    import functools

    import typer

    from ..errors import SiamidError

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except SiamidError as exc:
            print_error(exc)
            raise typer.Exit(EXIT_ERROR) from exc

    return wrapper
