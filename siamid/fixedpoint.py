"""Integer preprocessing: the one definition that the firmware's C reference runs bit for bit.

With ``[preprocess] integer = true`` the ``Preprocessor`` runs these stages instead of the float
ones: every stage on 8-bit images with integer arithmetic (at most 64-bit intermediates) and
explicit rounding, so that ``siamid/firmware/siamid_ref.c``, which mirrors this module function
by function, gives the same bytes and the same verdict on any machine, without floating point.
Scope: what a microcontroller behind an R503-class sensor needs. The image comes at the
config's ``target_dpi`` as one 8-bit gray channel (an image at another resolution is first
resampled in float and rounded to 8 bits by ``at_target_dpi``, a step outside this integer
definition that the C has not); no core centring, local normalisation or ridge enhancement
(``check_integer_config`` refuses them).

Stages, each the counterpart of a float stage of ``siamid.preprocess``:

1. window: ``crop`` x ``crop`` pixels centred on the foreground (or the image). The foreground is
   measured on non-overlapping ``block`` x ``block`` blocks (the float mask is per pixel): a block
   is foreground when its standard deviation exceeds ``foreground_contrast`` times the image's
   spread between its ``foreground_quantile`` and ``1 - foreground_quantile`` levels. The window
   is centred on the mean of the foreground blocks' centres, rounded half up; outside the image it
   is padded with the ``pad_quantile`` level.
2. balance: the ``balance_low`` and ``balance_high`` levels of the window inside a border (a
   256-bin histogram) become 0 and 255; a 256-entry table does the linear stretch, rounded half up.
3. sharpen: ``preprocess.sharpen_kernel`` (integer 3x3, shift 4) with edge replication, rounded
   half up, clamped, into a separate output buffer.
4. resize: exact area average to ``size`` x ``size`` (integer overlap weights), rounded half up.

The quality verdict checks what the float one does, in the same order and with the same reason
strings: mean, contrast (histogram quantiles), sharpness (mean absolute Laplacian after a binomial
smoothing of variance ``round(2 sigma^2) / 2``), ridge area and centre ridge area (block standard
deviations), orientation coherence (structure tensor summed over each block, its anisotropy by
integer square root). Every fraction of the config is used as a 16-bit fixed-point number
(``to_q16``: rounded to the nearest 1/65536); levels are 0..255.

Quantile: the level of the pixel at rank ``round_half_up(q * (n - 1))`` of the sorted ``n``
pixels (``quantile_level``), the nearest rank where numpy interpolates.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from .config import PreprocessConfig
from .errors import ConfigError, QualityError
from .preprocess import QUALITY_CHECKS, quality_reason, sharpen_kernel

__all__ = [
    "FRAC_BITS",
    "FRAC_ONE",
    "MAX_BLOCK",
    "MAX_CROP",
    "MAX_SMOOTH_ORDER",
    "MAX_TAPS",
    "VERDICTS",
    "IntegerParams",
    "IntegerResult",
    "IntegerScores",
    "area_resize",
    "balance_table",
    "check_integer_config",
    "at_target_dpi",
    "crop_window",
    "gray_pixels",
    "histogram",
    "judge",
    "prepare",
    "quality_kernels",
    "quantile_level",
    "sharpen",
    "smooth_order",
    "window_origin",
]

#: Fractions of the config (quantiles, limits) are used as FRAC_BITS-bit fixed-point numbers.
FRAC_BITS = 16
FRAC_ONE = 1 << FRAC_BITS
#: The binomial smoothing before the sharpness Laplacian and the coherence gradients has
#: ``smooth_order`` + 1 taps, at most this order (variance order / 4: quality_sigma up to ~1).
MAX_SMOOTH_ORDER = 4
#: Side of the composite (smoothing then derivative) quality kernels at the largest order.
MAX_TAPS = MAX_SMOOTH_ORDER + 3
#: Limits that keep every intermediate within 64 bits (see the bounds in docs/firmware.md).
MAX_CROP = 512
MAX_BLOCK = 32
#: Verdict codes: 0 is a pass, k > 0 the k-th of ``preprocess.QUALITY_CHECKS`` failed first.
VERDICTS = ("ok",) + QUALITY_CHECKS

# The config fields the integer stages read as Q16 fractions; each must lie in [0, 1].
_Q16_FIELDS = (
    "foreground_contrast", "foreground_quantile", "min_foreground", "pad_quantile",
    "balance_low", "balance_high", "contrast_quantile", "min_mean", "max_mean", "min_contrast",
    "min_sharpness", "ridge_std", "min_ridge_area", "min_center_ridge_area", "min_coherence",
)


def to_q16(value: float) -> int:
    """``value`` as a Q16 fixed-point integer, rounded half up, exact from the float's bits."""
    return math.floor(Fraction(value) * FRAC_ONE + Fraction(1, 2))


