"""siamid prep: check image quality and show what the network sees, stage by stage."""

from pathlib import Path
from typing import Optional

import typer
from PIL import Image
from rich.table import Table

from .common import EXIT_REJECTED, console


def command(
    images: list[Path] = typer.Argument(..., help="Image files to check."),
    trace_dir: Optional[Path] = typer.Option(None, "--trace-dir", help="Write every preprocessing stage as PNG here."),
    model: Optional[Path] = typer.Option(None, help="Use this model's preprocessing (default: the shipped model's)."),
    config: Optional[Path] = typer.Option(None, help="Use the [preprocess] section of this TOML config instead."),
    dpi: int = typer.Option(500, help="Resolution of the images in dots per inch."),
) -> None:
    """Quality-check images and (with --trace-dir) write each preprocessing stage as PNG.

    Exit code 1 if any image is rejected.
    """
    from ..config import load_config
    from ..dataset import load_image
    from ..preprocess import check_quality, trace

    if config is not None:
        cfg = load_config(config).preprocess
    else:
        from ..config import PreprocessConfig, from_dict
        from ..runtime import default_model_path
        from ..exporting import read_card

        path = model or default_model_path()
        cfg = (from_dict(PreprocessConfig, read_card(path).preprocess)
               if path.exists() else PreprocessConfig())
    table = Table("image", "verdict", "mean", "contrast", "sharpness", "ridge area", "centre", "coherence")
    rejected = 0
    for path in images:
        img = load_image(path)
        q = check_quality(img, dpi, cfg)
        rejected += not q.ok
        s = q.scores
        table.add_row(str(path), "[green]ok[/green]" if q.ok else f"[red]{q.reason}[/red]",
                      f"{s['mean']:.2f}", f"{s['contrast']:.2f}", f"{s['sharpness']:.3f}",
                      f"{s['ridge_area']:.0%}", f"{s['center_ridge_area']:.0%}", f"{s['coherence']:.2f}")
        if trace_dir is not None:
            folder = trace_dir / path.stem
            folder.mkdir(parents=True, exist_ok=True)
            for stage, pixels in trace(img, dpi, cfg).items():
                Image.fromarray(pixels).save(folder / f"{stage}.png")
    console.print(table)
    if trace_dir is not None:
        console.print(f"stages written under {trace_dir}/<image>/")
    if rejected:
        raise typer.Exit(EXIT_REJECTED)
