"""The pretrained model inside the package: loads without torch's help, and still separates fingers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from siamid.evaluation import evaluate_embeddings
from siamid.pairs import Protocol, fvc_pairs
from siamid.runtime import Embedder, default_model_path
from siamid.types import SampleId


@pytest.mark.parametrize("stem", ["default", "tiny"])
def test_shipped_model_and_int8_twin_carry_their_own_calibrations(stem):
    fp32 = Embedder(default_model_path().with_name(f"{stem}.onnx"))
    int8 = Embedder(default_model_path().with_name(f"{stem}.int8.onnx"))
    assert fp32.card.quantization == "fp32" and int8.card.quantization == "int8"
    assert fp32.model_id.startswith(fp32.card.architecture)
    assert int8.model_id == f"{fp32.model_id}.int8"  # another function, another id
    for model in (fp32, int8):
        cal = model.calibration
        assert 0.0 < model.threshold < 2.0 and cal.target_fmr == pytest.approx(0.001)
        # says where its claim comes from: real validation fingers (default), synthetic (tiny)
        assert cal.source is not None and cal.source.n_identities > 0
        assert cal.source.synthetic == (stem == "tiny")
        assert set(cal.points) >= {"1", "min:3", "mean:3"}
        for key, point in cal.points.items():
            assert point.table.n_impostor * cal.target_fmr >= 1, key
            # The calibration FMR at each threshold is what the card claims it was chosen at.
            assert point.table.estimate(np.nextafter(point.threshold, 0)) <= cal.target_fmr
    # Each file is calibrated on its own outputs, so the two thresholds are measured apart.
    assert fp32.calibration.points["1"].table != int8.calibration.points["1"].table
    cost = int8.card.metrics["val_eer_fvc"] - fp32.card.metrics["val_eer_fvc"]
    assert cost <= 0.005
    mixed = int8.card.metrics["val_eer_fvc_mixed"] - fp32.card.metrics["val_eer_fvc"]
    assert (int8.accepts_templates_of(fp32.model_id)) == (mixed <= 0.005)
    assert fp32.accepts_templates_of(int8.model_id) == int8.accepts_templates_of(fp32.model_id)


@pytest.mark.parametrize("name", ["tiny.onnx", "tiny.int8.onnx"])
def test_tiny_tower_ships_microcontroller_sized(name):
    import onnx
    from onnx import numpy_helper

    path = default_model_path().with_name(name)
    embedder = Embedder(path)
    assert embedder.embedding_size == 16 and embedder.card.architecture == "tiny"
    assert embedder.model_id.startswith(
        Embedder(default_model_path().with_name("tiny.onnx")).model_id)
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

    score = score_model(Embedder(), scan_dataset(shared_data / "upek"), (Protocol("fvc"),))
    report = score.reports["fvc"]
    assert (report.n_genuine, report.n_impostor) == (448, 120)
    # The default was fine-tuned on these fingers among the 86 real ones: this checks that the
    # shipped file works end to end on real prints, not its accuracy (docs/experiments.md).
    assert report.eer < 0.15, report.summary()


def test_default_model_on_the_r503_view_of_a_real_database(shared_data: Path):
    from siamid import scoring
    from siamid.dataset import scan_dataset

    seen = []

    def spy(image, dpi):
        out = scoring.r503(image, dpi)
        seen.append(out)
        return out

    score = scoring.score_model(Embedder(), scan_dataset(shared_data / "upek"),
                                (Protocol("fvc"),), view=spy)
    # Every image went through the view: 192 x 192, 500 dpi, 16 gray levels.
    assert len(seen) == score.n_images == 128
    assert all(im.shape == (192, 192) and dpi == 500 for im, dpi in seen)
    assert all(set(np.unique(im)) <= {k * 17 for k in range(16)} for im, _ in seen)
    assert score.reports["fvc"].eer < 0.15  # far from chance (50%)


def test_shipped_face_model_takes_rgbd_and_refuses_photos():
    from siamid.faces.attacks import photo_attack

    for name in ("face_rgbd.onnx", "face_rgbd.int8.onnx"):
        face = Embedder(default_model_path().with_name(name))
        cfg = face.preprocessor.config
        assert face.card.architecture == "face" and face.embedding_size == 128
        assert (cfg.modality, cfg.face_channels, face.card.channels) == ("face", "rgbd", 4)
        assert cfg.min_depth_relief > 0
        assert face.calibration.source is not None and not face.calibration.source.synthetic
        # A head: colour over a dome of depth. Its photo (flat depth) is refused.
        yy, xx = np.mgrid[:120, :96]
        r = np.hypot((yy - 60) / 48, (xx - 48) / 38)
        inside = r < 1
        colour = np.where(inside[:, :, None], 150, 0).astype(np.uint8).repeat(3, axis=2)
        depth = np.where(inside, np.rint(128 + 60 * np.sqrt(np.clip(1 - r * r, 0, 1))), 0)
        head = np.dstack([colour, depth.astype(np.uint8)])
        assert face.preprocessor.process(head, 500).quality.ok
        verdict = face.preprocessor.process(photo_attack(head, "flat", cfg), 500).quality
        assert not verdict.ok and verdict.reason.startswith("depth flat")


def test_shipped_face_model_separates_unseen_persons(shared_data):
    """Four persons of RAP3DF's test split (never trained on, never used to calibrate)."""
    folder = shared_data / "rap3df"
    if not folder.is_dir():
        pytest.skip("rap3df not available")
    face = Embedder(default_model_path().with_name("face_rgbd.onnx"))
    ids, rows = [], []
    for person in ("1OTVJNA2CB", "8LXZ8DKYF4", "AI3NIAO", "CPUR8VH"):
        for take in ("front_1", "left_1", "right_1", "up_1", "down_1"):
            image = face.preprocessor.load(folder / person / f"{take}_rgb_registered.png")
            rows.append(face.embed_one(image))
            ids.append(SampleId(person, "face", take))
    from siamid.pairs import all_pairs

    report = evaluate_embeddings(np.stack(rows), ids, all_pairs(ids))
    assert (report.n_genuine, report.n_impostor) == (40, 150)
    assert report.eer < 0.15 and report.roc_auc > 0.95


