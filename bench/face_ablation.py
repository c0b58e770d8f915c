"""Which input makes the better face tower on RAP3DF: RGB-D, RGB or depth, over several splits.

One split of RAP3DF leaves 12 test persons, too few to rank the inputs (two recipes of one
split ranked them in opposite orders). This trains the three recipes of configs/faces (rgbd,
rgb, depth: one tower, one loss, one augmentation; only the input differs, and the two with
depth also train on photo attacks) on ``--seeds`` different person splits (``[data] seed``,
which also seeds training), the best epoch chosen on all validation pairs, and scores each run
on its own test persons (all pairs, from its report.json: persons never seen in training or
validation). Within a seed the recipes share the split, so their differences are paired;
across seeds the test persons change.

Prints the EER per seed and recipe with counts, the mean, and each recipe's mean difference to
the first (RGB-D) with the seeds on which the first was better. ``--recipes`` can add
``rgbd-contrastive``: the RGB-D recipe with the seed design's contrastive loss instead of the
triplet loss. Runs are kept under ``--work`` and reused, so an interrupted benchmark continues
where it stopped. About 5 minutes a run on 2 cores.

    .venv/bin/python bench/face_ablation.py [--seeds 0,1,2,3,4] [--recipes rgbd,rgb,depth]
        [--work runs/face_ablation]
        [--data ../shared/data/rap3df] [--threads 0] [--json face_ablation]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, SHARED, machine, print_table, write_json  # noqa: E402

#: name -> (configs/faces recipe, [train] values changed). The first is the reference.
RECIPES = {"rgbd": ("rgbd", {}), "rgb": ("rgb", {}), "depth": ("depth", {}),
           # the seed design's loss for the RGB-D tower, on the same input
           "rgbd-contrastive": ("rgbd", {"loss": "contrastive"})}


def run_one(name: str, seed: int, data: Path, work: Path, threads: int) -> dict:
    """Train (unless done) and read the test split's all-pairs summary of one recipe and seed."""
    from siamid.config import load_config
    from siamid.training import train

    run = work / f"seed{seed}" / name
    report = run / "report.json"
    if not report.exists():
        recipe, changes = RECIPES[name]
        cfg = load_config(ROOT / "configs" / "faces" / f"{recipe}.toml")
        cfg = dataclasses.replace(
            cfg, data=dataclasses.replace(cfg.data, root=str(data), seed=seed),
            train=dataclasses.replace(cfg.train, seed=seed, val_protocol="all", threads=threads,
                                      **changes))
        if run.exists():
            train(cfg, run, resume=(run / "checkpoint.pt").exists())
        else:
            train(cfg, run)
    return json.loads(report.read_text())["test"]["all"]["summary"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4", help="person-split seeds, comma-separated")
    parser.add_argument("--recipes", default="rgbd,rgb,depth",
                        help=f"comma-separated, the first the reference; of {', '.join(RECIPES)}")
    parser.add_argument("--work", default="runs/face_ablation", help="where the runs go")
    parser.add_argument("--data", default=str(SHARED / "rap3df"), help="RAP3DF folder")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    parser.add_argument("--json", default="face_ablation", help="bench/results/<name>.json")
    args = parser.parse_args()
    if not Path(args.data).is_dir():
        raise SystemExit(f"{args.data}: RAP3DF not found (give --data)")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    unknown = [n for n in names if n not in RECIPES]
    if unknown or len(names) < 2:
        raise SystemExit(f"--recipes: give two or more of {', '.join(RECIPES)}")
    started = time.time()
    results: dict[int, dict[str, dict]] = {}
    for seed in seeds:
        for name in names:
            print(f"seed {seed}: {name}", file=sys.stderr, flush=True)
            results.setdefault(seed, {})[name] = run_one(name, seed, Path(args.data),
                                                         Path(args.work), args.threads)
    eer = {name: np.array([results[s][name]["eer"] for s in seeds]) for name in names}
    rows = [[str(s), *(f"{100 * results[s][n]['eer']:.2f}" for n in names),
             f"{results[s][names[0]]['n_genuine']} / {results[s][names[0]]['n_impostor']}"]
            for s in seeds]
    rows.append(["mean", *(f"{100 * eer[n].mean():.2f}" for n in names), ""])
    print("Test persons' all-pairs EER % by person split (seed)")
    print_table(["seed", *names, "genuine / impostor"], rows)
    diffs = {}
    for name in names[1:]:
        d = eer[name] - eer[names[0]]
        diffs[name] = {"mean_points": float(100 * d.mean()), "min_points": float(100 * d.min()),
                       "max_points": float(100 * d.max()),
                       "reference_better_on": int((d > 0).sum()), "seeds": len(seeds)}
    print(f"\nEER minus {names[0]}'s, points (positive: {names[0]} better)")
    print_table(["recipe", "mean", "min", "max", f"{names[0]} better on"],
                [[n, f"{v['mean_points']:+.2f}", f"{v['min_points']:+.2f}",
                  f"{v['max_points']:+.2f}", f"{v['reference_better_on']} of {v['seeds']} seeds"]
                 for n, v in diffs.items()])
    out = write_json(args.json, {"machine": machine(), "seconds": time.time() - started,
                                 "command": " ".join(sys.argv), "seeds": seeds,
                                 "recipes": names, "results": {str(s): results[s] for s in seeds},
                                 "differences": diffs})
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
