"""export_onnx / read_card / model_id_for on a tiny random tower (no dependency on siamid.nets)."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from siamid.config import PreprocessConfig
from siamid.errors import ModelError
from siamid.exporting import export_onnx, model_id_for, read_card
from siamid.runtime import CARD_METADATA_KEY
from siamid.types import ModelCard

SIZE = 32


class TinyTower(nn.Module):
    """The tower contract in miniature: (N, 1, 32, 32) in [0, 1] -> (N, 8) unit vectors."""

    architecture = "tiny"
    embedding_size = 8
    input_size = (SIZE, SIZE)
    in_channels = 1

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(1, 8, 5, stride=2, padding=2)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16 * 4, 8)
        # Non-trivial running statistics, so folding BatchNorm into the conv is really exercised.
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.2, 0.2)
            self.bn.running_var.uniform_(0.5, 2.0)
            self.bn.weight.uniform_(0.5, 1.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv1(x)))
        x = F.relu(self.conv2(x))
        x = F.adaptive_avg_pool2d(x, 2).flatten(1)
        return F.normalize(self.fc(x), dim=1)


class BranchyTower(TinyTower):
    """Data-dependent control flow: the tracer bakes in one branch, so ONNX != torch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        if float(x.sum()) > 0.0:  # the export traces with zeros; real inputs take this branch
            y = -y
        return y


def _card(tower: nn.Module, **changes) -> ModelCard:
    cfg = PreprocessConfig(size=SIZE, crop=128)
    card = ModelCard(
        model_id="",
        architecture=tower.architecture,
        embedding_size=tower.embedding_size,
        input_size=tower.input_size,
        channels=tower.in_channels,
        preprocess=dataclasses.asdict(cfg),
        threshold=0.7,
        threshold_fmr=0.01,
        compatible_ids=("other-model",),
    )
    return card.with_changes(**changes) if changes else card


