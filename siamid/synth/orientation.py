"""Fingerprint classes, singular points, orientation fields and ridge-period maps.

The orientation model is Sherlock and Monro's zero-pole model (each core turns the ridge
orientation by +pi around itself, each delta by -pi), as used by SFinGe (Cappelli, Maio,
Maltoni), with two corrections that make it look less like a textbook diagram: the ridges above
the cores bend down at the sides of the finger as real ones follow the fingertip, and a smooth
random perturbation makes every finger's flow a little different. Arches have no singular points
and get a closed-form hump instead.

Conventions: image coordinates, x to the right and y downwards, in pixels at 500 dpi. An
orientation ``theta`` (radians, in [0, pi)) means ridges run along the direction
(cos theta, sin theta) in (x, y).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

#: The five Henry classes, with the natural frequencies SFinGe uses (Wilson et al., 1994).
CLASS_FREQUENCIES: dict[str, float] = {
    "arch": 0.037,
    "tented_arch": 0.029,
    "left_loop": 0.338,
    "right_loop": 0.317,
    "whorl": 0.279,
}
FINGERPRINT_CLASSES: tuple[str, ...] = tuple(CLASS_FREQUENCIES)
#: Smallest and largest local ridge period (pixels at 500 dpi) a master can have.
PERIOD_RANGE = (6.8, 12.6)


def sample_class(rng: np.random.Generator) -> str:
    """Draw a fingerprint class at its natural frequency (``CLASS_FREQUENCIES``)."""
    names = FINGERPRINT_CLASSES
    weights = np.array([CLASS_FREQUENCIES[n] for n in names])
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]


@dataclass(frozen=True)
class SingularPoints:
    """Cores and deltas as (x, y) pixel positions, and the pattern's tilt in radians."""

    cores: tuple[tuple[float, float], ...]
    deltas: tuple[tuple[float, float], ...]
    tilt: float = 0.0


def place_singular_points(
    cls: str, center: tuple[float, float], rng: np.random.Generator
) -> SingularPoints:
    """Place the cores and deltas of a ``cls`` pattern around the finger ``center``.

    Distances follow real prints at 500 dpi: a loop's core and delta are 5 to 12 ridges apart
    (about 60 to 120 pixels); a whorl's two cores are close and its deltas low on either side.
    """
    cx, cy = center
    tilt = float(rng.normal(0.0, 0.08))
    cores: list[tuple[float, float]] = []
    deltas: list[tuple[float, float]] = []
    if cls in ("left_loop", "right_loop"):
        side = 1.0 if cls == "left_loop" else -1.0
        core = (cx + rng.uniform(-15, 15) - side * 10, cy + rng.uniform(-45, 0))
        delta = (core[0] + side * rng.uniform(50, 90), core[1] + rng.uniform(55, 95))
        cores, deltas = [core], [delta]
    elif cls == "tented_arch":
        core = (cx + rng.uniform(-12, 12), cy + rng.uniform(-35, 0))
        delta = (core[0] + rng.uniform(-6, 6), core[1] + rng.uniform(35, 60))
        cores, deltas = [core], [delta]
    elif cls == "whorl":
        x0, y0 = cx + rng.uniform(-12, 12), cy + rng.uniform(-35, 0)
        # Two cores a few ridges apart: spirals and concentric whorls both arise from this.
        dx, dy = rng.uniform(-12, 12), rng.uniform(10, 28)
        cores = [(x0 - dx / 2, y0 - dy / 2), (x0 + dx / 2, y0 + dy / 2)]
        deltas = [
            (x0 - rng.uniform(65, 100), y0 + rng.uniform(65, 105)),
            (x0 + rng.uniform(65, 100), y0 + rng.uniform(65, 105)),
        ]
    elif cls != "arch":
        raise ValueError(f"unknown fingerprint class {cls!r}")
    return SingularPoints(tuple(cores), tuple(deltas), tilt)


