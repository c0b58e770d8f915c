"""Fine-tuning on every real finger, measured leave one database out (LODO).

A model fine-tuned on all 86 real fingers (configs/finetune_all_real.toml) leaves no real finger
to test it on. Its real-data numbers come from running the same recipe once per real database D:
fine-tune the synthetic-pretrained run (``--pretrained``, made by configs/pretrained_medium.toml) on the
other 7 real databases (the config's roots replaced, as bench/pretraining_gain.py does), export
it, and score D with it exactly as bench/accuracy.py scores a database (``score_database``: views
``full`` and ``r503``, protocols fvc / all / enroll1 / enroll3). Each database is thus scored by
the one model that never saw it; the macro over the 8 estimates the recipe on unseen databases.
The synthetic-only model (the export of ``--pretrained``, or ``--synthetic-model``) is scored on
the same comparisons.

Also reported: FMR and FNMR at each model's card threshold (calibrated at export on its own
validation split: real fingers of the 7 training databases for a fold, synthetic fingers for the
synthetic-only model), pooled over the databases with counts; the paired bootstrap over fingers
of bench/paired_bootstrap.py (LODO macro all-pairs EER minus synthetic-only, full view); and per
fold the validation FVC EER of the fine-tuned export against the synthetic-only model on the same
validation split, so that a fold whose fine-tune got worse is visible.

Folds run one at a time (a line per fold on stderr); about 10 minutes each on 2 cores for the
medium tower (2-3 for small_pool), seconds on a GPU (scripts/gpu_scale.py trains them there). Runs and
exports are kept under ``--work`` (default runs/leave_one_out) and reused when run again.
Prints two tables, writes bench/results/leave_one_out.json.

    .venv/bin/python bench/leave_one_out.py [--pretrained runs/pretrained_medium] [--synthetic-model PATH]
        [--config configs/finetune_all_real.toml] [--work runs/leave_one_out] [--draws 200]
        [--workers 2] [--json leave_one_out]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.accuracy import PROTOCOLS, macro, pct, score_database  # noqa: E402
from bench.common import (REAL, ROOT, SHARED, fold_folder, machine, print_table,  # noqa: E402
                          write_json)
from bench.paired_bootstrap import HEADER, compare, database_scores  # noqa: E402
from bench.pretraining_gain import fold_config, siamid  # noqa: E402

SYNTHETIC, TUNED = "synthetic only", "LODO fine-tuned"


def folds(names: list[str]) -> dict[str, list[str]]:
    """{held-out database: the databases its model trains on (every other one)}."""
    return {held: [n for n in names if n != held] for held in names}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def export(run: Path, out: Path) -> Path:
    """The fp32 export of a finished run (made once: reused when ``out`` already holds it)."""
    if not any(out.glob("*.onnx")):
        siamid("export", str(run), "--out", str(out), "--no-int8")
    return next(out.glob("*.onnx"))


def short_names(names: list[str]) -> list[str]:
    """Column headings for the databases: "00 DB1" for fvc2000/DB1_B."""
    return [n.replace("fvc20", "").replace("/", " ").replace("_B", "") for n in names]


def score_held_out(models: dict[str, dict[str, str]], names: list[str], workers: int,
                   draws: int, seed: int) -> tuple[dict, dict, list, dict]:
    """Score each database ``names`` with each labelled model's file for it ({label: {database:
    file}}), as bench/accuracy.py scores a database: (per-database results, the macro summary
    {view: {label: {protocol: ...}}}, the paired bootstrap's table rows and JSON entries; the
    first label is the bootstrap's reference)."""
    log(f"scoring {len(names)} held-out databases")
    with ProcessPoolExecutor(workers) as pool:
        results = dict(zip(names, pool.map(score_database, [
            (n, {label: files[n] for label, files in models.items()}, ()) for n in names])))
    summary = {view: {m: {p: macro(results, names, view, m, p) for p in PROTOCOLS}
                      for m in models} for view in ("full", "r503")}
    log(f"paired bootstrap, {draws} draws")
    boot_rows, boot = compare(database_scores(models, names), names, draws, seed)
    return results, summary, boot_rows, boot


def bootstrap_record(draws: int, seed: int, boot: dict) -> dict:
    """The results JSON's record of ``score_held_out``'s bootstrap."""
    return {"draws": draws, "seed": seed, "view": "full", "protocol": "all", "models": boot}


def eer_table(results: dict, summary: dict, names: list[str]) -> list[list[str]]:
    """Rows view, protocol, model, the EER of each database, the macro EER and the counts."""
    rows = []
    for view, by_model in summary.items():
        for p in PROTOCOLS:
            for m, s in by_model.items():
                rows.append([view, p, m, *[pct(results[n][view][m][p]["eer"]) for n in names],
                             pct(s[p]["eer"]), f"{s[p]['n_genuine']}/{s[p]['n_impostor']}"])
    return rows


def train_fold(held: str, train: list[str], pretrained: Path, base: Path, work: Path) -> Path:
    """Fine-tune ``pretrained`` on ``train`` with the recipe ``base``; its fp32 export."""
    fold = fold_folder(work, held)
    run = fold / "run"
    if not (run / "report.json").is_file():
        if fold.exists():  # an interrupted fold: start it over
            shutil.rmtree(fold)
        fold.mkdir(parents=True)
        config = fold_config(train, str(pretrained), fold / "config.toml", base)
        siamid("train", "--config", str(config), "--run", str(run))
    return export(run, fold / "model")


def validation_check(fold: Path, model: Path, synthetic: Path) -> dict:
    """The fold's validation split (fingers of its training databases): FVC EER of the
    fine-tuned export (its card) and of the synthetic-only model, and the training curve."""
    from siamid.config import load_config
    from siamid.dataset import load_splits
    from siamid.pairs import Protocol
    from siamid.runtime import Embedder
    from siamid.scoring import score_model
    from siamid.training import load_data

    run = fold / "run"
    splits = load_splits(run / "splits.json", load_data(load_config(run / "config.toml")))
    before = score_model(Embedder(synthetic), splits.val, (Protocol("fvc"),)).reports["fvc"]
    tuned = Embedder(model).card.metrics["val_eer_fvc"]
    curve = [json.loads(line)["val_eer"] for line in
             (run / "metrics.jsonl").read_text().splitlines()]
    return {"val_eer_fvc_synthetic": before.eer, "val_eer_fvc_tuned": tuned,
            "n_genuine": before.n_genuine, "n_impostor": before.n_impostor,
            "n_fingers": len(splits.val.identities), "epochs": len(curve),
            "best_epoch": 1 + curve.index(min(curve)), "val_eer_by_epoch": curve,
            "worse": tuned > before.eer}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", default="runs/pretrained_medium",
                        help="synthetic-pretrained run folder (configs/pretrained_medium.toml)")
    parser.add_argument("--synthetic-model", default=None,
                        help="synthetic-only model to compare with (default: export --pretrained; "
                             "siamid/models/default.onnx is the shipped one)")
    parser.add_argument("--config", default="configs/finetune_all_real.toml",
                        help="the recipe; its [data] root is replaced per fold")
    parser.add_argument("--work", default="runs/leave_one_out",
                        help="folder for the fold runs and exports (reused when run again)")
    parser.add_argument("--draws", type=int, default=200, help="bootstrap draws (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--workers", type=int, default=2, help="databases scored in parallel")
    parser.add_argument("--json", default="leave_one_out",
                        help="results name: bench/results/<name>.json (default: leave_one_out)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not SHARED.is_dir():
        print(f"leave_one_out: skipped: shared data not found at {SHARED}")
        return 0
    pretrained = (ROOT / args.pretrained).resolve()
    if not (pretrained / "best.pt").is_file():
        sys.exit(f"{pretrained}/best.pt missing: train its recipe first (configs/pretrained_medium.toml)")
    base, work = (ROOT / args.config).resolve(), (ROOT / args.work).resolve()
    names = [n for n in REAL if (SHARED / n).is_dir()]
    start = time.perf_counter()
    synthetic = (Path(args.synthetic_model).resolve() if args.synthetic_model
                 else export(pretrained, work / "synthetic"))
    models, checks = {}, {}
    for k, (held, train) in enumerate(folds(names).items(), start=1):
        t0 = time.perf_counter()
        log(f"fold {k}/{len(names)}: hold out {held}, fine-tune on {len(train)} databases")
        models[held] = train_fold(held, train, pretrained, base, work)
        checks[held] = validation_check(fold_folder(work, held), models[held], synthetic)
        c = checks[held]
        log(f"fold {k}/{len(names)}: {held} done in {time.perf_counter() - t0:.0f} s; validation "
            f"FVC EER {pct(c['val_eer_fvc_synthetic'])} synthetic only -> "
            f"{pct(c['val_eer_fvc_tuned'])} fine-tuned (best epoch {c['best_epoch']}/"
            f"{c['epochs']}){' WORSE' if c['worse'] else ''}")
    held_out = score_held_out({SYNTHETIC: {n: str(synthetic) for n in names},
                               TUNED: {n: str(models[n]) for n in names}}, names, args.workers,
                              args.draws, args.seed)
    results, summary, boot_rows, boot = held_out

    eer_rows, card_rows = eer_table(results, summary, names), []
    for view in summary:
        for p in PROTOCOLS:
            for m in (SYNTHETIC, TUNED):
                s = summary[view][m][p]
                d = s["at_card_threshold"]
                fnmr = f"{pct(d['fnmr'])} ({d['false_nonmatch']}/{d['n_genuine']})"
                fmr = f"{pct(d['fmr'])} ({d['false_match']}/{d['n_impostor']})"
                card_rows.append([view, p, m, fnmr, fmr])
    print(f"EER of each real database scored by a model that never saw it; LODO = "
          f"{args.config} fine-tuned from {args.pretrained} on the other {len(names) - 1}; "
          f"macro = mean over the {len(names)} databases; counts genuine/impostor summed; "
          f"{time.perf_counter() - start:.0f} s")
    print_table(["view", "protocol", "model", *short_names(names), "macro EER", "gen/imp"],
                eer_rows)
    print("\nFNMR and FMR at each model's card threshold (single comparison for fvc/all, its "
          "K-image template threshold for enrollK), pooled over the databases (errors/comparisons)")
    print_table(["view", "protocol", "model", "FNMR", "FMR"], card_rows)
    print(f"\nmacro all-pairs EER (full view), {args.draws} paired draws of fingers")
    print_table(HEADER, boot_rows)
    print("\nvalidation split of each fold (fingers of its training databases), FVC EER")
    print_table(["held out", "val fingers", "synthetic only", "fine-tuned", "best epoch"],
                [[n, str(c["n_fingers"]), pct(c["val_eer_fvc_synthetic"]),
                  pct(c["val_eer_fvc_tuned"]) + (" (worse)" if c["worse"] else ""),
                  f"{c['best_epoch']}/{c['epochs']}"] for n, c in checks.items()])
    model_ids = {n: results[n]["model_ids"] for n in names}
    path = write_json(args.json, {
        "machine": machine(), "pretrained": args.pretrained, "config": args.config,
        "synthetic_model": str(synthetic), "protocols": list(PROTOCOLS),
        "folds": {n: {"train": t, "model": str(models[n]), "model_id": model_ids[n][TUNED],
                      "validation": checks[n]} for n, t in folds(names).items()},
        "macro": summary, "databases": results,
        "bootstrap": bootstrap_record(args.draws, args.seed, boot)})
    print("written to", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
