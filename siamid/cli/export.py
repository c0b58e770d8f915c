"""siamid export: a training run -> ONNX fp32 and int8 with the ModelCard inside."""

from pathlib import Path

import typer

from .common import console, percent


def command(
    run: Path = typer.Argument(..., help="A finished run folder (siamid train --run ...)."),
    out: Path = typer.Option(Path("models"), help="Folder for <model_id>.onnx and .int8.onnx."),
    int8: bool = typer.Option(True, help="Also write an int8 model (calibrated on training images)."),
) -> None:
    """Export the run's best checkpoint; reports validation EER of fp32 and int8 side by side."""
    from ..exporting import export_run

    result = export_run(run, out, int8=int8)
    fp32 = result.card.metrics["val_eer_fvc"]
    console.print(f"fp32: {result.fp32_path} ({result.fp32_path.stat().st_size / 1024:.1f} kB), "
                  f"validation EER {percent(fp32)}")
    if result.int8_path is not None:
        q = result.int8_card.metrics["val_eer_fvc"]
        console.print(f"int8: {result.int8_path} ({result.int8_path.stat().st_size / 1024:.1f} kB), "
                      f"validation EER {percent(q)} ({100 * (q - fp32):+.2f} points vs fp32)")
    console.print(f"model id {result.card.model_id}; signature {result.card.embedding_size} bytes as int8; "
                  f"threshold {result.card.threshold:.4f} at FMR {percent(result.card.threshold_fmr)}")
    sizes = result.card.template_thresholds
    if sizes:
        console.print("for K-image templates (nearest signature): "
                      + ", ".join(f"K={k} {v:.4f}" for k, v in sizes.items()))
