"""Face towers on RAP3DF persons never seen in training: RGB, depth and RGB-D, with anchors.

Each run (``--runs name=RUN,...``, made by ``siamid train --config configs/faces/<name>.toml``)
is exported once (fp32, calibrated on its validation persons) and scored on its own test split
(persons disjoint from training and validation; every run of one config seed shares the split).
On the same test captures:

- all pairs: EER, FNMR at FMR 1% and 0.1% where the impostor count allows, and FMR/FNMR at the
  card's threshold, with counts;
- by pose: each person enrolls from their front capture; EER and FNMR at the card's threshold
  per probe pose (``siamid.faces.protocols.pose_trials``);
- photo attacks (``siamid.faces.attacks``): each test capture's real colour with a fake depth
  map, probing its owner's front template: ``flat`` (the head's outline at one depth: a cut-out
  photo), ``tilted`` (a plane leaning 30 depth units top to bottom: a photo or screen held at
  an angle), ``none`` (no depth at all). The attack acceptance rate (AAR) is the fraction accepted
  at the card's threshold, by the model alone and after the quality check; an RGB model sees
  the real colour, so its AAR is its genuine acceptance rate;
- a paired bootstrap over the test persons (bench/paired_bootstrap.py's): each run's all-pairs
  EER with its 95% interval, and the interval of its difference to the first run;
- anchors: OpenCV's LBPH on the gray face (the classical floor), and dlib's ResNet embedding
  (``face_recognition``) where ``make bench-faces-deps`` installed it.

Prints three tables, writes bench/results/faces.json.

    .venv/bin/python bench/faces.py [--runs rgbd=runs/face_rgbd,rgb=runs/face_rgb,depth=runs/face_depth]
        [--anchors lbph,dlib] [--json faces]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.face_anchors import euclidean_distances  # noqa: E402
from bench.common import ROOT, SHARED, machine, parse_models, print_table, write_json  # noqa: E402
from bench.paired_bootstrap import HEADER, compare, finger_scores  # noqa: E402
from siamid.config import PreprocessConfig, load_config  # noqa: E402
from siamid.dataset import Dataset, load_splits  # noqa: E402
from siamid.errors import QualityError  # noqa: E402
from siamid.evaluation import evaluate_scores  # noqa: E402
from siamid.faces.attacks import ATTACKS, photo_attack  # noqa: E402
from siamid.faces.protocols import pose_trials  # noqa: E402
from siamid.preprocess import Preprocessor  # noqa: E402
from siamid.types import SampleId  # noqa: E402

OTHERS = ("extended_yale_b", "orl_faces")


def export_once(run: Path) -> Path:
    """The run's fp32 export, made once under RUN/export."""
    from siamid.exporting import export_run

    out = run / "export"
    found = sorted(p for p in out.glob("*.onnx") if not p.name.endswith(".int8.onnx"))
    if not found:
        found = [export_run(run, out, int8=False).fp32_path]
    return found[0]


def test_split(run: Path) -> Dataset:
    from siamid.training import load_data

    config = load_config(run / "config.toml")
    return load_splits(run / "splits.json", load_data(config)).test


def rates(dist: np.ndarray, ids: list[SampleId], threshold: float | None,
          poses: bool = True) -> dict:
    """All-pairs and (with ``poses``) per-pose reports of one distance matrix (rows and columns
    in ``ids``)."""
    row = {s: i for i, s in enumerate(ids)}
    ident = np.array([s.identity for s in ids])
    iu = np.triu_indices(len(ids), 1)
    same = ident[iu[0]] == ident[iu[1]]
    d = dist[iu]
    out = {"all": summary(d[same], d[~same], threshold), "poses": {}}
    for pose, trials in (pose_trials(ids) if poses else {}).items():
        g = [dist[row[t.template[0]], row[t.probe]] for t in trials if t.is_match]
        i = [dist[row[t.template[0]], row[t.probe]] for t in trials if not t.is_match]
        if g and i:
            out["poses"][pose] = summary(np.array(g), np.array(i), threshold)
    return out


def summary(genuine: np.ndarray, impostor: np.ndarray, threshold: float | None) -> dict:
    report = evaluate_scores(genuine, impostor)
    out = report.summary()
    if threshold is not None:
        out["threshold"] = threshold
        out["fnmr_at_threshold"] = float((genuine >= threshold).mean())
        out["fmr_at_threshold"] = float((impostor < threshold).mean())
    return out


