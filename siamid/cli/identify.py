"""siamid identify: 1:N, who is this? Exit 0 if someone is accepted, 1 if nobody."""

from pathlib import Path
from typing import Optional

import typer

from . import gallery_options as opt
from .common import EXIT_REJECTED, console, read_images


def command(
    image: Path = typer.Argument(..., help="The probe image."),
    gallery: Path = opt.GALLERY,
    key_file: Optional[Path] = opt.KEY_FILE,
    model: Optional[Path] = opt.MODEL,
    dpi: int = opt.DPI,
    rule: str = opt.RULE,
    threshold: Optional[float] = opt.THRESHOLD,
    top: int = typer.Option(5, help="Candidates to list."),
) -> None:
    """Search every enrolled subject; lists the closest candidates."""
    g = opt.open_gallery(gallery, model, threshold, key_file)
    try:
        results = g.identify(read_images([image], g.embedder.preprocessor)[0], dpi=dpi, rule=rule, top_k=top)
        size = len(g.store.get(results[0].subject).signatures) if results else 1
    finally:
        g.store.close()
    for r in results:
        console.print(opt.describe(r))
    if results:
        console.print(opt.provenance(g, size, rule))
    if not results or not results[0].accepted:
        console.print("nobody in the gallery matches")
        raise typer.Exit(EXIT_REJECTED)
