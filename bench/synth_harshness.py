"""Calibrating the generator's harshness: how hard does a classical matcher find our prints?

A generator tuned to skin should make prints that a minutiae matcher finds about as hard as
real ones. For each ``--harshness`` this renders ``--fingers`` x ``--impressions`` synthetic
prints (``siamid.synth``, the whole-finger ``500dpi`` sensor, the same seed and so the same
fingers and poses at every harshness), and scores them with the afis baseline of
``siamid.baselines`` (LEADER minutiae + geometric matcher) under the FVC protocol, on the full
images and on the R503 view, exactly as ``bench/accuracy.py`` scores the real databases. The
reference rows are the real and SFinGe macro EERs of the same baseline, read from
``bench/results/accuracy.json``.

Draws ``docs/synth_harshness.png`` (whole real prints, then four takes of one of our fingers at
each harshness, all 500 dpi), prints one table and writes ``bench/results/synth_harshness.json``. Needs the optional package
afis (``pip install afis``); its pure-Python extractor takes about a second per image, so the
default (3 harshness levels x 16 fingers x 8, two views) runs about 15 minutes on 2 cores.

    .venv/bin/python bench/synth_harshness.py [--harshness 0,0.5,1] [--fingers 16]
        [--impressions 8] [--seed 0] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    RESULTS,
    ROOT,
    SHARED,
    image_grid,
    machine,
    print_table,
    write_json,
)

VIEW_NAMES = ("full", "r503")
FIGURE = ROOT / "docs" / "synth_harshness.png"
FIGURE_REAL = ["fvc2000/DB1_B", "fvc2002/DB1_B", "fvc2004/DB1_B", "fvc2004/DB3_B"]
SIDE = 320  # the shipped model's window


def figure(levels: list[float], seed: int) -> Path:
    """Real whole prints (row 1) and four takes of our finger 0 at each harshness (one row each),
    every image a 320 px window centred on the finger, at (about) 500 dpi."""
    from bench.synth_realism import crop_at, load_gray, source_files
    from siamid.synth import generate_finger

    rows = []
    real = [(f"real {name}", crop_at(load_gray(source_files(name)[0]), SIDE))
            for name in FIGURE_REAL if (SHARED / name).is_dir()]
    if real:
        rows.append(real)
    for h in levels:
        _, takes = generate_finger(seed, 4, "500dpi", index=0, harshness=h)
        rows.append([(f"ours, harshness {h:g}, take {k + 1}", crop_at(t, SIDE))
                     for k, t in enumerate(takes)])
    return image_grid(rows, "Real whole prints (row 1) and one synthetic finger at each harshness; "
                      f"{SIDE} px windows at ~500 dpi", FIGURE)


def score(job: tuple[float, str, str]) -> tuple[float, str, dict]:
    """afis under the FVC protocol on one synthetic set, one view."""
    harshness, view, folder = job
    from siamid.baselines import score_baseline
    from siamid.dataset import scan_dataset
    from siamid.pairs import Protocol
    from siamid.scoring import VIEWS

    dataset = scan_dataset(folder)
    result = score_baseline("afis", dataset, (Protocol("fvc"),), view=VIEWS[view])
    return harshness, view, result.reports["fvc"].summary()


def reference() -> dict[str, dict[str, dict]]:
    """{"real"|"SFinGe": {view: afis FVC summary}} from accuracy.json, where it exists."""
    path = RESULTS / "accuracy.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    out = {}
    for label, key in (("real (8 databases, macro)", "macro"), ("SFinGe (2 databases, macro)",
                                                                "macro_sfinge")):
        try:
            out[label] = {v: data[key][v]["afis"]["fvc"] for v in VIEW_NAMES}
        except KeyError:
            continue
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--harshness", default="0,0.5,1",
                        help="comma-separated harshness levels, 0 to 1 (default 0,0.5,1)")
    parser.add_argument("--fingers", type=int, default=16)
    parser.add_argument("--impressions", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", default="synth_harshness", help="results file name")
    args = parser.parse_args()
    try:
        import afis  # noqa: F401
    except ImportError:
        print("afis is not installed (pip install afis): nothing to measure")
        return 0
    from siamid.synth import GENERATOR_VERSION, generate_dataset

    levels = [float(h) for h in args.harshness.split(",") if h.strip()]
    start = time.time()
    results: dict[float, dict[str, dict]] = {h: {} for h in levels}
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for h in levels:
            folder = Path(tmp) / f"h{h:g}"
            generate_dataset(folder, args.fingers, args.impressions, sensor="500dpi",
                             seed=args.seed, workers=args.workers, harshness=h)
            jobs += [(h, view, str(folder)) for view in VIEW_NAMES]
        with ProcessPoolExecutor(args.workers) as pool:
            for h, view, summary in pool.map(score, jobs):
                results[h][view] = summary

    print(f"wrote {figure(levels, args.seed)}")

    def cell(s: dict) -> str:
        return f"{100 * s['eer']:.2f}% ({s['n_genuine']}/{s['n_impostor']})"

    rows = [[f"ours, harshness {h:g}", cell(results[h]["full"]), cell(results[h]["r503"])]
            for h in levels]
    ref = reference()
    rows += [[label, cell(r["full"]), cell(r["r503"])] for label, r in ref.items()]
    print_table(["set", "afis EER, full image (genuine/impostor)", "afis EER, R503 view"], rows)
    path = write_json(args.json, {
        "machine": machine(),
        "generator_version": GENERATOR_VERSION,
        "sensor": "500dpi",
        "fingers": args.fingers,
        "impressions": args.impressions,
        "seed": args.seed,
        "baseline": "afis (leader + geometric), FVC protocol",
        "ours": {f"{h:g}": results[h] for h in levels},
        "reference": ref,
        "seconds": round(time.time() - start, 1),
    })
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
