"""What a model's calibrated thresholds mean on real fingers, for single images and 3-image
templates.

A model's calibration (``siamid.calibration``, in its card) holds a threshold at its target FMR
for single comparisons and one per template size K: a Gallery compares a probe with the nearest
of a template's K signatures (``min`` rule), so an impostor gets K tries. This measures, on
every real database, FMR and FNMR at the thresholds the calibration gives a Gallery
(single-comparison for all pairs and enroll1, the 3-image one for enroll3, and for comparison
the single-comparison one for enroll3 too), pooled over the databases.

    .venv/bin/python bench/enrollment_threshold.py [--model PATH]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (REAL, SHARED, machine, print_table, seen_in_training,  # noqa: E402
                          seen_warning, write_json)

PROTOCOLS = ("all", "enroll1", "enroll3")
#: column -> (protocol, the template size whose calibrated threshold decides it)
COLUMNS = {"all": ("all", 1), "enroll1": ("enroll1", 1),
           "enroll3 @ single threshold": ("enroll3", 1), "enroll3": ("enroll3", 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="exported .onnx (default: the shipped model)")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"enrollment_threshold: skipped: shared data not found at {SHARED}")
        return 0
    from siamid.dataset import scan_dataset
    from siamid.pairs import Protocol
    from siamid.runtime import Embedder
    from siamid.scoring import score_model

    start = time.perf_counter()
    embedder = Embedder(args.model)
    seen = seen_in_training(args.model)
    if seen:
        print(seen_warning(embedder.model_id, seen))
    calibration = embedder.calibration
    single = calibration.threshold_for(1)
    thresholds = {column: calibration.threshold_for(size, "min")
                  for column, (_, size) in COLUMNS.items()}
    results, rows = {}, []
    for name in (n for n in REAL if (SHARED / n).is_dir()):
        score = score_model(embedder, scan_dataset(SHARED / name),
                            Protocol.parse_list(",".join(PROTOCOLS)))
        results[name] = {}
        for column, (protocol, _) in COLUMNS.items():
            r, thr = score.reports[protocol], thresholds[column]
            results[name][column] = {"fmr": float(np.mean(r.impostor < thr)),
                                     "fnmr": float(np.mean(r.genuine >= thr)),
                                     "n_impostor": len(r.impostor), "n_genuine": len(r.genuine)}
        rows.append([name, *[f"{100 * results[name][c]['fmr']:.2f}% / "
                             f"{100 * results[name][c]['fnmr']:.1f}%" for c in COLUMNS]])
    pooled = {}
    for p in COLUMNS:
        n_imp = sum(r[p]["n_impostor"] for r in results.values())
        n_gen = sum(r[p]["n_genuine"] for r in results.values())
        pooled[p] = {"fmr": sum(r[p]["fmr"] * r[p]["n_impostor"] for r in results.values()) / n_imp,
                     "fnmr": sum(r[p]["fnmr"] * r[p]["n_genuine"] for r in results.values()) / n_gen,
                     "n_impostor": n_imp, "n_genuine": n_gen}
    rows.append(["pooled", *[f"{100 * pooled[p]['fmr']:.2f}% / {100 * pooled[p]['fnmr']:.1f}% "
                             f"({pooled[p]['n_impostor']:,} / {pooled[p]['n_genuine']:,})"
                             for p in COLUMNS]])
    print(f"FMR / FNMR at the model's thresholds (single comparison {single:.4f}, 3-image "
          f"template {thresholds['enroll3']:.4f}; {calibration.describe()}), model "
          f"{embedder.model_id}; pooled counts impostor / genuine; "
          f"{time.perf_counter() - start:.0f} s")
    print_table(["database", *COLUMNS], rows)
    path = write_json("enrollment_threshold", {
        "machine": machine(), "model_id": embedder.model_id, "thresholds": thresholds,
        "threshold_fmr": calibration.target_fmr, "calibration": calibration.describe(), "databases": results, "pooled": pooled})
    print("written to", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
