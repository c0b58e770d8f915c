"""Ridge enhancement: integer Gabor bank, orientation field, the stage inside the Preprocessor."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from siamid.config import PreprocessConfig
from siamid.enhance import KERNEL_LEVELS, _responses, enhance, gabor_bank, orientation
from siamid.errors import ConfigError, ModelError
from siamid.preprocess import Preprocessor

STAGE = dict(period=9.0, sigma=4.0, angles=8, orient_sigma=6.0, scale_quantile=0.95)


def grating(angle: float, period: float = 9.0, side: int = 96) -> np.ndarray:
    """Dark ridges on light valleys, the gradient pointing at ``angle`` (radians)."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float64)
    u = x * math.cos(angle) + y * math.sin(angle)
    return 0.5 + 0.4 * np.cos(2.0 * math.pi * u / period)


def test_bank_is_integer_zero_mean_and_one_kernel_per_angle() -> None:
    bank = gabor_bank(9.0, 4.0, 8)
    assert bank.shape == (8, 25, 25) and bank.dtype == np.int16
    assert np.abs(bank).max() == KERNEL_LEVELS
    # zero-mean up to rounding: a flat patch gives (almost) nothing
    assert np.all(np.abs(bank.astype(np.int64).sum(axis=(1, 2))) < 0.01 * np.abs(bank).sum(axis=(1, 2)))
    assert not bank.flags.writeable


@pytest.mark.parametrize("k", [0, 2, 5])
def test_each_kernel_answers_its_own_orientation_best(k: int) -> None:
    img = grating(k * math.pi / 8)
    energy = np.abs(_responses(img, 9.0, 4.0, 8))[:, 30:66, 30:66].mean(axis=(1, 2))
    assert int(np.argmax(energy)) == k


def test_fft_responses_equal_direct_correlation() -> None:
    img = np.random.default_rng(0).random((40, 56))
    bank = gabor_bank(7.0, 3.0, 4)
    direct = [ndimage.correlate(img - img.mean(), kernel.astype(np.float64), mode="reflect")
              / KERNEL_LEVELS for kernel in bank]
    np.testing.assert_allclose(_responses(img, 7.0, 3.0, 4), np.stack(direct), atol=1e-9)


@pytest.mark.parametrize("angle", [0.0, 0.5, 1.2, 2.6])
def test_orientation_finds_the_gradient_direction(angle: float) -> None:
    theta = orientation(grating(angle), 6.0)[30:66, 30:66]
    diff = np.abs(np.angle(np.exp(2j * (theta - angle)))) / 2.0  # modulo pi
    assert np.median(diff) < math.radians(5)


def test_enhance_keeps_ridges_dark_and_flattens_background() -> None:
    img = grating(0.7)
    mask = np.zeros(img.shape, bool)
    mask[:, :60] = True
    out = enhance(img, mask, binarise=False, **STAGE)
    assert out.dtype == np.float32 and out.min() >= 0.0 and out.max() <= 1.0
    inner = (slice(20, 76), slice(15, 50))
    assert np.corrcoef(out[inner].ravel(), img[inner].ravel())[0, 1] > 0.9
    assert np.all(out[:, 60:] == 0.5)


def test_enhance_removes_noise_that_does_not_follow_the_ridges() -> None:
    clean = grating(1.0)
    noisy = clean + np.random.default_rng(1).normal(0, 0.3, clean.shape)
    out = enhance(noisy, np.ones(clean.shape, bool), binarise=False, **STAGE)
    inner = (slice(16, 80), slice(16, 80))
    assert np.corrcoef(noisy[inner].ravel(), clean[inner].ravel())[0, 1] < 0.75
    assert np.corrcoef(out[inner].ravel(), clean[inner].ravel())[0, 1] > 0.9


def test_binarise_gives_three_levels() -> None:
    img = grating(2.0)
    mask = np.ones(img.shape, bool)
    mask[:10] = False
    out = enhance(img, mask, binarise=True, **STAGE)
    assert set(np.unique(out)) == {0.0, 0.5, 1.0}
    assert np.all(out[:10] == 0.5)
    dark = img[20:76, 20:76] < 0.5
    assert np.mean((out[20:76, 20:76] == 0.0) == dark) > 0.95


def test_preprocessor_stage_and_card_round_trip() -> None:
    img = (grating(0.4, side=300) * 255).astype(np.uint8)
    cfg = PreprocessConfig(enhance=True, sharpen_amount=0)
    pre = Preprocessor(cfg)
    trace = pre.trace(img, 500)
    assert "4_enhanced" in trace
    np.testing.assert_array_equal(pre.network_input(img, 500),
                                  Preprocessor.from_card(vars(cfg)).network_input(img, 500))
    plain = Preprocessor(PreprocessConfig(sharpen_amount=0))
    assert "4_enhanced" not in plain.trace(img, 500)
    assert not np.array_equal(plain.network_input(img, 500), pre.network_input(img, 500))


@pytest.mark.parametrize("field,value", [("enhance_period", 1.0), ("enhance_sigma", 0.0),
                                         ("enhance_angles", 1), ("enhance_orient_sigma", 0.0),
                                         ("enhance_scale_quantile", 0.2)])
def test_bad_enhancement_parameters_are_refused(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field):
        Preprocessor(PreprocessConfig(enhance=True, **{field: value}))
    with pytest.raises(ModelError, match=field):
        Preprocessor.from_card({"enhance": True, field: value})
