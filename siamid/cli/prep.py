"""siamid prep: check image quality and show what the network sees, stage by stage."""

from pathlib import Path
from typing import Optional

import typer
from PIL import Image
from rich.table import Table
from rich.text import Text

from .common import EXIT_REJECTED, console

# (column, score key, format) of the verdict's scores, per modality.
_COLUMNS = {
    "finger": (("mean", "mean", "{:.2f}"), ("contrast", "contrast", "{:.2f}"),
               ("sharpness", "sharpness", "{:.3f}"), ("ridge area", "ridge_area", "{:.0%}"),
               ("centre", "center_ridge_area", "{:.0%}"), ("coherence", "coherence", "{:.2f}")),
    "face": (("faces", "faces", "{:.0f}"), ("mean", "mean", "{:.2f}"),
             ("depth area", "depth_area", "{:.0%}"), ("relief", "depth_relief", "{:.3f}")),
}


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


def _score_cells(scores: dict[str, float], columns) -> list[str]:
    """One cell per column; '-' for a score this image has none of (no detector, no depth)."""
    return [fmt.format(scores[key]) if key in scores else "-" for _, key, fmt in columns]


def _save_stage(pixels, path: Path) -> None:
    """A stage as PNG; an RGB-D stage as its colour and, beside it, its depth (``_depth``)."""
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        Image.fromarray(pixels[:, :, :3]).save(path)
        Image.fromarray(pixels[:, :, 3]).save(path.with_name(f"{path.stem}_depth.png"))
    else:
        Image.fromarray(pixels).save(path)


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
    columns = _COLUMNS[pre.config.modality]
    table = Table("image", "verdict", *(name for name, _, _ in columns))
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
        table.add_row(Text(str(path)), verdict, *_score_cells(scores, columns))
        if trace_dir is not None and scores:
            folder = trace_dir / path.stem
            folder.mkdir(parents=True, exist_ok=True)
            for stage, pixels in pre.trace(img, dpi).items():
                _save_stage(pixels, folder / f"{stage}.png")
    console.print(table)
    if trace_dir is not None:
        console.print(Text(f"stages written under {trace_dir}/<image>/"))
    if rejected:
        raise typer.Exit(EXIT_REJECTED)
