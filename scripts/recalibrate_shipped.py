"""Recalibrate shipped models that predate recorded calibrations, on held-out synthetic fingers.

``make pretrained`` exports a freshly trained tower and calibrates it on its run's validation
split (the shipped default was made that way). The shipped tiny tower was trained before cards
recorded calibrations; this script gives it the same treatment without retraining: it synthesises fingers the towers never saw
(seed 1100; training used seed 100), then, for each shipped fp32 file and its int8 twin, runs
``exporting.calibrate_files``: each file is calibrated on its own signatures, the int8 file gets
its own model id, its EER cost is checked, and whether the two files' templates are compatible is
measured. The weights are untouched.

    .venv/bin/python scripts/recalibrate_shipped.py [--data data/calibration]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from siamid.calibration import Provenance, today
from siamid.config import PreprocessConfig, from_dict
from siamid.dataset import scan_dataset
from siamid.exporting import calibrate_files
from siamid.runtime import default_model_path, read_card
from siamid.synth import GENERATOR_VERSION, generate_dataset
from siamid.training import image_set

FINGERS, IMPRESSIONS, SEED = 240, 8, 1100


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/calibration"))
    args = parser.parse_args()
    generate_dataset(args.data, FINGERS, IMPRESSIONS, sensor="r503", seed=SEED)
    dataset = scan_dataset(args.data)
    source = Provenance(
        "synthetic", name=f"held-out synthetic fingers (siamid synth generator v{GENERATOR_VERSION}, "
        f"seed {SEED}, {FINGERS} x {IMPRESSIONS})", set_hash=dataset.manifest_hash(),
        n_images=len(dataset), n_identities=len(dataset.identities), sensor="r503",
        synthetic=True, date=today())
    for stem in ("tiny",):
        fp32 = default_model_path().with_name(f"{stem}.onnx")
        int8 = fp32.with_name(f"{stem}.int8.onnx")
        cards = {"fp32": read_card(fp32), "int8": read_card(int8)}
        base_id = cards["fp32"].model_id
        cards["int8"] = cards["int8"].with_changes(model_id=f"{base_id}.int8")
        cfg = from_dict(PreprocessConfig, cards["fp32"].preprocess)
        images = image_set(dataset, cfg)
        written = calibrate_files({"fp32": (fp32, cards["fp32"]), "int8": (int8, cards["int8"])},
                                  images.images, images.ids, cards["fp32"].threshold_fmr, source)
        for kind, card in written.items():
            print(f"{stem} {kind}: {card.model_id} threshold {card.threshold:.4f}, validation EER "
                  f"{100 * card.metrics['val_eer_fvc']:.2f}%, compatible {card.compatible_ids}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
