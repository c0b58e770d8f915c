"""Accuracy of an exported model (default: the shipped one) on every shared database.

Real and synthetic databases are reported apart; every rate has its counts beside it. The shipped
default was fine-tuned on the real databases: a model's card names the databases it was trained
on, and this benchmark marks them (its numbers there are training-set numbers; its honest
real-finger accuracy comes from bench/leave_one_out.py).

    .venv/bin/python bench/shipped_accuracy.py [--model PATH]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from common import (REAL, SHARED, SYNTHETIC, machine, print_table, seen_in_training,  # noqa: E402
                    seen_warning, write_json)

from siamid.dataset import scan_dataset  # noqa: E402
from siamid.evaluation import classifier_view  # noqa: E402
from siamid.pairs import Protocol  # noqa: E402
from siamid.runtime import Embedder  # noqa: E402
from siamid.scoring import score_model  # noqa: E402


def pct(x):
    return "-" if x is None else f"{100 * x:.2f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="exported .onnx (default: shipped model)")
    args = parser.parse_args()
    if not SHARED.exists():
        print(f"shared data not found at {SHARED}; nothing to measure")
        return
    embedder = Embedder(args.model)
    seen = seen_in_training(args.model)
    if seen:
        print(seen_warning(embedder.model_id, seen))
    rows, out = [], {"model_id": embedder.model_id, "machine": machine(), "databases": {},
                     "seen_in_training": seen}
    for group, names in (("real", REAL), ("synthetic", SYNTHETIC)):
        eers = []
        for name in names:
            score = score_model(embedder, scan_dataset(SHARED / name),
                                (Protocol("fvc"), Protocol("all")))
            fvc, allp = score.reports["fvc"], score.reports["all"]
            eers.append(fvc.eer)
            # The shipped threshold was calibrated on synthetic prints: what does it do here?
            view = classifier_view(allp.genuine, allp.impostor, embedder.threshold)
            out["databases"][name] = {"group": group, "fta": score.fta, "at_shipped_threshold": {
                "fmr": view["fmr"], "fnmr": view["fnmr"]}, **{
                p: r.summary() for p, r in score.reports.items()}}
            rows.append([group, name, str(fvc.n_genuine), str(fvc.n_impostor), pct(fvc.eer),
                         str(allp.n_impostor), pct(allp.eer), pct(allp.fmr100),
                         pct(view["fmr"]), pct(view["fnmr"]), pct(score.fta)])
        out[f"macro_eer_fvc_{group}"] = float(np.mean(eers))
        rows.append([group, "macro average", "", "", pct(float(np.mean(eers))), "", "", "", "", "", ""])
    print(f"model {embedder.model_id} on {machine()}; shipped threshold {embedder.threshold:.4f}"
          " (FMR/FNMR @thr: all-pairs protocol at that threshold)")
    print_table(["group", "database", "genuine", "impostor (FVC)", "EER (FVC)", "impostor (all)",
                 "EER (all)", "FMR100 (all)", "FMR @thr", "FNMR @thr", "FTA"], rows)
    print(f"written to {write_json('shipped_accuracy', out)}")


if __name__ == "__main__":
    main()
