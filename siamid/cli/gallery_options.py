"""Options shared by enroll, verify and identify, and the Gallery they open."""

from pathlib import Path
from typing import Optional

import typer

GALLERY = typer.Option(Path("gallery.db"), help="Template store (SQLite; encrypted if SIAMID_GALLERY_KEY is set).")
MODEL = typer.Option(None, help="Exported .onnx model (default: the shipped one).")
DPI = typer.Option(500, help="Resolution of the images in dots per inch.")
THRESHOLD = typer.Option(None, help="Decision threshold (default: the model's).")
RULE = typer.Option("min", help="min: closest enrolled signature (the tutorial's rule); mean: distance to their mean.")


def open_gallery(gallery: Path, model: Optional[Path], threshold: Optional[float] = None):
    """An Embedder on ``model`` and a Gallery over the store at ``gallery``."""
    from ..runtime import Embedder, Gallery
    from ..store import TemplateStore

    return Gallery(Embedder(model), TemplateStore(gallery), threshold=threshold)


def describe(result) -> str:
    """One line for a MatchResult."""
    verdict = "[green]ACCEPTED[/green]" if result.accepted else "[red]REJECTED[/red]"
    if result.fmr_estimate is None:
        fmr = ""
    elif result.fmr_estimate == 0.0:
        fmr = ", closer than every calibration impostor comparison"
    else:
        fmr = f", a stranger scores this close {result.fmr_estimate:.3%} of the time"
    return (f"{verdict} {result.subject}: distance {result.distance:.4f} "
            f"{'<' if result.accepted else '>='} threshold {result.threshold:.4f}{fmr}")