def _images(n: int, seed: int) -> np.ndarray:
    """Random-ish network inputs: oriented stripes of random period/phase plus noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    out = np.empty((n, 1, SIZE, SIZE), np.float32)
    for i in range(n):
        theta, period, phase = rng.uniform(0, np.pi), rng.uniform(3, 8), rng.uniform(0, 2 * np.pi)
        wave = np.sin(2 * np.pi * (x * np.cos(theta) + y * np.sin(theta)) / period + phase)
        out[i, 0] = np.clip(0.5 + 0.4 * wave + rng.normal(0, 0.1, wave.shape), 0, 1)
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tower = TinyTower(seed=0).eval()
    out = tmp_path_factory.mktemp("models")
    return tower, export_onnx(tower, _card(tower), out, calibration=_images(64, seed=1))


def _run(path, images):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"image": images}
    )[0]


def test_files_and_names(exported):
    tower, result = exported
    model_id = model_id_for(tower, _card(tower).preprocess)
    assert result.fp32_path.name == f"{model_id}.onnx"
    assert result.int8_path.name == f"{model_id}.int8.onnx"
    session = ort.InferenceSession(str(result.fp32_path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert inp.name == "image" and out.name == "signature"
    assert isinstance(inp.shape[0], str) and inp.shape[1:] == [1, SIZE, SIZE]  # dynamic batch
    # No stray temporary files beside the models.
    assert sorted(p.name for p in result.fp32_path.parent.iterdir()) == sorted(
        [result.fp32_path.name, result.int8_path.name]
    )


def test_fp32_matches_torch(exported):
    tower, result = exported
    images = _images(7, seed=5)  # a batch size the export never saw
    with torch.no_grad():
        want = tower(torch.from_numpy(images)).numpy()
    got = _run(result.fp32_path, images)
    assert got.shape == (7, 8)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_int8_is_close_to_fp32(exported):
    _, result = exported
    images = _images(32, seed=9)
    a, b = _run(result.fp32_path, images), _run(result.int8_path, images)
    cosine = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() > 0.95
    # Really quantized: int8 weights and QDQ nodes are in the graph.
    graph = onnx.load(str(result.int8_path)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert any(t.data_type == onnx.TensorProto.INT8 for t in graph.initializer)
    # The L2 normalisation stayed in float: the int8 signatures are still unit length.
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-4)
    metrics = result.int8_card.metrics
    assert 0.95 < metrics["int8_cosine_min"] <= 1.0 + 1e-6
    assert metrics["int8_max_drift"] == pytest.approx(result.int8_max_drift)


def test_read_card_round_trip(exported):
    tower, result = exported
    card = read_card(result.fp32_path)
    assert card == result.card
    assert card.model_id == model_id_for(tower, card.preprocess) and card.quantization == "fp32"
    assert card.preprocess == dataclasses.asdict(PreprocessConfig(size=SIZE, crop=128))
    assert card.compatible_ids == ("other-model",)
    assert card.versions["onnxruntime"] == ort.__version__
    int8 = read_card(result.int8_path)
    # The int8 file computes another function: its own id, never the fp32 one.
    assert int8.quantization == "int8" and int8.model_id == f"{card.model_id}.int8"
    assert int8 == result.int8_card


def test_model_id_tracks_weights():
    a, b = TinyTower(seed=0), TinyTower(seed=0)
    assert re.fullmatch(r"tiny-[0-9a-f]{12}", model_id_for(a))
    assert model_id_for(a) == model_id_for(b)
    with torch.no_grad():
        b.fc.bias[0] += 1e-3
    assert model_id_for(a) != model_id_for(b)
    assert model_id_for(TinyTower(seed=1)) != model_id_for(a)


def test_export_without_calibration(tmp_path):
    tower = TinyTower(seed=3).eval()
    result = export_onnx(tower, _card(tower), tmp_path / "new" / "dir")
    assert result.int8_path is None and result.int8_card is None
    assert result.fp32_path.exists()
    assert read_card(result.fp32_path).model_id == model_id_for(tower, _card(tower).preprocess)


def test_export_does_not_change_the_tower(tmp_path):
    tower = TinyTower(seed=4).train()
    before = {k: v.clone() for k, v in tower.state_dict().items()}
    export_onnx(tower, _card(tower), tmp_path)
    assert tower.training  # still in training mode
    for k, v in tower.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_export_refuses_mismatched_card(tmp_path):
    tower = TinyTower()
    with pytest.raises(ModelError, match="embedding_size is 16"):
        export_onnx(tower, _card(tower, embedding_size=16), tmp_path)
    with pytest.raises(ModelError, match="calibration"):
        export_onnx(tower, _card(tower), tmp_path, calibration=np.zeros((4, 3, SIZE, SIZE), np.float32))


def test_export_detects_onnx_torch_disagreement(tmp_path):
    tower = BranchyTower().eval()
    with pytest.raises(ModelError, match="does not reproduce the torch tower"):
        export_onnx(tower, _card(tower), tmp_path)
    assert not list(tmp_path.glob("*.onnx"))  # the wrong file is not left behind


def test_read_card_errors(tmp_path, exported):
    with pytest.raises(ModelError, match="not found"):
        read_card(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not an onnx model\xff" * 10)
    with pytest.raises(ModelError, match="cannot load model"):
        read_card(junk)
    _, result = exported
    proto = onnx.load(str(result.fp32_path))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(ModelError, match="no siamid ModelCard"):
        read_card(bare)
    entry = proto.metadata_props.add()
    entry.key, entry.value = CARD_METADATA_KEY, json.dumps({"model_id": "x"})
    broken = tmp_path / "broken.onnx"
    onnx.save(proto, str(broken))
    with pytest.raises(ModelError, match="malformed ModelCard"):
        read_card(broken)


def _labelled(n_fingers: int = 24, takes: int = 4):
    """uint8 network inputs of stripe 'fingers' (one orientation and period each) and their ids."""
    from siamid.types import SampleId

    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    images, ids = [], []
    for f in range(n_fingers):
        theta, period = rng.uniform(0, np.pi), rng.uniform(3, 8)
        for t in range(takes):
            wave = np.sin(2 * np.pi * (x * np.cos(theta) + y * np.sin(theta)) / period + t)
            noisy = np.clip(0.5 + 0.4 * wave + rng.normal(0, 0.05, wave.shape), 0, 1)
            images.append(np.round(noisy * 255).astype(np.uint8)[None])
            ids.append(SampleId(f"s{f}", "f", str(t + 1)))
    return np.stack(images), ids


def _copies(result, tmp_path):
    fp32, int8 = tmp_path / "m.onnx", tmp_path / "m.int8.onnx"
    fp32.write_bytes(result.fp32_path.read_bytes())
    int8.write_bytes(result.int8_path.read_bytes())
    return {"fp32": (fp32, read_card(fp32)), "int8": (int8, read_card(int8))}


def test_each_file_is_calibrated_on_its_own_outputs(exported, tmp_path):
    from siamid.calibration import Provenance, calibrate, card_calibration
    from siamid.exporting import calibrate_files
    from siamid.runtime import Embedder

    _, result = exported
    files = _copies(result, tmp_path)
    images, ids = _labelled()
    source = Provenance("validation", name="stripes", n_images=len(ids), n_identities=24)
    cards = calibrate_files(files, images, ids, 0.01, source, allow_int8_drift=True)
    for kind, (path, _) in files.items():
        card = read_card(path)
        assert card == cards[kind]
        own = Embedder(path).embed_prepared(images.astype(np.float32) / 255.0)
        assert card_calibration(card) == calibrate(own, ids, 0.01, source)  # its own outputs
        assert card.threshold == card_calibration(card).threshold
    fp32, int8 = cards["fp32"], cards["int8"]
    assert int8.model_id == f"{fp32.model_id}.int8"
    mixed = int8.metrics["val_eer_fvc_mixed"]
    compatible = mixed - fp32.metrics["val_eer_fvc"] <= 0.005
    assert (fp32.compatible_ids, int8.compatible_ids) == (
        ((int8.model_id,), (fp32.model_id,)) if compatible else ((), ()))


def test_int8_that_costs_too_much_accuracy_is_refused(exported, tmp_path, monkeypatch):
    import siamid.exporting as exporting
    from siamid.calibration import Provenance

    _, result = exported
    images, ids = _labelled()
    monkeypatch.setattr(exporting, "INT8_MAX_EER_COST", -1.0)  # any int8 file costs too much
    files = _copies(result, tmp_path)
    with pytest.raises(ModelError, match=r"int8 quantization costs .* --allow-int8-drift"):
        exporting.calibrate_files(files, images, ids, 0.01, Provenance("validation", "x"))
    assert not files["int8"][0].exists() and files["fp32"][0].exists()
    files = _copies(result, tmp_path)
    cards = exporting.calibrate_files(files, images, ids, 0.01, Provenance("validation", "x"),
                                      allow_int8_drift=True)
    assert files["int8"][0].exists() and cards["int8"].compatible_ids == ()


def test_model_id_tracks_preprocessing_that_changes_the_signature():
    tower = TinyTower(seed=0)
    plain = model_id_for(tower)
    # defaults spelled out (what every card carries) give the weights-only id
    assert model_id_for(tower, vars(PreprocessConfig())) == plain
    assert model_id_for(tower, {"crop": PreprocessConfig().crop}) == plain
    core = model_id_for(tower, {**vars(PreprocessConfig()), "center_on_core": True})
    assert core != plain and core.startswith("tiny-")
    assert model_id_for(tower, {"center_on_core": True}) == core
    assert model_id_for(tower, {"center_on_core": True, "sharpen_amount": 2}) != core
