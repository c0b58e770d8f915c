"""What the shipped threshold means on real fingers, for single images and 3-image templates.

The card's threshold is chosen at FMR 0.1% on synthetic single-image comparisons. A Gallery
compares a probe with the nearest of a template's K signatures (``min`` rule), so an impostor
gets K tries. This measures, on every real database, the FMR and FNMR at the card's threshold
under the all-pairs, enroll1 and enroll3 protocols, and pools the impostor attempts.

    .venv/bin/python bench/enrollment_threshold.py [--model PATH]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REAL, SHARED, machine, print_table, write_json  # noqa: E402

PROTOCOLS = ("all", "enroll1", "enroll3")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="exported .onnx (default: the shipped model)")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"enrollment_threshold: skipped: shared data not found at {SHARED}")
        return 0
    from siamid.dataset import scan_dataset
    from siamid.runtime import Embedder
    from siamid.scoring import score_model

    start = time.perf_counter()
    embedder = Embedder(args.model)
    thr = embedder.card.threshold
    results, rows = {}, []
    for name in (n for n in REAL if (SHARED / n).is_dir()):
        score = score_model(embedder, scan_dataset(SHARED / name), PROTOCOLS)
        results[name] = {p: {"fmr": float(np.mean(r.impostor < thr)),
                             "fnmr": float(np.mean(r.genuine >= thr)),
                             "n_impostor": len(r.impostor), "n_genuine": len(r.genuine)}
                         for p, r in score.reports.items()}
        rows.append([name, *[f"{100 * results[name][p]['fmr']:.2f}% / "
                             f"{100 * results[name][p]['fnmr']:.1f}%" for p in PROTOCOLS]])
    pooled = {}
    for p in PROTOCOLS:
        n_imp = sum(r[p]["n_impostor"] for r in results.values())
        n_gen = sum(r[p]["n_genuine"] for r in results.values())
        pooled[p] = {"fmr": sum(r[p]["fmr"] * r[p]["n_impostor"] for r in results.values()) / n_imp,
                     "fnmr": sum(r[p]["fnmr"] * r[p]["n_genuine"] for r in results.values()) / n_gen,
                     "n_impostor": n_imp, "n_genuine": n_gen}
    rows.append(["pooled", *[f"{100 * pooled[p]['fmr']:.2f}% / {100 * pooled[p]['fnmr']:.1f}% "
                             f"({pooled[p]['n_impostor']:,} / {pooled[p]['n_genuine']:,})"
                             for p in PROTOCOLS]])
    print(f"FMR / FNMR at the card threshold {thr:.4f} (chosen at FMR "
          f"{100 * embedder.card.threshold_fmr:.2f}% on synthetic prints), model "
          f"{embedder.model_id}; pooled counts impostor / genuine; {time.perf_counter() - start:.0f} s")
    print_table(["database", *PROTOCOLS], rows)
    path = write_json("enrollment_threshold", {
        "machine": machine(), "model_id": embedder.model_id, "threshold": thr,
        "threshold_fmr": embedder.card.threshold_fmr, "databases": results, "pooled": pooled})
    print("written to", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
