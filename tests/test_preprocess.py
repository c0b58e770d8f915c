"""Tests for siamid.preprocess: each stage on hand-built images, the Preprocessor (quality verdict
and network input in one pass), its card and size limits, training/run-time parity, real data."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from siamid.config import PreprocessConfig
from siamid.errors import ConfigError, ModelError, QualityError, SiamidError
from siamid.preprocess import (
    Prepared,
    Preprocessor,
    Quality,
    balance,
    coherence,
    crop_center,
    input_to_float,
    resample,
    resize,
    sharpen,
    sharpen_kernel,
    to_float,
)

CFG = PreprocessConfig()
PRE = Preprocessor(CFG)


def preprocess(image: np.ndarray, dpi: int, cfg: PreprocessConfig = CFG) -> np.ndarray:
    """The network input as the network sees it: float32 (C, S, S)."""
    return Preprocessor(cfg).process(image, dpi).as_float()


def check_quality(image: np.ndarray, dpi: int, cfg: PreprocessConfig = CFG) -> Quality:
    return Preprocessor(cfg).process(image, dpi).quality


def trace(image: np.ndarray, dpi: int, cfg: PreprocessConfig = CFG) -> dict[str, np.ndarray]:
    return Preprocessor(cfg).trace(image, dpi)
STAGES = ["1_input", "2_resampled", "3_cropped", "4_balanced", "5_sharpened", "6_network_input"]


def stripes(h: int = 192, w: int = 192, period: float = 9.0, angle: float = 0.5,
            lo: int = 40, hi: int = 220) -> np.ndarray:
    """Sinusoidal 'ridges' of ``period`` pixels over the whole image, uint8."""
    y, x = np.mgrid[0:h, 0:w]
    t = np.cos(angle) * x + np.sin(angle) * y
    v = 0.5 + 0.5 * np.sin(2 * np.pi * t / period)
    return np.round(lo + (hi - lo) * v).astype(np.uint8)


def fingerprint_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Stripes whose orientation bends across the image, plus a little noise, on a light frame."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = np.hypot(y - h / 2, x - w / 2)
    v = 0.5 + 0.5 * np.sin(2 * np.pi * r / 9.0)
    img = 40 + 180 * v + rng.normal(0, 6, (h, w))
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- to_float


def test_to_float_gray_and_luma() -> None:
    gray = np.array([[0, 255], [51, 102]], np.uint8)
    out = to_float(gray, 1)
    assert out.shape == (2, 2, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, :, 0], [[0.0, 1.0], [0.2, 0.4]], atol=1e-6)
    rgb = np.zeros((1, 3, 3), np.uint8)
    rgb[0, 0, 0] = rgb[0, 1, 1] = rgb[0, 2, 2] = 255
    np.testing.assert_allclose(to_float(rgb, 1)[0, :, 0], [0.299, 0.587, 0.114], atol=1e-6)
    # The 4th plane (alpha or depth) does not enter the luma.
    rgbd = np.concatenate([rgb, np.full((1, 3, 1), 255, np.uint8)], axis=2)
    np.testing.assert_allclose(to_float(rgbd, 1)[0, :, 0], [0.299, 0.587, 0.114], atol=1e-6)


def test_to_float_channels_and_dtypes() -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    three = to_float(gray, 3)
    assert three.shape == (3, 4, 3)
    assert np.array_equal(three[:, :, 0], three[:, :, 2])
    u16 = np.array([[0, 65535]], np.uint16)
    np.testing.assert_allclose(to_float(u16, 1)[0, :, 0], [0.0, 1.0])
    f = np.array([[-0.5, 0.25, 3.0]])
    np.testing.assert_allclose(to_float(f, 1)[0, :, 0], [0.0, 0.25, 1.0])


@pytest.mark.parametrize("shape, channels, reason", [
    ((5,), 1, "bad shape"),
    ((0, 4), 1, "bad shape"),
    ((2, 2, 2, 2), 1, "bad shape"),
    ((8, 8, 4), 3, "wrong channel count"),
    ((8, 8, 3), 4, "wrong channel count"),
])
def test_to_float_errors(shape: tuple[int, ...], channels: int, reason: str) -> None:
    with pytest.raises(QualityError) as info:
        to_float(np.zeros(shape, np.uint8), channels)
    assert info.value.reason == reason
    assert isinstance(info.value, SiamidError)


# ----------------------------------------------------------------------------- resample / resize


def test_resample_doubles_at_250_dpi() -> None:
    img = to_float(stripes(100, 80), 1)
    out = resample(img, 250, 500)
    assert out.shape == (200, 160, 1)
    assert out.min() >= 0.0 and out.max() <= 1.0
    # Linear interpolation keeps the mean (roughly) and the end points exactly.
    assert abs(float(out.mean()) - float(img.mean())) < 0.01
    assert out[0, 0, 0] == pytest.approx(img[0, 0, 0])
    assert out[-1, -1, 0] == pytest.approx(img[-1, -1, 0])


def test_resample_halves_and_identity() -> None:
    img = to_float(stripes(100, 80), 1)
    assert resample(img, 1000, 500).shape == (50, 40, 1)
    assert resample(img, 500, 500) is img
    assert resample(img, 505, 500) is img   # within 2%: left alone


@pytest.mark.parametrize("dpi", [0, -500])
def test_resample_bad_dpi(dpi: int) -> None:
    with pytest.raises(QualityError, match=str(dpi)) as info:
        resample(np.zeros((4, 4, 1), np.float32), dpi, 500)
    assert info.value.reason == "bad dpi"


def test_resize_area_average_by_hand() -> None:
    img = np.arange(16, dtype=np.float32).reshape(4, 4, 1) / 16
    out = resize(img, 2)
    expected = np.array([[0 + 1 + 4 + 5, 2 + 3 + 6 + 7], [8 + 9 + 12 + 13, 10 + 11 + 14 + 15]]) / 64
    np.testing.assert_allclose(out[:, :, 0], expected, atol=1e-6)
    odd = resize(np.random.default_rng(0).random((100, 70, 3)).astype(np.float32), 48)
    assert odd.shape == (48, 48, 3) and odd.dtype == np.float32
    assert resize(img, 4) is img


# ----------------------------------------------------------------------------- crop


def test_crop_center_finds_off_centre_patch_and_pads_with_background() -> None:
    light = 230
    img = np.full((400, 400), light, np.uint8)
    # A 90x90 ridge patch near the top-left corner, far from the image centre (200, 200).
    img[10:100, 20:110] = stripes(90, 90)
    f = to_float(img, 1)
    out = crop_center(f, 192, True)
    assert out.shape == (192, 192, 1) and out.dtype == np.float32
    # The patch's centre (55, 65) lands on the crop's centre (96, 96): window top -41, left -31.
    ys, xs = np.nonzero(out[:, :, 0] < 0.5)
    assert abs(ys.mean() - 96) < 4 and abs(xs.mean() - 96) < 4
    # The whole patch is inside the crop.
    assert np.array_equal(out[51:141, 51:141, 0], f[10:100, 20:110, 0])
    # Outside the image the window is padded with the light background, not with black.
    np.testing.assert_allclose(out[:41, :, 0], light / 255, atol=1e-6)
    np.testing.assert_allclose(out[:, :31, 0], light / 255, atol=1e-6)
    # Without foreground centring the image centre is taken and the patch is missed.
    plain = crop_center(f, 192, False)
    assert np.array_equal(plain, f[104:296, 104:296])
    assert plain.min() == pytest.approx(light / 255)


def test_crop_center_pads_small_image() -> None:
    img = to_float(stripes(100, 100), 1)
    out = crop_center(img, 192, False)
    assert out.shape == (192, 192, 1)
    assert np.array_equal(out[46:146, 46:146], img)
    fill = np.quantile(img, 0.9)
    np.testing.assert_allclose(out[:46], fill, atol=1e-6)


# ----------------------------------------------------------------------------- balance


def test_balance_maps_quantiles_to_0_and_1() -> None:
    # Inner 10x10 runs 0.20 .. 0.695; the 2-pixel border is black and must be ignored.
    img = np.zeros((14, 14, 1), np.float32)
    img[2:12, 2:12, 0] = 0.2 + np.arange(100).reshape(10, 10) * 0.005
    out = balance(img, border=2, low=0.0, high=1.0)
    assert out.dtype == np.float32
    assert out[2, 2, 0] == pytest.approx(0.0, abs=1e-6)
    assert out[11, 11, 0] == pytest.approx(1.0, abs=1e-6)
    # Linear in between: pixel 0.2 + 50 * 0.005 = 0.45 -> 50 / 99.
    assert out[7, 2, 0] == pytest.approx(50 / 99, abs=1e-5)
    assert np.all(out[0] == 0.0)   # border below the dark level clips to 0

    # Interior quantiles: values 0..99 / 100, quantile 0.1 = 0.099, 0.9 = 0.891 (linear).
    v = (np.arange(100, dtype=np.float32) / 100).reshape(10, 10, 1)
    out = balance(v, border=0, low=0.1, high=0.9)
    assert out[5, 0, 0] == pytest.approx((0.5 - 0.099) / (0.891 - 0.099), abs=1e-5)
    assert out.min() == 0.0 and out.max() == 1.0
    assert np.sum(out == 0.0) == 10 and np.sum(out == 1.0) == 10


def test_balance_per_channel_and_flat() -> None:
    img = np.zeros((8, 8, 2), np.float32)
    img[:, :, 0] = np.linspace(0.1, 0.3, 64).reshape(8, 8)
    img[:, :, 1] = np.linspace(0.6, 0.9, 64).reshape(8, 8)
    out = balance(img, border=0, low=0.0, high=1.0)
    for c in range(2):
        assert out[:, :, c].min() == pytest.approx(0.0, abs=1e-6)
        assert out[:, :, c].max() == pytest.approx(1.0, abs=1e-6)
    flat = balance(np.full((8, 8, 1), 0.5, np.float32), 0, 0.02, 0.98)
    assert np.all(np.isfinite(flat)) and np.all(flat == 0.0)


# ----------------------------------------------------------------------------- sharpen


def test_sharpen_kernel_by_hand() -> None:
    kernel, shift = sharpen_kernel(1)
    assert shift == 4
    assert np.array_equal(kernel, [[-1, -2, -1], [-2, 28, -2], [-1, -2, -1]])
    assert np.issubdtype(kernel.dtype, np.integer)
    assert int(kernel.sum()) == 1 << shift   # flat regions unchanged
    k2, _ = sharpen_kernel(2)
    assert np.array_equal(k2, [[-2, -4, -2], [-4, 40, -4], [-2, -4, -2]])
    assert int(k2.sum()) == 16
    k0, _ = sharpen_kernel(0)
    assert np.array_equal(k0, [[0, 0, 0], [0, 16, 0], [0, 0, 0]])


def test_sharpen_constant_unchanged_and_step_by_hand() -> None:
    const = np.full((9, 9, 2), 0.37, np.float32)
    np.testing.assert_allclose(sharpen(const, 1), const, atol=1e-6)
    # A vertical step 0.25 | 0.75: column weights are -4, 24, -4 (sum 16).
    step = np.full((6, 6, 1), 0.25, np.float32)
    step[:, 3:] = 0.75
    out = sharpen(step, 1)[:, :, 0]
    np.testing.assert_allclose(out[:, 2], (-4 * 0.25 + 24 * 0.25 - 4 * 0.75) / 16, atol=1e-6)  # 0.125
    np.testing.assert_allclose(out[:, 3], (-4 * 0.25 + 24 * 0.75 - 4 * 0.75) / 16, atol=1e-6)  # 0.875
    np.testing.assert_allclose(out[:, 0], 0.25, atol=1e-6)
    assert sharpen(step, 0) is step


def test_sharpen_matches_integer_microcontroller_version() -> None:
    """(kernel * pixels) >> 4 on uint8 pixels agrees with the float path to one grey level."""
    rng = np.random.default_rng(1)
    u8 = rng.integers(0, 256, (20, 24)).astype(np.int32)
    kernel, shift = sharpen_kernel(1)
    padded = np.pad(u8, 1, mode="edge")
    acc = np.zeros_like(u8)
    for dy in range(3):
        for dx in range(3):
            acc += kernel[dy, dx] * padded[dy : dy + 20, dx : dx + 24]
    integer = np.clip(acc >> shift, 0, 255)
    floating = sharpen((u8 / 255.0).astype(np.float32)[:, :, None], 1)[:, :, 0] * 255
    assert np.max(np.abs(floating - integer)) <= 1.0 + 1e-3


# ----------------------------------------------------------------------------- preprocess / trace


@pytest.mark.parametrize("shape", [(300, 300), (364, 256), (192, 192)])
def test_preprocess_gray_shapes(shape: tuple[int, int]) -> None:
    img = fingerprint_like(*shape)
    out = preprocess(img, 500, CFG)
    assert out.shape == (1, 96, 96)
    assert out.dtype == np.float32
    assert out.flags["C_CONTIGUOUS"]
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert out.std() > 0.1   # balanced ridges fill the range


def test_preprocess_is_deterministic() -> None:
    img = fingerprint_like(300, 300, seed=3)
    a = preprocess(img, 500, CFG)
    b = preprocess(img.copy(), 500, CFG)
    assert np.array_equal(a, b)
    assert np.array_equal(PRE.network_input(img, 500), PRE.process(img, 500).network_input)


def test_preprocess_dpi_and_size_options() -> None:
    img = fingerprint_like(150, 150)
    assert preprocess(img, 250, CFG).shape == (1, 96, 96)
    cfg = replace(CFG, size=64, crop=0, balance=False, sharpen_amount=0)
    out = preprocess(img, 500, cfg)
    assert out.shape == (1, 64, 64)
    # No balance, no sharpen, no crop: just an area resize of the input.
    assert abs(float(out.mean()) - float(img.mean()) / 255) < 0.01


@pytest.mark.parametrize("in_channels, cfg_channels", [(3, 1), (3, 3), (4, 1), (4, 4), (1, 3)])
def test_preprocess_colour_inputs(in_channels: int, cfg_channels: int) -> None:
    gray = fingerprint_like(256, 256)
    img = gray if in_channels == 1 else np.repeat(gray[:, :, None], in_channels, axis=2)
    cfg = replace(CFG, channels=cfg_channels)
    out = preprocess(img, 500, cfg)
    assert out.shape == (cfg_channels, 96, 96)
    assert out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    if in_channels in (1, 3):
        # Equal planes of the same gray image give the same result on every channel.
        ref = preprocess(gray, 500, CFG)[0]
        for c in range(cfg_channels):
            np.testing.assert_allclose(out[c], ref, atol=2e-3)


def test_preprocess_rejects_channel_mismatch() -> None:
    with pytest.raises(QualityError) as info:
        preprocess(np.zeros((64, 64, 4), np.uint8), 500, replace(CFG, channels=3))
    assert info.value.reason == "wrong channel count"


def test_trace_six_stages_as_uint8() -> None:
    img = fingerprint_like(300, 260)
    stages = trace(img, 250, CFG)
    assert list(stages) == STAGES
    for name, arr in stages.items():
        assert arr.dtype == np.uint8, name
        assert arr.ndim == 2, name
    assert stages["1_input"].shape == (300, 260)
    assert np.array_equal(stages["1_input"], img)
    assert stages["2_resampled"].shape == (600, 520)
    assert stages["3_cropped"].shape == (192, 192)
    assert stages["6_network_input"].shape == (96, 96)
    net = np.round(preprocess(img, 250, CFG)[0] * 255).astype(np.uint8)
    assert np.array_equal(stages["6_network_input"], net)
    rgb = trace(np.repeat(img[:, :, None], 3, axis=2), 500, replace(CFG, channels=3))
    assert rgb["6_network_input"].shape == (96, 96, 3)


# ----------------------------------------------------------------------------- quality


def test_quality_accepts_stripes() -> None:
    q = check_quality(stripes(), 500, CFG)
    assert isinstance(q, Quality)
    assert q.ok, q.reason
    assert q.reason == ""
    assert set(q.scores) == {"mean", "contrast", "sharpness", "ridge_area",
                             "center_ridge_area", "coherence"}
    assert q.scores["ridge_area"] == 1.0
    assert q.scores["coherence"] > 0.9


@pytest.mark.parametrize("name, words", [
    ("blank", "too light"),
    ("black", "too dark"),
    ("dark_stripes", "too dark"),
    ("flat_gray", "blurred"),
    ("blurred", "blurred"),
    ("noise", "ridge pattern"),
    ("small_patch", "ridge area"),
])
def test_quality_rejections(name: str, words: str) -> None:
    s = stripes()
    rng = np.random.default_rng(0)
    images = {
        "blank": np.full((192, 192), 255, np.uint8),
        "black": np.zeros((192, 192), np.uint8),
        "dark_stripes": (s * 0.1).astype(np.uint8),
        "flat_gray": np.full((192, 192), 128, np.uint8),
        "blurred": np.round(ndimage.gaussian_filter(fingerprint_like(192, 192).astype(float), 5))
        .astype(np.uint8),
        "noise": rng.integers(0, 256, (192, 192)).astype(np.uint8),
        "small_patch": np.full((192, 192), 220, np.uint8),
    }
    images["small_patch"][:60, :60] = s[:60, :60]
    q = check_quality(images[name], 500, CFG)
    assert not q.ok
    assert words in q.reason, q.reason


def test_quality_reason_names_the_failing_limit() -> None:
    q = check_quality(stripes(), 500, replace(CFG, min_coherence=0.999))
    assert not q.ok and "ridge pattern" in q.reason and "0.999" in q.reason
    q = check_quality(stripes(), 500, replace(CFG, max_mean=0.3))
    assert not q.ok and "too light" in q.reason


def test_rejected_image_still_has_a_network_input() -> None:
    blank = np.full((192, 192), 255, np.uint8)
    result = PRE.process(blank, 500)
    assert not result.quality.ok and "too light" in result.quality.reason
    assert result.network_input.shape == (1, 96, 96)


def test_coherence_orders_lines_above_noise() -> None:
    lines = stripes().astype(np.float32) / 255
    noise = np.random.default_rng(0).random((192, 192)).astype(np.float32)
    assert coherence(lines) > 0.9
    assert coherence(noise) < 0.25
    assert coherence(np.zeros((32, 32), np.float32)) == 0.0


# ----------------------------------------------------------------------------- real data


def _load(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L"))


@pytest.mark.parametrize("folder, pattern", [("fvc2000/DB1_B", "*.tif"), ("upek", "*.png")])
def test_quality_accepts_real_fingerprints(shared_data: Path, folder: str, pattern: str) -> None:
    paths = sorted((shared_data / folder).glob(pattern))
    if not paths:
        pytest.skip(f"no images in {shared_data / folder}")
    rejected = []
    for path in paths:
        q = check_quality(_load(path), 500, CFG)
        if not q.ok:
            rejected.append(f"{path.name}: {q.reason}")
    assert not rejected, rejected
    out = preprocess(_load(paths[0]), 500, CFG)
    assert out.shape == (1, 96, 96) and 0.0 <= out.min() and out.max() <= 1.0


def test_local_normalise_removes_local_contrast_and_level():
    from siamid.preprocess import local_normalise

    rng = np.random.default_rng(0)
    ridges = (0.5 + 0.5 * np.sin(np.arange(64) * 2 * np.pi / 9))[None, :].repeat(64, 0)
    img = (ridges + 0.05 * rng.standard_normal((64, 64)))[:, :, None].astype(np.float32)
    faint = 0.6 + 0.2 * img  # a dry, light touch of the same ridges: lower contrast, other level
    a, b = local_normalise(img, 21), local_normalise(faint, 21)
    assert a.shape == img.shape and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_allclose(a, b, atol=1e-4)  # the same after normalisation
    assert np.abs(a - 0.5).mean() > 0.1  # and the ridges are still there
    flat = local_normalise(np.full((32, 32, 1), 0.9, np.float32), 21)
    np.testing.assert_allclose(flat, 0.5, atol=1e-6)  # background: flat gray, no amplified noise


def test_local_normalise_is_a_preprocessing_stage_and_checks_its_window():
    from siamid.preprocess import local_normalise

    img = np.random.default_rng(1).integers(0, 256, (200, 200), dtype=np.uint8)
    stages = trace(img, 500, PreprocessConfig(local_window=21))
    assert "4_normalised" in stages
    assert "4_normalised" not in trace(img, 500, PreprocessConfig())
    with pytest.raises(ConfigError, match="local_window"):
        local_normalise(np.zeros((8, 8, 1), np.float32), 2)


# ----------------------------------------------------------------------------- the Preprocessor


def test_process_is_one_pass_with_verdict_and_uint8_input() -> None:
    img = fingerprint_like(300, 260)
    result = PRE.process(img, 250)
    assert isinstance(result, Prepared) and isinstance(result.quality, Quality)
    x = result.network_input
    assert x.dtype == np.uint8 and x.shape == (1, 96, 96) and x.flags["C_CONTIGUOUS"]
    assert not x.flags["WRITEABLE"]  # the result is frozen, its pixels too
    # The same stages as the trace, and as the training path.
    assert np.array_equal(x[0], PRE.trace(img, 250)["6_network_input"])
    assert np.array_equal(x, PRE.network_input(img, 250))
    with pytest.raises(Exception):
        result.quality = Quality(True, "")  # type: ignore[misc]


def test_process_resamples_crops_and_balances_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import siamid.preprocess as pp

    calls = {"resample": 0, "crop_windows": 0, "balance": 0}
    for name in calls:
        real = getattr(pp, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(pp, name, counted)
    PRE.process(fingerprint_like(300, 300), 250)
    assert calls == {"resample": 1, "crop_windows": 1, "balance": 1}


def test_input_to_float_is_k_over_255() -> None:
    levels = np.arange(256, dtype=np.uint8)
    out = input_to_float(levels)
    assert out.dtype == np.float32
    assert np.array_equal(out, np.array([np.float32(k) / np.float32(255) for k in range(256)]))
    assert out[0] == 0.0 and out[255] == 1.0
    with pytest.raises(QualityError, match="uint8"):
        input_to_float(levels.astype(np.float32))


def test_input_to_float_matches_training_to_tensor_bit_for_bit() -> None:
    pytest.importorskip("torch")
    from siamid.training import to_tensor

    levels = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
    assert np.array_equal(to_tensor(levels).numpy(), input_to_float(levels))


def test_training_and_runtime_feed_bit_identical_inputs(tmp_path: Path) -> None:
    """Images through training's image_set + to_tensor and through Embedder.prepare: same floats."""
    pytest.importorskip("torch")
    from siamid.dataset import scan_dataset
    from siamid.runtime import Embedder
    from siamid.synth import generate_finger
    from siamid.training import image_set, to_tensor

    embedder = Embedder()  # the shipped model: its card's preprocessing
    for f in range(3):
        for k, im in enumerate(generate_finger(f, 2, "500dpi")[1]):
            folder = tmp_path / f"s{f}" / "left" / "index"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(im).save(folder / f"{k + 1}.png")
    ds = scan_dataset(tmp_path)
    trained = to_tensor(image_set(ds, embedder.preprocess_config, workers=1).images).numpy()
    entries = sorted(ds.entries, key=lambda e: e.id)
    from siamid.dataset import load_image

    served = np.stack([embedder.prepare(load_image(e.path), e.dpi, check=False) for e in entries])
    assert served.dtype == trained.dtype == np.float32
    assert served.shape == trained.shape == (6, embedder.card.channels, *embedder.card.input_size)
    assert np.array_equal(served.view(np.uint32), trained.view(np.uint32))


