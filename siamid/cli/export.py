"""siamid export: a training run -> ONNX fp32 and int8 with the ModelCard inside."""

from pathlib import Path

import typer

from .common import console, percent, progress_bar


def command(
    run: Path = typer.Argument(..., help="A finished run folder (siamid train --run ...)."),
    out: Path = typer.Option(Path("models"), help="Folder for <model_id>.onnx and .int8.onnx."),
    int8: bool = typer.Option(True, help="Also write an int8 model (calibrated on training images)."),
    allow_int8_drift: bool = typer.Option(
        False, help="Keep the int8 model even if it loses more than 0.5 points of validation EER "
        "against fp32 (export refuses it otherwise)."),
) -> None:
    """Export the run's best checkpoint; each file is calibrated on its own outputs.

    Reports the validation EER of fp32 and int8 side by side, and whether templates enrolled
    with one file may be verified with the other.
    """
    from ..calibration import card_calibration
    from ..exporting import export_run

    with progress_bar() as progress:
        result = export_run(run, out, int8=int8, allow_int8_drift=allow_int8_drift,
                            progress=progress)
    for card, path in ((result.card, result.fp32_path), (result.int8_card, result.int8_path)):
        if card is None:
            continue
        eer = card.metrics["val_eer_fvc"]
        cost = (f" ({100 * (eer - result.card.metrics['val_eer_fvc']):+.2f} points vs fp32)"
                if card is result.int8_card else "")
        console.print(f"{card.quantization}: {path} ({path.stat().st_size / 1024:.1f} kB), model id "
                      f"{card.model_id}, validation EER {percent(eer)}{cost}")
        console.print(f"  {describe_thresholds(card)}")
    if result.int8_card is not None:
        mixed = result.int8_card.metrics["val_eer_fvc_mixed"]
        verdict = ("compatible: templates enrolled with either file verify with the other"
                   if result.int8_card.compatible_ids else
                   "NOT compatible: enroll and verify with the same file")
        console.print(f"fp32 templates probed by int8: validation EER {percent(mixed)}; {verdict}")
    console.print(f"signature {result.card.embedding_size} bytes as int8; "
                  f"calibration: {card_calibration(result.card).describe()}")


def describe_thresholds(card) -> str:
    """The card's thresholds in one line: single comparison, then K-image templates by rule."""
    from ..calibration import card_calibration

    cal = card_calibration(card)
    parts = [f"threshold {cal.threshold:.4f} at FMR {percent(cal.target_fmr)}"]
    for rule in ("min", "mean"):
        sizes = sorted((p for p in cal.points.values() if p.size > 1 and p.rule == rule),
                       key=lambda p: p.size)
        if sizes:
            parts.append(f"K-image templates ({rule}): "
                         + ", ".join(f"K={p.size} {p.threshold:.4f}" for p in sizes))
    return "; ".join(parts)
