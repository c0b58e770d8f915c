"""Owner-vs-others training against the all-persons tower it starts from, for owners it never saw.

A device has one owner. Here each owner is a test person of ``--base`` (a face run trained on
many persons, e.g. configs/faces/gray.toml): the base tower never trained on them, as it never
trained on a buyer. For each owner the base run's recipe is fine-tuned from the base tower with
``[train] owner`` (siamid/owner.py: the owner's photos the only triplet anchors, a third of them
held out), and both towers are scored on the same images: a template of the owner's training
photos, their held-out photos (genuine) and the fine-tuned run's test persons (impostors, seen
by neither tower), each at its own card threshold (calibrated on validation persons), with
counts, and the owner EER over those distances. The impostors are the test persons of the owner's
own face set (same camera and light): persons of another set are easy to tell apart.

Owners are taken from the base's test persons with at least 6 photos, one face set after
another. Runs go under ``--work`` and are reused. About 4 minutes an owner on 2 cores.

    .venv/bin/python bench/face_owner.py [--base runs/face_gray] [--owners 6]
        [--epochs 3] [--steps 40] [--work runs/face_owner] [--json face_owner]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, print_table, write_json  # noqa: E402
from bench.face_datasets import face_set  # noqa: E402
from bench.faces import test_split  # noqa: E402


def pick_owners(base: Path, count: int, min_images: int = 6) -> list[str]:
    """``count`` test persons of the base run with ``min_images`` photos, set after set."""
    test = test_split(base)
    by_set: dict[str, list[str]] = {}
    for subject, n in sorted(Counter(e.id.subject for e in test.entries).items()):
        if n >= min_images:
            by_set.setdefault(face_set(subject), []).append(subject)
    order = [subjects for _, subjects in sorted(by_set.items())]
    picked: list[str] = []
    while len(picked) < count and any(order):
        for subjects in order:
            if subjects and len(picked) < count:
                picked.append(subjects.pop(0))
    return picked


def scored(tower_run: Path, run: Path) -> dict:
    """``tower_run``'s tower (the base, or the owner run itself) on the owner run's images: a
    template of the owner's training photos, their held-out photos, and the photos of the owner
    run's test persons from the owner's own face set (the hard impostors: same camera, same
    light), at ``tower_run``'s card threshold."""
    import torch

    from siamid.config import load_config
    from siamid.dataset import Dataset, load_splits
    from siamid.owner import owner_report
    from siamid.training import build_tower, embed_images, image_set, load_data, load_weights

    config = load_config(run / "config.toml")
    owner = json.loads((run / "owner.json").read_text())
    data = load_data(config)
    mine = [e for e in data.entries if e.id.subject == owner["owner"]]
    held = set(owner["holdout"])
    parts = {"template": [e for e in mine if e.manifest_path not in held],
             "holdout": [e for e in mine if e.manifest_path in held],
             "impostor": [e for e in load_splits(run / "splits.json", data).test.entries
                          if face_set(e.id.subject) == face_set(owner["owner"])]}
    tower_config = load_config(tower_run / "config.toml")
    tower = build_tower(tower_config)
    load_weights(tower, tower_run)
    tower.eval()
    emb = {}
    with torch.no_grad():
        for name, entries in parts.items():
            images = image_set(Dataset(name, tuple(entries)), tower_config.preprocess).images
            emb[name] = embed_images(tower, images)
    threshold = json.loads((tower_run / "report.json").read_text())["threshold"]
    return owner_report(owner["owner"], emb["template"], emb["holdout"], emb["impostor"],
                        threshold, len({e.id.subject for e in parts["impostor"]}))


def owner_run(base: Path, owner: str, work: Path, epochs: int, steps: int) -> Path:
    from siamid.config import load_config
    from siamid.training import train

    run = work / owner
    if (run / "report.json").exists():
        return run
    config = load_config(base / "config.toml")
    config = dataclasses.replace(config, train=dataclasses.replace(
        config.train, owner=owner, init=str(base), epochs=epochs, steps_per_epoch=steps,
        lr=config.train.lr / 4, patience=epochs))
    train(config, run, resume=(run / "checkpoint.pt").exists())
    return run


def cells(report: dict) -> list[str]:
    c = report["classifier"]["counts"]
    return [f"{c['false_reject']} / {c['n_genuine']}", f"{c['false_accept']} / {c['n_impostor']}",
            f"{100 * report['summary']['eer']:.2f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="runs/face_gray", help="the all-persons run")
    parser.add_argument("--owners", type=int, default=6, help="how many owners")
    parser.add_argument("--epochs", type=int, default=3, help="owner fine-tuning epochs")
    parser.add_argument("--steps", type=int, default=40, help="steps an epoch")
    parser.add_argument("--work", default="runs/face_owner", help="where the owner runs go")
    parser.add_argument("--json", default="face_owner", help="bench/results/<name>.json")
    args = parser.parse_args()
    started = time.time()
    base, work = Path(args.base), Path(args.work)
    results = {}
    for owner in pick_owners(base, args.owners):
        print(f"owner {owner}", file=sys.stderr, flush=True)
        run = owner_run(base, owner, work, args.epochs, args.steps)
        results[owner] = {"base": scored(base, run), "owner": scored(run, run)}
    header = ["owner", "base FNMR", "base FMR", "base EER %", "owner FNMR", "owner FMR",
              "owner EER %"]
    rows = [[o, *cells(r["base"]), *cells(r["owner"])] for o, r in results.items()]
    totals = []
    for side in ("base", "owner"):
        c = [r[side]["classifier"]["counts"] for r in results.values()]
        totals += [f"{sum(x['false_reject'] for x in c)} / {sum(x['n_genuine'] for x in c)}",
                   f"{sum(x['false_accept'] for x in c)} / {sum(x['n_impostor'] for x in c)}", ""]
    rows.append(["all owners", *totals])
    print("Owners never seen by the base tower: false rejects of their held-out photos and false "
          "accepts of unseen persons' photos of the same face set, at each tower's card "
          "threshold")
    print_table(header, rows)
    out = write_json(args.json, {"machine": machine(), "seconds": time.time() - started,
                                 "command": " ".join(sys.argv), "base": str(base),
                                 "results": results})
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
