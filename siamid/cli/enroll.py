"""siamid enroll: store a subject's template from 3 or more images."""

from pathlib import Path
from typing import Optional

import typer

from . import gallery_options as opt
from .common import console, read_images


def command(
    subject: str = typer.Argument(..., help="Who is enrolling (any name or id)."),
    images: list[Path] = typer.Argument(..., help="3 or more images of the same finger."),
    gallery: Path = opt.GALLERY,
    model: Optional[Path] = opt.MODEL,
    dpi: int = opt.DPI,
    replace: bool = typer.Option(False, help="Replace an existing template of this subject."),
    min_images: int = typer.Option(3, help="Good-quality images needed."),
) -> None:
    """Enroll a subject; poor-quality images are rejected with the reason."""
    g = opt.open_gallery(gallery, model)
    result = g.enroll(subject, read_images(images), dpi=dpi, min_images=min_images, replace=replace)
    for index, reason in result.rejected:
        console.print(f"[yellow]skipped[/yellow] {images[index]}: {reason}")
    console.print(f"enrolled {subject} with {result.template.signatures.shape[0]} signatures "
                  f"(model {result.template.model_id}) in {gallery}")
