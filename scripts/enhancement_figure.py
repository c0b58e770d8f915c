"""Figure: the network's view of synthetic and real prints, without and with ridge enhancement.

Top row: the shipped preprocessing (crop, balance, sharpen); bottom row: the same with ridge
enhancement (``[preprocess] enhance = true``, siamid/enhance.py), both before the resize to the
network's input size. One synthetic impression (generator, seed 0) and one print from each real
source found under ../shared/data (skipped where absent). Writes docs/enhancement.png.

    .venv/bin/python scripts/enhancement_figure.py [--out docs/enhancement.png]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from siamid.config import PreprocessConfig  # noqa: E402
from siamid.preprocess import Preprocessor  # noqa: E402
from siamid.synth import generate_finger  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
REAL = (("FVC2002 DB1_B (optical)", "fvc2002/DB1_B/101_1.tif"),
        ("FVC2004 DB3_B (thermal sweep)", "fvc2004/DB3_B/101_1.tif"),
        ("FVC2000 DB2_B (capacitive)", "fvc2000/DB2_B/101_1.tif"),
        ("R30x module", "r30x_captures/tutzauel/right/thumb/1.png"))
STAGE = "5_sharpened"  # the last stage before the resize


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "enhancement.png"))
    args = parser.parse_args()
    images = [("synthetic (generator)", generate_finger(0, 1)[1][0])]
    images += [(name, np.asarray(Image.open(SHARED / rel).convert("L")))
               for name, rel in REAL if (SHARED / rel).is_file()]
    plain = Preprocessor(PreprocessConfig())
    enhanced = Preprocessor(replace(PreprocessConfig(), enhance=True, sharpen_amount=0))
    fig, axes = plt.subplots(2, len(images), figsize=(2.6 * len(images), 5.6), squeeze=False)
    for col, (name, img) in enumerate(images):
        axes[0, col].imshow(plain.trace(img, 500)[STAGE], cmap="gray", vmin=0, vmax=255)
        axes[1, col].imshow(enhanced.trace(img, 500)[STAGE], cmap="gray", vmin=0, vmax=255)
        axes[0, col].set_title(name, fontsize=8)
    axes[0, 0].set_ylabel("shipped preprocessing")
    axes[1, 0].set_ylabel("ridge enhancement")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(args.out, dpi=56)
    Image.open(args.out).convert("L").save(args.out, optimize=True)  # gray: a third the size
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
