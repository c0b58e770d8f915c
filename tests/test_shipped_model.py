"""The pretrained model inside the package: loads without torch's help, and still separates fingers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from siamid.evaluation import evaluate_embeddings
from siamid.pairs import fvc_pairs
from siamid.runtime import Embedder, default_model_path
from siamid.types import SampleId


def test_default_model_and_int8_twin_carry_a_consistent_card():
    fp32 = Embedder()
    int8 = Embedder(default_model_path().with_name("default.int8.onnx"))
    assert fp32.card.quantization == "fp32" and int8.card.quantization == "int8"
    assert fp32.model_id == int8.model_id and fp32.model_id.startswith(fp32.card.architecture)
    assert 0.0 < fp32.threshold < 2.0 and fp32.card.threshold_fmr == pytest.approx(0.001)
    assert len(fp32.card.calibration_impostor) > 100
    # The calibration FMR at the threshold is what the card claims it was chosen at.
    assert fp32.fmr_estimate(fp32.threshold) <= 0.002
    assert abs(int8.card.metrics["val_eer_fvc"] - fp32.card.metrics["val_eer_fvc"]) <= 0.005


@pytest.mark.parametrize("name", ["tiny.onnx", "tiny.int8.onnx"])
def test_tiny_tower_ships_microcontroller_sized(name):
    import onnx
    from onnx import numpy_helper

    path = default_model_path().with_name(name)
    embedder = Embedder(path)
    assert embedder.embedding_size == 16 and embedder.card.architecture == "tiny"
    assert embedder.model_id == Embedder(default_model_path().with_name("tiny.onnx")).model_id
    weights = sum(numpy_helper.to_array(t).size for t in onnx.load(str(path)).graph.initializer
                  if t.data_type != onnx.TensorProto.INT64)
    assert weights <= 8_000  # about 8 kB as int8: the MLTK class
    signature = embedder.embed_one(np.full((192, 192), 255, np.uint8), 500, check=False)
    assert signature.shape == (16,) and np.linalg.norm(signature) == pytest.approx(1.0, abs=1e-4)


def test_default_model_separates_unseen_synthetic_fingers():
    from siamid.synth import generate_finger

    emb, ids = [], []
    embedder = Embedder()
    for finger in range(12):
        # Seeds far from the training set's (seed 100): fingers the model never saw.
        _, images = generate_finger(9000 + finger, 3)
        for take, image in enumerate(images):
            emb.append(embedder.embed_one(image, 500, check=False))
            ids.append(SampleId(f"s{finger}", "finger", str(take)))
    report = evaluate_embeddings(np.stack(emb), ids, fvc_pairs(ids))
    assert report.eer < 0.15, report.summary()


def test_default_model_on_a_real_database(shared_data: Path):
    from siamid.dataset import scan_dataset
    from siamid.scoring import score_model

    score = score_model(Embedder(), scan_dataset(shared_data / "upek"), ("fvc",))
    report = score.reports["fvc"]
    assert (report.n_genuine, report.n_impostor) == (448, 120)
    assert report.eer < 0.15, report.summary()  # measured 10.0%; far from chance (50%)


def test_default_model_on_the_r503_view_of_a_real_database(shared_data: Path):
    from siamid import scoring
    from siamid.dataset import scan_dataset

    seen = []

    def spy(image, dpi):
        out = scoring.r503(image, dpi)
        seen.append(out)
        return out

    score = scoring.score_model(Embedder(), scan_dataset(shared_data / "upek"), ("fvc",), view=spy)
    # Every image went through the view: 192 x 192, 500 dpi, 16 gray levels.
    assert len(seen) == score.n_images == 128
    assert all(im.shape == (192, 192) and dpi == 500 for im, dpi in seen)
    assert all(set(np.unique(im)) <= {k * 17 for k in range(16)} for im, _ in seen)
    assert score.reports["fvc"].eer < 0.15  # measured 9.60% (full images: 10.0%)