def smooth_order(sigma: float) -> int:
    """The even binomial order whose variance (order / 4) is nearest ``sigma`` squared (even, so
    that the kernel has a centre tap): ``2 * round_half_up(2 sigma^2)``."""
    return 2 * math.floor(Fraction(2) * Fraction(sigma) ** 2 + Fraction(1, 2))


def check_integer_config(cfg: PreprocessConfig) -> None:
    """ConfigError naming the first setting integer preprocessing cannot run exactly."""
    refusals = [
        (cfg.modality != "finger", f"modality = {cfg.modality!r} (fingerprints only)"),
        (cfg.channels != 1, f"channels = {cfg.channels} (one gray channel only)"),
        (cfg.center_on_core, "center_on_core = true (core detection is float-only)"),
        (cfg.rotate_to_core, "rotate_to_core = true (rotation is float-only)"),
        (cfg.local_window > 0, f"local_window = {cfg.local_window} (local normalisation is "
                               "float-only)"),
        (cfg.enhance, "enhance = true (ridge enhancement is float-only)"),
        (cfg.crop <= 0 or cfg.crop > MAX_CROP, f"crop = {cfg.crop} (1..{MAX_CROP} pixels)"),
        (cfg.quality_crop not in (0, cfg.crop),
         f"quality_crop = {cfg.quality_crop} (0 or the crop itself)"),
        (cfg.size > cfg.crop, f"size = {cfg.size} larger than crop = {cfg.crop} (the area "
                              "resize only shrinks)"),
        (cfg.block > MAX_BLOCK, f"block = {cfg.block} (at most {MAX_BLOCK} pixels)"),
        (smooth_order(cfg.quality_sigma) > MAX_SMOOTH_ORDER,
         f"quality_sigma = {cfg.quality_sigma} (at most about 1 pixel: binomial order "
         f"{MAX_SMOOTH_ORDER})"),
    ]
    for refused, what in refusals:
        if refused:
            raise ConfigError(f"preprocess.integer = true cannot run with preprocess.{what}; "
                              "change that setting or set integer = false")
    for name in _Q16_FIELDS:
        value = getattr(cfg, name)
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"preprocess.{name} must be in [0, 1] with integer = true, "
                              f"got {value!r}")


def at_target_dpi(gray: np.ndarray, dpi: int, cfg: PreprocessConfig) -> np.ndarray:
    """``gray`` (uint8 H x W) at ``cfg.target_dpi``: as it is within ``resample_tolerance``,
    else resampled as the float pipeline resamples and rounded to 8 bits.

    The resampling is not an integer stage: the C reference has none, since firmware reads its
    sensor at ``target_dpi``. It lets the Python runtime score such a model on databases at other
    resolutions; the integer stages, and their bit-identity with the C, start from its output.
    """
    from .preprocess import resample, to_float, to_uint8

    if abs(cfg.target_dpi / dpi - 1.0) < cfg.resample_tolerance:
        return gray
    img = resample(to_float(gray, 1), dpi, cfg.target_dpi, cfg.resample_tolerance)
    return np.ascontiguousarray(to_uint8(img)[:, :, 0])