# ----------------------------------------------------------------------------- the card


def test_shipped_card_lacks_new_keys_and_keeps_todays_behaviour() -> None:
    from siamid.runtime import default_model_path, read_card
    from siamid.synth import generate_finger

    # The tiny tower's card predates the new fields; the default's was written with all of them.
    card = read_card(default_model_path().with_name("tiny.onnx"))
    assert "block" not in card.preprocess and "max_pixels" not in card.preprocess
    pre = Preprocessor.from_card(card)
    assert pre.config == PreprocessConfig(**card.preprocess)
    # the default differs only in its wide crop centred on the core, judged for quality on the
    # central R503-sized window (same behaviour otherwise)
    default = Preprocessor.from_card(read_card(default_model_path())).config
    assert default == replace(pre.config, center_on_core=True, crop=320, size=160,
                              quality_crop=192)
    # The values every shipped model was trained with, pinned from before they were fields.
    im = generate_finger(0, 1, "r503")[1][0]
    result = pre.process(im, 500)
    expected = {"mean": 0.499331, "contrast": 0.733333, "sharpness": 0.063878,
                "ridge_area": 0.916667, "center_ridge_area": 0.972222, "coherence": 0.699039}
    assert result.quality.ok
    assert result.quality.scores == pytest.approx(expected, abs=2e-6)
    x = result.network_input.astype(np.int64)
    # Sums of the uint8 input (and of its squares): a float-order change elsewhere may move a
    # pixel by one level, a changed default moves thousands.
    assert abs(int(x.sum()) - 1180424) <= 3
    assert abs(int((x * x).sum()) - 199166958) <= 3 * 2 * 255


