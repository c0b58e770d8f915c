"""siamid prep: check image quality and show what the network sees, stage by stage."""

from pathlib import Path
from typing import Optional

import typer
from PIL import Image
from rich.table import Table
from rich.text import Text

from .common import EXIT_REJECTED, console

_SCORES = ("mean", "contrast", "sharpness", "ridge_area", "center_ridge_area", "coherence")


def _preprocessor(model: Optional[Path], config: Optional[Path]):
    """The Preprocessor of --config's [preprocess] section, else of the model's card.

    Only the card is read (``runtime.read_card``): no training stack needed.
    """
    from ..preprocess import Preprocessor

    if config is not None:
        if model is not None:
            raise typer.BadParameter("give --model or --config, not both", param_hint="--config")
        from ..config import load_config

        return Preprocessor(load_config(config).preprocess)
    from ..runtime import default_model_path, read_card

    path = model or default_model_path()
    return Preprocessor.from_card(read_card(path), str(path))


def _score_cells(scores: dict[str, float]) -> list[str]:
    if not scores:
        return ["-"] * len(_SCORES)
    s = scores
    return [f"{s['mean']:.2f}", f"{s['contrast']:.2f}", f"{s['sharpness']:.3f}",
            f"{s['ridge_area']:.0%}", f"{s['center_ridge_area']:.0%}", f"{s['coherence']:.2f}"]


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
    from ..errors import QualityError

    pre = _preprocessor(model, config)
    table = Table("image", "verdict", "mean", "contrast", "sharpness", "ridge area", "centre", "coherence")
    rejected = 0
    for path in images:
        img = pre.load(path)
        try:
            quality = pre.process(img, dpi).quality
            ok, reason, scores = quality.ok, quality.reason, quality.scores
        except QualityError as exc:  # outside the size limits: a rejection, no scores
            ok, reason, scores = False, exc.reason or str(exc), {}
        rejected += not ok
        # Text, never markup: a file name or a reason is shown exactly as it is.
        verdict = Text("ok", style="green") if ok else Text(reason, style="red")
        table.add_row(Text(str(path)), verdict, *_score_cells(scores))
        if trace_dir is not None and scores:
            folder = trace_dir / path.stem
            folder.mkdir(parents=True, exist_ok=True)
            for stage, pixels in pre.trace(img, dpi).items():
                Image.fromarray(pixels).save(folder / f"{stage}.png")
    console.print(table)
    if trace_dir is not None:
        console.print(Text(f"stages written under {trace_dir}/<image>/"))
    if rejected:
        raise typer.Exit(EXIT_REJECTED)
