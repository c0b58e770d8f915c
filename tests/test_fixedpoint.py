"""Tests for siamid.fixedpoint: integer preprocessing, its config refusals, its stages by hand,
its closeness to the float pipeline, and that the float pipeline (integer = false) is unchanged."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from siamid.config import PreprocessConfig
from siamid.errors import ConfigError, QualityError
from siamid.fixedpoint import (
    FRAC_ONE,
    VERDICTS,
    IntegerParams,
    area_resize,
    balance_table,
    histogram,
    prepare,
    quality_kernels,
    quantile_level,
    sharpen,
    smooth_order,
    to_q16,
    window_origin,
)
from siamid.preprocess import QUALITY_CHECKS, Preprocessor, sharpen_kernel

CFG = PreprocessConfig()
INT = replace(CFG, integer=True)
PARAMS = IntegerParams.from_config(INT)


def rings(h: int = 192, w: int = 192, seed: int = 0, period: float = 9.0) -> np.ndarray:
    """Concentric 'ridges' with a little noise: a print-like uint8 image."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = np.hypot(y - h / 2 + 7, x - w / 2 - 5)
    v = 0.5 + 0.5 * np.sin(2 * np.pi * r / period)
    return np.clip(np.round(40 + 180 * v + rng.normal(0, 6, (h, w))), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def synth_prints() -> list[np.ndarray]:
    from siamid.synth import generate_finger

    return [im for seed in (0, 1) for im in generate_finger(seed, 2, "r503")[1]]


# ----------------------------------------------------------------------------- integer = false


def golden_cases() -> list[tuple[str, np.ndarray, int, PreprocessConfig]]:
    """Images and configs whose float results are pinned below (from before integer existed)."""
    blank = np.full((192, 192), 250, np.uint8)
    dark = (rings(seed=2) // 8).astype(np.uint8)
    noise = np.random.default_rng(3).integers(0, 256, (200, 180)).astype(np.uint8)
    wide = np.full((300, 260), 230, np.uint8)
    wide[40:232, 30:222] = rings(seed=4)
    return [
        ("rings", rings(), 500, CFG),
        ("rings_250dpi", rings(120, 110, seed=1), 250, CFG),
        ("blank", blank, 500, CFG),
        ("dark", dark, 500, CFG),
        ("noise", noise, 500, CFG),
        ("wide_core", wide, 500, replace(CFG, crop=256, quality_crop=192, center_on_core=True)),
        ("wide_sharp3", wide, 500, replace(CFG, sharpen_amount=3, size=64)),
    ]


# sha256 (first 16 hex digits) of the network input and the verdict's reason, computed with the
# float pipeline as it was before integer preprocessing existed (commit ec0ff50's
# siamid/preprocess.py, with the numpy and scipy of constraints.txt: bit-exact float results
# may move with those versions).
GOLDEN = {
    "rings": ("b1c6dcc14d2179b4", ""),
    "rings_250dpi": ("117e5842213116e1", ""),
    "blank": ("2d07a41ae9927700", "too light, no finger? (mean 0.98 > 0.96)"),
    "dark": ("1e3bc4687786e16e", "too dark (mean 0.06 < 0.08)"),
    "noise": ("54f5942a30e2cb46", "no ridge pattern (orientation coherence 0.24 < 0.25)"),
    "wide_core": ("b4f86576a1a32b93", ""),
    "wide_sharp3": ("4d29f8fe2d3fbc1d", ""),
}


@pytest.mark.parametrize("name", [c[0] for c in golden_cases()])
def test_float_pipeline_is_unchanged_when_integer_is_false(name: str) -> None:
    _, image, dpi, cfg = next(c for c in golden_cases() if c[0] == name)
    result = Preprocessor(cfg).process(image, dpi)
    digest = hashlib.sha256(result.network_input.tobytes()).hexdigest()[:16]
    assert (digest, result.quality.reason) == GOLDEN[name]


def test_integer_defaults_to_false_and_old_cards_load_as_float() -> None:
    assert PreprocessConfig().integer is False
    pre = Preprocessor.from_card({"size": 96, "crop": 192})
    assert pre.config.integer is False and pre._integer is None


# ----------------------------------------------------------------------------- config refusals


@pytest.mark.parametrize("changes, words", [
    ({"center_on_core": True}, "center_on_core"),
    ({"center_on_core": True, "rotate_to_core": True}, "center_on_core"),
    ({"local_window": 21}, "local_window"),
    ({"enhance": True}, "enhance"),
    ({"channels": 3}, "channels"),
    ({"crop": 0}, "crop"),
    ({"crop": 1024}, "crop"),
    ({"quality_crop": 96}, "quality_crop"),
    ({"size": 256}, "size"),
    ({"block": 48}, "block"),
    ({"quality_sigma": 2.0}, "quality_sigma"),
    ({"min_sharpness": 2.0}, "min_sharpness"),
])
def test_integer_refuses_what_it_cannot_run_exactly(changes: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as info:
        Preprocessor(replace(INT, **changes))
    assert "integer" in str(info.value)


def test_integer_resamples_other_resolutions_to_8_bits_first() -> None:
    from siamid.preprocess import resample, to_float, to_uint8

    pre = Preprocessor(INT)
    image = rings()
    # Within resample_tolerance an image is taken as it is, like the float pipeline does.
    assert np.array_equal(pre.network_input(image, 508), pre.network_input(image, 500))
    # Otherwise it is resampled as the float pipeline resamples, rounded to 8 bits, and the
    # integer stages run on that: the same as handing them the resampled image at 500 dpi.
    for dpi in (1000, 600):
        resampled = to_uint8(resample(to_float(image), dpi, 500, INT.resample_tolerance))[:, :, 0]
        assert resampled.shape != image.shape
        assert np.array_equal(pre.network_input(image, dpi), pre.network_input(resampled, 500))
        assert pre.process(image, dpi).quality.scores == pre.process(resampled, 500).quality.scores


def test_integer_refuses_colour_and_16_bit_images() -> None:
    pre = Preprocessor(INT)
    with pytest.raises(QualityError) as info:
        pre.process(np.zeros((192, 192, 3), np.uint8), 500)
    assert info.value.reason == "wrong channel count"
    with pytest.raises(QualityError) as info:
        pre.process(np.zeros((192, 192), np.uint16), 500)
    assert info.value.reason == "bad input type"
    pre.process(rings()[:, :, None], 500)  # (H, W, 1) is gray


def test_integer_from_card_round_trip() -> None:
    pre = Preprocessor.from_card({"size": 96, "crop": 192, "integer": True})
    assert pre._integer == PARAMS


# ----------------------------------------------------------------------------- stages by hand


def test_q16_and_smooth_order() -> None:
    assert to_q16(0.5) == 32768 and to_q16(1.0) == FRAC_ONE and to_q16(0.0) == 0
    assert to_q16(0.02) == 1311  # 1310.72 rounded
    assert smooth_order(1.0) == 4 and smooth_order(0.0) == 0 and smooth_order(0.5) == 2
    assert smooth_order(0.4) == 0 and smooth_order(0.8) == 2  # even: a centred kernel


def test_quantile_level_is_the_nearest_rank() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 100, 1001):
        values = rng.integers(0, 256, n).astype(np.uint8)
        ordered = np.sort(values)
        for q in (0.0, 0.02, 0.25, 0.5, 0.9, 0.98, 1.0):
            q16 = to_q16(q)
            rank = (q16 * (n - 1) + FRAC_ONE // 2) >> 16
            assert quantile_level(histogram(values), q16) == ordered[rank]


def test_balance_table_stretches_quantiles_to_the_full_range() -> None:
    window = np.tile(np.arange(50, 150, dtype=np.uint8), (100, 1))
    table, low, high = balance_table(window, PARAMS)
    # inside the 8-pixel border: columns 8..91 (levels 58..141), 84 rows each; ranks
    # round(0.02 * 7055) = 141 and round(0.98 * 7055) = 6914 fall in columns 1 and 82
    assert (low, high) == (59, 140)
    assert table[low] == 0 and table[high] == 255 and table[0] == 0 and table[255] == 255
    assert np.all(np.diff(table.astype(int)) >= 0)
    span = high - low
    v = 100
    assert table[v] == int(np.floor((v - low) * 255 / span + 0.5))


def test_sharpen_uses_the_shared_kernel_and_keeps_flat_images() -> None:
    kernel, shift = sharpen_kernel(1)
    assert PARAMS.sharpen_kernel == tuple(kernel.ravel()) and PARAMS.sharpen_shift == shift
    flat = np.full((10, 12), 77, np.uint8)
    assert np.array_equal(sharpen(flat, PARAMS.sharpen_kernel, shift), flat)
    # amount 0 is the identity kernel: exactly the input
    k0, s0 = sharpen_kernel(0)
    img = rings(20, 20)
    assert np.array_equal(sharpen(img, k0, s0), img)


def in_place_sharpen(img: np.ndarray, kernel, shift: int) -> np.ndarray:
    """The MLTK-style bug: writing each result over the image while still reading it."""
    k = np.asarray(kernel).reshape(3, 3)
    out = img.astype(np.int64).copy()
    h, w = out.shape
    for y in range(h):
        for x in range(w):
            acc = sum(int(k[dy, dx]) * int(out[min(max(y + dy - 1, 0), h - 1),
                                               min(max(x + dx - 1, 0), w - 1)])
                      for dy in range(3) for dx in range(3))
            out[y, x] = min(max((acc + (1 << shift >> 1)) >> shift, 0), 255)
    return out.astype(np.uint8)


def step_pattern() -> np.ndarray:
    """A vertical step and a bright dot: the sharpened values are known by hand."""
    img = np.full((6, 8), 100, np.uint8)
    img[:, 4:] = 180
    img[2, 2] = 200
    return img


def test_sharpen_reads_only_the_unchanged_input() -> None:
    kernel, shift = sharpen_kernel(1)
    img = step_pattern()
    out = sharpen(img, kernel, shift)
    # by hand: kernel [[-1 -2 -1] [-2 28 -2] [-1 -2 -1]] / 16 across the step 100 | 180
    # (0, 3): (28*100 - 4*100 - 4*100 - 4*180 + 8) >> 4 = 80; (0, 4): 3200 / 16 = 200
    assert out[0, 3] == 80 and out[0, 4] == 200
    # the dot: (28*200 - 12*100 + 8) >> 4 = 275, clamped
    assert out[2, 2] == 255 and out[0, 0] == 100
    assert np.array_equal(img, step_pattern())  # the input is untouched
    assert not np.array_equal(in_place_sharpen(img, kernel, shift), out)


def test_area_resize_by_hand() -> None:
    img = np.array([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]], np.uint8)
    # 2x2 means 2.5, 4.5, 10.5, 12.5: rounded half up
    assert area_resize(img, 2).tolist() == [[3, 5], [11, 13]]
    assert np.array_equal(area_resize(img, 4), img)
    # 3 -> 2: output cell 0 covers input 0 and half of input 1
    three = np.array([[0, 90, 180]] * 3, np.uint8)
    assert area_resize(three, 2)[0].tolist() == [30, 150]
    rng = np.random.default_rng(1)
    big = rng.integers(0, 256, (192, 192)).astype(np.uint8)
    means = big.reshape(96, 2, 96, 2).astype(np.int64).sum(axis=(1, 3))
    assert np.array_equal(area_resize(big, 96), ((2 * means + 4) // 8).astype(np.uint8))


def test_quality_kernels_are_smoothing_then_derivative() -> None:
    laplace, gradient = quality_kernels(0)
    assert laplace.tolist() == [[0, 1, 0], [1, -4, 1], [0, 1, 0]]
    assert gradient.tolist() == [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]
    laplace, gradient = quality_kernels(4)
    assert laplace.shape == (7, 7) and laplace.sum() == 0 and gradient.sum() == 0
    # across: [1 4 6 4 1] * [-1 0 1] = [-1 -4 -5 0 5 4 1]; along: [1 4 6 4 1] * [1 2 1], sum 64
    assert gradient[0].tolist() == [-1, -4, -5, 0, 5, 4, 1]
    assert np.abs(gradient).sum() == 20 * 64


def test_window_centres_on_the_foreground_blocks_and_pads_with_the_light_level() -> None:
    img = np.full((300, 300), 230, np.uint8)
    img[20:148, 150:278] = rings(128, 128)  # foreground blocks 2..8 (y), 10..16 (x)
    top, left, fill = window_origin(img, PARAMS)
    assert fill == 230
    # centre of the ridge area is about (84, 214): the window starts about 96 above and left
    assert abs(top - (84 - 96)) <= 8 and abs(left - (214 - 96)) <= 8
    result = prepare(img, PARAMS)
    window = result.stages["3_cropped"]
    assert window.shape == (192, 192)
    assert np.array_equal(window[-top:, : 300 - left], img[: 192 + top, left:])
    blank = np.full((200, 250), 240, np.uint8)
    assert window_origin(blank, PARAMS)[:2] == ((200 - 192 + 1) // 2, (250 - 192 + 1) // 2)


# ----------------------------------------------------------------------------- the verdict


def test_verdicts_name_the_float_checks_in_order() -> None:
    assert VERDICTS == ("ok",) + QUALITY_CHECKS


@pytest.mark.parametrize("image, check", [
    (np.full((192, 192), 250, np.uint8), "too_light"),
    ((rings() // 12).astype(np.uint8), "too_dark"),
    (np.full((192, 192), 128, np.uint8), "blurred_or_flat"),
])
def test_integer_verdict_fails_like_the_float_one_with_the_same_words(image, check) -> None:
    integer = Preprocessor(INT).process(image, 500).quality
    floating = Preprocessor(CFG).process(image, 500).quality
    assert not integer.ok and not floating.ok
    assert VERDICTS[prepare(image, PARAMS).scores.verdict] == check
    # the same check fails, and its reason reads the same up to the scores it prints
    assert integer.reason.split("(")[0] == floating.reason.split("(")[0]
    assert integer.scores.keys() == floating.scores.keys()


def test_noise_has_no_ridge_pattern_in_both() -> None:
    noise = np.random.default_rng(5).integers(0, 256, (192, 192)).astype(np.uint8)
    scores = prepare(noise, PARAMS).scores
    assert scores.as_floats(PARAMS)["coherence"] < CFG.min_coherence
    assert Preprocessor(CFG).process(noise, 500).quality.scores["coherence"] < CFG.min_coherence
    assert not Preprocessor(INT).process(noise, 500).quality.ok


def test_preprocessor_integer_process_trace_and_network_input_agree(synth_prints) -> None:
    pre = Preprocessor(INT)
    image = synth_prints[0]
    result = pre.process(image, 500)
    assert result.quality.ok, result.quality.reason
    assert result.network_input.shape == (1, 96, 96) and result.network_input.dtype == np.uint8
    assert not result.network_input.flags.writeable
    assert np.array_equal(pre.network_input(image, 500), result.network_input)
    stages = pre.trace(image, 500)
    assert list(stages) == ["1_input", "2_resampled", "3_cropped", "4_balanced", "5_sharpened",
                            "6_network_input"]
    assert np.array_equal(stages["6_network_input"], result.network_input[0])
    assert all(s.dtype == np.uint8 and s.ndim == 2 for s in stages.values())


def test_balance_off_still_judges_the_balanced_window(synth_prints) -> None:
    image = synth_prints[1]
    off = prepare(image, IntegerParams.from_config(replace(INT, balance=False)))
    on = prepare(image, PARAMS)
    assert off.scores == on.scores
    assert np.array_equal(off.stages["4_balanced"], off.stages["3_cropped"])
    assert not np.array_equal(off.network_input, on.network_input)


# ----------------------------------------------------------------------------- against float


def integer_vs_float(images, cfg: PreprocessConfig = CFG) -> tuple[int, float, int]:
    """(max, mean absolute difference of the network inputs in levels, verdicts that differ)."""
    floating, integer = Preprocessor(replace(cfg, integer=False)), Preprocessor(
        replace(cfg, integer=True))
    worst, total, count, verdicts = 0, 0, 0, 0
    for image in images:
        a, b = floating.process(image, 500), integer.process(image, 500)
        d = np.abs(a.network_input.astype(int) - b.network_input.astype(int))
        worst, total, count = max(worst, int(d.max())), total + int(d.sum()), count + d.size
        verdicts += a.quality.ok != b.quality.ok
    return worst, total / count, verdicts


def test_integer_stages_are_within_two_levels_of_the_float_ones(synth_prints) -> None:
    # Same window (centred): balance, sharpen and resize differ by rounding only.
    worst, mean, verdicts = integer_vs_float(synth_prints, replace(CFG, center_on_foreground=False))
    assert worst <= 2 and mean < 0.4 and verdicts == 0
    # Centred on the foreground: the block mask places the window a pixel or two apart.
    _, _, verdicts = integer_vs_float(synth_prints)
    assert verdicts == 0


def integer_scores_close(image: np.ndarray) -> dict[str, float]:
    a = Preprocessor(CFG).process(image, 500).quality.scores
    b = Preprocessor(INT).process(image, 500).quality.scores
    return {k: abs(a[k] - b[k]) for k in a}


def test_integer_scores_are_close_to_the_float_scores(synth_prints) -> None:
    for image in synth_prints:
        gaps = integer_scores_close(image)
        assert gaps["mean"] < 0.02 and gaps["contrast"] < 0.02
        assert gaps["sharpness"] < 0.01 and gaps["coherence"] < 0.05
        assert gaps["ridge_area"] < 0.1 and gaps["center_ridge_area"] < 0.1


REAL_SETS = [("fvc2000/DB1_B", "*.tif"), ("upek", "*.png"), ("r30x_captures", "**/*.png")]


def real_images(shared_data: Path, folder: str, pattern: str, limit: int | None = None):
    from siamid.dataset import load_image

    paths = sorted((shared_data / folder).glob(pattern))[:limit]
    if not paths:
        pytest.skip(f"no {pattern} images in {shared_data / folder}")
    return [load_image(p) for p in paths]


@pytest.mark.parametrize("folder, pattern", REAL_SETS)
def test_integer_close_to_float_on_a_few_real_prints(shared_data: Path, folder: str,
                                                     pattern: str) -> None:
    images = real_images(shared_data, folder, pattern, limit=4)
    worst, mean, _ = integer_vs_float(images, replace(CFG, center_on_foreground=False))
    assert worst <= 2 and mean < 0.5


def float_window_origin(image: np.ndarray, cfg: PreprocessConfig = CFG) -> tuple[int, int]:
    """Where the float pipeline's crop window starts (crop_windows without core centring)."""
    from siamid.preprocess import foreground_mask, to_float

    gray = to_float(image)[:, :, 0]
    h, w = gray.shape
    mask = foreground_mask(gray, cfg.block, cfg.foreground_contrast, cfg.foreground_quantile)
    cy, cx = h / 2.0, w / 2.0
    if mask.sum() > cfg.min_foreground * mask.size:
        ys, xs = np.nonzero(mask)
        cy, cx = float(ys.mean()), float(xs.mean())
    return int(round(cy - cfg.crop / 2.0)), int(round(cx - cfg.crop / 2.0))


@pytest.mark.slow
@pytest.mark.parametrize("folder, pattern", REAL_SETS)
def test_integer_vs_float_on_real_prints(shared_data: Path, folder: str, pattern: str) -> None:
    """The numbers in docs/firmware.md (run with -s to see them)."""
    images = real_images(shared_data, folder, pattern)
    same = integer_vs_float(images, replace(CFG, center_on_foreground=False))
    placed = integer_vs_float(images)
    shifts = [max(abs(a - b) for a, b in zip(float_window_origin(im),
                                             prepare(im, PARAMS).scores.as_origin()))
              for im in images]
    print(f"\n{folder}: {len(images)} images; same window: max {same[0]}, mean {same[1]:.3f}, "
          f"verdicts differ {same[2]}; own window: max {placed[0]}, mean {placed[1]:.3f}, "
          f"verdicts differ {placed[2]}; window offset (px) mean {np.mean(shifts):.1f}, "
          f"median {np.median(shifts):.0f}, max {max(shifts)}")
    assert same[0] <= 4 and same[1] < 0.5
    assert placed[2] <= max(2, len(images) // 10)
