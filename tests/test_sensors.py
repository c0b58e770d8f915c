"""The R503 view: 192 x 192 at 500 dpi, 16 gray levels, centred on the finger."""

from __future__ import annotations

import numpy as np
import pytest

from siamid.errors import QualityError
from siamid.sensors import R503_SIDE, quantise, r503_view

LEVELS = {k * 17 for k in range(16)}


def ridges(shape: tuple[int, int], period: float) -> np.ndarray:
    """Vertical dark/light stripes of ``period`` px as uint8."""
    x = np.arange(shape[1])
    row = 127.5 + 110 * np.cos(2 * np.pi * x / period)
    return np.broadcast_to(row, shape).astype(np.uint8).copy()


def stripe_period(image: np.ndarray) -> float:
    """Dominant horizontal period of the middle row block (pixels)."""
    profile = image[64:128].astype(float).mean(axis=0)
    profile -= profile.mean()
    power = np.abs(np.fft.rfft(profile)) ** 2
    k = int(np.argmax(power[1:])) + 1
    return len(profile) / k


def test_view_is_192_square_with_16_gray_levels():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (480, 640), dtype=np.uint8)
    view = r503_view(image, dpi=500)
    assert view.shape == (R503_SIDE, R503_SIDE) and view.dtype == np.uint8
    assert set(np.unique(view)) <= LEVELS
    assert len(np.unique(view)) > 8  # random input uses most of the levels


def test_view_resamples_to_500_dpi():
    image = ridges((600, 600), period=20.0)  # 20 px at 1000 dpi = 10 px at 500 dpi
    assert stripe_period(r503_view(image, dpi=1000)) == pytest.approx(10.0, abs=0.6)
    assert stripe_period(r503_view(image, dpi=500)) == pytest.approx(20.0, abs=1.2)


def test_view_is_centred_on_the_finger_not_the_image():
    canvas = np.full((480, 640), 230, np.uint8)
    canvas[20:220, 400:620] = ridges((200, 220), period=9.0)  # finger in the top-right corner
    view = r503_view(canvas, dpi=500)
    blank_share = float((view >= 221).mean())  # 230 quantises to 221 (13 x 17)
    assert blank_share < 0.5, "the window should sit on the ridges"
    centred = r503_view(canvas, dpi=500, center_on_foreground=False)
    assert float((centred >= 221).mean()) > 0.9  # the image centre is blank glass


def test_small_images_are_padded_with_light_background():
    small = ridges((120, 100), period=9.0)
    view = r503_view(small, dpi=500)
    assert view.shape == (R503_SIDE, R503_SIDE)
    assert view[0, 0] >= 204 and view[-1, -1] >= 204  # light padding, not ridge


def test_quantise_maps_the_range_to_the_sensor_levels():
    assert quantise(np.array([0.0, 1.0, 0.5, 2.0, -1.0])).tolist() == [0, 255, 136, 255, 0]
    assert set(quantise(np.linspace(0, 1, 1000)).tolist()) == LEVELS
    with pytest.raises(QualityError):
        quantise(np.zeros(3), levels=1)


def test_bad_input_is_a_quality_error():
    with pytest.raises(QualityError):
        r503_view(np.zeros((64, 64), np.uint8), dpi=0)
    with pytest.raises(QualityError):
        r503_view(np.zeros((0, 0), np.uint8), dpi=500)
