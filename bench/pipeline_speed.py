"""Training throughput, embedding latency (fp32 vs int8, batch 1), model sizes, signature size.

Exports freshly initialised towers of each architecture at 96 px (speed does not depend on the
weights), and times the shipped model's two files at their own input size, with its own
preprocessing of an R503 frame and of a whole 500 dpi print. Medians of several runs; int8
latency is also given as a ratio to fp32 measured in the same run, since this machine is shared
and noisy.

    .venv/bin/python bench/pipeline_speed.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table, write_json  # noqa: E402

from siamid.config import AugmentConfig, PreprocessConfig, to_dict  # noqa: E402
from siamid.exporting import export_onnx  # noqa: E402
from siamid.losses import compute_loss  # noqa: E402
from siamid.nets import count_parameters, create_tower  # noqa: E402
from siamid.runtime import Embedder  # noqa: E402
from siamid.training import augment  # noqa: E402
from siamid.types import ModelCard  # noqa: E402

RUNS = 3


def train_throughput(tower, steps: int = 20, batch: int = 64, size: int = 96,
                     runs: int = RUNS, device: torch.device | str = "cpu") -> float:
    """Median over ``runs`` timings of ``steps`` steps, in images/s, of augment (on the CPU) +
    forward + triplet batch-all loss + backward + AdamW step on ``size`` px inputs, as in
    training, after one untimed warm-up step."""
    device = torch.device(device)
    opt = torch.optim.AdamW(tower.parameters(), 1e-3)
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(batch // 4).repeat_interleave(4).to(device)
    x = torch.rand(batch, 1, size, size)

    def step() -> None:
        emb = tower(augment(x, AugmentConfig(), gen).to(device))
        loss = compute_loss("triplet", emb, labels, 0.0, "all")
        opt.zero_grad()
        loss.backward()
        opt.step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()
    rates = []
    for _ in range(runs):
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        rates.append(steps * batch / (time.perf_counter() - t0))
    return statistics.median(rates)


def latency_ms(path: Path, n: int = 200) -> float:
    """Median over RUNS of the mean time to embed one preprocessed image (1 thread)."""
    emb = Embedder(path, threads=1)
    x = np.random.default_rng(0).random((1, emb.card.channels, *emb.card.input_size),
                                        dtype=np.float32)
    for _ in range(20):
        emb.embed_prepared(x)
    times = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        for _ in range(n):
            emb.embed_prepared(x)
        times.append((time.perf_counter() - t0) / n * 1000)
    return statistics.median(times)


def preprocess_ms(config: PreprocessConfig | None = None, sensor: str = "r503",
                  n: int = 100) -> float:
    """Median over RUNS of the mean time to preprocess one raw frame of ``sensor`` (an R503's
    192x192, or a whole 500 dpi print) with ``config`` (default: the default preprocessing):
    quality verdict and network input in one pass, what the runtime does per image."""
    from siamid.preprocess import Preprocessor
    from siamid.synth import generate_finger

    image = generate_finger(0, 1, sensor)[1][0]
    pre = Preprocessor(config or PreprocessConfig())
    times = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        for _ in range(n):
            pre.process(image, 500)  # quality verdict and network input, as the runtime does
        times.append((time.perf_counter() - t0) / n * 1000)
    return statistics.median(times)


def shipped_speed() -> dict:
    """The shipped model's two files: network latency at their input size, and their card's
    preprocessing of an R503 frame and of a whole 500 dpi print."""
    from siamid.runtime import default_model_path

    path = default_model_path()
    embedder = Embedder(path)
    config = embedder.preprocessor.config
    return {"model_id": embedder.model_id, "input": "x".join(map(str, embedder.card.input_size)),
            "fp32_ms": latency_ms(path), "int8_ms": latency_ms(path.with_name("default.int8.onnx")),
            "preprocess_r503_ms": preprocess_ms(config, "r503"),
            "preprocess_500dpi_ms": preprocess_ms(config, "500dpi")}


def main() -> None:
    torch.set_num_threads(2)
    rows, out = [], {"machine": machine(), "towers": {}}
    calib = np.random.default_rng(1).random((32, 1, 96, 96), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        for name, dim in (("tiny", 16), ("small", 32)):
            tower = create_tower(name, dim, 1, 96)
            rate = train_throughput(tower)
            card = ModelCard("", name, dim, (96, 96), 1, to_dict(PreprocessConfig()), 0.5, 0.01)
            res = export_onnx(tower.eval(), card, Path(tmp) / name, calib)
            fp32, int8 = latency_ms(res.fp32_path), latency_ms(res.int8_path)
            entry = {"parameters": count_parameters(tower), "signature_bytes_int8": dim,
                     "signature_bytes_fp32": 4 * dim, "train_images_per_s": rate,
                     "fp32_ms": fp32, "int8_ms": int8, "int8_over_fp32": int8 / fp32,
                     "fp32_kb": res.fp32_path.stat().st_size / 1024,
                     "int8_kb": res.int8_path.stat().st_size / 1024}
            out["towers"][name] = entry
            rows.append([name, str(entry["parameters"]), f"{dim} B", f"{rate:.0f}",
                         f"{fp32:.3f}", f"{int8:.3f}", f"{int8 / fp32:.2f}",
                         f"{entry['fp32_kb']:.0f}", f"{entry['int8_kb']:.0f}"])
    out["preprocess_ms"] = preprocess_ms()
    out["shipped"] = shipped = shipped_speed()
    print(f"measured on {machine()}; medians of {RUNS} runs")
    print(f"preprocessing one raw 192x192 frame (numpy/scipy): {out['preprocess_ms']:.2f} ms")
    print_table(["tower", "params", "signature (int8)", "train img/s", "fp32 ms/img",
                 "int8 ms/img", "int8/fp32", "fp32 kB", "int8 kB"], rows)
    print(f"\nshipped model {shipped['model_id']} ({shipped['input']} px input)")
    print_table(["file", "ms/img (network)", "preprocess R503 frame ms",
                 "preprocess 500 dpi print ms"],
                [[f.removesuffix("_ms"), f"{shipped[f]:.3f}",
                  f"{shipped['preprocess_r503_ms']:.2f}", f"{shipped['preprocess_500dpi_ms']:.2f}"]
                 for f in ("fp32_ms", "int8_ms")])
    print(f"written to {write_json('pipeline_speed', out)}")


if __name__ == "__main__":
    main()
