"""Benchmark of the live authenticator: touch to decision over the R503 UART link.

Runs ``siamid.reader.Reader`` (verify mode, the shipped model, a 3-image template) against the
simulator with its wire pacing on (``wire=1``: every byte takes 10 bits at the baud rate), at
57600 and 115200 baud, and splits each touch's time into: capture (the GenImg exchange that
finds the finger), upload (the 192 x 192 image in 128-byte packets), preprocessing (the card's
quality check and network input), embedding (onnxruntime) and matching (the rest of
``Gallery.verify``: template lookup, distance, decision). Preprocessing and embedding are timed
by wrapping the Embedder's own ``prepare`` and ``embed_prepared``, so the reader runs exactly
the code ``siamid reader`` runs. A real module also spends a few hundred milliseconds grabbing
the image, which the simulator does not model.

    .venv/bin/python bench/reader_latency.py [--touches 7]

Prints a table (median of the touches, after one warm-up touch) and writes
bench/results/reader_latency.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table, write_json
from PIL import Image

from siamid.reader import Decision, Reader
from siamid.runtime import Embedder, Gallery
from siamid.sensors import R503
from siamid.store import TemplateStore
from siamid.synth import generate_finger

BAUDS = (57600, 115200)
STAGES = ("capture", "upload", "preprocess", "embed", "match", "total")


class Timed:
    """Wraps an Embedder's ``prepare`` and ``embed_prepared`` to add up their seconds."""

    def __init__(self, embedder: Embedder) -> None:
        self.seconds = {"preprocess": 0.0, "embed": 0.0}
        for name, stage in (("prepare", "preprocess"), ("embed_prepared", "embed")):
            setattr(embedder, name, self._wrap(getattr(embedder, name), stage))

    def _wrap(self, func, stage):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - start
        return timed

    def take(self) -> dict[str, float]:
        out, self.seconds = self.seconds, {"preprocess": 0.0, "embed": 0.0}
        return out


def measure(baud: int, touches: int, folder: Path, gallery: Gallery, timed: Timed) -> dict:
    """Per-stage seconds of ``touches`` verify touches (after one warm-up) at ``baud``."""
    url = f"r503sim://?images={folder}&lift=1&wire=1&baud={baud}"
    rows: list[dict[str, float]] = []

    def on_event(event) -> None:
        if isinstance(event, Decision):
            t = event.timings
            split = timed.take()
            rows.append({"capture": t.capture_s, "upload": t.upload_s, **split,
                         "match": t.decide_s - split["preprocess"] - split["embed"],
                         "total": t.total_s, "accepted": event.accepted})

    with R503(url, baudrate=baud, timeout=2.0) as sensor:
        reader = Reader(sensor, gallery, None, hold=0, lift_timeout=2.0, on_event=on_event)
        timed.take()
        reader.verify("alice", max_touches=touches + 1)
    rows = rows[1:]  # the warm-up touch
    medians = {s: statistics.median(r[s] for r in rows) for s in STAGES}
    return {"baud": baud, "touches": touches, "median_s": medians,
            "accepted": sum(r["accepted"] for r in rows), "runs": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--touches", type=int, default=7, help="timed touches per baud rate")
    args = parser.parse_args()
    if args.touches < 1:
        raise SystemExit("--touches must be at least 1")
    images = generate_finger(0, 8, sensor="r503", index=6)[1]
    embedder = Embedder()
    timed = Timed(embedder)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "probes")
        folder.mkdir()
        for i, image in enumerate(images[3:]):  # probes: impressions the template never saw
            Image.fromarray(image).save(folder / f"{i:02d}.png")
        with TemplateStore(Path(tmp, "g.db"), create=True) as store:
            gallery = Gallery(embedder, store)
            gallery.enroll("alice", images[:3])
            for baud in BAUDS:
                results.append(measure(baud, args.touches, folder, gallery, timed))
    rows = [[str(r["baud"]), *(f"{r['median_s'][s] * 1000:.1f}" for s in STAGES),
             f"{r['accepted']}/{r['touches']}"] for r in results]
    print_table(["baud", *(f"{s} ms" for s in STAGES), "accepted"], rows)
    path = write_json("reader_latency", {
        "what": "siamid reader verify: touch to decision over the simulated R503 link, "
                "wire-paced; medians in seconds",
        "command": f"bench/reader_latency.py --touches {args.touches}",
        "model": embedder.model_id,
        "machine": machine(),
        "results": results,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
