"""The .tflite export of every shipped model and every MCU-sized tower: agreement with the int8
ONNX model in LiteRT and TFLite Micro, operator by operator (each operator on onnxruntime's int8
inputs) and end to end (beside onnxruntime's own two ways of running the int8 file: its fused
integer kernels and, without graph optimisation, each node in float), validation EER of fp32 ONNX, int8 ONNX and .tflite, the decisions of the
.tflite and the int8 ONNX file at the card's threshold on the same pairs, the TFLite Micro arena
and the file size.

A shipped model is measured on the validation split of its training run (runs/<run>, else its
own <name>.config.toml and <name>.splits.json in siamid/models) where the data is here; an
MCU-sized tower is exported with random weights (BatchNorm statistics as after training) and
compared on textured images only (no EER: an untrained tower has none worth reporting).

    .venv/bin/python bench/tflite_export.py [--tflm-images 128]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, print_table, write_json  # noqa: E402

from siamid.runtime import read_card  # noqa: E402
from siamid.tflite import export_tflite, read_io  # noqa: E402
from siamid.tflite.check import fvc_eer, signatures, validation_images  # noqa: E402
from siamid.pairs import fvc_pairs  # noqa: E402
from siamid.runtime import Embedder  # noqa: E402
from siamid.tflite.run import arena_bytes, onnx_int8_outputs, verify  # noqa: E402
from siamid.tflite.stages import verify_stages  # noqa: E402
from siamid.tflite.towers import mcu_sized_towers  # noqa: E402

MODELS = ROOT / "siamid" / "models"
# Shipped model -> the run it was exported from (Makefile: make pretrained).
RUNS = {"tiny": "pretrained_tiny", "default": "finetune_all_real", "micro": "pretrained_micro",
        "face_gray": "face_gray", "face_rgbd": "face_rgbd"}


def _validation(name: str, card):
    """(images, ids, where they come from) of a shipped model's validation split, or None. A
    run folder retrained since the model shipped (another input size) is passed over."""
    run = ROOT / "runs" / RUNS.get(name, name)
    candidates = [(None, run / "config.toml", run / "splits.json", f"runs/{run.name}"),
                  (None, MODELS / f"{name}.config.toml", MODELS / f"{name}.splits.json",
                   f"siamid/models/{name}.config.toml + .splits.json")]
    for _, config, splits, label in candidates:
        if config.is_file() and splits.is_file():
            try:
                images, ids = validation_images(None, config=config, splits=splits)
                if images.shape[1:] == (card.channels, *card.input_size):
                    return images, ids, label
                print(f"  {name}: {label} makes {images.shape[1:]} inputs, not the model's")
            except Exception as exc:  # the data of that split is not on this machine
                print(f"  {name}: {label}: {exc}")
    return None


def _textures(n: int, channels: int, size: int, seed: int) -> np.ndarray:
    sys.path.insert(0, str(ROOT / "tests"))
    from test_tflite import _textures as textures

    return textures(n, channels, size, seed)


def _row(name: str, source: str, int8_onnx: Path, fp32_onnx: Path | None, images, ids,
         tflm_images: int, out: Path) -> dict:
    start = time.time()
    path = export_tflite(int8_onnx, out / f"{name}.tflite")
    convert_s = time.time() - start
    check = verify(int8_onnx, path, images, tflm_images)
    row = {"model": name, "source": source, "images": check.images,
           "tflm_images": check.tflm_images, "litert_max_steps": check.litert_max_steps,
           "tflm_max_steps": check.tflm_max_steps, "arena_bytes": arena_bytes(path.read_bytes()),
           "file_bytes": path.stat().st_size, "int8_onnx_bytes": int8_onnx.stat().st_size,
           "convert_s": round(convert_s, 2)}
    # For scale: onnxruntime's own two ways of running the same int8 file, end to end.
    io = read_io(path)
    fused, unfused = (onnx_int8_outputs(int8_onnx, io["source_tensor"], images,
                                        io["source_offset"], fused=f) for f in (True, False))
    row["onnxruntime_paths_max_steps"] = int(np.abs(fused.astype(np.int16) - unfused).max())
    stages = verify_stages(int8_onnx, images, tflm_images)
    worst = stages.worst
    row.update(operator_max_steps=stages.max_steps, rounding_points=len(stages.stages),
               reference_unchanged=stages.reference_unchanged,
               operator_worst=None if worst is None else {"tensor": worst.tensor,
                                                          "ops": list(worst.ops)},
               operator_values_off_litert=sum(s.litert_off for s in stages.stages),
               operator_values_litert=sum(s.values for s in stages.stages) * stages.images)
    if ids is not None:
        onnx_sigs, tflite_sigs = signatures(int8_onnx, images), signatures(path, images)
        row["eer_int8_onnx"] = fvc_eer(onnx_sigs, ids)
        row["eer_tflite"] = fvc_eer(tflite_sigs, ids)
        threshold = Embedder(int8_onnx).threshold
        row["tflite_vs_int8_onnx"] = _decisions(onnx_sigs, tflite_sigs, ids, threshold)
        if fp32_onnx:
            fp32_sigs = signatures(fp32_onnx, images)
            row["eer_fp32_onnx"] = fvc_eer(fp32_sigs, ids)
            # For scale: what int8 itself changes, both files at the int8 card's threshold.
            row["int8_onnx_vs_fp32_onnx"] = _decisions(fp32_sigs, onnx_sigs, ids, threshold)
    return row


def _decisions(a: np.ndarray, b: np.ndarray, ids, threshold: float) -> dict:
    """FVC pairs decided differently by two files' signatures at ``threshold`` (accept iff
    distance < threshold), and the largest difference of their pair distances."""
    row = {sample: i for i, sample in enumerate(ids)}
    pairs = fvc_pairs(list(ids))
    i = np.array([row[p.a] for p in pairs])
    j = np.array([row[p.b] for p in pairs])
    da = np.linalg.norm(a[i] - a[j], axis=1)
    db = np.linalg.norm(b[i] - b[j], axis=1)
    return {"pairs": len(pairs), "threshold": threshold,
            "decisions_differ": int(np.count_nonzero((da < threshold) != (db < threshold))),
            "max_distance_diff": float(np.abs(da - db).max())}


def _differ(d: dict | None) -> str:
    return "-" if d is None else f"{d['decisions_differ']} / {d['pairs']:,}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tflm-images", type=int, default=128,
                        help="validation images run through TFLite Micro (slow reference kernels)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="siamid-tflite-bench-") as tmp:
        out = Path(tmp)
        for int8_onnx in sorted(MODELS.glob("*.int8.onnx")):
            name = int8_onnx.name.removesuffix(".int8.onnx")
            print(f"shipped {name} ...", flush=True)
            card = read_card(int8_onnx)
            found = _validation(name, card)
            fp32 = MODELS / f"{name}.onnx"
            if found is None:
                images = _textures(64, card.channels, card.input_size[0], seed=2)
                rows.append(_row(name, "textures (no validation data here)", int8_onnx, fp32,
                                 images, None, args.tflm_images, out))
            else:
                images, ids, label = found
                rows.append(_row(name, f"validation split of {label}", int8_onnx, fp32, images,
                                 ids, args.tflm_images, out))
        sys.path.insert(0, str(ROOT / "tests"))
        from test_tflite import _export

        for cost in mcu_sized_towers():
            print(f"tower {cost.name} ...", flush=True)
            folder = out / cost.name
            int8_onnx, _ = _export(cost.name, folder)
            images = _textures(64, cost.in_channels, cost.input_size, seed=2)
            row = _row(f"{cost.name} (random)", f"textures, {cost.input_size} px", int8_onnx,
                       None, images, None, args.tflm_images, out)
            row.update(tower=dataclasses.asdict(cost))
            rows.append(row)

    pct = lambda x: "-" if x is None else f"{100 * x:.2f}%"
    print_table(
        ["model", "images (TFLM)", "operator steps", "LiteRT steps", "TFLM steps", "ORT paths",
         "EER fp32", "EER int8 ONNX", "EER tflite", "decisions differ: tflite/int8", "int8/fp32",
         "arena", "file bytes"],
        [[r["model"], f"{r['images']} ({r['tflm_images']})",
          f"{r['operator_max_steps']} ({r['rounding_points']} points)",
          str(r["litert_max_steps"]), str(r["tflm_max_steps"]),
          str(r["onnxruntime_paths_max_steps"]), pct(r.get("eer_fp32_onnx")),
          pct(r.get("eer_int8_onnx")), pct(r.get("eer_tflite")),
          _differ(r.get("tflite_vs_int8_onnx")), _differ(r.get("int8_onnx_vs_fp32_onnx")),
          f"{r['arena_bytes']:,}", f"{r['file_bytes']:,}"]
         for r in rows])
    path = write_json("tflite_export", {"machine": machine(), "command":
                                        "bench/tflite_export.py " + " ".join(sys.argv[1:]),
                                        "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
