"""Tests for siamid.nets: the tower registry, output contract, sizes and errors."""

from __future__ import annotations

import pytest
import torch

from siamid.errors import ConfigError
from siamid import nets
from siamid.nets import count_parameters, create_tower, list_towers, register_tower

torch.set_num_threads(1)


def test_list_towers() -> None:
    towers = list_towers()
    assert {"tiny", "small"} <= set(towers)
    assert all(isinstance(d, str) and d for d in towers.values())
    assert list(towers) == sorted(towers)


@pytest.mark.parametrize("name, dim", [("tiny", 16), ("small", 32), ("small", 64),
                                       ("small_pool", 32), ("medium", 64)])
def test_output_shape_and_unit_norm(name: str, dim: int) -> None:
    torch.manual_seed(0)
    tower = create_tower(name, dim).eval()
    x = torch.rand(5, 1, 96, 96)
    with torch.no_grad():
        out = tower(x)
    assert out.shape == (5, dim)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(5), atol=1e-5, rtol=0)
    # Different inputs give different signatures (the tower is not constant).
    assert (out[0] - out[1]).norm() > 1e-4


def test_pooled_tower_takes_any_window_and_has_no_spatial_weights() -> None:
    torch.manual_seed(0)
    tower = create_tower("small_pool", 32).eval()
    assert 20_000 <= count_parameters(tower) <= 150_000
    with torch.no_grad():
        # A flattening head would fail on another input size: global pooling does not care.
        assert tower(torch.rand(2, 1, 128, 128)).shape == (2, 32)
    assert tower.head.in_features == 192


@pytest.mark.parametrize("side, feat_side", [(192, 6), (96, 3)])
def test_medium_tower_takes_its_192_px_window_and_smaller_ones(side: int, feat_side: int) -> None:
    torch.manual_seed(0)
    tower = create_tower("medium", 64, input_size=192).eval()
    assert 900_000 <= count_parameters(tower) <= 1_300_000, count_parameters(tower)
    x = torch.rand(3, 1, side, side)
    with torch.no_grad():
        # Five stride-2 stages (stem + four residual stages) before the global pooling.
        assert tower.features(x).shape == (3, 256, feat_side, feat_side)
        out = tower(x)
    assert out.shape == (3, 64)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3), atol=1e-5, rtol=0)
    assert (out[0] - out[1]).norm() > 1e-4


def test_medium_tower_is_residual() -> None:
    torch.manual_seed(0)
    tower = create_tower("medium", 64, input_size=192).eval()
    blocks = [m for m in tower.modules() if isinstance(m, nets._BasicBlock)]
    # (32, 64, 128 x 2, 192): every stage but the repeated 128 one changes stride and width.
    assert len(blocks) == 5
    assert sum(isinstance(b.shortcut, torch.nn.Identity) for b in blocks) == 1
    # The shortcut really carries the input: with the residual branch's last BN zeroed, an
    # identity block reduces to ReLU(x).
    block = next(b for b in blocks if isinstance(b.shortcut, torch.nn.Identity))
    with torch.no_grad():
        block.body[-1].weight.zero_()
        block.body[-1].bias.zero_()
        x = torch.randn(2, 128, 12, 12)
        torch.testing.assert_close(block(x), torch.relu(x))


def test_medium_tower_exports_to_onnx_and_int8(tmp_path) -> None:
    """The residual additions survive the ONNX export (fp32 reproduces torch) and quantization."""
    # any size works (global pooling); a small one keeps the test fast
    _, result = _int8_export(tmp_path, "medium", 64, 64, images=32)
    assert result.fp32_path.is_file() and result.int8_path.is_file()
    assert result.card.model_id.startswith("medium-")
    assert result.int8_card.metrics["int8_cosine_min"] > 0.9


