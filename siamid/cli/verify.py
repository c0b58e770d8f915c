"""siamid verify: 1:1, is this image the claimed subject? Exit 0 accepted, 1 rejected."""

from pathlib import Path
from typing import Optional

import typer

from . import gallery_options as opt
from .common import EXIT_REJECTED, console, read_images


def command(
    subject: str = typer.Argument(..., help="The claimed identity."),
    image: Path = typer.Argument(..., help="The probe image."),
    gallery: Path = opt.GALLERY,
    key_file: Optional[Path] = opt.KEY_FILE,
    model: Optional[Path] = opt.MODEL,
    dpi: int = opt.DPI,
    rule: str = opt.RULE,
    threshold: Optional[float] = opt.THRESHOLD,
) -> None:
    """Verify a probe against one subject's template (exit 0 accepted, 1 rejected)."""
    g = opt.open_gallery(gallery, model, threshold, key_file)
    try:
        result = g.verify(subject, read_images([image], g.embedder.preprocessor)[0], dpi=dpi, rule=rule)
        size = len(g.store.get(subject).signatures)
    finally:
        g.store.close()
    console.print(opt.describe(result))
    console.print(opt.provenance(g, size, rule))
    if not result.accepted:
        raise typer.Exit(EXIT_REJECTED)