def test_micro_model_ships_for_microcontrollers_with_its_c_reference(tmp_path):
    """micro.tflite: fully int8, the card inside, within the microcontroller targets at 192 px
    (8 kB of int8 weights, 4 M MACs, 150 kB of TFLite Micro arena), trained on integer
    preprocessing, so its C export needs no allowance; the .onnx files share its card."""
    from siamid.cexport import export_c
    from siamid.profile import profile_model
    from siamid.tflite import card_from_tflite

    folder = default_model_path().parent
    lite = folder / "micro.tflite"
    card = card_from_tflite(lite)
    assert card == Embedder(folder / "micro.int8.onnx").card
    assert card.architecture == "micro" and card.embedding_size == 16
    assert card.input_size == (192, 192) and card.preprocess["integer"] is True
    profile = profile_model(lite)
    assert profile.parameter_bytes <= 8_000 and profile.macs <= 4_000_000
    assert profile.arena_bytes <= 150_000
    assert all(profile.operator_support.values()), profile.operator_support
    files = export_c(lite, tmp_path)
    assert "PREPROCESS_EXACT 1" in next(p for p in files if p.name.endswith("_model.h")).read_text()
    # The runtime embeds with it like any model: a unit-length 16-value signature.
    signature = Embedder(lite).embed_one(np.full((192, 192), 255, np.uint8), 500, check=False)
    assert signature.shape == (16,) and np.linalg.norm(signature) == pytest.approx(1.0, abs=1e-4)


def test_micro_tflite_is_what_the_export_writes_and_passes_the_operator_check(tmp_path):
    """The shipped micro.tflite is byte for byte what `siamid export` writes from micro.int8.onnx
    today, and each of its operators, fed onnxruntime's int8 inputs, is within one step."""
    from siamid.tflite import export_tflite
    from siamid.tflite.stages import verify_stages

    folder = default_model_path().parent
    fresh = export_tflite(folder / "micro.int8.onnx", tmp_path / "micro.tflite")
    assert fresh.read_bytes() == (folder / "micro.tflite").read_bytes()
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:192, 0:192]
    images = np.stack([np.clip(128 + 90 * np.sin((x * np.cos(t) + y * np.sin(t)) / 1.4)
                               + rng.normal(0, 12, x.shape), 0, 255)
                       for t in rng.uniform(0, np.pi, 4)])[:, None]
    stages = verify_stages(folder / "micro.int8.onnx", np.rint(images) / 255.0, tflm_images=2)
    assert stages.passed and stages.reference_unchanged, stages.worst
    assert len(stages.stages) == 12 and stages.stages[-1].values == 16