def gray_pixels(image: np.ndarray) -> np.ndarray:
    """``image`` as uint8 (H, W); QualityError unless it is 8-bit gray (H, W) or (H, W, 1)."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2 or arr.size == 0:
        raise QualityError(f"integer preprocessing takes one gray channel, got shape "
                           f"{arr.shape}", "wrong channel count")
    if arr.dtype != np.uint8:
        raise QualityError(f"integer preprocessing takes 8-bit images, got {arr.dtype}",
                           "bad input type")
    return arr


def _binomial(order: int) -> np.ndarray:
    row = np.array([1], np.int64)
    for _ in range(order):
        row = np.convolve(row, [1, 1])
    return row


def quality_kernels(order: int) -> tuple[np.ndarray, np.ndarray]:
    """(laplace, gradient_x) composite correlation kernels, (order + 3) square, int64.

    Binomial smoothing of ``order`` then scipy's ``laplace`` ([1 -2 1] along each axis), and
    then scipy's ``sobel`` along x ([-1 0 1] across, [1 2 1] along); gradient_y is gradient_x
    transposed. Both sum the smoothed image times 2^(2 order).
    """
    b = _binomial(order)
    second = np.convolve(b, [1, -2, 1])
    flat = np.convolve(b, [0, 1, 0])
    laplace = np.outer(flat, second) + np.outer(second, flat)
    gradient_x = np.outer(np.convolve(b, [1, 2, 1]), np.convolve(b, [-1, 0, 1]))
    return laplace, gradient_x


def _padded_kernel(kernel: np.ndarray) -> tuple[int, ...]:
    out = np.zeros((MAX_TAPS, MAX_TAPS), np.int64)
    out[: kernel.shape[0], : kernel.shape[1]] = kernel
    return tuple(int(v) for v in out.ravel())


@dataclass(frozen=True)
class IntegerParams:
    """The integers the integer stages (and the C reference's ``siamid_prep_params``) read.

    Made from a ``PreprocessConfig`` by ``from_config``; field names and order are the C
    struct's (``siamid/firmware/siamid_ref.h``). ``*_q16`` are Q16 fractions; kernels are row
    major, ``laplace_kernel`` and ``gradient_kernel`` padded to MAX_TAPS x MAX_TAPS with the
    ``kernel_taps`` x ``kernel_taps`` kernel in the top-left corner.
    """

    crop: int
    size: int
    center_on_foreground: int
    block: int
    foreground_contrast_q16: int
    foreground_quantile_q16: int
    min_foreground_q16: int
    pad_quantile_q16: int
    balance: int
    balance_border: int
    balance_low_q16: int
    balance_high_q16: int
    sharpen_kernel: tuple[int, ...]
    sharpen_shift: int
    smooth_order: int
    kernel_taps: int
    laplace_kernel: tuple[int, ...]
    gradient_kernel: tuple[int, ...]
    contrast_quantile_q16: int
    min_mean_q16: int
    max_mean_q16: int
    min_contrast_q16: int
    min_sharpness_q16: int
    ridge_std_q16: int
    min_ridge_area_q16: int
    min_center_ridge_area_q16: int
    min_coherence_q16: int

    @classmethod
    def from_config(cls, cfg: PreprocessConfig) -> "IntegerParams":
        """The integer parameters of ``cfg``; ConfigError where integer stages cannot run it."""
        check_integer_config(cfg)
        kernel, shift = sharpen_kernel(cfg.sharpen_amount)
        order = smooth_order(cfg.quality_sigma)
        laplace, gradient = quality_kernels(order)
        q = {f"{name}_q16": to_q16(getattr(cfg, name)) for name in _Q16_FIELDS}
        return cls(crop=cfg.crop, size=cfg.size,
                   center_on_foreground=int(cfg.center_on_foreground), block=cfg.block,
                   balance=int(cfg.balance), balance_border=cfg.balance_border,
                   sharpen_kernel=tuple(int(v) for v in kernel.ravel()), sharpen_shift=shift,
                   smooth_order=order, kernel_taps=order + 3,
                   laplace_kernel=_padded_kernel(laplace),
                   gradient_kernel=_padded_kernel(gradient), **q)

    def items(self) -> list[tuple[str, Any]]:
        """(name, value) of each field in the C struct's order."""
        return [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)]

    def kernel(self, name: str) -> np.ndarray:
        """``laplace_kernel`` or ``gradient_kernel`` as a (taps, taps) int64 array."""
        full = np.asarray(getattr(self, name), np.int64).reshape(MAX_TAPS, MAX_TAPS)
        return full[: self.kernel_taps, : self.kernel_taps]