@pytest.mark.parametrize("preprocess_dict, words", [
    ({"size": 96, "from_the_future": 1}, "from_the_future"),
    ({"size": "big"}, "size"),
    ({"block": 1}, "block"),
])
def test_from_card_refuses_unknown_or_bad_keys_saying_what_to_do(preprocess_dict: dict,
                                                                  words: str) -> None:
    with pytest.raises(ModelError, match=words) as info:
        Preprocessor.from_card(preprocess_dict, "m.onnx")
    assert "upgrade siamid or re-export" in str(info.value)
    assert "m.onnx" in str(info.value)


def test_from_card_refuses_size_that_disagrees_with_the_input() -> None:
    from siamid.runtime import default_model_path, read_card

    card = read_card(default_model_path())
    bad = card.with_changes(preprocess={**card.preprocess, "size": 64})
    with pytest.raises(ModelError, match="re-export"):
        Preprocessor.from_card(bad)


# Every field that changes the network input or the verdict, with another value: each must
# change something on an ordinary image (a field read nowhere would fail here).
NEW_FIELDS = {
    "resample_tolerance": 0.3,
    "block": 8,
    "foreground_contrast": 0.6,
    "foreground_quantile": 0.45,
    "min_foreground": 0.9,
    "pad_quantile": 0.1,
    "local_gain": 0.3,
    "local_std_floor": 0.2,
    "ridge_std": 0.5,
    "quality_sigma": 3.0,
    "contrast_quantile": 0.2,
    "min_contrast": 0.9,
    "quality_crop": 96,
}


