"""siamid calibrate: rewrite a model's thresholds from your own captured set."""

from pathlib import Path
from typing import Optional

import typer

from .common import console, percent, progress_bar


def command(
    model: Path = typer.Argument(..., help="Exported .onnx model to calibrate."),
    data: Path = typer.Argument(..., help="Your labelled set: several images per finger, many "
                                "fingers (the standard layout or any layout evaluate reads)."),
    out: Optional[Path] = typer.Option(None, help="Write the calibrated model here instead of "
                                       "rewriting MODEL in place."),
    target_fmr: Optional[float] = typer.Option(
        None, help="FMR to choose the thresholds at, as a fraction (0.001 = 0.1%; default: the "
        "model's current target)."),
    sensor: Optional[str] = typer.Option(None, help="Sensor the set was captured with, recorded "
                                         "in the model (e.g. 'R503 front door')."),
    format: str = typer.Option("auto", help="Layout: auto, standard, fvc, upek, socofing, orl."),
) -> None:
    """Choose the model's thresholds on your own set and record where they came from.

    A model calibrated on synthetic prints can let in several times its promised FMR on real
    fingers: calibrate it on prints from the sensor it will run on. Single comparisons and 1-5
    image templates are calibrated; sizes the set cannot support are left out.
    """
    import shutil

    from ..calibration import TEMPLATE_SIZES, card_calibration, check_fmr, with_calibration
    from ..cardfile import write_card
    from ..dataset import scan_dataset, synthetic_sensor
    from ..errors import ModelError
    from ..runtime import Embedder, default_model_path
    from ..scoring import calibrate_on
    from .export import describe_thresholds

    if target_fmr is not None:
        check_fmr(target_fmr)  # now, not after embedding the whole set
    embedder = Embedder(model)
    target = out if out is not None else model
    if out is None and model.resolve().parent == default_model_path().parent:
        raise ModelError(f"{model} is a model shipped inside the package; pass --out to write "
                         "the calibrated copy elsewhere")
    made_for = synthetic_sensor(data)
    before = describe_thresholds(embedder.card)
    dataset = scan_dataset(data, format)
    with progress_bar() as progress:
        calibration = calibrate_on(embedder, dataset, target_fmr,
                                   sensor or (made_for or ""), made_for is not None, progress)
    card = with_calibration(embedder.card, calibration)
    if out is not None and out.resolve() != model.resolve():
        shutil.copyfile(model, out)
    write_card(target, card)
    single = card_calibration(card).point_for(1)
    console.print(f"before: {before}")
    console.print(f"after:  {describe_thresholds(card)}")
    console.print(f"on this set at the new single-image threshold: FNMR {percent(single.fnmr)} "
                  f"({single.n_genuine:,} genuine comparisons)")
    console.print(f"{calibration.describe()}")
    calibrated = {p.size for p in calibration.points.values()}
    missing = [k for k in TEMPLATE_SIZES if k not in calibrated]
    if missing:
        console.print(f"not calibrated: {', '.join(f'{k}-image' for k in missing)} templates "
                      f"(a K-image template needs fingers with more than K images and at least "
                      f"{1 / calibration.target_fmr:,.0f} impostor attempts); they are decided at "
                      "the largest size calibrated, which lets in more impostors than the target: "
                      "capture more fingers and images")
    console.print(f"written to {target}")
