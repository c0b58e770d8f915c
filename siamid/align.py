"""Alignment: where the finger's core is, so that crops of different touches show the same part.

The reference point is the strongest core-like singularity of the orientation field, found by
complex filtering (Nilsson and Bigun 2003): the doubled-angle gradient field ``(gx + i gy)^2``,
normalised to unit length inside the foreground, turns once around a core; correlating it with
the rotating filter ``exp(-i phi) * gaussian(r)`` peaks there. Works at 1/``step`` resolution.
Returns None when no point responds with at least ``min_strength`` of a perfect core (arches,
partial prints, noise), so the caller can fall back to the foreground's centroid.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from .enhance import structure_tensor


@functools.lru_cache(maxsize=8)
def _core_filter(radius: int, sigma: float) -> np.ndarray:
    """``exp(-i phi) * gaussian(r)`` on a (2 radius + 1)^2 grid, normalised to sum |h| = 1."""
    y, x = np.mgrid[-radius:radius + 1, -radius:radius + 1].astype(np.float64)
    r = np.hypot(x, y)
    h = np.where(r > 0, (x - 1j * y) / np.maximum(r, 1e-9), 0) * np.exp(-r * r / (2 * sigma ** 2))
    h /= np.abs(h).sum()
    h.setflags(write=False)
    return h


def core_response(gray: np.ndarray, mask: np.ndarray, *, step: int = 4,
                  tensor_sigma: float = 4.0, filter_sigma: float = 24.0) -> np.ndarray:
    """The complex core response at 1/``step`` resolution: ``core_strength`` is its modulus.

    Its phase is the core's direction: around a core the doubled gradient angle is ``phi + c``
    (``phi`` the polar angle about the core, rows growing downward), the filter cancels ``phi``,
    and what is left is ``c``; the loop opens towards ``c - pi``. Rotating the print by ``a``
    turns ``c`` by ``a``.
    """
    jxx, jyy, jxy = structure_tensor(gray, 1.5, tensor_sigma)
    z = (jxx - jyy) + 2j * jxy  # the smoothed (gx + i gy)^2
    z = (z / np.maximum(np.abs(z), 1e-12))[::step, ::step] * mask[::step, ::step]
    sigma = filter_sigma / step
    h = _core_filter(int(np.ceil(2.5 * sigma)), sigma)
    response = ndimage.correlate(z.real, h.real, mode="constant") - ndimage.correlate(
        z.imag, h.imag, mode="constant")
    return response + 1j * (ndimage.correlate(z.real, h.imag, mode="constant")
                            + ndimage.correlate(z.imag, h.real, mode="constant"))


def core_strength(gray: np.ndarray, mask: np.ndarray, *, step: int = 4, tensor_sigma: float = 4.0,
                  filter_sigma: float = 24.0) -> np.ndarray:
    """Core response in [0, 1] at 1/``step`` resolution: 1 where the field is a perfect core.

    ``tensor_sigma`` (pixels) smooths the doubled-angle field, ``filter_sigma`` (pixels) is the
    size of the neighbourhood that must turn around the point.
    """
    return np.abs(core_response(gray, mask, step=step, tensor_sigma=tensor_sigma,
                                filter_sigma=filter_sigma))


class CorePose(NamedTuple):
    """Where the core is (``y``, ``x``, pixels), where it points (``direction``, degrees, or
    None when the core is too weak to tell) and how clear it is (``strength``, 0..1)."""

    y: float
    x: float
    direction: float | None
    strength: float


def core_pose(gray: np.ndarray, mask: np.ndarray, *, step: int = 4, tensor_sigma: float = 4.0,
              filter_sigma: float = 24.0, min_strength: float = 0.4,
              direction_strength: float = 0.6) -> CorePose | None:
    """The strongest core inside the eroded foreground, or None when none is clear.

    ``direction`` is where the innermost loop opens (towards the finger's base), in degrees in
    (-180, 180], measured on screen: 0 is to the right, +90 is up (rows grow downward, so +90
    points to row -1). An upright finger's core opens downward, near -90. The estimate is the
    phase of the complex filter's response at the core (see ``core_response``): it turns
    one-for-one with the print, and averages the field over the filter's neighbourhood, so a
    loop that leans to one side gives a direction tilted the same way at every touch. It is
    None below ``direction_strength``: the apex of an arch turns the field enough to pass
    ``min_strength`` (0.38-0.54 on generator arches, where loops score 0.9 and more, whorls and
    tented arches 0.7 and more), a place to centre on but no direction.
    """
    response = core_response(gray, mask, step=step, tensor_sigma=tensor_sigma,
                             filter_sigma=filter_sigma)
    strength = np.abs(response)
    # Only where the filter's neighbourhood lies inside the finger: at the edge of the print
    # (or of the image) half a neighbourhood is missing and any field looks like a turn.
    inner = np.pad(mask[::step, ::step], 1)  # the image's border is background too
    inner = ndimage.binary_erosion(inner, iterations=max(1, round(filter_sigma / step)))[1:-1, 1:-1]
    if not inner.any():
        return None
    strength = np.where(inner, strength, 0.0)
    iy, ix = np.unravel_index(int(np.argmax(strength)), strength.shape)
    if strength[iy, ix] < min_strength:
        return None
    direction = None
    if strength[iy, ix] >= direction_strength:
        # opening direction (rows down) = phase - pi; on screen (rows up) its sign flips
        opening = float(np.angle(response[iy, ix])) - math.pi
        direction = -math.degrees(math.atan2(math.sin(opening), math.cos(opening)))
        direction = 180.0 if direction == -180.0 else direction
    return CorePose(float(iy * step), float(ix * step), direction, float(strength[iy, ix]))


def core_point(gray: np.ndarray, mask: np.ndarray, *, step: int = 4, tensor_sigma: float = 4.0,
               filter_sigma: float = 24.0, min_strength: float = 0.4) -> tuple[float, float] | None:
    """(y, x) of the strongest core inside the eroded foreground, or None when none is clear."""
    pose = core_pose(gray, mask, step=step, tensor_sigma=tensor_sigma,
                     filter_sigma=filter_sigma, min_strength=min_strength)
    return None if pose is None else (pose.y, pose.x)


__all__ = ["CorePose", "core_point", "core_pose", "core_response", "core_strength"]
