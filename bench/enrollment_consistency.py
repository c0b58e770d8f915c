"""How often the enrollment check refuses a genuine finger, and lets three different fingers in.

``Gallery.enroll`` refuses images that are not captures of one finger: every image must come
within the enrollment threshold of another (``Calibration.enrollment_threshold``: the distance
where a fraction ``ENROLLMENT_FMR`` of single impostor comparisons match). For several such
fractions this measures, with a model's own signatures:

- genuine refusals: each finger's first 3 images enrolled, the fraction refused;
- different fingers accepted: 3 images of 3 different fingers (first impressions, drawn within
  one database), the fraction that would enroll as one finger;

on held-out synthetic fingers (``--data``, made with ``siamid synth`` when missing) and on the
real shared databases, reported apart. Prints a table; writes bench/results/enrollment_consistency.json.

    .venv/bin/python bench/enrollment_consistency.py [--model PATH] [--data data/calibration]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REAL, SHARED, machine, print_table, write_json  # noqa: E402

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


def _rates(databases: list[list[np.ndarray]], threshold: float, rng) -> dict:
    fingers = [f for db in databases for f in db]
    refused = sum(not _agree(f[:3], threshold) for f in fingers)
    mixed = []
    for _ in range(MIXED_DRAWS):
        db = databases[rng.integers(len(databases))]
        pick = rng.choice(len(db), 3, replace=False)
        mixed.append(_agree(np.stack([db[i][0] for i in pick]), threshold))
    return {"genuine_refused": refused / len(fingers), "n_fingers": len(fingers),
            "different_accepted": float(np.mean(mixed)), "n_draws": MIXED_DRAWS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="exported .onnx (default: the shipped model)")
    parser.add_argument("--data", type=Path, default=Path("data/calibration"),
                        help="held-out synthetic set (made with seed 1100, 240 x 8, if missing)")
    args = parser.parse_args()
    from siamid.calibration import ENROLLMENT_FMR
    from siamid.runtime import Embedder
    from siamid.synth import generate_dataset

    start = time.perf_counter()
    embedder = Embedder(args.model)
    generate_dataset(args.data, 240, 8, sensor="r503", seed=1100)
    sets = {"synthetic (held out)": [_groups(embedder, args.data)]}
    real = [SHARED / n for n in REAL if (SHARED / n).is_dir()]
    if real:
        sets["real (8 databases)"] = [_groups(embedder, p) for p in real]
    results, rows = {}, []
    for fmr in FMRS:
        threshold = embedder.calibration.enrollment_threshold(fmr)
        for name, databases in sets.items():
            r = _rates(databases, threshold, np.random.default_rng(0))
            results.setdefault(str(fmr), {"threshold": threshold})[name] = r
            rows.append([f"{100 * fmr:g}%" + (" (default)" if fmr == ENROLLMENT_FMR else ""),
                         f"{threshold:.4f}", name,
                         f"{100 * r['genuine_refused']:.1f}% of {r['n_fingers']}",
                         f"{100 * r['different_accepted']:.2f}% of {r['n_draws']}"])
    print(f"model {embedder.model_id}; enrollment threshold at each single-comparison FMR of the "
          f"model's calibration; {machine()}; {time.perf_counter() - start:.0f} s")
    print_table(["FMR", "threshold", "fingers", "genuine 3-image enrollments refused",
                 "3 different fingers accepted"], rows)
    path = write_json("enrollment_consistency", {
        "machine": machine(), "model_id": embedder.model_id, "default_fmr": ENROLLMENT_FMR,
        "results": results})
    print("written to", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