def attacks(embedder, test: Dataset, emb: np.ndarray, ids: list[SampleId]) -> dict:
    """AAR per attack kind against each person's front template, at the card's threshold."""
    cfg = embedder.preprocessor.config
    threshold = embedder.threshold
    row = {s: i for i, s in enumerate(ids)}
    owners = {t.template[0].identity: t.template[0]
              for trials in pose_trials(ids).values() for t in trials}
    out = {}
    for kind in ATTACKS:
        accepted = passed = total = 0
        for entry in sorted(test.entries, key=lambda e: e.id):
            template = owners.get(entry.id.identity)
            if template is None or template == entry.id:
                continue
            image = photo_attack(embedder.preprocessor.load(entry.path), kind, cfg)
            try:
                prepared = embedder.preprocessor.process(image, entry.dpi)
                ok = prepared.quality.ok
                sig = embedder.embed_prepared(prepared.as_float()[None])[0]
                hit = float(np.linalg.norm(sig - emb[row[template]])) < threshold
            except QualityError:  # refused outright (no depth for an RGB-D model)
                ok = hit = False
            total += 1
            accepted += hit
            passed += hit and ok
        out[kind] = {"attacks": total, "accepted": accepted, "aar": accepted / max(total, 1),
                     "accepted_after_quality": passed, "aar_after_quality": passed / max(total, 1)}
    return out


def score_run(name: str, run: Path) -> tuple[dict, Dataset, list[SampleId], np.ndarray]:
    from siamid.runtime import Embedder
    from siamid.scoring import embed_with_quality

    model = export_once(run)
    embedder = Embedder(model)
    test = test_split(run)
    emb, ids, ok = embed_with_quality(embedder, test)
    result = rates(euclidean_distances(emb), ids, embedder.threshold)
    result.update(model=str(model.relative_to(ROOT) if model.is_relative_to(ROOT) else model),
                  model_id=embedder.card.model_id, channels=embedder.card.preprocess.get(
                      "face_channels"), images=len(ids), quality_rejected=int((~ok).sum()),
                  persons=len({s.subject for s in ids}),
                  attacks=attacks(embedder, test, emb, ids))
    return result, test, ids, emb


def lbph_anchor(test: Dataset, ids: list[SampleId], poses: bool = True) -> dict:
    """OpenCV's LBPH on the gray face as our preprocessing crops and balances it (64 px)."""
    from bench.face_anchors import lbph_distances

    pre = Preprocessor(PreprocessConfig(modality="face", face_channels="gray", channels=1,
                                        size=64))
    entries = {e.id: e for e in test.entries}
    gray = [pre.network_input(pre.load(entries[s].path), 500)[0] for s in ids]
    return rates(lbph_distances(gray), ids, None, poses)


def dlib_anchor(test: Dataset, ids: list[SampleId], poses: bool = True) -> dict | None:
    """dlib's ResNet on the colour file as stored (gray files as three equal planes)."""
    from bench.face_anchors import dlib_available, dlib_signatures

    if not dlib_available():
        return None
    entries = {e.id: e for e in test.entries}
    pre = Preprocessor(PreprocessConfig(modality="face", face_channels="rgb", channels=3))
    images = [pre.load(entries[s].path) for s in ids]
    images = [im if im.ndim == 3 else np.repeat(im[:, :, None], 3, axis=2) for im in images]
    return rates(euclidean_distances(dlib_signatures(images)), ids, None, poses)


def anchor_rates(data: Dataset, ids: list[SampleId], anchors: set[str],
                 poses: bool = False) -> dict:
    """The ``anchors`` (lbph, dlib) on the same images, all pairs (and by pose with ``poses``);
    dlib's row is left out where it is not installed."""
    out = {}
    if "lbph" in anchors:
        out["LBPH (OpenCV)"] = lbph_anchor(data, ids, poses)
    if "dlib" in anchors:
        found = dlib_anchor(data, ids, poses)
        if found is not None:
            out["dlib ResNet (face_recognition)"] = found
    return out


