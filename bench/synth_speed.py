"""Benchmark of the synthetic fingerprint generator.

Measures, each as the median of ``--runs`` runs: master-print creation (seconds per master, on
the r503 canvas), impression rendering alone (impressions/s on one core), one finger end to end
in one process (master + 8 impressions), and ``generate_dataset`` with PNG writing on
``--workers`` processes (impressions/s with masters amortised, 8 impressions per master).
Prints a table and writes bench/results/synth_speed.json.

    .venv/bin/python bench/synth_speed.py [--runs 3] [--workers 2] [--fingers 16]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from siamid.synth import GENERATOR_VERSION, generate_dataset, generate_finger, make_master
from siamid.synth import render_impression
from siamid.synth.writer import master_size_for

RESULTS = Path(__file__).resolve().parent / "results" / "synth_speed.json"
IMPRESSIONS_PER_MASTER = 8


def _median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fingers", type=int, default=16, help="fingers per dataset run")
    parser.add_argument("--masters", type=int, default=8, help="masters per timing run")
    parser.add_argument("--impressions", type=int, default=100, help="impressions per run")
    args = parser.parse_args()

    sensor = "r503"
    size = master_size_for(sensor)
    rng = np.random.default_rng(0)
    masters = [make_master(rng, size=size) for _ in range(4)]  # warm caches (Gabor bank)

    t_master = _median_time(
        lambda: [make_master(rng, size=size) for _ in range(args.masters)], args.runs
    ) / args.masters
    t_impression = _median_time(
        lambda: [
            render_impression(masters[i % len(masters)], rng, sensor)
            for i in range(args.impressions)
        ],
        args.runs,
    ) / args.impressions
    t_finger = _median_time(
        lambda: generate_finger(int(rng.integers(1 << 30)), IMPRESSIONS_PER_MASTER, sensor),
        args.runs,
    )

    def dataset_run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            generate_dataset(
                tmp, args.fingers, IMPRESSIONS_PER_MASTER, sensor, seed=0, workers=args.workers
            )

    t_dataset = _median_time(dataset_run, args.runs)
    n_images = args.fingers * IMPRESSIONS_PER_MASTER

    results = {
        "generator_version": GENERATOR_VERSION,
        "sensor": sensor,
        "master_size": size,
        "runs": args.runs,
        "master_s": t_master,
        "impression_ms": t_impression * 1e3,
        "impressions_per_s_one_core_render_only": 1.0 / t_impression,
        "finger_s_one_core": t_finger,
        "impressions_per_s_one_core_amortised": IMPRESSIONS_PER_MASTER / t_finger,
        "dataset_workers": args.workers,
        "dataset_fingers": args.fingers,
        "dataset_s": t_dataset,
        "impressions_per_s_dataset": n_images / t_dataset,
        "impressions_per_master": IMPRESSIONS_PER_MASTER,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    rows = [
        ("master print (320x320)", f"{t_master * 1e3:.0f} ms"),
        ("impression (192x192), render only", f"{t_impression * 1e3:.1f} ms"),
        ("  = impressions/s, 1 core, render only", f"{1.0 / t_impression:.0f}"),
        (f"finger: master + {IMPRESSIONS_PER_MASTER} impressions, 1 core", f"{t_finger:.2f} s"),
        ("  = impressions/s, 1 core, amortised", f"{IMPRESSIONS_PER_MASTER / t_finger:.1f}"),
        (
            f"generate_dataset {args.fingers}x{IMPRESSIONS_PER_MASTER} PNGs, "
            f"{args.workers} workers",
            f"{t_dataset:.2f} s",
        ),
        ("  = impressions/s, with PNG writing", f"{n_images / t_dataset:.1f}"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"synthetic fingerprints, r503, median of {args.runs} runs")
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>10}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
