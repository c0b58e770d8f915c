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
    adapt: bool = typer.Option(
        False, "--adapt",
        help="After an accept, let the probe join the template if it also passes the stricter "
        "update threshold, lies close to the enrollment images and is no near-duplicate "
        "(bounded; the oldest adapted signature leaves first)."),
) -> None:
    """Verify a probe against one subject's template (exit 0 accepted, 1 rejected)."""
    g = opt.open_gallery(gallery, model, threshold, key_file)
    try:
        size = len(g.store.get(subject).signatures)
        probe = read_images([image], g.embedder.preprocessor)[0]
        result = g.verify(subject, probe, dpi=dpi, rule=rule, adapt=adapt)
        after = g.store.get(subject) if adapt else None
    finally:
        g.store.close()
    console.print(opt.describe(result))
    console.print(opt.provenance(g, size, rule))
    if threshold is None and result.threshold != g.threshold_for(size, rule):
        console.print(f"the template holds {size} signatures, adapted ones among them, more than "
                      "the calibration has a threshold for: decided at the threshold that keeps "
                      "its FMR within the target by a union bound (docs/runtime.md, adaptive "
                      "templates)")
    if result.update is not None:
        console.print(opt.describe_update(result.update, after))
    if not result.accepted:
        raise typer.Exit(EXIT_REJECTED)
