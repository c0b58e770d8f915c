"""Alignment: the core found by complex filtering, and the crop centred on it."""

from __future__ import annotations

import math

import numpy as np

from siamid.align import core_point, core_strength
from siamid.config import PreprocessConfig
from siamid.preprocess import Preprocessor, crop_center, foreground_mask
from siamid.synth import make_master


def master_gray(seed: int):
    master = make_master(np.random.default_rng(seed), size=400)
    gray = np.where(master.mask, 0.5 - 0.4 * master.ridges, 1.0).astype(np.float64)
    return master, gray


def test_core_found_where_the_generator_put_it() -> None:
    errors = []
    for seed in range(8):
        master, gray = master_gray(seed)
        if not master.cores:
            continue
        point = core_point(gray, master.mask)
        assert point is not None
        errors.append(min(math.hypot(point[0] - cy, point[1] - cx) for cx, cy in master.cores))
    assert len(errors) >= 5
    assert np.median(errors) < 8.0  # pixels at 500 dpi, under one ridge period


def test_parallel_ridges_have_no_core() -> None:
    y, x = np.mgrid[0:256, 0:256].astype(np.float64)
    gray = 0.5 + 0.4 * np.cos(2 * math.pi * (x * 0.8 + y * 0.6) / 9.0)
    mask = np.ones(gray.shape, bool)
    assert core_strength(gray, mask)[16:-16, 16:-16].max() < 0.1
    assert core_point(gray, mask) is None


def test_crop_centres_on_the_core_when_asked() -> None:
    master, gray = master_gray(3)
    assert master.cores
    img = gray.astype(np.float32)[:, :, None]
    gray32 = gray.astype(np.float32)
    cy, cx = core_point(gray32, foreground_mask(gray32))  # the mask crop_center itself uses
    window = crop_center(img, 96, True, center_on_core=True)
    top, left = int(round(cy - 48)), int(round(cx - 48))
    assert top >= 0 and left >= 0
    np.testing.assert_array_equal(window, img[top:top + 96, left:left + 96])
    plain = crop_center(img, 96, True)
    assert not np.array_equal(plain, window)


def test_core_centring_is_a_card_field() -> None:
    _, gray = master_gray(5)
    img = (gray * 255).astype(np.uint8)
    aligned = Preprocessor(PreprocessConfig(center_on_core=True))
    assert not np.array_equal(aligned.network_input(img, 500),
                              Preprocessor(PreprocessConfig()).network_input(img, 500))
    np.testing.assert_array_equal(
        aligned.network_input(img, 500),
        Preprocessor.from_card({"center_on_core": True}).network_input(img, 500))


def test_core_centring_never_shifts_a_window_sized_image_and_stays_inside() -> None:
    _, gray = master_gray(3)
    img = gray.astype(np.float32)[:, :, None]
    small = img[100:292, 100:292]  # an R503-sized window: nothing to gain by moving it
    np.testing.assert_array_equal(crop_center(small, 192, True, center_on_core=True),
                                  crop_center(small, 192, False))
    window = crop_center(img, 360, True, center_on_core=True)  # larger than the core's margin
    found = [(top, left) for top in range(41) for left in range(41)
             if np.array_equal(window, img[top:top + 360, left:left + 360])]
    assert len(found) == 1  # an in-image window: moved inside, not padded