@pytest.mark.parametrize("name, value", sorted(NEW_FIELDS.items()))
def test_each_new_field_changes_input_or_verdict(name: str, value: float) -> None:
    # An off-centre finger on light glass, lower than the crop (so the crop is padded).
    light = np.full((170, 360), 225, np.uint8)
    light[5:165, 50:210] = fingerprint_like(160, 160)
    light[20:150, 250:350] = stripes(130, 100, lo=205, hi=245)  # a faint smudge: not foreground
    base = replace(CFG, local_window=21) if name.startswith("local_") else CFG
    a = Preprocessor(base).process(light, 520)
    b = Preprocessor(replace(base, **{name: value})).process(light, 520)
    assert (not np.array_equal(a.network_input, b.network_input)
            or a.quality != b.quality), name


def test_a_wide_crop_judges_quality_on_a_sensor_sized_window_placed_like_a_crop() -> None:
    from siamid.synth import generate_finger

    r503 = generate_finger(0, 1, "r503")[1][0]  # 192 x 192: a 320 crop pads it all round
    # a finger off the centre of a frame larger than 192 px and smaller than 320 px
    frame = np.full((260, 300), 225, np.uint8)
    frame[90:250, 130:290] = fingerprint_like(160, 160)
    for im in (r503, frame):
        narrow = Preprocessor(CFG).process(im, 500)
        padded = Preprocessor(replace(CFG, crop=320, size=160)).process(im, 500)
        judged = Preprocessor(replace(CFG, crop=320, size=160, quality_crop=192)).process(im, 500)
        assert judged.quality == narrow.quality  # the verdict of a 192 px crop, exactly
        assert padded.quality.scores["mean"] > narrow.quality.scores["mean"] + 0.03  # padding
        # the network still sees the whole wide crop
        assert judged.network_input.shape == padded.network_input.shape == (1, 160, 160)
        np.testing.assert_array_equal(judged.network_input, padded.network_input)