def test_train_mode_batch_and_gradients() -> None:
    torch.manual_seed(0)
    tower = create_tower("tiny", 16).train()
    out = tower(torch.rand(4, 1, 96, 96))
    (out[:, 0].sum()).backward()
    grads = [p.grad for p in tower.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


def test_parameter_counts() -> None:
    tiny = count_parameters(create_tower("tiny", 16))
    small = count_parameters(create_tower("small", 32))
    assert tiny <= 8000, tiny
    assert 20_000 <= small <= 150_000, small
    assert tiny < small
    # count_parameters counts trainable parameters only.
    tower = create_tower("tiny", 16)
    total = sum(p.numel() for p in tower.parameters())
    assert count_parameters(tower) == total
    for p in tower.features.parameters():
        p.requires_grad_(False)
    assert count_parameters(tower) == sum(p.numel() for p in tower.head.parameters())


def test_unknown_tower_names_known_towers() -> None:
    with pytest.raises(ConfigError) as info:
        create_tower("huge", 32)
    msg = str(info.value)
    assert "'huge'" in msg
    assert "tiny" in msg and "small" in msg


@pytest.mark.parametrize("dim", [1, 0, -4])
def test_bad_embedding_size(dim: int) -> None:
    with pytest.raises(ConfigError, match=str(dim)):
        create_tower("tiny", dim)


@pytest.mark.parametrize("size", [100, 95, 33])
def test_input_size_not_multiple_of_16(size: int) -> None:
    with pytest.raises(ConfigError, match=str(size)):
        create_tower("small", 32, input_size=size)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("size", [16, 0, -16])
def test_input_size_too_small_is_config_error(size: int) -> None:
    with pytest.raises(ConfigError):
        create_tower("tiny", 16, input_size=size)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_zero_channels_is_config_error() -> None:
    with pytest.raises(ConfigError):
        create_tower("tiny", 16, in_channels=0)


@pytest.mark.parametrize("name", ["tiny", "small"])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_channels(name: str, channels: int) -> None:
    tower = create_tower(name, 16, in_channels=channels, input_size=64).eval()
    with torch.no_grad():
        out = tower(torch.rand(2, channels, 64, 64))
    assert out.shape == (2, 16)
    assert tower.in_channels == channels
    with pytest.raises(RuntimeError):
        tower(torch.rand(2, channels + 1, 64, 64))


def test_attributes() -> None:
    tower = create_tower("small", 48, in_channels=3, input_size=128)
    assert tower.architecture == "small"
    assert tower.embedding_size == 48
    assert tower.input_size == (128, 128)
    assert tower.in_channels == 3
    with torch.no_grad():
        assert tower.eval()(torch.rand(1, 3, 128, 128)).shape == (1, 48)


def test_register_duplicate_and_new_tower(monkeypatch: pytest.MonkeyPatch) -> None:
    # A private copy of the registry, so the test tower does not leak into other tests.
    monkeypatch.setattr(nets, "_REGISTRY", dict(nets._REGISTRY))
    with pytest.raises(ConfigError, match="tiny"):
        register_tower("tiny")(lambda **kw: torch.nn.Identity())
    name = "test_only_linear_tower"

    @register_tower(name)
    def linear(embedding_size: int, in_channels: int, input_size: int) -> torch.nn.Module:
        """A flatten + linear tower used only by this test."""
        return torch.nn.Sequential(torch.nn.Flatten(),
                                   torch.nn.Linear(in_channels * input_size ** 2, embedding_size))

    assert list_towers()[name] == "A flatten + linear tower used only by this test."
    tower = create_tower(name, 3, in_channels=1, input_size=32)
    assert tower.architecture == name and tower.embedding_size == 3
    assert tower(torch.rand(2, 1, 32, 32)).shape == (2, 3)


def test_registry_left_clean() -> None:
    assert "test_only_linear_tower" not in list_towers()


# -- the microcontroller towers: MLTK's re-created, and siamid's own ------------------------------


def _macs(tower: torch.nn.Module, side: int) -> int:
    """Conv and linear multiply-accumulates for one (1, 1, side, side) input, counted as
    siamid.profile counts them (out elements x in_c / groups x k_h x k_w; out x in)."""
    total = 0

    def count(module, inputs, output) -> None:
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * module.in_channels // module.groups * kh * kw
        elif isinstance(module, torch.nn.Linear):
            total += output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in tower.modules()]
    with torch.no_grad():
        tower.eval()(torch.rand(1, 1, side, side))
    for h in hooks:
        h.remove()
    return total


