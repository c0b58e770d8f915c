"""Training throughput of each tower at its recipe's input size: the medium tower at 192 px
against small_pool at 96 px, on this machine's CPU (or its GPU, where torch sees one).

One step is what training does per batch (``pipeline_speed.train_throughput``: augment, forward,
triplet batch-all loss, backward, AdamW step) on batches of 64; each tower's rate is the median
of ``--runs`` timings of ``--steps`` steps, all in the same run.

    .venv/bin/python bench/training_speed.py [--towers medium:192:64,small_pool:96:32]
                                             [--runs 3] [--steps 3]

Prints a table and writes bench/results/training_speed.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table, write_json  # noqa: E402
from pipeline_speed import train_throughput  # noqa: E402

from siamid.nets import count_parameters, create_tower  # noqa: E402

DEFAULT_TOWERS = "medium:192:64,small_pool:96:32"
BATCH = 64


def _parse_towers(spec: str) -> list[tuple[str, int, int]]:
    """``"medium:192:64,..."`` -> [(tower, input size, embedding size), ...]."""
    out = []
    for item in filter(None, spec.split(",")):
        parts = item.split(":")
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            raise SystemExit(f"--towers: {item!r} is not tower:input_size:embedding_size")
        out.append((parts[0], int(parts[1]), int(parts[2])))
    if not out:
        raise SystemExit("--towers: no tower given")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--towers", default=DEFAULT_TOWERS,
                        help=f"tower:input_size:embedding_size,... (default {DEFAULT_TOWERS})")
    parser.add_argument("--runs", type=int, default=3, help="timings per tower (median)")
    parser.add_argument("--steps", type=int, default=3, help="training steps per timing")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    where = (torch.cuda.get_device_name() if device.type == "cuda"
             else f"CPU, {torch.get_num_threads()} torch threads")
    rows, results = [], []
    for name, size, dim in _parse_towers(args.towers):
        torch.manual_seed(0)
        tower = create_tower(name, dim, 1, size).to(device).train()
        rate = train_throughput(tower, steps=args.steps, batch=BATCH, size=size, runs=args.runs,
                                device=device)
        results.append({"tower": name, "input_size": size, "embedding_size": dim,
                        "parameters": count_parameters(tower), "batch": BATCH,
                        "images_per_s": rate, "step_s": BATCH / rate})
        rows.append([name, f"{size} px", str(dim), f"{results[-1]['parameters']:,}",
                     f"{1e3 * BATCH / rate:.0f} ms", f"{rate:.1f}"])
    print(f"training step, batch {BATCH}, median of {args.runs} x {args.steps} steps; {where}; "
          f"{machine()}")
    print_table(["tower", "input", "D", "parameters", "step", "images/s"], rows)
    out = {"device": where, "machine": machine(), "torch": torch.__version__, "runs": args.runs,
           "steps": args.steps, "towers": results}
    print(f"wrote {write_json('training_speed', out)}")


if __name__ == "__main__":
    main()