@dataclass(frozen=True)
class IntegerScores:
    """The integer quality measurements, as the C reference's ``siamid_quality`` holds them.

    ``verdict`` is an index into ``VERDICTS``. ``top``/``left`` place the window in the image,
    ``fill`` pads it, ``low``/``high`` are the balance levels. The rest are exact sums: the gray
    sum of the window's ``pixels``, its ``contrast`` (levels between the contrast quantiles), the
    sum of absolute smoothed Laplacians (in 1/2^(2 order) levels), ridge block counts overall and
    in the central half, and the coherence's anisotropy and energy summed over blocks.
    """

    verdict: int
    top: int
    left: int
    fill: int
    low: int
    high: int
    gray_sum: int
    pixels: int
    contrast: int
    laplace_sum: int
    ridge_blocks: int
    blocks: int
    center_ridge_blocks: int
    center_blocks: int
    anisotropy_sum: int
    energy_sum: int

    def as_origin(self) -> tuple[int, int]:
        """(top, left) of the window in the image."""
        return self.top, self.left

    def as_floats(self, params: IntegerParams) -> dict[str, float]:
        """The scores on the float verdict's scales (0..1 levels, fractions), by the same keys."""
        n = max(self.pixels, 1)
        return {
            "mean": self.gray_sum / (255.0 * n),
            "contrast": self.contrast / 255.0,
            "sharpness": self.laplace_sum / (255.0 * n * (1 << (2 * params.smooth_order))),
            "ridge_area": self.ridge_blocks / self.blocks if self.blocks else 0.0,
            "center_ridge_area": (self.center_ridge_blocks / self.center_blocks
                                  if self.center_blocks else 0.0),
            "coherence": self.anisotropy_sum / max(self.energy_sum, 1),
        }


@dataclass(frozen=True)
class IntegerResult:
    """What ``prepare`` makes of one image: its scores (with the verdict), the uint8 stages
    (``3_cropped``, ``4_balanced``, ``5_sharpened``, ``6_network_input``, each (H, W))."""

    scores: IntegerScores
    stages: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def network_input(self) -> np.ndarray:
        return self.stages["6_network_input"]


# ----------------------------------------------------------------------------- helpers


def _floor_div(a: int, b: int) -> int:
    return a // b  # Python floors; the C reference's siamid_floor_div does the same


def histogram(pixels: np.ndarray) -> np.ndarray:
    """Counts of each level 0..255 of uint8 ``pixels``, int64 (256,)."""
    return np.bincount(np.asarray(pixels, np.uint8).ravel(), minlength=256).astype(np.int64)