def other_dataset(root: Path, runs: dict[str, str], anchors: set[str]) -> dict:
    """Every person of a face set no run trained on, all pairs: the runs whose models read
    gray or colour (an RGB model sees a gray photo as three equal planes), and the anchors."""
    from siamid.dataset import scan_dataset
    from siamid.runtime import Embedder
    from siamid.scoring import embed_with_quality

    data = scan_dataset(root)
    out: dict[str, dict] = {}
    ids: list[SampleId] = []
    for name, run in runs.items():
        embedder = Embedder(export_once(Path(run)))
        if embedder.preprocessor.config.face_channels not in ("gray", "rgb"):
            continue
        emb, ids, ok = embed_with_quality(embedder, data)
        out[name] = rates(euclidean_distances(emb), ids, embedder.threshold, poses=False)
        out[name]["quality_rejected"] = int((~ok).sum())
    ids = ids or sorted(e.id for e in data.entries)
    out.update(anchor_rates(data, ids, anchors))
    return {"dataset": data.name, "images": len(ids),
            "persons": len({s.subject for s in ids}), "results": out}


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def table_row(name: str, r: dict) -> list[str]:
    a = r["all"]
    return [name, pct(a["eer"]), pct(a["fmr100"]), pct(a["fmr1000"]),
            f"{a['n_genuine']} / {a['n_impostor']}", pct(a.get("fnmr_at_threshold")),
            pct(a.get("fmr_at_threshold"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default="rgbd=runs/face_rgbd,rgb=runs/face_rgb,"
                        "depth=runs/face_depth", help="name=RUN_FOLDER,...")
    parser.add_argument("--anchors", default="lbph,dlib", help="lbph, dlib, both or ''")
    parser.add_argument("--others", default=",".join(str(SHARED / n) for n in OTHERS),
                        help="face sets no run trained on, scored all pairs (absent ones skipped)")
    parser.add_argument("--json", default="faces", help="bench/results/<name>.json")
    parser.add_argument("--draws", type=int, default=200, help="paired bootstrap draws")
    args = parser.parse_args()
    runs = parse_models(args.runs, folders=True)
    started = time.time()
    results: dict[str, dict] = {}
    signatures: dict[str, np.ndarray] = {}
    test = ids = None
    for name, run in runs.items():
        print(f"scoring {name} ({run})", file=sys.stderr, flush=True)
        results[name], run_test, run_ids, signatures[name] = score_run(name, Path(run))
        if test is None:
            test, ids = run_test, run_ids
        elif run_ids != ids:
            raise SystemExit(f"{run}: its test split differs from the first run's; give runs "
                             "of one data seed so every row is scored on the same persons")
    anchors = {a.strip() for a in args.anchors.replace("both", "lbph,dlib").split(",") if a}
    if test is not None and "lbph" in anchors:
        results["LBPH (OpenCV)"] = lbph_anchor(test, ids)
    if test is not None and "dlib" in anchors:
        found = dlib_anchor(test, ids)
        if found is None:
            print("dlib not installed (make bench-faces-deps): its row is left out",
                  file=sys.stderr)
        else:
            results["dlib ResNet (face_recognition)"] = found

    header = ["matcher", "EER %", "FMR100 %", "FMR1000 %", "genuine / impostor",
              "FNMR @ card %", "FMR @ card %"]
    print("All pairs of the test persons")
    print_table(header, [table_row(name, r) for name, r in results.items()])
    poses = list(next(iter(results.values()))["poses"]) if results else []
    print("\nEnrolled from the front capture, EER % by probe pose (FNMR at the card's threshold)")
    rows = []
    for name, r in results.items():
        cells = []
        for pose in poses:
            p = r["poses"].get(pose)
            cells.append("-" if p is None else f"{pct(p['eer'])}" + (
                f" ({pct(p['fnmr_at_threshold'])})" if "fnmr_at_threshold" in p else ""))
        rows.append([name, *cells])
    counts = next(iter(results.values()))["poses"] if results else {}
    rows.append(["genuine / impostor", *(f"{counts[p]['n_genuine']} / {counts[p]['n_impostor']}"
                                         for p in poses)])
    print_table(["matcher", *poses], rows)
    if len(signatures) > 1:
        print(f"\nPaired bootstrap over the test persons ({args.draws} draws), all pairs")
        identities = np.array([s.identity for s in ids])
        scores = {name: {"test": finger_scores(emb, identities)}
                  for name, emb in signatures.items()}
        table, boot = compare(scores, ["test"], args.draws, 0)
        print_table(HEADER, table)
        for name, entry in boot.items():
            results[name]["bootstrap"] = entry
    print("\nPhoto attacks on the front template: accepted / attacks (after the quality check)")
    rows = [[name, *(f"{r['attacks'][k]['accepted']} / {r['attacks'][k]['attacks']} "
                     f"({r['attacks'][k]['accepted_after_quality']})" for k in ATTACKS)]
            for name, r in results.items() if "attacks" in r]
    print_table(["model", *ATTACKS], rows)
    others = {}
    for root in filter(None, args.others.split(",")):
        if not Path(root).is_dir():
            print(f"{root}: absent, skipped", file=sys.stderr)
            continue
        print(f"scoring {root}", file=sys.stderr, flush=True)
        others[root] = found = other_dataset(Path(root), runs, anchors)
        print(f"\n{found['dataset']}: every pair of {found['images']} images of "
              f"{found['persons']} persons no run trained on")
        print_table(header, [table_row(name, r) for name, r in found["results"].items()])
    out = write_json(args.json, {"machine": machine(), "seconds": time.time() - started,
                                 "command": " ".join(sys.argv), "results": results,
                                 "others": others})
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
