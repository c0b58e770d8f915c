"""Benchmark of one capture + image upload over the R503 UART link, at 57600 and 115200 baud.

Runs the driver against the simulator with its wire pacing on (``wire=1``: every byte takes
10 bits at the baud rate, in both directions), so the time measured is what a real module's
link costs the host: GenImg and its acknowledge, UpImage, its acknowledge and the data packets
(128 bytes each, the R503's default) up to the end packet. Module-side processing (the R503
needs a few hundred milliseconds to grab an image) is not simulated and comes on top.

For the R503's 192 x 192 image and the older modules' 256 x 288 (R30x, AS608), at each rate:
bytes on the wire per capture + upload, the time those bytes take in theory (bytes * 10 /
baud), and the measured time, median of ``--runs`` runs after one warm-up; their difference is
what the driver itself adds (parsing and checking packets while the next ones arrive).

    .venv/bin/python bench/sensor_transfer.py [--runs 5] [--packet 128]

Prints a table and writes bench/results/sensor_transfer.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table, write_json

from siamid.sensors import R503

SIZES = {"R503 192x192": (192, 192), "R30x/AS608 256x288": (256, 288)}
BAUDS = (57600, 115200)


def measure(width: int, height: int, baud: int, packet: int, runs: int) -> dict:
    """Bytes and seconds of ``runs`` capture + upload cycles over a paced simulated link."""
    url = (f"r503sim://?width={width}&height={height}&baud={baud}&packet={packet}"
           "&wire=1&impressions=2")
    with R503(url, baudrate=baud, timeout=2.0) as sensor:
        sim = sensor.port.simulator
        sensor.read_image(timeout=5.0)  # warm-up: renders the synthetic finger
        times, sizes = [], []
        for _ in range(runs):
            before = sim.bytes_received + sim.bytes_sent
            start = time.perf_counter()
            image = sensor.read_image(timeout=5.0)
            times.append(time.perf_counter() - start)
            sizes.append(sim.bytes_received + sim.bytes_sent - before)
            assert image.shape == (height, width)
    if len(set(sizes)) != 1:
        raise SystemExit(f"bytes per capture varied between runs: {sizes}")
    wire = sizes[0]
    return {
        "width": width, "height": height, "baud": baud, "packet_size": packet,
        "bytes_on_wire": wire, "image_bytes": width * height // 2,
        "theory_s": wire * 10 / baud,
        "median_s": statistics.median(times), "runs_s": times,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per setting (median)")
    parser.add_argument("--packet", type=int, default=128, choices=(32, 64, 128, 256),
                        help="data packet size in bytes")
    args = parser.parse_args()
    if args.runs < 1:
        raise SystemExit("--runs must be at least 1")

    rows, results = [], []
    for label, (width, height) in SIZES.items():
        for baud in BAUDS:
            r = measure(width, height, baud, args.packet, args.runs)
            r["sensor"] = label
            results.append(r)
            rows.append([label, str(baud), f"{r['bytes_on_wire']:,}",
                         f"{r['theory_s']:.3f}", f"{r['median_s']:.3f}",
                         f"{(r['median_s'] - r['theory_s']) * 1000:.1f}",
                         f"{60 / r['median_s']:.0f}"])
    print_table(["image", "baud", "bytes on wire", "theory s", "measured s (median)",
                 "host overhead ms", "captures/min"], rows)
    path = write_json("sensor_transfer", {
        "what": "one capture + image upload over the simulated R503 UART link, wire-paced",
        "command": f"bench/sensor_transfer.py --runs {args.runs} --packet {args.packet}",
        "machine": machine(),
        "results": results,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
