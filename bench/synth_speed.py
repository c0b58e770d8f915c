"""Benchmark of the synthetic fingerprint generator, and how it scales with worker processes.

Measures, each as the median of ``--runs`` runs, all single-threaded as a pool worker runs:
master-print creation (seconds per master, on the r503 canvas), impression rendering alone
(impressions/s), one finger end to end (master + 8 impressions). Then ``generate_dataset`` with
PNG writing (8 impressions per finger) at each of ``--workers`` worker counts, on the same
fingers: impressions/s, the speedup against 1 worker measured in the same run (1 is always
measured), CPU milliseconds per impression (all processes), and the most OS threads seen in
one worker process (sampled through /proc on Linux; "-" for 1 worker, which runs in-process).
Alongside, the same worker counts run pure-Python busy loops: their speedup is the ceiling the
machine allows at that moment, so that a shared machine's contention is not read as the
generator failing to scale. Runs of the different worker counts alternate, so a machine whose load drifts
affects them alike.

``--baseline`` also measures every worker count as the generator ran before its workers were
made single-threaded (each worker's BLAS pool sized to every core), to show what that costs.
Only a machine with as many cores as workers can show the full scaling: on 2 cores, 1 vs 2.

    .venv/bin/python bench/synth_speed.py [--runs 3] [--workers 1,2] [--fingers 16] [--baseline]
    .venv/bin/python bench/synth_speed.py --workers 1,2,4,8,16 --baseline   # on 16 cores

Prints a table and writes bench/results/synth_speed.json.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table, write_json  # noqa: E402

from siamid.parallel import numeric_thread_counts, single_threaded_numerics  # noqa: E402
from siamid.synth import GENERATOR_VERSION, generate_dataset, generate_finger  # noqa: E402
from siamid.synth import make_master, render_impression  # noqa: E402
from siamid.synth import writer  # noqa: E402
from siamid.synth.writer import master_size_for  # noqa: E402

IMPRESSIONS_PER_MASTER = 8
SENSOR = "r503"


def _median_time(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _worker_counts(spec: str) -> list[int]:
    """``"1,2,4"`` -> [1, 2, 4]: sorted, without repeats, 1 always included (the reference)."""
    try:
        counts = {int(x) for x in spec.split(",") if x.strip()}
    except ValueError:
        raise SystemExit(f"--workers: {spec!r} is not a comma-separated list of integers") from None
    if not counts or min(counts) < 1:
        raise SystemExit(f"--workers: {spec!r}: give worker counts of 1 or more, e.g. 1,2,4")
    return sorted(counts | {1})


def _children(pid: int) -> list[int]:
    """Child process ids of ``pid`` (Linux /proc); empty where the kernel does not list them."""
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            kids += [int(x) for x in task.read_text().split()]
    return kids


@contextlib.contextmanager
def _max_worker_threads() -> Iterator[list[int]]:
    """Samples, every 20 ms, the OS threads of each child process; yields [max seen] (0: none)."""
    seen = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            for kid in _children(os.getpid()):
                with contextlib.suppress(OSError):
                    seen[0] = max(seen[0], len(os.listdir(f"/proc/{kid}/task")))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield seen
    finally:
        stop.set()
        sampler.join()


def _busy_loop(_: object) -> None:
    """About 0.1 s of pure-Python arithmetic: no memory traffic, no libraries, no I/O."""
    total = 0
    for i in range(3_000_000):
        total += i


def _ceiling_run(tasks: int, workers: int) -> float:
    """Wall seconds for ``tasks`` busy loops on ``workers`` processes.

    Their speedup is what the machine can give at that worker count right now: on a shared
    machine, other people's jobs lower it, and the generator cannot beat it.
    """
    start = time.perf_counter()
    with writer._pool_context().Pool(workers) as pool:
        pool.map(_busy_loop, range(tasks), chunksize=1)
    return time.perf_counter() - start


def _cpu_seconds() -> float:
    """CPU time of this process and its reaped children (pool workers, once the pool closed)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


@contextlib.contextmanager
def _as_before_the_fix() -> Iterator[None]:
    """generate_dataset as it ran before: numeric libraries left at their all-cores defaults."""
    with mock.patch.object(writer, "single_threaded_numerics", contextlib.nullcontext), \
            mock.patch.object(writer, "limit_numeric_threads", lambda: None):
        yield


