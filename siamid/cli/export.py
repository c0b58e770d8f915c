"""siamid export: a training run -> ONNX fp32 and int8 with the ModelCard inside, and on request
a microcontroller file made from the int8 one (--format)."""

from pathlib import Path

import enum
from dataclasses import dataclass

import typer

from .common import console, percent, progress_bar

#: Images of the validation split run through TFLite Micro by default (its reference kernels
#: take about 4 ms for the tiny tower, 100 ms or more for the 160 px default one, per image).
TFLM_IMAGES = 256


@dataclass(frozen=True)
class FormatOptions:
    """What the --format writers take from the command line."""

    tflm_images: int
    allow_float_preprocessing: bool


def _write_tflite(run: Path, result, opts: FormatOptions) -> Path:
    """<model_id>.tflite beside the ONNX files, checked on the run's validation split."""
    from ..tflite import export_tflite
    from ..errors import ModelError
    from ..tflite.check import check_tflite, validation_images
    from ..tflite.stages import TOLERANCE_STEPS

    path = export_tflite(result.int8_path)
    with progress_bar() as progress:
        images, ids = validation_images(run, progress=progress)
    check = check_tflite(result.int8_path, path, images, ids, opts.tflm_images)
    v = check.verification
    console.print(f"tflite: {path} ({check.file_bytes / 1024:.1f} kB), int8 input and output, "
                  f"TFLite Micro arena {check.arena_bytes / 1024:.1f} kB")
    stages = check.stages
    console.print(f"  against the int8 ONNX model, operator by operator (each fed onnxruntime's "
                  f"int8 inputs): at most {stages.max_steps} step(s) at its "
                  f"{len(stages.stages)} rounding points (limit {TOLERANCE_STEPS})")
    console.print(f"  end to end, largest output difference: LiteRT {v.litert_max_steps} step(s) "
                  f"on {v.images} validation images, TFLite Micro {v.tflm_max_steps} step(s) on "
                  f"{v.tflm_images} (one-step rounding differences grow through the layers)")
    console.print(f"  validation EER {percent(check.val_eer)} (int8 ONNX "
                  f"{percent(check.val_eer_int8_onnx)}, fp32 "
                  f"{percent(result.card.metrics['val_eer_fvc'])})")
    if not stages.passed:
        worst = stages.worst
        raise ModelError(f"{path} does not compute what {result.int8_path} computes: "
                         f"{' + '.join(worst.ops)} ({worst.tensor}) is "
                         f"{max(worst.litert_max_steps, worst.tflm_max_steps)} steps off; "
                         "this is a bug in the TFLite export, please report it")
    return path


def _write_c(run: Path, result, opts: FormatOptions) -> Path:
    """The .tflite, then <model_id>_c/: it as a C array with the card's constants and the C
    reference of preprocessing, distance and decision (siamid.cexport)."""
    from ..cexport import export_c

    tflite = _write_tflite(run, result, opts)
    folder = tflite.parent / f"{tflite.stem}_c"
    files = export_c(tflite, folder, allow_float_preprocessing=opts.allow_float_preprocessing)
    console.print(f"C: {folder}/ ({', '.join(f.name for f in files)}); docs/firmware.md says how "
                  "to build it into firmware")
    return folder


#: --format choices -> what each writes after the ONNX files (None: nothing more). A new format
#: is one more entry and one more function.
FORMATS = {"onnx": None, "tflite": _write_tflite, "c": _write_c}
ExportFormat = enum.Enum("ExportFormat", {name: name for name in FORMATS}, type=str)


def command(
    run: Path = typer.Argument(..., help="A finished run folder (siamid train --run ...)."),
    out: Path = typer.Option(Path("models"), help="Folder for <model_id>.onnx and .int8.onnx."),
    int8: bool = typer.Option(True, help="Also write an int8 model (calibrated on training images)."),
    allow_int8_drift: bool = typer.Option(
        False, help="Keep the int8 model even if it loses more than 0.5 points of validation EER "
        "against fp32 (export refuses it otherwise)."),
    format: ExportFormat = typer.Option(
        "onnx", "--format",
        help="onnx: the ONNX files only. tflite: also <model_id>.tflite, fully int8, made from "
        "the int8 ONNX file and checked against it in LiteRT and TFLite Micro on the validation "
        "split. c: also the .tflite as C source with the card's constants and the C reference "
        "of preprocessing and decision, in <model_id>_c/."),
    tflm_images: int = typer.Option(
        TFLM_IMAGES, "--tflm-images", min=1,
        help="With --format tflite or c: validation images run through TFLite Micro (slow)."),
    allow_float_preprocessing: bool = typer.Option(
        False, "--allow-float-preprocessing",
        help="With --format c: export a model trained on float preprocessing; the C reference "
        "runs the integer stages, a level or so from what it was trained on (docs/firmware.md)."),
) -> None:
    """Export the run's best checkpoint; each file is calibrated on its own outputs.

    Reports the validation EER of fp32 and int8 side by side, and whether templates enrolled
    with one file may be verified with the other.
    """
    from ..calibration import card_calibration
    from ..exporting import export_run

    write_more = FORMATS[ExportFormat(format).value]
    if write_more is not None and not int8:
        raise typer.BadParameter(f"--format {ExportFormat(format).value} is made from the int8 "
                                 "model; drop --no-int8")
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
    if write_more is not None:
        write_more(run, result, FormatOptions(tflm_images, allow_float_preprocessing))


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
