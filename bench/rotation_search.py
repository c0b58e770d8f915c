"""Test-time rotation: does embedding each image at a few rotations help on real fingers?

Each real database is scored by the leave-one-database-out fold model that never saw it
(``--work``, bench/leave_one_out.py's folder). Every image is preprocessed once by the model's
card; its network input is then also rotated by each angle of ``--angles`` (bilinear, about the
centre, edges extended) and embedded. Variants, each over the angle sets {-a, 0, +a} for a in
``--angles``:

- ``mean``: one signature per image, the normalised mean of its rotated signatures (a drop-in:
  same template size, same decision code);
- ``search``: the distance of two images is the smallest over one image unrotated against the
  other at every angle, both ways round (a rotation search: each template image stores one
  signature per angle and each probe is embedded once per angle).

Reported: macro all-pairs EER over the 8 real databases with the paired bootstrap over fingers
against the unrotated signatures (bench/paired_bootstrap.py's ``compare``), full view and R503
view. Prints a table per view and writes bench/results/rotation_search.json.

    .venv/bin/python bench/rotation_search.py [--work runs/lodo_pretrained_medium]
        [--angles 10,20] [--draws 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REAL, SHARED, fold_models, machine, print_table, write_json  # noqa: E402
from bench.paired_bootstrap import HEADER, block_scores, compare  # noqa: E402


def rotated(images: np.ndarray, degrees: float) -> np.ndarray:
    """Network inputs (N, C, H, W) rotated by ``degrees`` about their centre."""
    from scipy import ndimage

    if degrees == 0:
        return images
    return np.stack([ndimage.rotate(im, degrees, axes=(1, 2), reshape=False, order=1,
                                    mode="nearest") for im in images]).astype(np.float32)


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a[:, None] - b[None], axis=2)


def _unit(m: np.ndarray) -> np.ndarray:
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def variant_distances(signatures: dict[float, np.ndarray], steps: list[float]) -> dict:
    """{variant label: distance matrix} from {angle: signatures}."""
    out = {"unrotated": _distances(signatures[0], signatures[0])}
    for a in steps:
        angles = [-a, 0, a]
        mean = _unit(sum(signatures[x] for x in angles))
        out[f"mean +-{a:g}"] = _distances(mean, mean)
        d = np.min([_distances(signatures[0], signatures[x]) for x in angles], axis=0)
        out[f"search +-{a:g}"] = np.minimum(d, d.T)
    return out


def score_view(models: dict[str, str], view, steps: list[float]) -> dict:
    """{variant: {database: (genuine, impostor)}} for one view (None: full images)."""
    from siamid.dataset import scan_dataset
    from siamid.runtime import Embedder
    from siamid.scoring import viewed_images

    scores: dict[str, dict] = {}
    for name, model in models.items():
        embedder = Embedder(model)
        inputs, identities = [], []
        for sample, image, dpi in viewed_images(scan_dataset(SHARED / name), view,
                                                embedder.preprocessor.load):
            inputs.append(embedder.preprocessor.process(image, dpi).as_float())
            identities.append(sample.identity)
        x = np.stack(inputs)
        angles = sorted({0.0, *steps, *(-a for a in steps)})
        signatures = {a: embedder.embed_prepared(rotated(x, a)) for a in angles}
        for label, d in variant_distances(signatures, steps).items():
            scores.setdefault(label, {})[name] = block_scores(
                lambda r, s, d=d: d[np.ix_(r, s)], np.array(identities))
        print(f"  {name}", file=sys.stderr, flush=True)
    return scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", default="runs/lodo_pretrained_medium",
                        help="bench/leave_one_out.py's --work folder (its fold models)")
    parser.add_argument("--angles", default="10,20", help="rotation steps a, in degrees")
    parser.add_argument("--draws", type=int, default=200, help="bootstrap draws (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"rotation_search: skipped: shared data not found at {SHARED}")
        return 0
    from siamid.scoring import VIEWS

    steps = [float(a) for a in args.angles.split(",") if a.strip()]
    names = [n for n in REAL if (SHARED / n).is_dir()]
    models = fold_models(args.work, names)
    start = time.perf_counter()
    record = {}
    for view, fn in VIEWS.items():
        print(f"view {view}", file=sys.stderr, flush=True)
        rows, boot = compare(score_view(models, fn, steps), names, args.draws, args.seed)
        print(f"\n{view} view: macro all-pairs EER over {len(names)} real databases, each by "
              f"the fold model that never saw it; {args.draws} paired draws of fingers")
        print_table(HEADER, rows)
        record[view] = boot
    path = write_json("rotation_search", {
        "machine": machine(), "work": args.work, "angles": steps, "models": models,
        "bootstrap": {"draws": args.draws, "seed": args.seed, "protocol": "all"},
        "views": record, "seconds": round(time.perf_counter() - start)})
    print("written to", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
