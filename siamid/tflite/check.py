"""A written .tflite file against the int8 ONNX file it came from, on a run's validation split:
the largest output differences in LiteRT and TFLite Micro end to end (``run.verify``) and
operator by operator (``stages.verify_stages``), the validation EER of
its signatures beside the ONNX file's (FVC protocol, the shared scoring code through
``runtime.Embedder``), the TFLite Micro arena and the file size."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .run import Verification, arena_bytes, verify
from .stages import StageVerification, verify_stages

__all__ = ["TfliteCheck", "check_tflite", "fvc_eer", "signatures", "validation_images"]


@dataclass(frozen=True)
class TfliteCheck:
    path: Path
    file_bytes: int
    arena_bytes: int
    verification: Verification
    stages: StageVerification
    val_eer: float  # of the .tflite's signatures
    val_eer_int8_onnx: float


def validation_images(run_dir: str | Path | None, progress=None, config: str | Path | None = None,
                      splits: str | Path | None = None) -> tuple[np.ndarray, tuple]:
    """A finished run's validation split as network inputs: float32 (N, C, H, W) and the ids
    (``config`` and ``splits`` name the run's files where they lie elsewhere, as a shipped
    model's ``<name>.config.toml`` and ``<name>.splits.json``)."""
    from ..config import load_config
    from ..dataset import load_splits
    from ..training import image_set, load_data

    config = load_config(Path(config) if config else Path(run_dir) / "config.toml")
    splits = load_splits(Path(splits) if splits else Path(run_dir) / "splits.json",
                         load_data(config))
    val = image_set(splits.val, config.preprocess, progress=progress)
    return val.images.astype(np.float32) / 255.0, val.ids


def signatures(model: str | Path, images: np.ndarray) -> np.ndarray:
    """Signatures of network inputs through an exported file (.onnx or .tflite)."""
    from ..runtime import Embedder

    return Embedder(model).embed_prepared(images)


def fvc_eer(signatures: np.ndarray, ids) -> float:
    """FVC-protocol EER of signatures of images labelled ``ids``."""
    from ..evaluation import evaluate_embeddings
    from ..pairs import fvc_pairs

    return float(evaluate_embeddings(signatures, list(ids), fvc_pairs(list(ids))).eer)


def check_tflite(int8_onnx: str | Path, tflite: str | Path, images: np.ndarray, ids,
                 tflm_images: int | None = None) -> TfliteCheck:
    """Verify ``tflite`` against ``int8_onnx`` on ``images`` (the first ``tflm_images`` of them
    through TFLite Micro, all where None), end to end and operator by operator, and measure both
    files' EER on them."""
    tflite = Path(tflite)
    data = tflite.read_bytes()
    return TfliteCheck(
        path=tflite, file_bytes=len(data), arena_bytes=arena_bytes(data),
        verification=verify(int8_onnx, tflite, images, tflm_images),
        stages=verify_stages(int8_onnx, images, tflm_images),
        val_eer=fvc_eer(signatures(tflite, images), ids),
        val_eer_int8_onnx=fvc_eer(signatures(int8_onnx, images), ids))