def _dataset_run(fingers: int, workers: int, baseline: bool) -> dict[str, float]:
    """One generate_dataset run: wall seconds, CPU seconds, most threads in one worker."""
    mode = _as_before_the_fix() if baseline else contextlib.nullcontext()
    with tempfile.TemporaryDirectory() as tmp, mode, _max_worker_threads() as threads:
        cpu = _cpu_seconds()
        start = time.perf_counter()
        generate_dataset(tmp, fingers, IMPRESSIONS_PER_MASTER, SENSOR, seed=0, workers=workers)
        wall = time.perf_counter() - start
        cpu = _cpu_seconds() - cpu
    # workers=1 runs in this process: no worker to count.
    return {"wall_s": wall, "cpu_s": cpu, "max_worker_threads": threads[0] if workers > 1 else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--workers", default=f"1,{os.cpu_count() or 1}",
        help="comma-separated worker counts for the scaling table, e.g. 1,2,4,8,16 "
        "(default: 1 and every core)",
    )
    parser.add_argument(
        "--fingers", type=int, default=0,
        help="fingers per dataset run, the same at every worker count "
        "(default: 8 per worker at the largest count, at least 16)",
    )
    parser.add_argument("--masters", type=int, default=8, help="masters per timing run")
    parser.add_argument("--impressions", type=int, default=100, help="impressions per run")
    parser.add_argument(
        "--baseline", action="store_true",
        help="also measure each worker count with all-cores BLAS pools (the old behaviour)",
    )
    args = parser.parse_args()
    counts = _worker_counts(args.workers)
    fingers = args.fingers or max(16, 8 * counts[-1])

    size = master_size_for(SENSOR)
    rng = np.random.default_rng(0)
    with single_threaded_numerics():
        masters = [make_master(rng, size=size) for _ in range(4)]  # warm caches (Gabor bank)
        t_master = _median_time(
            lambda: [make_master(rng, size=size) for _ in range(args.masters)], args.runs
        ) / args.masters
        t_impression = _median_time(
            lambda: [
                render_impression(masters[i % len(masters)], rng, SENSOR)
                for i in range(args.impressions)
            ],
            args.runs,
        ) / args.impressions
        t_finger = _median_time(
            lambda: generate_finger(int(rng.integers(1 << 30)), IMPRESSIONS_PER_MASTER, SENSOR),
            args.runs,
        )

    modes = [False, True] if args.baseline else [False]
    samples: dict[tuple[bool, int], list[dict[str, float]]] = {
        (b, n): [] for b in modes for n in counts
    }
    ceiling: dict[int, list[float]] = {n: [] for n in counts}
    for _ in range(args.runs):
        for key in samples:
            samples[key].append(_dataset_run(fingers, key[1], key[0]))
        for n in counts:
            ceiling[n].append(_ceiling_run(2 * counts[-1], n))

    n_images = fingers * IMPRESSIONS_PER_MASTER
    scaling = []
    for baseline, n in samples:
        runs = samples[(baseline, n)]
        wall = statistics.median(r["wall_s"] for r in runs)
        one = statistics.median(r["wall_s"] for r in samples[(baseline, 1)])
        scaling.append({
            "single_threaded_workers": not baseline,
            "workers": n,
            "wall_s": wall,
            "impressions_per_s": n_images / wall,
            "speedup_vs_1_worker": one / wall,
            "cpu_ms_per_impression": 1e3 * statistics.median(r["cpu_s"] for r in runs) / n_images,
            "max_threads_per_worker": max(int(r["max_worker_threads"]) for r in runs),
            "machine_ceiling_speedup": statistics.median(ceiling[1]) / statistics.median(ceiling[n]),
        })
    fixed = {row["workers"]: row for row in scaling if row["single_threaded_workers"]}
    if args.baseline:
        for row in scaling:
            if not row["single_threaded_workers"]:
                fixed[row["workers"]]["speedup_vs_all_core_blas"] = (
                    row["wall_s"] / fixed[row["workers"]]["wall_s"]
                )

    top = fixed[counts[-1]]
    results = {
        "generator_version": GENERATOR_VERSION,
        "sensor": SENSOR,
        "master_size": size,
        "runs": args.runs,
        "master_s": t_master,
        "impression_ms": t_impression * 1e3,
        "impressions_per_s_one_core_render_only": 1.0 / t_impression,
        "finger_s_one_core": t_finger,
        "impressions_per_s_one_core_amortised": IMPRESSIONS_PER_MASTER / t_finger,
        "dataset_workers": counts[-1],
        "dataset_fingers": fingers,
        "dataset_s": top["wall_s"],
        "impressions_per_s_dataset": top["impressions_per_s"],
        "speedup_vs_1_worker": top["speedup_vs_1_worker"],
        "impressions_per_master": IMPRESSIONS_PER_MASTER,
        "scaling": scaling,
        "parent_numeric_threads": numeric_thread_counts(),
        "cpu_count": os.cpu_count(),
        "machine": machine(),
    }

    print(f"synthetic fingerprints, r503, median of {args.runs} runs, {machine()}")
    print_table(["single-threaded, as one worker", "time", "impressions/s"], [
        [f"master print ({size}x{size})", f"{t_master * 1e3:.0f} ms", ""],
        ["impression (192x192), render only", f"{t_impression * 1e3:.1f} ms",
         f"{1.0 / t_impression:.0f}"],
        [f"finger: master + {IMPRESSIONS_PER_MASTER} impressions", f"{t_finger:.2f} s",
         f"{IMPRESSIONS_PER_MASTER / t_finger:.1f}"],
    ])
    print(f"\ngenerate_dataset, {fingers} fingers x {IMPRESSIONS_PER_MASTER} impressions "
          f"= {n_images} PNGs per run")
    header = ["workers", "BLAS threads/worker", "impressions/s", "speedup vs 1",
              "machine ceiling", "CPU ms/impression", "max OS threads/worker"]
    if args.baseline:
        header.append("gain over all-core BLAS")
    rows = []
    for row in scaling:
        line = [
            str(row["workers"]),
            "1" if row["single_threaded_workers"] else "all cores",
            f"{row['impressions_per_s']:.1f}",
            f"{row['speedup_vs_1_worker']:.2f}x",
            f"{row['machine_ceiling_speedup']:.2f}x",
            f"{row['cpu_ms_per_impression']:.1f}",
            str(row["max_threads_per_worker"] or "-"),
        ]
        if args.baseline:
            gain = row.get("speedup_vs_all_core_blas")
            line.append(f"{gain:.2f}x" if gain else "")
        rows.append(line)
    print_table(header, rows)
    print("machine ceiling: speedup of pure-Python busy loops at that worker count, measured "
          "alongside; below the worker count, other jobs share the cores")
    if counts[-1] > (os.cpu_count() or 1):
        print(f"note: {counts[-1]} workers on {os.cpu_count()} cores cannot scale further")
    print(f"wrote {write_json('synth_speed', results)}")


if __name__ == "__main__":
    main()
