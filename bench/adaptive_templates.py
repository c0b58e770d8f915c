"""Adaptive templates: does a template that follows its owner's drift help, and can an impostor
pull it towards themselves?

For each model and each database the model never saw in training (its card says which it saw;
a bench/leave_one_out.py ``--work`` folder gives each database the fold that held it out):

- **Drift**: each identity enrolls from its first ``--enrolled`` captures (refused enrollments
  are counted as FTE), then presents the rest in time order (FVC and UPEK: impression order;
  RAP3DF: front, burned, up, down, left, right; Extended Yale B: light moving away from
  frontal). FNMR over the sequence without adaptation and with it, for several bounds on the
  adapted part, with the number of updates.
- **Impostor pull**: for every ordered pair of identities of a database, the impostor is
  accepted once and their capture forced into the target's template (the worst case: a lucky
  accept that passed every guard), then presents their other captures. Acceptance per attempt
  without adaptation (no forced signature), with the forced signature and no further
  adaptation, and with adaptation with and without the anchor (guard (b)); how many impostor
  signatures the template holds at the end and how far its mean moved.

Each unlock FMR is the card's own target or a retargeted calibration (the card's impostor tables
read at that FMR, ``Calibration.retargeted``, what ``siamid calibrate --target-fmr`` would choose on
the same set). Images failing the quality check are left out and counted. Every decision and
update is siamid.adaptation's, the code ``Gallery.verify(..., adapt=True)`` runs.

    .venv/bin/python bench/adaptive_templates.py [--models label=PATH,...] [--unlock-fmrs 0.001,0.01]

Prints tables; writes bench/results/adaptive_templates.json.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from siamid.pairs import natural_key  # noqa: E402
from bench.common import (  # noqa: E402
    REAL,
    SHARED,
    SYNTHETIC,
    fold_models,
    machine,
    parse_models,
    print_table,
    seen_in_training,
    write_json,
)

FACE_SETS = ["rap3df", "extended_yale_b"]
RAP3DF_POSES = ["front", "burned", "up", "down", "left", "right"]


def _order(database: str, take: str) -> tuple:
    """Time order of a take: the drift sequence the benchmark presents."""
    if database == "rap3df":
        pose, _, k = take.partition("_")
        return (RAP3DF_POSES.index(pose) if pose in RAP3DF_POSES else 99, natural_key(k))
    if database == "extended_yale_b":
        m = re.match(r"a([+-]\d+)e([+-]\d+)", take.lower())
        if m:
            return (float(np.hypot(int(m.group(1)), int(m.group(2)))), take)
    return (natural_key(take),)


def _trained_subjects(splits: str) -> set[str]:
    """The subjects a face run trained or calibrated on (its splits.json's train and val)."""
    import json

    if not splits or not Path(splits).is_file():
        return set()
    data = json.loads(Path(splits).read_text())
    return {str(s).split("/")[0] for part in ("train", "val") for s in data.get(part, [])}


def _sequences(embedder, database: str, leave_out: set[str] = frozenset()
               ) -> tuple[dict[str, np.ndarray], int, int]:
    """{identity: signatures in time order} of the images that pass the quality check, the
    number left out, the number read; subjects in ``leave_out`` are not read."""
    from siamid.dataset import Dataset, scan_dataset
    from siamid.scoring import embed_with_quality

    data = scan_dataset(SHARED / database)
    data = Dataset(data.name, tuple(e for e in data.entries if e.id.subject not in leave_out))
    emb, ids, ok = embed_with_quality(embedder, data)
    rows: dict[str, list[tuple[tuple, int]]] = {}
    for r, sample_id in enumerate(ids):
        if ok[r]:
            rows.setdefault(sample_id.identity, []).append((_order(database, sample_id.take), r))
    seqs = {k: emb[[r for _, r in sorted(v)]] for k, v in sorted(rows.items())}
    return seqs, int(np.count_nonzero(~ok)), len(ids)


def _enroll(signatures: np.ndarray, calibration):
    """The template of these enrollment signatures, or None if the Gallery would refuse them."""
    from siamid.runtime import unmatched_images
    from siamid.types import Template

    d = np.linalg.norm(signatures[:, None] - signatures[None], axis=2)
    if unmatched_images(d, calibration.enrollment_threshold()):
        return None
    return Template("s", "m", signatures.astype(np.float32))


def _drift(seqs, calibration, enrolled: int, bounds: list[int], rule: str) -> dict:
    from siamid.adaptation import decide, propose_update

    out = {"fte": 0, "n_identities": 0, "n_probes": 0, "off": 0,
           "adapt": {str(b): {"rejected": 0, "updates": 0, "reasons": {}} for b in bounds}}
    for sigs in seqs.values():
        if len(sigs) <= enrolled:
            continue
        base = _enroll(sigs[:enrolled], calibration)
        if base is None:
            out["fte"] += 1
            continue
        out["n_identities"] += 1
        probes = sigs[enrolled:]
        out["n_probes"] += len(probes)
        out["off"] += sum(not decide(base, p, calibration, rule).accepted for p in probes)
        for bound in bounds:
            template, tally = base, out["adapt"][str(bound)]
            for probe in probes:
                result = decide(template, probe, calibration, rule)
                tally["rejected"] += not result.accepted
                update, new = propose_update(template, probe, result, calibration, rule,
                                             max_adapted=bound)
                tally["reasons"][update.reason] = tally["reasons"].get(update.reason, 0) + 1
                if new is not None:
                    template, tally["updates"] = new, tally["updates"] + 1
    return out


def _unit_mean(signatures: np.ndarray) -> np.ndarray:
    m = signatures.mean(axis=0)
    return m / max(float(np.linalg.norm(m)), 1e-12)


def _attack(seqs, calibration, enrolled: int, rule: str) -> dict:
    """Per mode, accepted impostor attempts by attempt number (attempt 1 is the forced accept,
    or for ``none`` simply the first attempt), the impostor signatures left in the template and
    how far the template's mean moved. Where the calibration allows no adaptation at all (no
    update threshold, or no room for an adapted signature) no template can ever hold an
    impostor's signature: only ``none`` is measured."""
    from siamid.adaptation import (
        adapted_capacity,
        decide,
        propose_update,
        update_threshold,
        with_adapted,
    )

    possible = (update_threshold(calibration, enrolled, rule) is not None
                and adapted_capacity(calibration, enrolled, rule) > 0)
    modes = ("none", "forced_frozen", "forced_anchor", "forced_no_anchor") if possible else ("none",)
    out = {m: {"accepted": [], "attempts": [], "held": 0, "moved": 0.0} for m in modes}
    targets = {k: _enroll(s[:enrolled], calibration) for k, s in seqs.items() if len(s) > enrolled}
    pairs = 0
    for target_id, base in targets.items():
        if base is None:
            continue
        anchor_mean = _unit_mean(base.signatures)
        for impostor_id, captures in seqs.items():
            if impostor_id == target_id or len(captures) < 2:
                continue
            pairs += 1
            for mode in modes:
                tally, template = out[mode], base
                if mode != "none":
                    forced = decide(template, captures[0], calibration, rule)
                    template = with_adapted(template, captures[0], forced.distance, None)
                for i, capture in enumerate(captures):
                    if i == 0 and mode != "none":
                        accepted = True
                    else:
                        result = decide(template, capture, calibration, rule)
                        accepted = result.accepted
                        if mode in ("forced_anchor", "forced_no_anchor"):
                            _, new = propose_update(template, capture, result, calibration, rule,
                                                    anchor=mode == "forced_anchor")
                            template = new if new is not None else template
                    while len(tally["accepted"]) <= i:
                        tally["accepted"].append(0)
                        tally["attempts"].append(0)
                    tally["accepted"][i] += accepted
                    tally["attempts"][i] += 1
                tally["held"] += template.n_adapted  # every adapted signature here is the impostor's
                tally["moved"] += float(np.linalg.norm(_unit_mean(template.signatures) - anchor_mean))
    for tally in out.values():
        tally["held"] /= max(pairs, 1)
        tally["moved"] /= max(pairs, 1)
    return {"pairs": pairs, "modes": out}


def face_model(embedder) -> bool:
    return embedder.card.preprocess.get("modality", "finger") == "face"


def _databases(label: str, path: str) -> list[tuple[str, str]]:
    """(database, model file) pairs the model is scored on: the unseen ones."""
    from siamid.runtime import Embedder

    if Path(path).is_dir():
        found = [n for n in REAL if (SHARED / n).is_dir()]
        return list(fold_models(path, found).items())
    card = Embedder(path).card
    if card.preprocess.get("modality", "finger") == "face":
        return [(n, path) for n in FACE_SETS if (SHARED / n).is_dir()]
    seen = set(seen_in_training(path))
    names = [n for n in REAL + SYNTHETIC if (SHARED / n).is_dir() and n not in seen]
    if seen:
        print(f"{label}: left out {len(seen)} databases it was trained on: {', '.join(sorted(seen))}")
    return [(n, path) for n in names]


def _pct(k: float, n: int) -> str:
    return f"{100 * k / n:.1f}% ({int(k)}/{n})" if n else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = ["shipped=" + str(Path(__file__).resolve().parents[1] / "siamid/models/default.onnx")]
    lodo = Path(__file__).resolve().parents[1] / "runs" / "lodo_pretrained_medium"
    if lodo.is_dir():
        defaults.append(f"leave-one-out={lodo}")
    faces = sorted(Path(__file__).resolve().parents[1].glob("runs/face_*/export/*.onnx"))
    defaults += [f"face-{p.parent.parent.name}={p}" for p in faces if ".int8." not in p.name]
    parser.add_argument("--models", default=",".join(defaults),
                        help="label=PATH,... (an .onnx file, or a bench/leave_one_out.py --work "
                        "folder: each database scored by the fold that held it out)")
    parser.add_argument("--unlock-fmrs", default="card,0.01",
                        help="unlock FMRs: 'card' (the card's own target) and fractions")
    parser.add_argument("--enrolled", type=int, default=3, help="enrollment captures per identity")
    parser.add_argument("--bounds", default="1,2,5", help="bounds on the adapted part to compare")
    parser.add_argument("--rule", default="min")
    split = Path(__file__).resolve().parents[1] / "runs" / "face_rgbd" / "splits.json"
    parser.add_argument("--face-split", default=str(split) if split.is_file() else "",
                        help="a face run's splits.json: RAP3DF persons it trained or calibrated "
                        "on are left out")
    parser.add_argument("--json", default="adaptive_templates", help="bench/results/<name>.json")
    args = parser.parse_args()
    trained = _trained_subjects(args.face_split)
    from siamid.adaptation import MAX_ADAPTED, UPDATE_FMR_FACTOR, update_threshold
    from siamid.runtime import Embedder

    start = time.perf_counter()
    if not SHARED.is_dir():
        print(f"no shared data at {SHARED}; nothing to measure")
        return 0
    bounds = [int(b) for b in args.bounds.split(",")]
    if not faces:
        print("no exported face model under runs/face_*/export/: the face sets (RAP3DF, "
              "Extended Yale B) are skipped; pass --models face=PATH.onnx to score one")
    results, drift_rows, attack_rows = [], [], []
    for label, path in parse_models(args.models, folders=True).items():
        for database, model in _databases(label, path):
            embedder = Embedder(model)
            leave_out = trained if database == "rap3df" and face_model(embedder) else set()
            from siamid.faces import FACE_CHANNELS

            takes = embedder.preprocessor.config.face_channels
            if face_model(embedder) and "depth" in FACE_CHANNELS[takes] and database != "rap3df":
                print(f"{label}: {database} has no depth for a {takes} face model: skipped")
                continue
            seqs, poor, read = _sequences(embedder, database, leave_out)
            for fmr_text in args.unlock_fmrs.split(","):
                card = embedder.calibration
                if fmr_text == "card":
                    calibration = card
                else:
                    try:
                        calibration = card.retargeted(float(fmr_text))
                    except Exception as exc:  # noqa: BLE001 -- reported, not fatal
                        print(f"{label} {database}: FMR {fmr_text}: {exc}")
                        continue
                limit = update_threshold(calibration, args.enrolled, args.rule)
                drift = _drift(seqs, calibration, args.enrolled, bounds, args.rule)
                attack = _attack(seqs, calibration, args.enrolled, args.rule)
                kind = "synthetic" if database in SYNTHETIC else "real"
                record = {"model": label, "model_file": model, "model_id": embedder.model_id,
                          "database": database, "kind": kind, "unlock_fmr": calibration.target_fmr,
                          "update_fmr": UPDATE_FMR_FACTOR * calibration.target_fmr,
                          "threshold": calibration.threshold_for(args.enrolled, args.rule),
                          "update_threshold": limit, "images": read, "poor_images": poor,
                          "drift": drift, "attack": attack}
                results.append(record)
                n = drift["n_probes"]
                row = [label, f"{database} ({kind})", f"{calibration.target_fmr:.1%}",
                       "unsupported" if limit is None else f"{limit:.4f}",
                       f"{drift['n_identities']} (FTE {drift['fte']})", _pct(drift["off"], n)]
                for b in bounds:
                    t = drift["adapt"][str(b)]
                    row.append(f"{_pct(t['rejected'], n)}, {t['updates']} upd")
                drift_rows.append(row)
                modes = attack["modes"]
                for mode, tally in modes.items():
                    acc, att = tally["accepted"], tally["attempts"]
                    later = (_pct(sum(acc[1:]), sum(att[1:])) if len(att) > 1 else "-")
                    if len(modes) == 1:
                        mode = "none (no adaptation possible)"
                    attack_rows.append([label, database, f"{calibration.target_fmr:.1%}", mode,
                                        str(attack["pairs"]), later,
                                        " ".join(f"{100 * a / max(t, 1):.0f}" for a, t in
                                                 zip(acc, att)),
                                        f"{tally['held']:.2f}", f"{tally['moved']:.3f}"])
    took = time.perf_counter() - start
    command = "bench/adaptive_templates.py " + " ".join(sys.argv[1:])
    print(f"\nDrift: enroll the first {args.enrolled} captures, then the rest in time order; "
          f"rule {args.rule}; FNMR over the sequence (rejected/probes), updates made; "
          f"update FMR = {UPDATE_FMR_FACTOR:g} x unlock FMR")
    print_table(["model", "database", "unlock FMR", "update thr", "identities", "FNMR no adapt"]
                + [f"FNMR adapt <= {b}" + (" (default)" if b == MAX_ADAPTED else "")
                   for b in bounds], drift_rows)
    print("\nImpostor pull: impostor's capture 1 forced into the target's template, then their "
          "other captures; acceptance after the first attempt, per attempt (%), impostor "
          "signatures left in the template, movement of its unit mean")
    print_table(["model", "database", "unlock FMR", "mode", "pairs", "accepted, attempts 2..N",
                 "per attempt %", "held", "moved"], attack_rows)
    print(f"\n{machine()}; {took:.0f} s; {command}")
    path = write_json(args.json, {
        "machine": machine(), "command": command, "seconds": took, "rule": args.rule,
        "enrolled": args.enrolled, "bounds": bounds, "max_adapted": MAX_ADAPTED,
        "update_fmr_factor": UPDATE_FMR_FACTOR, "results": results})
    print("written to", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