def test_mltk_tower_matches_the_published_model() -> None:
    """1,744 parameters as Keras counts them (BatchNorm running statistics included) and 3.58 M
    MACs at MLTK's own 180 px input, which only the factory takes (create_tower wants a multiple
    of 16)."""
    tower = nets.mltk_tower(embedding_size=16, input_size=180)
    statistics = sum(m.running_mean.numel() + m.running_var.numel()
                     for m in tower.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert count_parameters(tower) == 1_696
    assert count_parameters(tower) + statistics == 1_744
    assert _macs(tower, 180) == 3_581_184  # MLTK's summary: 3.581 M
    assert _macs(create_tower("mltk", 16, input_size=192), 192) == 4_100_256


@pytest.mark.parametrize("name", ["mltk", "micro"])
@pytest.mark.parametrize("side", [176, 192])
def test_microcontroller_towers_output(name: str, side: int) -> None:
    torch.manual_seed(0)
    # In training mode: with untrained BatchNorm statistics, ten layers of the default
    # initialisation shrink the micro tower's features until the head's bias is all that is left.
    tower = create_tower(name, 16, input_size=side).train()
    # Noise of another distribution each: pooled over the window, two draws of one noise look
    # the same to an untrained tower.
    x = torch.rand(3, 1, side, side) ** torch.tensor([1.0, 4.0, 0.25]).view(3, 1, 1, 1)
    with torch.no_grad():
        out = tower(x)
    assert out.shape == (3, 16)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3), atol=1e-5, rtol=0)
    assert (out[0] - out[1]).norm() > 1e-4
    # Global pooling: the weights do not depend on the input size.
    assert count_parameters(tower) == count_parameters(create_tower(name, 16, input_size=96))


def _int8_export(tmp_path, name: str, dim: int, side: int, images: int = 8):
    """A seeded ``name`` tower at ``side`` px and its export with an int8 file (calibrated on
    ``images`` noise images): (tower, ExportResult)."""
    import dataclasses

    import numpy as np

    from siamid.config import PreprocessConfig
    from siamid.exporting import export_onnx
    from siamid.types import ModelCard

    torch.manual_seed(0)
    tower = create_tower(name, dim, input_size=side).eval()
    card = ModelCard(model_id="", architecture=name, embedding_size=dim,
                     input_size=(side, side), channels=1,
                     preprocess=dataclasses.asdict(PreprocessConfig(size=side, crop=192)),
                     threshold=0.7, threshold_fmr=0.01)
    calibration = np.random.default_rng(0).random((images, 1, side, side), dtype=np.float32)
    return tower, export_onnx(tower, card, tmp_path, calibration=calibration)


def test_micro_tower_meets_the_microcontroller_targets(tmp_path) -> None:
    """At most 8 kB of int8 weights (int32 biases at 4 bytes) and 4 M MACs at 192 px, as
    ``siamid profile`` counts them on the int8 export, with TFLite Micro's plain operators."""
    from siamid.profile import profile_model

    side = 192
    tower, result = _int8_export(tmp_path, "micro", 16, side)
    profile = profile_model(result.int8_path)
    assert profile.parameter_bytes <= 8_000, profile.parameter_bytes
    assert profile.parameter_bytes == 7_584
    assert profile.macs <= 4_000_000, profile.macs
    assert profile.macs == _macs(tower, side) == 3_857_920
    assert _macs(tower, 176) == 3_241_888
    allowed = {"Conv", "Relu", "ReduceMean", "Gemm", "QuantizeLinear", "DequantizeLinear",
               # the float L2 normalisation after the last int tensor (done on the host)
               "ReduceL2", "Clip", "Shape", "Expand", "Div"}
    assert set(profile.operators) <= allowed, profile.operators


def test_micro_tower_fits_a_150_kb_arena_at_192_px(tmp_path) -> None:
    """TFLite Micro's measured arena for the .tflite of the micro tower at the R503's 192 px:
    SAME-style padding (no PAD copies) and ReLUs folded into the convolutions keep it under the
    150 kB target, and the graph is the plain operators only."""
    from siamid.tflite import export_tflite
    from siamid.tflite.flatbuf import read
    from siamid.tflite.run import arena_bytes

    path = export_tflite(_int8_export(tmp_path, "micro", 16, 192)[1].int8_path)
    data = path.read_bytes()
    assert {op.code for op in read(data, path).ops} == {
        "CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "FULLY_CONNECTED"}
    assert arena_bytes(data) <= 150_000
