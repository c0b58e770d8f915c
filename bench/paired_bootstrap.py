"""Is one recipe really better than another on real fingers? A paired bootstrap over fingers.

Each FVC set B database has only 10 fingers, so a macro EER over the real databases moves by
points when other fingers are drawn. This benchmark embeds every real database with each model,
then redraws the fingers of every database with replacement (the same draw for every model, so
the comparison is paired) and recomputes each model's macro all-pairs EER. It reports each
model's macro EER with its 95% interval and, for every model after the first (the reference),
the 95% interval of its difference to the reference: an interval that contains 0 is no evidence
of a difference.

    .venv/bin/python bench/paired_bootstrap.py --models ref=A.onnx,other=B.onnx [--draws 200]

A model may also be a bench/leave_one_out.py ``--work`` folder: each database is then scored by
the fold's model that never saw it, so two recipes measured leave one database out are compared
on the same draws (``--models shipped=runs/lodo_shipped,new=runs/lodo_new``).

Other benchmarks reuse ``database_scores`` and ``compare``: a model there may also be one file
per database (bench/leave_one_out.py scores each database with the model that never saw it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (REAL, SHARED, fold_models, machine, parse_models, print_table,  # noqa: E402
                          write_json)


def finger_scores(emb: np.ndarray, identities: np.ndarray) -> tuple[list[np.ndarray], dict]:
    """Per finger, its genuine distances; per pair of fingers (a < b), their impostor distances."""
    return block_scores(lambda r, s: np.linalg.norm(emb[r][:, None] - emb[s][None], axis=2),
                        identities)


def block_scores(block, identities: np.ndarray) -> tuple[list[np.ndarray], dict]:
    """``finger_scores`` for any distance: ``block(rows_a, rows_b)`` is the matrix of distances
    between the images at indices ``rows_a`` and those at ``rows_b``."""
    fingers = sorted(set(identities))
    rows = [np.nonzero(identities == f)[0] for f in fingers]
    genuine = [block(r, r)[np.triu_indices(len(r), 1)] for r in rows]
    impostor = {(a, b): block(rows[a], rows[b]).ravel()
                for a in range(len(rows)) for b in range(a + 1, len(rows))}
    return genuine, impostor


def drawn_eer(genuine: list[np.ndarray], impostor: dict, draw: np.ndarray) -> float:
    """All-pairs EER over the fingers in ``draw`` (indices, repeats allowed): a finger drawn
    twice counts its comparisons twice, and is never its own impostor."""
    from siamid.evaluation import evaluate_scores

    gen = np.concatenate([genuine[f] for f in draw])
    imp = [impostor[(min(a, b), max(a, b))]
           for i, a in enumerate(draw) for b in draw[i + 1:] if a != b]
    return evaluate_scores(gen, np.concatenate(imp)).eer


def database_scores(models: dict[str, str | dict[str, str]], names: list[str]) -> dict:
    """{label: {database: (genuine, impostor)}} (see ``finger_scores``) for each model; a model is
    one .onnx file for every database, or {database: file}."""
    from siamid.dataset import scan_dataset
    from siamid.runtime import Embedder
    from siamid.scoring import embed_dataset

    opened: dict[str, Embedder] = {}
    scores: dict[str, dict[str, tuple]] = {label: {} for label in models}
    for name in names:
        dataset = scan_dataset(SHARED / name)
        for label, model in models.items():
            path = model if isinstance(model, str) else model[name]
            embedder = opened.setdefault(path, Embedder(path))
            emb, ids, _ = embed_dataset(embedder, dataset)
            scores[label][name] = finger_scores(emb, np.array([i.identity for i in ids]))
    return scores


def compare(scores: dict, names: list[str], draws: int, seed: int) -> tuple[list[list[str]], dict]:
    """Each model's macro all-pairs EER with its 95% interval over ``draws`` paired draws of
    fingers and, for every model after the first (the reference), the interval of its
    difference to the reference: the table's rows and the JSON entries by label."""
    labels = list(scores)
    n_fingers = {n: len(scores[labels[0]][n][0]) for n in names}
    rng = np.random.default_rng(seed)
    every = {n: np.arange(n_fingers[n]) for n in names}
    drawn = [every] + [{n: rng.integers(0, n_fingers[n], n_fingers[n]) for n in names}
                       for _ in range(draws)]
    macro = np.array([[np.mean([drawn_eer(*scores[label][n], d[n]) for n in names])
                       for label in labels] for d in drawn])  # (1 + draws, models)
    point, boot = macro[0], macro[1:]
    rows, results = [], {}
    for k, label in enumerate(labels):
        lo, hi = np.percentile(boot[:, k], [2.5, 97.5])
        entry = {"macro_eer": float(point[k]), "ci95": [float(lo), float(hi)]}
        row = [label, f"{100 * point[k]:.2f}%", f"{100 * lo:.2f}-{100 * hi:.2f}%"]
        if k:
            diff = boot[:, k] - boot[:, 0]
            dlo, dhi = np.percentile(diff, [2.5, 97.5])
            entry.update(diff=float(point[k] - point[0]), diff_ci95=[float(dlo), float(dhi)])
            row += [f"{100 * (point[k] - point[0]):+.2f}", f"{100 * dlo:+.2f} to {100 * dhi:+.2f}",
                    "no" if dlo <= 0 <= dhi else "yes"]
        else:
            row += ["reference", "", ""]
        rows.append(row)
        results[label] = entry
    return rows, results


HEADER = ["model", "macro EER", "95% interval", "vs reference",
          "95% interval of the difference", "significant"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True,
                        help="comma-separated label=path.onnx (or label=leave_one_out work folder); "
                             "the first is the reference")
    parser.add_argument("--draws", type=int, default=200, help="bootstrap draws (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="paired_bootstrap",
                        help="results name: bench/results/<name>.json")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"paired_bootstrap: skipped: shared data not found at {SHARED}")
        return 0
    models = parse_models(args.models, folders=True)
    start = time.perf_counter()
    names = [n for n in REAL if (SHARED / n).is_dir()]
    scores = database_scores({label: fold_models(path, names) if Path(path).is_dir() else path
                              for label, path in models.items()}, names)
    rows, results = compare(scores, names, args.draws, args.seed)
    print(f"macro all-pairs EER over {len(names)} real databases, {args.draws} paired draws of "
          f"fingers; {time.perf_counter() - start:.0f} s")
    print_table(HEADER, rows)
    n_fingers = {n: len(scores[next(iter(models))][n][0]) for n in names}
    path = write_json(args.json, {"machine": machine(), "draws": args.draws, "seed": args.seed,
                                  "databases": names, "fingers": n_fingers,
                                  "models": {label: {**entry, "model": models[label]}
                                             for label, entry in results.items()}})
    print("written to", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