def quantile_level(hist: np.ndarray, q16: int) -> int:
    """The level at rank ``(q16 * (n - 1) + 2^15) >> 16`` of the ``n`` counted pixels."""
    n = int(hist.sum())
    rank = (q16 * (n - 1) + FRAC_ONE // 2) >> FRAC_BITS
    return int(np.searchsorted(np.cumsum(hist), rank, side="right"))


def _block_sums(img: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum and sum of squares of each whole ``block`` x ``block`` block (row major), int64."""
    h, w = img.shape
    nby, nbx = h // block, w // block
    blocks = img[: nby * block, : nbx * block].astype(np.int64).reshape(nby, block, nbx, block)
    return blocks.sum(axis=(1, 3)), (blocks * blocks).sum(axis=(1, 3))


def _block_std_n(sums: np.ndarray, squares: np.ndarray, n: int) -> np.ndarray:
    """``isqrt(n * squares - sums^2)`` per block: n times the block's standard deviation, floored."""
    var_n2 = n * squares - sums * sums
    return np.array([math.isqrt(int(v)) for v in var_n2.ravel()],
                    np.int64).reshape(var_n2.shape)


# ----------------------------------------------------------------------------- stages


def window_origin(gray: np.ndarray, p: IntegerParams) -> tuple[int, int, int]:
    """(top, left, fill): where the ``crop`` window starts in ``gray`` and its padding level."""
    h, w = gray.shape
    hist = histogram(gray)
    fill = quantile_level(hist, p.pad_quantile_q16)
    side = p.crop
    if p.center_on_foreground:
        spread = (quantile_level(hist, FRAC_ONE - p.foreground_quantile_q16)
                  - quantile_level(hist, p.foreground_quantile_q16))
        b = p.block
        n = b * b
        sums, squares = _block_sums(gray, b)
        foreground = (_block_std_n(sums, squares, n) * FRAC_ONE
                      > p.foreground_contrast_q16 * spread * n)
        k = int(foreground.sum())
        if foreground.size and k * FRAC_ONE > p.min_foreground_q16 * foreground.size:
            ys, xs = np.nonzero(foreground)
            # centre of block (by, bx) is (by * b + (b - 1) / 2, ...): sums in half pixels
            num_y = int((2 * b * ys + b - 1).sum()) - side * k
            num_x = int((2 * b * xs + b - 1).sum()) - side * k
            return _floor_div(num_y + k, 2 * k), _floor_div(num_x + k, 2 * k), fill
    return _floor_div(h - side + 1, 2), _floor_div(w - side + 1, 2), fill


def crop_window(gray: np.ndarray, top: int, left: int, side: int, fill: int) -> np.ndarray:
    """The ``side`` x ``side`` window of ``gray`` at (top, left), ``fill`` outside the image."""
    h, w = gray.shape
    out = np.full((side, side), fill, np.uint8)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + side, h), min(left + side, w)
    if y1 > y0 and x1 > x0:
        out[y0 - top : y1 - top, x0 - left : x1 - left] = gray[y0:y1, x0:x1]
    return out


def balance_table(window: np.ndarray, p: IntegerParams) -> tuple[np.ndarray, int, int]:
    """(table, low, high): the 256-entry stretch that maps ``low`` to 0 and ``high`` to 255.

    ``low``/``high`` are the balance quantile levels of ``window`` inside its border;
    entry v is ``clamp(floor(((v - low) * 510 + span) / (2 * span)), 0, 255)``, span =
    max(high - low, 1): (v - low) * 255 / span rounded half up.
    """
    h, w = window.shape
    b = min(p.balance_border, h // 4, w // 4)
    inner = window[b : h - b, b : w - b] if b > 0 else window
    hist = histogram(inner)
    low = quantile_level(hist, p.balance_low_q16)
    high = quantile_level(hist, p.balance_high_q16)
    span = max(high - low, 1)
    v = np.arange(256, dtype=np.int64)
    table = np.clip(((v - low) * 510 + span) // (2 * span), 0, 255).astype(np.uint8)
    return table, low, high


def _correlate_clamped(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """sum of ``kernel[dy, dx] * img[clamp(y + dy - r), clamp(x + dx - r)]``, int64."""
    r = kernel.shape[0] // 2
    h, w = img.shape
    padded = np.pad(img.astype(np.int64), r, mode="edge")
    out = np.zeros((h, w), np.int64)
    for dy in range(kernel.shape[0]):
        for dx in range(kernel.shape[1]):
            if kernel[dy, dx]:
                out += int(kernel[dy, dx]) * padded[dy : dy + h, dx : dx + w]
    return out


def _shift_round(values: np.ndarray, shift: int) -> np.ndarray:
    """``values / 2^shift`` rounded half up (floor of value + half), int64."""
    return (values + ((1 << shift) >> 1)) >> shift


def sharpen(img: np.ndarray, kernel: Any, shift: int) -> np.ndarray:
    """The 3x3 integer ``kernel`` (``preprocess.sharpen_kernel``) with edge replication, rounded
    half up, clamped to 0..255: a new array, every output pixel from the unchanged input."""
    k = np.asarray(kernel, np.int64).reshape(3, 3)
    out = _shift_round(_correlate_clamped(img, k), shift)
    return np.clip(out, 0, 255).astype(np.uint8)


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) overlaps of output cell o, [o n_in, (o+1) n_in), with input pixel i,
    [i n_out, (i+1) n_out): each row sums to n_in."""
    o = np.arange(n_out, dtype=np.int64)[:, None]
    i = np.arange(n_in, dtype=np.int64)[None, :]
    return np.maximum(0, np.minimum((o + 1) * n_in, (i + 1) * n_out)
                      - np.maximum(o * n_in, i * n_out))


def area_resize(img: np.ndarray, size: int) -> np.ndarray:
    """Exact area average of a square uint8 image to ``size`` x ``size``, rounded half up."""
    side = img.shape[0]
    weights = _area_weights(side, size)
    acc = weights @ img.astype(np.int64) @ weights.T
    d = side * side
    return ((2 * acc + d) // (2 * d)).astype(np.uint8)


def judge(window: np.ndarray, balanced: np.ndarray, p: IntegerParams,
          origin: tuple[int, int, int], levels: tuple[int, int]) -> IntegerScores:
    """The integer verdict of a cropped window and its balanced version (both uint8)."""
    n = window.size
    hist = histogram(window)
    gray_sum = int((np.arange(256) * hist).sum())
    contrast = (quantile_level(hist, FRAC_ONE - p.contrast_quantile_q16)
                - quantile_level(hist, p.contrast_quantile_q16))
    flat = contrast * FRAC_ONE <= p.min_contrast_q16 * 255
    laplace_sum = int(np.abs(_correlate_clamped(balanced, p.kernel("laplace_kernel"))).sum())
    b = p.block
    sums, squares = _block_sums(balanced, b)
    nby, nbx = sums.shape
    ridge = _block_std_n(sums, squares, b * b) * FRAC_ONE > p.ridge_std_q16 * 255 * b * b
    qy, qx = nby // 4, nbx // 4
    center = ridge[qy : nby - qy, qx : nbx - qx]
    ridge_blocks = 0 if flat else int(ridge.sum())
    center_ridge_blocks = 0 if flat else int(center.sum())
    anisotropy, energy = _coherence_sums(balanced, p)
    scale = 1 << (2 * p.smooth_order)
    fails = [
        gray_sum * FRAC_ONE < p.min_mean_q16 * 255 * n,
        gray_sum * FRAC_ONE > p.max_mean_q16 * 255 * n,
        flat or laplace_sum * FRAC_ONE < p.min_sharpness_q16 * 255 * n * scale,
        # no whole block (a crop smaller than a block) has no ridge area, as in the float
        ridge_blocks * FRAC_ONE < p.min_ridge_area_q16 * max(ridge.size, 1),
        center_ridge_blocks * FRAC_ONE < p.min_center_ridge_area_q16 * max(center.size, 1),
        anisotropy * FRAC_ONE < p.min_coherence_q16 * max(energy, 1),
    ]
    verdict = next((k + 1 for k, failed in enumerate(fails) if failed), 0)
    top, left, fill = origin
    return IntegerScores(verdict, top, left, fill, levels[0], levels[1], gray_sum, n, contrast,
                         laplace_sum, ridge_blocks, int(ridge.size), center_ridge_blocks,
                         int(center.size), anisotropy, energy)


def _coherence_sums(balanced: np.ndarray, p: IntegerParams) -> tuple[int, int]:
    """(sum of block anisotropies, sum of block energies) of the structure tensor.

    Gradients: the composite gradient kernel, rounded half up to levels (x 8, Sobel's gain);
    per whole block, Jxx, Jyy, Jxy are sums of gx^2, gy^2, gx gy; energy Jxx + Jyy, anisotropy
    isqrt((Jxx - Jyy)^2 + 4 Jxy^2).
    """
    kernel = p.kernel("gradient_kernel")
    shift = 2 * p.smooth_order
    gx = _shift_round(_correlate_clamped(balanced, kernel), shift)
    gy = _shift_round(_correlate_clamped(balanced, kernel.T), shift)
    b = p.block
    h, w = balanced.shape
    nby, nbx = h // b, w // b

    def block_sum(values: np.ndarray) -> np.ndarray:
        return values[: nby * b, : nbx * b].reshape(nby, b, nbx, b).sum(axis=(1, 3))

    jxx, jyy, jxy = block_sum(gx * gx), block_sum(gy * gy), block_sum(gx * gy)
    anisotropy = sum(math.isqrt(int(d) * int(d) + 4 * int(c) * int(c))
                     for d, c in zip((jxx - jyy).ravel(), jxy.ravel()))
    return anisotropy, int((jxx + jyy).sum())


def prepare(image: np.ndarray, p: IntegerParams) -> IntegerResult:
    """Window, balance, verdict, sharpen, resize: one uint8 gray image at target dpi."""
    gray = gray_pixels(image)
    origin = window_origin(gray, p)
    window = crop_window(gray, origin[0], origin[1], p.crop, origin[2])
    table, low, high = balance_table(window, p)
    balanced = table[window]
    scores = judge(window, balanced, p, origin, (low, high))
    kernel = np.asarray(p.sharpen_kernel)
    sharpened = sharpen(balanced if p.balance else window, kernel, p.sharpen_shift)
    stages = {
        "3_cropped": window,
        "4_balanced": balanced if p.balance else window,
        "5_sharpened": sharpened,
        "6_network_input": area_resize(sharpened, p.size),
    }
    return IntegerResult(scores, stages)


def quality_of(scores: IntegerScores, p: IntegerParams,
               cfg: PreprocessConfig) -> tuple[bool, str, dict[str, float]]:
    """(ok, reason, float scores) of an integer verdict, with the float verdict's reasons."""
    floats = scores.as_floats(p)
    if scores.verdict == 0:
        return True, "", floats
    return False, quality_reason(VERDICTS[scores.verdict], floats, cfg), floats
