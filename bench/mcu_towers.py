"""Microcontroller towers side by side: what each costs on the device and how well it matches.

Scores exported models (it does not train them): each ``label=MODEL.onnx`` given is an fp32
file, scored with its int8 sibling (``MODEL.int8.onnx`` beside it) where there is one. For each
file:

- its cost, as ``siamid profile`` counts it: trainable parameters (the card's), weight values
  and bytes as stored (int8 file: 1 byte per weight, 4 per int32 bias), MACs at its own input;
- the synthetic test split's EER (FVC protocol and all pairs, with counts) on the prints of the
  run's held-out subjects (``--synthetic`` and ``--splits``: both recipes split ``data/pretrain``
  the same way), reported apart from the real databases;
- the real databases scored exactly as bench/accuracy.py scores a model (``score_database``,
  ``macro``): full and R503 view, FVC protocol and all pairs (enroll1/enroll3 in the JSON), macro
  EER over the 8 real databases with summed counts; the SFinGe databases apart, in the JSON;
- the int8 file's EER minus the fp32 file's, in points;

and, with ``--draws`` > 0, bench/paired_bootstrap.py's paired bootstrap of every fp32 file
against the first model's, and of every int8 file against the first model's int8 file (full
view, all pairs; the int8 files are what a microcontroller runs). Prints the tables and writes
``bench/results/mcu_towers.json``.

    .venv/bin/python bench/mcu_towers.py --models mltk=runs/pretrained_mltk/export/ID.onnx,\\
        micro=runs/pretrained_micro/export/ID.onnx [--synthetic data/pretrain] \\
        [--splits runs/pretrained_micro/splits.json] [--draws 200] [--workers 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.accuracy import macro, pct, score_database  # noqa: E402
from bench.common import (REAL, ROOT, SHARED, SYNTHETIC, machine, parse_models,  # noqa: E402
                          print_table, seen_in_training, seen_warning, write_json)

PROTOCOLS = ("fvc", "all")
#: The real-data columns of the table: (view, protocol).
COLUMNS = [("full", "fvc"), ("full", "all"), ("r503", "fvc"), ("r503", "all")]


def with_int8(models: dict[str, str]) -> dict[str, str]:
    """Each fp32 model and, after it, its int8 sibling (``<label>-int8``) where one exists."""
    out: dict[str, str] = {}
    for label, path in models.items():
        out[label] = path
        sibling = Path(path).with_suffix(".int8.onnx")
        if sibling.is_file():
            out[f"{label}-int8"] = str(sibling)
    return out


def cost(path: str) -> dict:
    """What ``siamid profile`` reports of the file, and the card's trainable parameters."""
    from siamid.profile import profile_model
    from siamid.runtime import read_card

    profile = profile_model(path)
    return {"architecture": profile.architecture, "quantization": profile.quantization,
            "input": list(profile.input.shape), "signature": list(profile.output.shape),
            "parameters": read_card(path).metrics.get("parameters"),
            "weights_stored": profile.parameters, "weight_bytes": profile.parameter_bytes,
            "weight_bytes_by_dtype": profile.parameter_bytes_by_dtype, "macs": profile.macs,
            "latency_ms_78mhz": profile.latency_ms()}


def synthetic_test(models: dict[str, str], data: Path, splits: Path) -> dict:
    """{label: {protocol: summary}} on the held-out subjects of the synthetic training set."""
    from siamid.dataset import load_splits, scan_dataset
    from siamid.pairs import Protocol
    from siamid.runtime import Embedder
    from siamid.scoring import score_model

    test = load_splits(splits, scan_dataset(data)).test
    protocols = Protocol.parse_list(",".join(PROTOCOLS))
    out = {}
    for label, path in models.items():
        score = score_model(Embedder(path), test, protocols)
        out[label] = {str(p): score.reports[str(p)].summary() for p in protocols}
    return out