def test_config_values_that_cannot_work_are_refused_by_name() -> None:
    for name, value in [("block", 0), ("size", 0), ("pad_quantile", 1.5), ("local_window", 2),
                        ("min_side", 0), ("contrast_quantile", 0.5), ("quality_crop", 16)]:
        with pytest.raises(ConfigError, match=name):
            Preprocessor(replace(CFG, **{name: value}))
    with pytest.raises(ConfigError, match="max_side"):
        Preprocessor(replace(CFG, min_side=300, max_side=200))
    with pytest.raises(ConfigError, match="balance_low"):
        Preprocessor(replace(CFG, balance_low=0.9, balance_high=0.1))


# ----------------------------------------------------------------------------- size limits


@pytest.mark.parametrize("shape, dpi, reason", [
    ((1, 1), 500, "image too small: 1x1 px, at least 64x64 px at 500 dpi needed"),
    ((63, 400), 500, "image too small: 400x63 px, at least 64x64 px at 500 dpi needed"),
    ((40, 40), 1000, "image too small: 40x40 px, at least 128x128 px at 1000 dpi needed"),
    ((100, 2049), 500, "image too large: 2049x100 px, at most 2048x2048 px at 500 dpi allowed"),
    ((1100, 1100), 250, "image too large: 1100x1100 px, at most 1024x1024 px at 250 dpi allowed"),
])
def test_size_limits_refuse_before_any_work(monkeypatch: pytest.MonkeyPatch,
                                            shape: tuple[int, int], dpi: int, reason: str) -> None:
    import siamid.preprocess as pp

    def no_work(*args, **kwargs):
        raise AssertionError("the image was processed before its size was checked")

    monkeypatch.setattr(pp, "to_float", no_work)
    # A broadcast view: an oversize image costs no memory in the test either.
    image = np.broadcast_to(np.uint8(200), shape)
    with pytest.raises(QualityError) as info:
        PRE.process(image, dpi)
    assert info.value.reason == reason
    assert reason in str(info.value)
    with pytest.raises(QualityError):
        PRE.trace(image, dpi)


def test_size_limits_edges_and_pixel_cap() -> None:
    ok_small = fingerprint_like(64, 64)
    assert PRE.process(ok_small, 500).network_input.shape == (1, 96, 96)  # judged, not refused
    assert PRE.process(fingerprint_like(32, 32), 250).network_input.shape == (1, 96, 96)
    capped = Preprocessor(replace(CFG, max_pixels=100 * 100))
    with pytest.raises(QualityError) as info:
        capped.process(np.broadcast_to(np.uint8(0), (101, 100)), 500)
    assert info.value.reason == (
        "image too large: 100x101 px is 10,100 pixels, at most 10,000 allowed")
    assert capped.process(fingerprint_like(100, 100), 500).network_input.shape == (1, 96, 96)
