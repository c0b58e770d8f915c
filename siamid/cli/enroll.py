"""siamid enroll: store a subject's template from 3 or more images of one finger."""

from pathlib import Path
from typing import Optional

import typer

from ..errors import SiamidError
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
    try:
        result = g.enroll(subject, read_images(images, g.embedder.preprocessor), dpi=dpi,
                          min_images=min_images, replace=replace,
                          poses=None if poses is None else [p.strip() for p in poses.split(",")])
    except SiamidError:
        # A refused first enrollment leaves no empty gallery behind: it would answer "nobody
        # matches" where "no such gallery" is the truth.
        if created and len(g.store) == 0:
            g.store.close()
            gallery.unlink(missing_ok=True)
        raise
    finally:
        g.store.close()
    for index, reason in result.rejected:
        console.print(line(styled("skipped", "yellow"), f" {images[index]}: {reason}"))
    recorded = [o.pose for o in result.template.origins if o.pose is not None]
    console.print(f"enrolled {subject} with {result.template.signatures.shape[0]} signatures "
                  f"(model {result.template.model_id}"
                  f"{'; poses ' + ', '.join(recorded) if recorded else ''}) in {gallery}")
    if len(result.accepted) > 1:
        console.print(f"spread {result.spread:.4f} (largest distance between the enrollment "
                      f"images; each matched another below the enrollment threshold "
                      f"{result.threshold:.4f})")