@lru_cache(maxsize=64)
def _linear_upsampler(n_coarse: int, n_fine: int, step: int) -> np.ndarray:
    """Matrix (n_fine, n_coarse) of linear-interpolation weights, fine pixel i at i / step."""
    pos = np.arange(n_fine, dtype=np.float64) / step
    lo = np.minimum(np.floor(pos).astype(np.int64), n_coarse - 2)
    frac = pos - lo
    weights = np.zeros((n_fine, n_coarse), np.float32)
    rows = np.arange(n_fine)
    weights[rows, lo] = 1.0 - frac
    weights[rows, lo + 1] = frac
    weights.setflags(write=False)
    return weights


def smooth_noise(
    shape: tuple[int, int], scale: float, rng: np.random.Generator
) -> np.ndarray:
    """Smooth random field of unit standard deviation whose features are about ``scale`` px.

    Gaussian noise on a coarse grid, blurred, then upsampled bilinearly by two small matrix
    products (much faster than ``ndimage.zoom`` at these sizes).
    """
    h, w = shape
    step = max(int(scale // 2), 1)
    gh, gw = h // step + 3, w // step + 3
    coarse = ndimage.gaussian_filter(rng.standard_normal((gh, gw)), 1.0, mode="wrap")
    coarse = coarse.astype(np.float32)
    field = _linear_upsampler(gh, h, step) @ coarse @ _linear_upsampler(gw, w, step).T
    field -= field.mean()
    return field / (field.std() + 1e-9)


def orientation_field(
    shape: tuple[int, int],
    cls: str,
    points: SingularPoints,
    center: tuple[float, float],
    semi_axes: tuple[float, float],
    rng: np.random.Generator,
) -> np.ndarray:
    """Ridge orientation (radians in [0, pi)) at every pixel of a ``shape`` master print."""
    h, w = shape
    cx, cy = center
    a, b = semi_axes
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # Work in the pattern's own (tilted) frame, then add the tilt back to the angles.
    c, s = np.cos(points.tilt), np.sin(points.tilt)
    u = c * (xx - cx) + s * (yy - cy)
    v = -s * (xx - cx) + c * (yy - cy)

    def rotate(p: tuple[float, float]) -> tuple[float, float]:
        return c * (p[0] - cx) + s * (p[1] - cy), -s * (p[0] - cx) + c * (p[1] - cy)

    if cls == "arch":
        # Ridges y = y0 - H(y0) exp(-x^2 / 2 s^2): a hump that flattens towards the finger's base.
        sx = a * rng.uniform(0.45, 0.65)
        hump = rng.uniform(1.6, 2.4) * np.clip(0.75 - v / (1.6 * b), 0.0, 1.0)
        slope = hump * (u / sx) * np.exp(-(u**2) / (2 * sx**2))
        theta = np.arctan(slope)
    else:
        theta = np.zeros(shape, np.float32)
        for p in points.cores:
            pu, pv = rotate(p)
            theta += 0.5 * np.arctan2(v - pv, u - pu)
        for p in points.deltas:
            pu, pv = rotate(p)
            theta -= 0.5 * np.arctan2(v - pv, u - pu)
        # Above the highest core, ridges follow the fingertip's outline and bend down at its sides.
        top = min(rotate(p)[1] for p in points.cores) - 15.0
        weight = 1.0 / (1.0 + np.exp((v - top) / 20.0))
        theta += weight * np.arctan(0.9 * u / a)
    theta = theta + points.tilt + 0.12 * smooth_noise(shape, 90.0, rng)
    return np.mod(theta, np.pi).astype(np.float32)


def period_map(
    shape: tuple[int, int], points: SingularPoints, rng: np.random.Generator
) -> np.ndarray:
    """Ridge period in pixels (about 7 to 13 at 500 dpi), varying smoothly across the finger.

    Each finger draws its own typical period: real fingers range from fine (children, many
    women: 7-8 px at 500 dpi) to coarse (large male thumbs: 11-12 px), so the spread matters as
    much as the mean. Ridges are a little wider apart around the cores, as in real prints.
    """
    h, w = shape
    base = float(np.clip(rng.normal(9.2, 0.95), PERIOD_RANGE[0] + 0.6, PERIOD_RANGE[1] - 1.0))
    period = base + 0.6 * smooth_noise(shape, 110.0, rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for px, py in points.cores:
        period += 0.5 * np.exp(-((xx - px) ** 2 + (yy - py) ** 2) / (2 * 45.0**2))
    return np.clip(period, *PERIOD_RANGE).astype(np.float32)
