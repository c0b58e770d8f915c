"""What int8 costs the real-finger recipe, measured leave one database out (LODO).

The shipped default is fine-tuned on every real finger, so its int8 file cannot be scored on
fingers it never saw. bench/leave_one_out.py's fold runs can: each fold's run (under ``--work``)
is exported once more, fp32 and int8 (``siamid export --allow-int8-drift``, so that an int8 file
that drifts is measured, not refused), and its held-out database is scored with both files
exactly as bench/accuracy.py scores a database (views ``full`` and ``r503``, protocols fvc / all
/ enroll1 / enroll3). Also: the paired bootstrap over fingers of the macro all-pairs EER (full
view), int8 minus fp32.

    .venv/bin/python bench/lodo_int8.py [--work runs/lodo_pretrained_medium] [--draws 200]
        [--workers 2] [--json lodo_int8]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.accuracy import PROTOCOLS  # noqa: E402
from bench.common import REAL, ROOT, fold_folder, machine, print_table, write_json  # noqa: E402
from bench.leave_one_out import (bootstrap_record, eer_table, score_held_out,  # noqa: E402
                                 short_names)
from bench.paired_bootstrap import HEADER  # noqa: E402
from bench.pretraining_gain import siamid  # noqa: E402

FP32, INT8 = "fp32", "int8"


def export_both(run: Path, out: Path) -> dict[str, str]:
    """{fp32: file, int8: file} of a finished fold run (exported once, reused after)."""
    if not any(out.glob("*.int8.onnx")):
        siamid("export", str(run), "--out", str(out), "--allow-int8-drift")
    int8 = next(out.glob("*.int8.onnx"))
    return {FP32: str(int8.with_name(int8.name.removesuffix(".int8.onnx") + ".onnx")),
            INT8: str(int8)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="runs/lodo_pretrained_medium",
                        help="bench/leave_one_out.py's --work folder with the fold runs")
    parser.add_argument("--draws", type=int, default=200, help="bootstrap draws (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--workers", type=int, default=2, help="databases scored in parallel")
    parser.add_argument("--json", default="lodo_int8", help="bench/results/<name>.json")
    args = parser.parse_args()
    work = ROOT / args.work
    names = [n for n in REAL if (fold_folder(work, n) / "run" / "report.json").is_file()]
    if not names:
        print(f"no finished fold runs under {work}: run bench/leave_one_out.py first",
              file=sys.stderr)
        return 1
    start = time.perf_counter()
    models = {}
    for k, held in enumerate(names, 1):
        print(f"fold {k}/{len(names)}: {held}: exporting fp32 + int8", file=sys.stderr, flush=True)
        fold = fold_folder(work, held)
        models[held] = export_both(fold / "run", fold / "model_int8")
    results, summary, boot_rows, boot = score_held_out(
        {m: {n: models[n][m] for n in names} for m in (FP32, INT8)}, names, args.workers,
        args.draws, args.seed)
    print(f"EER of each real database scored by its fold's fp32 and int8 files (models that never "
          f"saw it; fold runs in {args.work}); macro = mean over the {len(names)} databases; "
          f"{time.perf_counter() - start:.0f} s")
    print_table(["view", "protocol", "file", *short_names(names), "macro EER", "gen/imp"],
                eer_table(results, summary, names))
    print("\nmacro EER, int8 minus fp32 (points)")
    print_table(["view", *PROTOCOLS], [
        [view, *[f"{100 * (summary[view][INT8][p]['eer'] - summary[view][FP32][p]['eer']):+.2f}"
                 for p in PROTOCOLS]] for view in summary])
    print(f"\nmacro all-pairs EER (full view), {args.draws} paired draws of fingers")
    print_table(HEADER, boot_rows)
    path = write_json(args.json, {
        "machine": machine(), "work": args.work, "protocols": list(PROTOCOLS),
        "models": models, "model_ids": {n: results[n]["model_ids"] for n in names},
        "macro": summary, "databases": results,
        "bootstrap": bootstrap_record(args.draws, args.seed, boot)})
    print("written to", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
