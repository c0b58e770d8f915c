"""siamid.profile and `siamid profile`: MACs, weights, quantization and errors of exported models."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn
from typer.testing import CliRunner

from siamid.cardfile import write_card
from siamid.cli.main import app
from siamid.config import PreprocessConfig
from siamid.errors import ModelError
from siamid.exporting import export_onnx
from siamid.nets import count_parameters, create_tower
from siamid.profile import LATENCY_METHOD, ModelProfile, estimate_latency_ms, profile_model
from siamid.types import ModelCard
from tower_helpers import settle_batchnorm

MODELS = Path(__file__).resolve().parents[1] / "siamid" / "models"
SIZE = 32
runner = CliRunner()


def _card(architecture: str, embedding_size: int, channels: int, size: int) -> ModelCard:
    return ModelCard(
        model_id="", architecture=architecture, embedding_size=embedding_size,
        input_size=(size, size), channels=channels,
        preprocess=dataclasses.asdict(PreprocessConfig(size=size)), threshold=0.7,
        threshold_fmr=0.01,
    )


# -- a graph built by hand, with MACs computed by hand ------------------------------------------


def _hand_model(path: Path, with_card: bool = True) -> Path:
    """image (batch, 1, 64, 64) -> conv 3x3/2 to 8 -> relu -> depthwise 3x3 -> reshape -> clip
    -> gemm to 10. MACs: 32*32*8*(1*9) + 32*32*8*(1*9) + 10*8192."""
    rng = np.random.default_rng(0)

    def const(name, array):
        return numpy_helper.from_array(np.asarray(array), name)

    inits = [
        const("w1", rng.normal(size=(8, 1, 3, 3)).astype(np.float32)),
        const("b1", np.zeros(8, np.float32)),
        const("w2", rng.normal(size=(8, 1, 3, 3)).astype(np.float32)),  # depthwise: in_c/groups=1
        const("shape", np.array([0, -1], np.int64)),  # a shape constant, not a weight
        const("lo", np.array(-6.0, np.float32)),      # a bound, not a weight
        const("w3", rng.normal(size=(10, 8192)).astype(np.float32)),
        const("b3", np.zeros(10, np.float32)),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3],
                         strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="dw", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1], group=8),
        helper.make_node("Reshape", ["c2", "shape"], ["flat"], name="flatten"),
        helper.make_node("Clip", ["flat", "lo"], ["clipped"], name="clip"),
        helper.make_node("Gemm", ["clipped", "w3", "b3"], ["signature"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "hand",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 64, 64])],
        [helper.make_tensor_value_info("signature", TensorProto.FLOAT, ["batch", 10])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    if with_card:
        write_card(path, _card("hand", 10, 1, 64).with_changes(model_id="hand-000000000000"))
    return path


def test_macs_and_weights_of_a_hand_built_graph(tmp_path):
    profile = profile_model(_hand_model(tmp_path / "hand.onnx"))
    layers = {layer.name: layer for layer in profile.layers}
    assert layers["conv1"].macs == 32 * 32 * 8 * 1 * 3 * 3 == 73_728
    assert layers["conv1"].output_shape == (1, 8, 32, 32)
    assert layers["dw"].macs == 32 * 32 * 8 * 1 * 3 * 3  # groups=8: one input channel each
    assert layers["fc"].macs == 10 * 8192 and layers["fc"].output_shape == (1, 10)
    assert layers["relu1"].macs == layers["flatten"].macs == layers["clip"].macs == 0
    assert profile.macs == 2 * 73_728 + 81_920
    # Weights and biases only: the int64 shape and the Clip bound are not parameters.
    assert layers["conv1"].weights == 72 + 8 and layers["dw"].weights == 72
    assert layers["fc"].weights == 81_920 + 10 and layers["flatten"].weights == 0
    assert profile.parameters == 80 + 72 + 81_930
    assert profile.parameter_bytes == 4 * profile.parameters
    assert profile.parameter_bytes_by_dtype == {"float32": 4 * profile.parameters}
    assert profile.operators == {"Conv": 2, "Relu": 1, "Reshape": 1, "Clip": 1, "Gemm": 1}
    assert profile.input.shape == (1, 64, 64) and profile.input.dtype == "float32"
    assert profile.output.shape == (10,) and profile.input.quantization is None
    assert profile.model_id == "hand-000000000000" and profile.architecture == "hand"
    assert profile.file_bytes == (tmp_path / "hand.onnx").stat().st_size
    assert 0 < profile.metadata_bytes < profile.file_bytes


def test_latency_is_the_published_point_scaled_by_macs_and_clock():
    assert estimate_latency_ms(3.58e6, 78) == pytest.approx(119.7)
    assert estimate_latency_ms(3.58e6, 156) == pytest.approx(119.7 / 2)
    assert estimate_latency_ms(7.16e6) == pytest.approx(2 * 119.7)
    assert "not a measurement" in LATENCY_METHOD


# -- real towers exported the way `siamid export` does ------------------------------------------


def _torch_macs(tower: nn.Module, shape: tuple[int, ...]) -> int:
    """MACs counted on the torch side with forward hooks: an independent check of the graph's."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = math.prod(module.kernel_size)
            total += output.numel() * (module.in_channels // module.groups) * k
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in tower.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        tower(torch.zeros((1, *shape)))
    for h in handles:
        h.remove()
    return total


def _tower(name: str) -> nn.Module:
    """A tower at 32 px with non-trivial BatchNorm statistics, as after training: fresh ones fold
    into identical all-zero biases, which the exporter stores once and shares between convs."""
    torch.manual_seed(0)
    tower = create_tower(name, 16, in_channels=1, input_size=SIZE).eval()
    settle_batchnorm(tower)
    return tower


@pytest.mark.parametrize("name", ["tiny", "small_pool", "medium", "face"])
def test_fp32_export_of_each_tower(tmp_path, name):
    tower = _tower(name)
    result = export_onnx(tower, _card(name, 16, 1, SIZE), tmp_path)
    profile = profile_model(result.fp32_path)
    assert profile.macs == _torch_macs(tower, (1, SIZE, SIZE)) > 0
    # The exporter folds each BatchNorm (weight and bias per channel) into its conv's new bias
    # (one per channel): the stored values are the trainable ones less one per BN channel.
    bn_channels = sum(m.num_features for m in tower.modules() if isinstance(m, nn.BatchNorm2d))
    assert profile.parameters == count_parameters(tower) - bn_channels
    assert profile.parameter_bytes == 4 * profile.parameters
    assert profile.model_id == result.card.model_id and profile.architecture == name
    assert profile.input.shape == (1, SIZE, SIZE) and profile.output.shape == (16,)
    assert sum(layer.weights for layer in profile.layers) == profile.parameters


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    tower = _tower("tiny")
    calibration = np.random.default_rng(1).uniform(0, 0.8, (32, 1, SIZE, SIZE)).astype(np.float32)
    result = export_onnx(tower, _card("tiny", 16, 1, SIZE), tmp_path_factory.mktemp("tiny"),
                         calibration=calibration)
    return tower, result, calibration


def test_int8_export_stores_one_byte_weights_and_reports_its_quantization(tiny_export):
    tower, result, calibration = tiny_export
    fp32, int8 = profile_model(result.fp32_path), profile_model(result.int8_path)
    assert int8.quantization == "int8" and int8.model_id == result.int8_card.model_id
    assert int8.macs == fp32.macs and int8.parameters == fp32.parameters
    def rows(profile):  # the quantizer may reorder independent nodes
        return sorted((l.op_type, l.output_shape, l.macs, l.weights) for l in profile.layers)

    # The quantizer folds each ReLU after a convolution into the convolution's output range: the
    # int8 file lists the same layers less those ReLUs.
    relus = [r for r in rows(fp32) if r[0] == "Relu"]
    assert relus and rows(int8) == [r for r in rows(fp32) if r[0] != "Relu"]
    # Conv and Linear weights as int8 (1 byte each); biases (one per output channel, BN folded)
    # as int32; per-channel scales and zero points are not counted.
    kernels = sum(m.weight.numel() for m in tower.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    biases = fp32.parameters - kernels
    assert int8.parameter_bytes_by_dtype == {"int8": kernels, "int32": 4 * biases}
    assert int8.parameter_bytes == kernels + 4 * biases < fp32.parameter_bytes / 3
    # The float image is quantized to uint8 at the input: scale = calibration range / 255.
    q = int8.input.quantization
    assert q is not None and q.dtype == "uint8" and q.zero_point == 0
    assert q.scale == pytest.approx(float(calibration.max()) / 255, rel=1e-3)
    assert fp32.input.quantization is None and int8.input.dtype == "float32"
    # The signature stays float: the L2 normalisation after the last int8 tensor (the head's).
    assert int8.output.quantization is None and int8.output.dtype == "float32"
    assert int8.last_quantized is not None and "Gemm" in int8.last_quantized.tensor
    assert int8.last_quantized.scale > 0 and 0 <= int8.last_quantized.zero_point <= 255
    assert "ReduceL2" in int8.output_tail and "Div" in int8.output_tail
    assert int8.operators["QuantizeLinear"] > 0 and "QuantizeLinear" not in fp32.operators
    assert all(l.op_type not in ("QuantizeLinear", "DequantizeLinear") for l in int8.layers)


def test_shipped_tiny_models_profile_alike():
    fp32, int8 = profile_model(MODELS / "tiny.onnx"), profile_model(MODELS / "tiny.int8.onnx")
    # 96 px tiny tower: 48*48*8*25 + 24*24*16*72 + 12*12*16*9 + 12*12*24*16 + 6*6*24*9
    # + 6*6*24*24 + 16*216.
    hand = (48 * 48 * 8 * 25 + 24 * 24 * 16 * 72 + 12 * 12 * 16 * 9 + 12 * 12 * 24 * 16
            + 6 * 6 * 24 * 9 + 6 * 6 * 24 * 24 + 16 * 216)
    assert fp32.macs == int8.macs == hand == 1_232_352
    assert fp32.parameters == int8.parameters
    assert fp32.input.shape == int8.input.shape == (1, 96, 96) and fp32.output.shape == (16,)
    assert int8.input.quantization is not None and int8.parameter_bytes < fp32.parameter_bytes
    assert int8.model_id == fp32.model_id + ".int8"
    assert fp32.latency_ms(78) == pytest.approx(hand * 119.7 / 3.58e6)


# -- the command line ---------------------------------------------------------------------------


def test_cli_table_and_json():
    res = runner.invoke(app, ["profile", str(MODELS / "tiny.int8.onnx")])
    assert res.exit_code == 0, res.output
    for text in ("tiny-b9b51073bf03.int8", "1,232,352", "QuantizeLinear", "zero point",
                 "latency method", "41.2 ms at 78 MHz"):
        assert text in res.output
    res = runner.invoke(app, ["profile", str(MODELS / "tiny.onnx"), "--json", "--clock-mhz", "156"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["macs"] == 1_232_352 and data["architecture"] == "tiny"
    assert data["latency"]["clock_mhz"] == 156
    assert data["latency"]["ms"] == pytest.approx(1_232_352 * 119.7 / 3.58e6 / 2)
    assert {f.name for f in dataclasses.fields(ModelProfile)} <= set(data)
    assert data["layers"][0]["op_type"] == "Conv" and data["layers"][0]["macs"] == 460_800


def test_bad_inputs_are_siamid_errors(tmp_path):
    not_onnx = tmp_path / "notes.onnx"
    not_onnx.write_text("this is not a model\n" * 20)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    other = tmp_path / "model.pt"
    other.write_bytes(b"\0" * 64)
    cases = [
        (tmp_path / "missing.onnx", "not found"),
        (not_onnx, "is not a readable ONNX model"),
        (empty, "is not an ONNX model"),
        (other, "unknown model format '.pt'"),
        (_hand_model(tmp_path / "bare.onnx", with_card=False), "no siamid ModelCard"),
    ]
    for path, message in cases:
        with pytest.raises(ModelError, match=message.replace("(", r"\(")):
            profile_model(path)
        res = runner.invoke(app, ["profile", str(path)])
        assert res.exit_code == 3 and "error" in res.output and message in res.output, res.output
        assert "Traceback" not in res.output
    res = runner.invoke(app, ["profile", str(MODELS / "tiny.onnx"), "--clock-mhz", "0"])
    assert res.exit_code == 2  # a usage error


def test_without_the_onnx_package_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    res = runner.invoke(app, ["profile", str(MODELS / "tiny.onnx")])
    assert res.exit_code == 3 and "siamid[train]" in res.output, res.output
