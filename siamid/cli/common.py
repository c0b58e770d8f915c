"""What every verb shares: the console, progress bars, exit codes, image loading."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

# Exit codes: a decision is 0 (accepted) or 1 (rejected); Typer/Click use 2 for usage errors.
EXIT_ACCEPTED = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_ERROR = 3

# Piped or logged output has no terminal width: rich would fall back to 80 columns and cut the
# wide tables' headers and numbers, so such output gets room for a whole row (COLUMNS overrides).
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160)
err_console = Console(stderr=True, soft_wrap=True)  # messages stay whole for grep and logs


@contextlib.contextmanager
def progress_bar() -> Iterator:
    """A rich progress bar; yields a ``progress(stage, done, total)`` callback for the library."""
    bar = Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn(), console=err_console, transient=False)
    tasks: dict[str, int] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    with bar:
        yield update


def read_images(paths: list[Path]) -> list[np.ndarray]:
    """Load image files (DatasetError naming a bad one)."""
    from ..dataset import load_image

    return [load_image(p) for p in paths]


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
            err_console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(EXIT_ERROR) from exc

    return wrapper
