"""Master fingerprints: the whole ridge pattern of one synthetic finger, before any impression.

Ridges are grown as in SFinGe: starting from sparse random seeds, the image is filtered again and
again with Gabor filters tuned to the local ridge orientation and period, and clipped after every
pass, so that ridge lines spread from the seeds and meet; where fronts of different phase meet,
ridge endings and bifurcations (minutiae) appear naturally.

Speed: instead of a different kernel at every pixel, one pass filters the whole image with a
small bank of Gabor filters (16 orientations x 5 periods) in the Fourier domain, built directly
as spectra, and each pixel blends the responses of its two nearest orientations and periods.
Filtering is linear, so the blend equals filtering with the blended kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from ..errors import ConfigError
from .orientation import (
    FINGERPRINT_CLASSES,
    PERIOD_RANGE,
    SingularPoints,
    orientation_field,
    period_map,
    place_singular_points,
    sample_class,
    smooth_noise,
)

N_ORIENTATIONS = 16
#: Periods of the filter bank: they span ``orientation.PERIOD_RANGE``.
PERIODS = (PERIOD_RANGE[0], 8.2, 9.6, 11.0, PERIOD_RANGE[1])
#: Gaussian envelope of the growing filters, in pixels across and along the ridges.
SIGMA_ACROSS = 3.6
SIGMA_ALONG = 4.6
GROW_PASSES = 12
DEFAULT_SIZE = 320


@dataclass(frozen=True, eq=False)
class MasterPrint:
    """The ridge pattern of one synthetic finger at 500 dpi.

    ``ridges`` float32 (size, size) in [-1, 1]: +1 on a ridge crest (dark in a print), -1 in a
    valley, a smooth profile between; it covers the whole canvas, and ``mask`` (bool) marks the
    finger's area. ``orientation`` (radians in [0, pi)) and ``period`` (pixels) are the fields the
    ridges were grown from. ``fingerprint_class`` is one of ``FINGERPRINT_CLASSES``;
    ``cores`` and ``deltas`` are (x, y) pixel positions.
    """

    ridges: np.ndarray
    mask: np.ndarray
    orientation: np.ndarray
    period: np.ndarray
    fingerprint_class: str
    center: tuple[float, float]
    semi_axes: tuple[float, float]
    cores: tuple[tuple[float, float], ...] = field(default=())
    deltas: tuple[tuple[float, float], ...] = field(default=())

    @property
    def class_name(self) -> str:
        """Alias of ``fingerprint_class``."""
        return self.fingerprint_class

    @property
    def size(self) -> int:
        """Side of the square canvas in pixels."""
        return int(self.ridges.shape[0])


@lru_cache(maxsize=8)
def _gabor_bank(shape: tuple[int, int]) -> np.ndarray:
    """Spectra (orientations, periods, H, W//2+1) of the even Gabor filters, peak gain 1."""
    h, w = shape
    fy = sfft.fftfreq(h)[:, None].astype(np.float32)
    fx = sfft.rfftfreq(w)[None, :].astype(np.float32)
    bank = np.empty((N_ORIENTATIONS, len(PERIODS), h, w // 2 + 1), np.float32)
    for i in range(N_ORIENTATIONS):
        theta = i * np.pi / N_ORIENTATIONS
        # Frequency coordinates across (normal to) and along the ridge direction.
        across = -np.sin(theta) * fx + np.cos(theta) * fy
        along = np.cos(theta) * fx + np.sin(theta) * fy
        for j, period in enumerate(PERIODS):
            f0 = 1.0 / period
            g_along = np.exp(-2 * np.pi**2 * SIGMA_ALONG**2 * along**2)
            lobes = np.exp(-2 * np.pi**2 * SIGMA_ACROSS**2 * (across - f0) ** 2) + np.exp(
                -2 * np.pi**2 * SIGMA_ACROSS**2 * (across + f0) ** 2
            )
            spectrum = g_along * lobes
            spectrum[0, 0] = 0.0  # no DC: ridges and valleys balance
            bank[i, j] = spectrum / spectrum.max()
    bank.setflags(write=False)
    return bank


def _blend_weights(
    orientation: np.ndarray, period: np.ndarray
) -> list[tuple[int, int, np.ndarray]]:
    """Per-pixel weights of each (orientation, period) filter: bilinear in both."""
    t = orientation * (N_ORIENTATIONS / np.pi)
    i0 = np.floor(t).astype(np.int64)
    wo1 = (t - i0).astype(np.float32)
    i0 %= N_ORIENTATIONS
    i1 = (i0 + 1) % N_ORIENTATIONS
    p = np.interp(period, PERIODS, np.arange(len(PERIODS))).astype(np.float32)
    j0 = np.minimum(np.floor(p).astype(np.int64), len(PERIODS) - 2)
    wp1 = p - j0
    period_weights = [
        np.where(j0 == j, 1 - wp1, 0) + np.where(j0 + 1 == j, wp1, 0) for j in range(len(PERIODS))
    ]
    used_periods = [j for j, wp in enumerate(period_weights) if wp.any()]
    weights: list[tuple[int, int, np.ndarray]] = []
    for i in range(N_ORIENTATIONS):
        wo = np.where(i0 == i, 1 - wo1, 0) + np.where(i1 == i, wo1, 0)
        if not wo.any():
            continue
        for j in used_periods:
            wgt = (wo * period_weights[j]).astype(np.float32)
            if wgt.any():
                weights.append((i, j, wgt))
    return weights


def grow_ridges(
    orientation: np.ndarray,
    period: np.ndarray,
    rng: np.random.Generator,
    passes: int = GROW_PASSES,
    seeds: int | None = None,
) -> np.ndarray:
    """Grow a ridge pattern that follows ``orientation`` and ``period`` from random seeds.

    Returns float32 in [-1, 1] (+1 = ridge crest) with a smooth, roughly cosine profile across
    each ridge. ``seeds`` defaults to about one per 16 x 16 pixels: fewer seeds give longer
    unbroken ridges and fewer minutiae, more seeds more minutiae (fronts of different phase meet
    more often), but fewer seeds need more passes to fill the image.
    """
    shape = orientation.shape
    h, w = shape
    bank = _gabor_bank(shape)
    weights = _blend_weights(orientation, period)
    n_seeds = seeds if seeds is not None else max(4, h * w // 256)
    image = np.zeros(shape, np.float32)
    ys = rng.integers(0, h, n_seeds)
    xs = rng.integers(0, w, n_seeds)
    image[ys, xs] = rng.choice(np.array([-1.0, 1.0], np.float32), n_seeds)
    gain = 3.0
    out = image
    for _ in range(passes):
        spectrum = sfft.rfft2(image, workers=1)
        out = np.zeros(shape, np.float32)
        for i, j, wgt in weights:
            out += wgt * sfft.irfft2(spectrum * bank[i, j], s=shape, workers=1)
        # Clipping is the non-linearity that lets ridges saturate and spread outwards.
        image = np.clip(out * gain, -1.0, 1.0)
    # The last filter response, not the clipped image, is returned: it has a near-sinusoidal
    # profile across each ridge, so impressions can thicken or thin ridges by thresholding it.
    # Dividing by the local amplitude evens out the faint zones where ridge fronts met late.
    envelope = np.sqrt(ndimage.gaussian_filter(out * out, 6.0) * 2.0) + 1e-3
    return np.clip(out / envelope, -1.0, 1.0).astype(np.float32)


def finger_mask(
    shape: tuple[int, int],
    center: tuple[float, float],
    semi_axes: tuple[float, float],
    rng: np.random.Generator,
) -> np.ndarray:
    """The finger's contact area: a rounded, slightly irregular ellipse, wider at the base."""
    h, w = shape
    cx, cy = center
    a, b = semi_axes
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (xx - cx) / a
    v = (yy - cy) / b
    # Below the centre the finger is flatter (it continues towards the palm).
    u = np.where(v > 0, u / (1.0 + 0.12 * v), u)
    r = (np.abs(u) ** 2.3 + np.abs(v) ** 2.3) ** (1 / 2.3)
    r = r + 0.03 * smooth_noise(shape, 60.0, rng)
    return r < 1.0


def draw_creases(shape: tuple[int, int], rng: np.random.Generator, mean: float = 1.5) -> np.ndarray:
    """Permanent white lines across the ridges (flexion creases, scars, cuts): float32 in [0, 1].

    Returns how much of each pixel a crease covers; ``mean`` creases per finger (Poisson), each a
    gently curved stroke 20-160 px long and 1.5-4 px wide. Real prints, especially of older or
    manual workers' fingers, are crossed by such lines, and they break every ridge they cross,
    which is where a minutiae matcher finds spurious endings.
    """
    h, w = shape
    out = np.zeros(shape, np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(int(rng.poisson(mean))):
        x0, y0 = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.85) * h
        # Mostly horizontal, like flexion creases, sometimes any direction, like scars.
        phi = rng.normal(0.0, 0.3) if rng.uniform() < 0.6 else rng.uniform(0.0, np.pi)
        half = rng.uniform(10.0, 80.0)
        bend = rng.normal(0.0, 0.004)
        width = rng.uniform(0.75, 2.0)
        along = (xx - x0) * np.cos(phi) + (yy - y0) * np.sin(phi)
        across = -(xx - x0) * np.sin(phi) + (yy - y0) * np.cos(phi) - bend * along**2
        ends = np.clip((half - np.abs(along)) / 6.0, 0.0, 1.0)
        out = np.maximum(out, ends * np.clip(width + 0.7 - np.abs(across), 0.0, 1.0))
    return out.astype(np.float32)


def make_master(
    rng: np.random.Generator,
    size: int = DEFAULT_SIZE,
    fingerprint_class: str | None = None,
) -> MasterPrint:
    """Create one master fingerprint on a ``size`` x ``size`` canvas at 500 dpi.

    The class is drawn at natural frequencies unless ``fingerprint_class`` names one of
    ``FINGERPRINT_CLASSES``; the class is drawn first either way, so a given ``rng`` state yields
    the same finger apart from its class. The finger area is about 230-280 x 300-350
    pixels (a real fingertip at 500 dpi), centred on the canvas, so on the default 320 canvas
    its top and base are cut off, which no 192 x 192 window can see anyway.
    """
    if size < 64:
        raise ConfigError(f"master size {size} is too small; use at least 64 pixels")
    if fingerprint_class is not None and fingerprint_class not in FINGERPRINT_CLASSES:
        raise ConfigError(
            f"unknown fingerprint class {fingerprint_class!r}; "
            f"use one of {', '.join(FINGERPRINT_CLASSES)}"
        )
    shape = (size, size)
    cls = sample_class(rng)
    if fingerprint_class is not None:
        cls = fingerprint_class
    center = (size / 2 + rng.uniform(-6, 6), size / 2 + rng.uniform(-6, 6))
    semi_axes = (rng.uniform(115, 140), rng.uniform(150, 175))
    points = place_singular_points(cls, center, rng)
    orientation = orientation_field(shape, cls, points, center, semi_axes, rng)
    period = period_map(shape, points, rng)
    # Seed density sets how often ridge fronts meet: minutiae counts differ between real fingers.
    seeds = int(size * size / rng.uniform(110.0, 260.0))
    ridges = grow_ridges(orientation, period, rng, seeds=seeds)
    creases = draw_creases(shape, rng)
    # A crease is a valley whatever it crosses.
    ridges = ridges - (ridges + 1.0) * creases
    mask = finger_mask(shape, center, semi_axes, rng)
    return MasterPrint(
        ridges=ridges,
        mask=mask,
        orientation=orientation,
        period=period,
        fingerprint_class=cls,
        center=center,
        semi_axes=semi_axes,
        cores=points.cores,
        deltas=points.deltas,
    )


__all__ = [
    "MasterPrint",
    "SingularPoints",
    "draw_creases",
    "finger_mask",
    "grow_ridges",
    "make_master",
]
