"""siamid enroll: store a subject's template from 3 or more images of one finger."""

from pathlib import Path
from typing import Optional

import typer

from . import gallery_options as opt
from .common import console, line, read_images, styled


def command(
    subject: str = typer.Argument(..., help="Who is enrolling (any name or id)."),
    images: list[Path] = typer.Argument(..., help="3 or more images of the same finger."),
    gallery: Path = opt.GALLERY,
    key_file: Optional[Path] = opt.KEY_FILE,
    model: Optional[Path] = opt.MODEL,
    dpi: int = opt.DPI,
    replace: bool = typer.Option(False, help="Replace an existing template of this subject."),
    min_images: int = typer.Option(3, help="Good-quality images needed."),
    poses: Optional[str] = typer.Option(
        None, help="What each image shows, comma-separated in image order (a face's "
        "front,left,right; a finger's placement): recorded with the template."),
) -> None:
    """Enroll a subject (creating the gallery if needed).

    Poor-quality images are skipped with the reason; an image given twice, or one that matches
    none of the others, refuses the enrollment.
    """
    created = not gallery.exists()
    g = opt.open_gallery(gallery, model, key_file=key_file, create=True)
    with opt.removed_if_refused(gallery, g, created):
        result = g.enroll(subject, read_images(images, g.embedder.preprocessor), dpi=dpi,
                          min_images=min_images, replace=replace,
                          poses=None if poses is None else [p.strip() for p in poses.split(",")])
    for index, reason in result.rejected:
        console.print(line(styled("skipped", "yellow"), f" {images[index]}: {reason}"))
    for text in opt.enrolled_lines(subject, result, gallery):
        console.print(text)