def points(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None else f"{100 * (a - b):+.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True,
                        help="comma-separated label=path.onnx (fp32; the .int8.onnx beside it is "
                             "scored too); the first is the bootstrap's reference")
    parser.add_argument("--synthetic", default=str(ROOT / "data" / "pretrain"),
                        help="the synthetic set the models were trained on")
    parser.add_argument("--splits", default=str(ROOT / "runs" / "pretrained_micro" / "splits.json"),
                        help="the training run's splits.json (its test subjects are scored)")
    parser.add_argument("--draws", type=int, default=200,
                        help="paired bootstrap draws (0: none)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", default="mcu_towers",
                        help="results name: bench/results/<name>.json (default: mcu_towers)")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"mcu_towers: skipped: shared data not found at {SHARED}")
        return 0
    fp32 = parse_models(args.models)
    models = with_int8(fp32)
    for label, path in models.items():
        seen = seen_in_training(path)
        if seen:
            print(seen_warning(label, seen))
    start = time.perf_counter()
    costs = {label: cost(path) for label, path in models.items()}
    synthetic = synthetic_test(models, Path(args.synthetic), Path(args.splits))
    names = [n for n in REAL if (SHARED / n).is_dir()]
    sfinge = [n for n in SYNTHETIC if (SHARED / n).is_dir()]
    with ProcessPoolExecutor(args.workers) as pool:
        results = dict(zip(names + sfinge, pool.map(
            score_database, [(n, models, ()) for n in names + sfinge])))
    protocols = ("fvc", "all", "enroll1", "enroll3")
    real = {view: {m: {p: macro(results, names, view, m, p) for p in protocols} for m in models}
            for view, _ in COLUMNS}
    real_sfinge = {view: {m: {p: macro(results, sfinge, view, m, p) for p in protocols}
                          for m in models} for view, _ in COLUMNS} if sfinge else {}

    rows = []
    for m in models:
        c, s = costs[m], synthetic[m]
        rows.append([m, c["architecture"], c["quantization"], "x".join(map(str, c["input"][1:])),
                     f"{c['parameters']:,}", f"{c['weight_bytes']:,}", f"{c['macs'] / 1e6:.2f} M",
                     pct(s["fvc"]["eer"]), pct(s["all"]["eer"]),
                     *[pct(real[v][m][p]["eer"]) for v, p in COLUMNS]])
    first = next(iter(models))
    counts = {f"{v} {p}": f"{real[v][first][p]['n_genuine']:,}/{real[v][first][p]['n_impostor']:,}"
              for v, p in COLUMNS}
    counts.update({f"synthetic {p}": f"{synthetic[first][p]['n_genuine']:,}/"
                                     f"{synthetic[first][p]['n_impostor']:,}" for p in PROTOCOLS})
    print(f"EER in percent; real = macro over {len(names)} databases (bench/accuracy.py's "
          f"comparisons), synthetic = the test split of {args.synthetic}; weight bytes as "
          f"stored; {time.perf_counter() - start:.0f} s so far")
    print_table(["model", "tower", "format", "input", "parameters", "weight bytes", "MACs",
                 "synth fvc", "synth all", *[f"real {v} {p}" for v, p in COLUMNS]], rows)
    print("comparisons (genuine/impostor, the same for every model): "
          + "; ".join(f"{k} {v}" for k, v in counts.items()))

    drift = {}
    for m in fp32:
        q = f"{m}-int8"
        if q in models:
            drift[m] = {"synthetic": {p: synthetic[q][p]["eer"] - synthetic[m][p]["eer"]
                                      for p in PROTOCOLS},
                        "real": {f"{v} {p}": real[v][q][p]["eer"] - real[v][m][p]["eer"]
                                 for v, p in COLUMNS}}
    if drift:
        print("\nint8 EER minus fp32 EER, in points")
        print_table(["model", "synth fvc", "synth all", *[f"real {v} {p}" for v, p in COLUMNS]],
                    [[m, *[points(synthetic[f"{m}-int8"][p]["eer"], synthetic[m][p]["eer"])
                           for p in PROTOCOLS],
                      *[points(real[v][f"{m}-int8"][p]["eer"], real[v][m][p]["eer"])
                        for v, p in COLUMNS]] for m in drift])

    bootstrap = {}
    int8 = {m: models[f"{m}-int8"] for m in fp32 if f"{m}-int8" in models}
    for kind, group in (("fp32", fp32), ("int8", int8)):
        if args.draws > 0 and len(group) > 1:
            from bench.paired_bootstrap import HEADER, compare, database_scores

            rows, bootstrap[kind] = compare(database_scores(group, names), names, args.draws,
                                            seed=0)
            print(f"\npaired bootstrap, {kind} files, full view, all pairs, {args.draws} draws "
                  f"of the fingers of every real database; reference {next(iter(group))}")
            print_table(HEADER, rows)

    print(f"\n{time.perf_counter() - start:.0f} s")
    path = write_json(args.json, {
        "machine": machine(), "models": models, "costs": costs,
        "synthetic_test": {"data": args.synthetic, "splits": args.splits, "eer": synthetic},
        "real_databases": names, "macro": real, "macro_sfinge": real_sfinge,
        "int8_minus_fp32": drift, "paired_bootstrap": bootstrap, "draws": args.draws,
        "databases": results})
    print("written to", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
