"""A face tower trained on several face sets, scored per set on its persons never seen in
training, against LBPH and dlib on exactly the same images.

The run (``siamid train --config configs/faces/gray.toml``) holds out a share of every set's
persons (its ``splits.json`` test split). For each set (RAP3DF, Extended Yale B, ORL, Yale) this
scores every pair of that set's test images: EER, FNMR at FMR 1% and 0.1% where the impostor
count allows, FNMR/FMR at the card's threshold, with counts; images the quality check refused
(no face found, too dark) are counted and still scored, as a camera would have retried them.

    .venv/bin/python bench/face_datasets.py [--run runs/face_gray] [--anchors lbph,dlib]
        [--json face_datasets]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, machine, print_table, write_json  # noqa: E402
from bench.face_anchors import euclidean_distances  # noqa: E402
from bench.faces import anchor_rates, export_once, rates, table_row, test_split  # noqa: E402
from siamid.dataset import Dataset  # noqa: E402


def face_set(subject: str) -> str:
    """The face set a subject of a merged dataset comes from: its prefix (``orl-3`` -> ``orl``)."""
    return subject.split("-", 1)[0]


def by_set(test: Dataset) -> dict[str, Dataset]:
    """The test split per face set."""
    groups: dict[str, list] = {}
    for entry in test.entries:
        groups.setdefault(face_set(entry.id.subject), []).append(entry)
    return {name: Dataset(name, tuple(sorted(entries, key=lambda e: e.id)))
            for name, entries in sorted(groups.items())}


def main() -> None:
    from siamid.runtime import Embedder
    from siamid.scoring import embed_with_quality

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default="runs/face_gray", help="run folder")
    parser.add_argument("--anchors", default="lbph,dlib", help="lbph, dlib, both or ''")
    parser.add_argument("--json", default="face_datasets", help="bench/results/<name>.json")
    args = parser.parse_args()
    started = time.time()
    run = Path(args.run)
    model = export_once(run)
    embedder = Embedder(model)
    anchors = {a.strip() for a in args.anchors.replace("both", "lbph,dlib").split(",") if a}
    header = ["matcher", "EER %", "FMR100 %", "FMR1000 %", "genuine / impostor",
              "FNMR @ card %", "FMR @ card %"]
    sets = {}
    for name, data in by_set(test_split(run)).items():
        print(f"scoring {name}", file=sys.stderr, flush=True)
        emb, ids, ok = embed_with_quality(embedder, data)
        results = {"tower": rates(euclidean_distances(emb), ids, embedder.threshold, poses=False),
                   **anchor_rates(data, ids, anchors)}
        sets[name] = {"images": len(ids), "persons": len({s.subject for s in ids}),
                      "quality_rejected": int((~ok).sum()), "results": results}
        print(f"\n{name}: every pair of {len(ids)} images of {sets[name]['persons']} test "
              f"persons ({sets[name]['quality_rejected']} refused by the quality check)")
        print_table(header, [table_row(k, r) for k, r in results.items()])
    out = write_json(args.json, {
        "machine": machine(), "seconds": time.time() - started, "command": " ".join(sys.argv),
        "model": str(model.relative_to(ROOT) if model.is_relative_to(ROOT) else model),
        "model_id": embedder.card.model_id, "sets": sets})
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
