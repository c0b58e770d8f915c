"""How often the enrollment check refuses a genuine finger, and lets three different fingers in.

``Gallery.enroll`` refuses images that are not captures of one finger: every image must come
within the enrollment threshold of another (``Calibration.enrollment_threshold``: the distance
where a fraction ``ENROLLMENT_FMR`` of single impostor comparisons match). For several such
fractions this measures, with a model's own signatures:

- genuine refusals: each finger's first 3 images enrolled, the fraction refused;
- different fingers accepted: 3 images of 3 different fingers (first impressions, drawn within
  one database), the fraction that would enroll as one finger;

on held-out synthetic fingers (``--data``, made with ``siamid synth`` when missing) and on the
real shared databases, reported apart. With ``--lodo`` (a bench/leave_one_out.py ``--work``
folder) each real database is scored by the fold model that held it out, at that model's own
enrollment threshold; ``--model`` then scores the synthetic fingers only. Prints a table; writes
bench/results/<--json>.json.

    .venv/bin/python bench/enrollment_consistency.py [--model PATH] [--data data/calibration]
        [--lodo runs/lodo_pretrained_medium] [--json enrollment_consistency]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    REAL,
    SHARED,
    fold_models,
    machine,
    print_table,
    seen_in_training,
    seen_warning,
    write_json,
)

FMRS = (0.01, 0.02, 0.05, 0.1)
MIXED_DRAWS = 2000


def _agree(signatures: np.ndarray, threshold: float) -> bool:
    """Whether these enrollment signatures pass the Gallery's agreement rule."""
    from siamid.runtime import unmatched_images

    d = np.linalg.norm(signatures[:, None] - signatures[None], axis=2)
    return not unmatched_images(d, threshold)


def _groups(embedder, folder: Path) -> list[list[np.ndarray]]:
    """Per database: each finger's signatures, takes in order."""
    from siamid.dataset import scan_dataset
    from siamid.scoring import embed_dataset

    emb, ids, _ = embed_dataset(embedder, scan_dataset(folder))
    rows: dict[str, list[int]] = {}
    for r, sample_id in enumerate(ids):
        rows.setdefault(sample_id.identity, []).append(r)
    return [emb[r] for r in rows.values() if len(r) >= 3]


def _rates(databases: list[list[np.ndarray]], thresholds: list[float], rng) -> dict:
    """``thresholds``: one per database (its model's enrollment threshold)."""
    refused = sum(not _agree(f[:3], t) for db, t in zip(databases, thresholds) for f in db)
    n_fingers = sum(len(db) for db in databases)
    mixed = []
    for _ in range(MIXED_DRAWS):
        k = rng.integers(len(databases))
        db = databases[k]
        pick = rng.choice(len(db), 3, replace=False)
        mixed.append(_agree(np.stack([db[i][0] for i in pick]), thresholds[k]))
    return {"genuine_refused": refused / n_fingers, "n_fingers": n_fingers,
            "different_accepted": float(np.mean(mixed)), "n_draws": MIXED_DRAWS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="exported .onnx (default: the shipped model)")
    parser.add_argument("--data", type=Path, default=Path("data/calibration"),
                        help="held-out synthetic set (made with seed 1100, 240 x 8, if missing)")
    parser.add_argument("--lodo", default=None,
                        help="a bench/leave_one_out.py --work folder: each real database scored "
                        "by the fold model that held it out (default: --model scores them too)")
    parser.add_argument("--json", default="enrollment_consistency", help="bench/results/<name>.json")
    args = parser.parse_args()
    from siamid.calibration import ENROLLMENT_FMR
    from siamid.runtime import Embedder
    from siamid.synth import generate_dataset

    start = time.perf_counter()
    embedder = Embedder(args.model)
    generate_dataset(args.data, 240, 8, sensor="r503", seed=1100)
    # {set: [(database's fingers, the model that scores it)]}
    sets = {"synthetic (held out)": [(_groups(embedder, args.data), embedder)]}
    real = [n for n in REAL if (SHARED / n).is_dir()]
    folds = {n: Embedder(m) for n, m in fold_models(args.lodo, real).items()} if args.lodo else {}
    seen = [] if folds else seen_in_training(args.model)
    if real and seen:
        print(seen_warning(embedder.model_id, seen))
    if real:
        name = f"real ({len(real)} databases" + (", leave-one-out folds)" if folds else ")")
        sets[name] = [(_groups(folds.get(n, embedder), SHARED / n), folds.get(n, embedder))
                      for n in real]
    results, rows = {}, []
    for fmr in FMRS:
        threshold = embedder.calibration.enrollment_threshold(fmr)
        for name, scored in sets.items():
            thresholds = [e.calibration.enrollment_threshold(fmr) for _, e in scored]
            r = _rates([g for g, _ in scored], thresholds, np.random.default_rng(0))
            r["thresholds"] = thresholds
            results.setdefault(str(fmr), {"threshold": threshold})[name] = r
            low, high = min(thresholds), max(thresholds)
            rows.append([f"{100 * fmr:g}%" + (" (default)" if fmr == ENROLLMENT_FMR else ""),
                         f"{low:.4f}" if low == high else f"{low:.4f}-{high:.4f}", name,
                         f"{100 * r['genuine_refused']:.1f}% of {r['n_fingers']}",
                         f"{100 * r['different_accepted']:.2f}% of {r['n_draws']}"])
    by = f", real databases by the folds of {args.lodo}" if folds else ""
    print(f"model {embedder.model_id}{by}; enrollment threshold at each single-comparison FMR of "
          f"the scoring model's calibration (a range: one per fold); {machine()}; "
          f"{time.perf_counter() - start:.0f} s")
    print_table(["FMR", "threshold", "fingers", "genuine 3-image enrollments refused",
                 "3 different fingers accepted"], rows)
    path = write_json(args.json, {
        "machine": machine(), "model_id": embedder.model_id, "real_databases": real,
        "fold_model_ids": {n: e.model_id for n, e in folds.items()},
        "default_fmr": ENROLLMENT_FMR, "seconds": time.perf_counter() - start,
        "command": "bench/enrollment_consistency.py " + " ".join(sys.argv[1:]),
        "results": results})
    print("written to", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
