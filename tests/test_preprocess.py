"""Tests for siamid.preprocess: each stage on hand-built images, the quality check, real data."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from siamid.config import PreprocessConfig
from siamid.errors import ConfigError, QualityError, SiamidError
from siamid.preprocess import (
    Quality,
    balance,
    check_quality,
    coherence,
    crop_center,
    prepare,
    preprocess,
    resample,
    resize,
    sharpen,
    sharpen_kernel,
    to_float,
    trace,
)

CFG = PreprocessConfig()
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
    assert np.array_equal(prepare(img, 500, CFG), a)


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
    with pytest.raises(QualityError) as info:
        prepare(images[name], 500, CFG)
    assert info.value.reason == q.reason
    assert q.reason in str(info.value)


def test_quality_reason_names_the_failing_limit() -> None:
    q = check_quality(stripes(), 500, replace(CFG, min_coherence=0.999))
    assert not q.ok and "ridge pattern" in q.reason and "0.999" in q.reason
    q = check_quality(stripes(), 500, replace(CFG, max_mean=0.3))
    assert not q.ok and "too light" in q.reason


def test_prepare_check_false_skips_quality() -> None:
    blank = np.full((192, 192), 255, np.uint8)
    out = prepare(blank, 500, CFG, check=False)
    assert out.shape == (1, 96, 96)


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
