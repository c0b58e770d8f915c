"""Does synthetic pretraining help on real fingers? The number that decides whether the generator pays.

Two folds, each holding out a group of real databases that no model in the fold trains on:

- fold A: train on FVC2000 DB1-3_B + FVC2002 DB1_B + UPEK, hold out FVC2004 DB1-3_B;
- fold B: train on FVC2004 DB1-3_B + UPEK, hold out FVC2000 DB1-3_B + FVC2002 DB1_B.

In each fold the small tower is trained three ways and evaluated on the held-out databases
(FVC protocol, all pairs and 3-image enrollment): on the real training databases from scratch ("real only",
configs/finetune_real.toml with no init and lr 0.002), the synthetic-pretrained run alone
("synthetic only": runs/pretrained, made by configs/pretrained.toml; the shipped model), and that
run fine-tuned on the real training databases (configs/finetune_real.toml). One seed each.
Prints a table, writes bench/results/pretraining_gain.json; about 3 minutes on 2 cores.

    .venv/bin/python bench/pretraining_gain.py [--pretrained runs/pretrained]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, SHARED, machine, print_table, write_json  # noqa: E402
from siamid.config import Config, dumps_config, from_dict  # noqa: E402

# The CLI of this checkout, run by this interpreter (from ROOT, so ROOT's siamid is imported).
SIAMID = [sys.executable, "-m", "siamid.cli.main"]
FINETUNE = ROOT / "configs" / "finetune_real.toml"
FOLDS = {
    "A": (["fvc2000/DB1_B", "fvc2000/DB2_B", "fvc2000/DB3_B", "fvc2002/DB1_B", "upek"],
          ["fvc2004/DB1_B", "fvc2004/DB2_B", "fvc2004/DB3_B"]),
    "B": (["fvc2004/DB1_B", "fvc2004/DB2_B", "fvc2004/DB3_B", "upek"],
          ["fvc2000/DB1_B", "fvc2000/DB2_B", "fvc2000/DB3_B", "fvc2002/DB1_B"]),
}
ROWS = (("real", "real only"), ("synthetic", "synthetic only"),
        ("tuned", "synthetic + real fine-tune"))


def siamid(*args: str) -> None:
    """Run one CLI verb from the repo root; its output goes to the log only on failure."""
    done = subprocess.run([*SIAMID, *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"siamid {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")


def fold_config(train: list[str], pretrained: str | None, path: Path,
                base: Path = FINETUNE) -> Path:
    """``base`` (configs/finetune_real.toml) with this fold's roots; from scratch when no
    ``pretrained``."""
    raw = tomllib.loads(base.read_text())
    raw["data"]["root"] = [str(SHARED / name) for name in train]
    raw["train"]["init"] = pretrained or ""
    if pretrained is None:
        raw["train"]["lr"] = 0.002  # from scratch: the pretraining recipe's rate
    path.write_text(dumps_config(from_dict(Config, raw, str(path))))
    return path


def held_out_eers(model: Path | None, held: list[str], out: Path) -> dict:
    """FVC-protocol, all-pairs and enroll3 EER per held-out database for ``model`` (None:
    shipped)."""
    args = ["evaluate", *[str(SHARED / n) for n in held], "--out", str(out),
            "--protocol", "fvc,all,enroll3"]
    siamid(*(args + ["--model", str(model)] if model else args))
    report = json.loads((out / "report.json").read_text())["datasets"]
    return {db: {"fvc": v["fvc"]["summary"]["eer"], "all": v["all"]["summary"]["eer"],
                 "enroll3": v["enroll3"]["summary"]["eer"],
                 "n_genuine": v["fvc"]["summary"]["n_genuine"],
                 "n_impostor_fvc": v["fvc"]["summary"]["n_impostor"],
                 "n_impostor_all": v["all"]["summary"]["n_impostor"]} for db, v in report.items()}


def run_fold(name: str, pretrained: Path, work: Path, synthetic_model: Path | None) -> dict:
    train, held = FOLDS[name]
    work.mkdir(parents=True)
    results = {}
    for kind, init in (("real", None), ("tuned", str(pretrained))):
        config = fold_config(train, init, work / f"{kind}.toml")
        siamid("train", "--config", str(config), "--run", str(work / kind))
        siamid("export", str(work / kind), "--out", str(work / f"models_{kind}"), "--no-int8")
        model = next((work / f"models_{kind}").glob("*.onnx"))
        results[kind] = held_out_eers(model, held, work / f"eval_{kind}")
    results["synthetic"] = held_out_eers(synthetic_model, held, work / "eval_synthetic")
    return {"train": train, "held_out": held, "eer": results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", default="runs/pretrained",
                        help="synthetic-pretrained run folder (configs/pretrained.toml)")
    parser.add_argument("--synthetic-model", default=None,
                        help="exported model of that run (default: the shipped model)")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"pretraining_gain: skipped: shared data not found at {SHARED}")
        return 0
    pretrained = (ROOT / args.pretrained).resolve()
    if not (pretrained / "best.pt").is_file():
        sys.exit(f"{pretrained}/best.pt missing: train configs/pretrained.toml first")
    synthetic_model = Path(args.synthetic_model).resolve() if args.synthetic_model else None

    out = {"machine": machine(), "pretrained": str(args.pretrained), "folds": {}}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in FOLDS:
            fold = run_fold(name, pretrained, Path(tmp) / name, synthetic_model)
            out["folds"][name] = fold
            for kind, label in ROWS:
                eers = fold["eer"][kind]
                rows.append([name, label,
                             f"{100 * statistics.mean(e['fvc'] for e in eers.values()):.2f}%",
                             f"{100 * statistics.mean(e['all'] for e in eers.values()):.2f}%",
                             f"{100 * statistics.mean(e['enroll3'] for e in eers.values()):.2f}%",
                             " ".join(f"{d}:{100 * e['fvc']:.1f}"
                                      for d, e in eers.items())])
    print("held-out macro EER; FVC protocol: 280 genuine / 45 impostor per database, "
          "all pairs: 2,880 impostor per database; enroll3: 50 genuine / 450 impostor attempts")
    print_table(["fold", "training", "macro (FVC)", "macro (all pairs)", "macro (enroll3)",
                 "per database (FVC, %)"],
                rows)
    print("written to", write_json("pretraining_gain", out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
