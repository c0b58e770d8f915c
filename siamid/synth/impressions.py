"""Impressions: what a sensor sees when a master finger touches it once.

Each impression draws, from its own generator: a pose (rotation, translation), a smooth
non-linear skin distortion that grows away from the centre of contact (the centre sticks to the
glass, the periphery stretches, as in Cappelli, Maio and Maltoni's distortion model), a contact
area that shrinks with lighter pressure and is sometimes cut on one side (finger partly off the
sensor), a skin condition (dry skin: thin, broken ridges with pores; wet skin: thick ridges whose
valleys close), uneven pressure across the finger, a background with uneven illumination, the
sensor's blur and noise, and finally the sensor's gray levels. An overall quality drawn per
touch scales the damage (broken ridges, patchy contrast, blur, noise, residue on the glass), and
dirt or sweat blobs darken or erase small patches.

Skin condition works by thresholding the master's smooth ridge profile at a level that varies
across the finger: a high level leaves thin ridges, and fine-grained noise in the level breaks
them; a low level widens ridges until neighbours merge. That reproduces what SFinGe does with
erosion and dilation at a fraction of the cost.

``harshness`` (0 to 1) adds damage calibrated on a classical matcher: at 1, afis finds our whole
prints about as hard as real ones (docs/synthesis.md, bench/synth_harshness.py), where generator
v2 (harshness 0, the default) is many times easier. It amplifies v2's pose, distortion, dryness and
poor touches, drags the skin with the pressure, rolls the contact off the finger's centre,
breaks ridges more, and adds what cheap sensors add (grain, banding, faint prints, gamma).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import ConfigError
from ..sensors import R503_DPI, R503_GRAY_LEVELS, R503_SIDE, quantise
from .masters import MasterPrint
from .orientation import smooth_noise

#: Most damage ``render_impression`` adds beyond generator v2 (its ``harshness``).
MAX_HARSHNESS = 1.0


@dataclass(frozen=True)
class SensorSpec:
    """A sensor's image: ``height`` x ``width`` pixels at ``dpi``, quantised to ``gray_levels``.

    Images are uint8 with dark ridges on a light background; with fewer than 256 gray levels the
    values are ``k * 255 // (gray_levels - 1)`` (for 16 levels: 0, 17, ..., 255).
    """

    name: str
    height: int
    width: int
    dpi: int
    gray_levels: int

    @property
    def levels(self) -> np.ndarray:
        """The uint8 values the sensor can produce, ascending."""
        k = np.arange(self.gray_levels)
        return (k * 255 // (self.gray_levels - 1)).astype(np.uint8)


SENSORS: dict[str, SensorSpec] = {
    # R503-class UART sensor: 192 x 192 at about 500 dpi, 4-bit pixels.
    "r503": SensorSpec("r503", R503_SIDE, R503_SIDE, R503_DPI, R503_GRAY_LEVELS),
    # A 500 dpi optical sensor like the FVC ones (FVC2004 DB1 is 640 x 480; DB4's SFinGe
    # images are 288 x 384): the whole fingertip with background around it.
    "500dpi": SensorSpec("500dpi", 320, 288, 500, 256),
}


def sensor_spec(sensor: str) -> SensorSpec:
    """The ``SensorSpec`` named ``sensor``; ConfigError naming the known ones otherwise."""
    try:
        return SENSORS[sensor]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown sensor {sensor!r}; use one of {', '.join(sorted(SENSORS))}"
        ) from None


def _soft_step(x: np.ndarray) -> np.ndarray:
    """Smoothstep from 0 (x <= -1) to 1 (x >= 1)."""
    x = np.clip(0.5 + 0.5 * x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _smudge(ink: np.ndarray, contact: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dirt, sweat and latent residue on the glass: a few blobs that print dark or wipe out.

    Dark blobs (a drop of sweat, dirt) fill valleys; light ones (a dry or greasy spot) erase
    ridges. Each is an irregular smooth patch 6-30 px across with soft edges.
    """
    h, w = ink.shape
    n = int(rng.poisson(1.2))
    if n == 0:
        return ink
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    wobble = smooth_noise((h, w), 20.0, rng)
    for _ in range(n):
        x0, y0 = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
        radius = rng.uniform(3.0, 15.0)
        r = np.hypot(xx - x0, yy - y0) / radius + 0.25 * wobble
        blob = np.clip((1.0 - r) * 3.0, 0.0, 1.0) * rng.uniform(0.5, 1.0)
        if rng.uniform() < 0.5:
            ink = ink + (contact - ink) * blob  # dark only where the finger touches
        else:
            ink = ink * (1.0 - blob)
    return ink


def check_harshness(harshness: object) -> float:
    """``harshness`` as a float in [0, MAX_HARSHNESS]; ConfigError otherwise."""
    if isinstance(harshness, bool) or not isinstance(harshness, (int, float, np.floating)):
        raise ConfigError(f"harshness must be a number from 0 to {MAX_HARSHNESS}, got {harshness!r}")
    value = float(harshness)
    if not 0.0 <= value <= MAX_HARSHNESS:
        raise ConfigError(f"harshness must be from 0 to {MAX_HARSHNESS}, got {value}")
    return value


def render_impression(
    master: MasterPrint, rng: np.random.Generator, sensor: str = "r503", harshness: float = 0.0
) -> np.ndarray:
    """One impression of ``master`` on ``sensor``: uint8 (height, width), dark ridges.

    ``harshness`` (0 to ``MAX_HARSHNESS``) scales the damage beyond generator v2's: 0 gives v2's
    images pixel for pixel; above 0 every touch keeps v2's random draws (the same pose, contact
    and skin, amplified) and adds what ``_harsh_sensor`` and the drag below describe, drawn from
    a stream of its own.
    """
    spec = sensor_spec(sensor)
    harsh = check_harshness(harshness)
    extra = rng.spawn(1)[0] if harsh > 0.0 else None  # spawning leaves rng's own draws unchanged
    h, w = spec.height, spec.width
    full_finger = max(h, w) > 256  # a large sensor sees the whole fingertip

    # Pose: where the window's centre falls on the master, and the finger's rotation.
    turn = 1.0 + 0.5 * harsh
    angle = np.deg2rad(float(np.clip(rng.normal(0.0, 12.0) * turn, -35.0 * turn, 35.0 * turn)))
    shift_sd = (14.0 if full_finger else 18.0) * (1.0 + 0.4 * harsh)
    shift = np.clip(rng.normal(0.0, shift_sd, 2), -2.2 * shift_sd, 2.2 * shift_sd)
    cx = master.center[0] + shift[0]
    cy = master.center[1] + shift[1] + (0.0 if full_finger else 4.0)

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    qx = xx - (w - 1) / 2.0
    qy = yy - (h - 1) / 2.0

    # Skin distortion: a smooth displacement, zero near the centre of contact, growing outwards.
    contact_off = rng.normal(0.0, 12.0, 2)
    radius = np.hypot(qx - contact_off[0], qy - contact_off[1])
    ramp = np.clip((radius - 25.0) / 110.0, 0.0, 1.5) ** 1.5
    strength = rng.uniform(2.0, 11.0) * ramp
    dx = strength * smooth_noise((h, w), 150.0, rng)
    dy = strength * smooth_noise((h, w), 150.0, rng)
    pressure = rng.uniform(0.0, 1.0)
    roll = (0.0, 0.0)
    if extra is not None:
        # Pressure-dependent distortion: a harder press stretches the skin further, and a
        # sideways push drags the periphery while the centre of contact sticks to the glass.
        push = 1.0 + 1.5 * harsh * pressure
        drag = extra.normal(0.0, 7.0, 2) * harsh * (0.5 + pressure)
        dx = dx * push + drag[0] * ramp
        dy = dy * push + drag[1] * ramp
        # A finger rolled or tipped touches the glass off its centre: another part of the
        # finger prints, and a small window sees a different region at every touch.
        roll = tuple(extra.normal(0.0, 1.0, 2) * harsh * np.array([22.0, 16.0]))
    c, s = np.cos(angle), np.sin(angle)
    px = cx + c * (qx + dx) - s * (qy + dy)
    py = cy + s * (qx + dx) + c * (qy + dy)
    coords = np.stack([py, px])
    ridges = ndimage.map_coordinates(master.ridges, coords, order=1, mode="constant", cval=-1.0)
    inside = ndimage.map_coordinates(
        master.mask.astype(np.float32), coords, order=1, mode="constant", cval=0.0
    )

    # Contact area: lighter pressure touches a smaller part of the finger.
    a, b = master.semi_axes
    scale = (0.8 if full_finger else 0.9) + 0.25 * pressure
    u = (px - (master.center[0] + roll[0])) / (a * scale)
    v = (py - (master.center[1] + roll[1])) / (b * scale)
    r = np.sqrt(u * u + v * v) + 0.06 * smooth_noise((h, w), 50.0, rng)
    contact = np.clip((1.0 - r) * 12.0, 0.0, 1.0) * np.clip(inside * 2.0 - 0.5, 0.0, 1.0)
    if rng.uniform() < 0.15 + 0.2 * harsh:
        # The finger partly off the sensor, or one side lifted: cut along a random line.
        phi = rng.uniform(0.0, 2.0 * np.pi)
        offset = rng.uniform(0.15, 0.4) * min(h, w)
        dist = qx * np.cos(phi) + qy * np.sin(phi) - offset
        contact *= np.clip(-dist / 6.0, 0.0, 1.0)

    # Overall quality of this touch, 1 = clean: poor touches have more broken ridges, patchier
    # contrast, more blur and noise. Drawn so that most touches are fair and a tail is poor, as
    # in FVC's databases, whose impressions were taken to vary on purpose.
    poor = 1.0 - float(rng.beta(2.0, 1.3))
    if extra is not None:
        poor += (1.0 - poor) * float(extra.uniform(0.0, 0.5)) * harsh

    # Skin condition: dryness > 0 thins and breaks ridges, < 0 thickens and merges them.
    dryness = float(np.clip(rng.normal(0.0, 0.55) * (1.0 + 0.5 * harsh), -1.0, 1.0))
    level = (
        0.55 * dryness
        - 0.25 * (pressure - 0.5)
        + (0.22 + 0.2 * poor) * smooth_noise((h, w), 45.0, rng)
    )
    grain = ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), 0.8)
    grain /= grain.std() + 1e-6
    # Harsher skin breaks ridges more (pores, cuts, worn patches): spurious minutiae.
    level = level + (0.12 + 0.25 * max(dryness, 0.0) + 0.5 * poor) * (1.0 + 0.3 * harsh) * grain
    ink = _soft_step((ridges - level) / 0.3)
    # Patchy contrast: parts of the finger press less and print fainter.
    patchy = 0.2 + 0.3 * poor
    strength_map = np.clip(0.85 + patchy * smooth_noise((h, w), 70.0, rng), 0.3, 1.0)
    ink *= contact * strength_map
    ink = _smudge(ink, contact * strength_map, rng)

    # Sensor rendering: background with uneven illumination, blur, noise, gray levels.
    # Poor touches leave the glass mottled outside the finger (residue of earlier touches).
    background = rng.uniform(0.82, 0.97) + 0.03 * smooth_noise((h, w), 200.0, rng)
    background = background - 0.2 * poor * np.clip(smooth_noise((h, w), 6.0, rng), 0.0, None)
    dark = rng.uniform(0.04, 0.25)
    image = background - (background - dark) * ink
    image = ndimage.gaussian_filter(image, rng.uniform(0.5, 0.9) + 0.7 * poor * rng.uniform())
    noise = 0.008 + 0.06 * poor * rng.uniform()
    image += noise * rng.standard_normal((h, w)).astype(np.float32)
    if extra is not None:
        image = _harsh_sensor(image, harsh, extra)
    return quantise(image, spec.gray_levels)


def _harsh_sensor(image: np.ndarray, harsh: float, rng: np.random.Generator) -> np.ndarray:
    """What cheap sensors add on top (domain randomisation, scaled by ``harsh``).

    Grainy noise correlated over a pixel or two, row and column banding (the line artefacts of
    capacitive arrays such as the R30x), a faint print (ridges not reaching full dark) and a
    random gamma, as sensors and their automatic gain differ.
    """
    h, w = image.shape
    grain = ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), 1.0)
    image = image + 0.06 * harsh * rng.uniform() * grain / (grain.std() + 1e-6)
    rows = rng.standard_normal((h, 1)).astype(np.float32)
    cols = rng.standard_normal((1, w)).astype(np.float32)
    image = image + 0.025 * harsh * rng.uniform() * (rows + cols)
    faint = 0.35 * harsh * rng.uniform()
    image = faint + (1.0 - faint) * np.clip(image, 0.0, 1.0)
    gamma = float(np.exp(rng.normal(0.0, 0.3 * harsh)))
    return np.clip(image, 0.0, 1.0) ** gamma


__all__ = ["MAX_HARSHNESS", "SENSORS", "SensorSpec", "check_harshness", "render_impression", "sensor_spec"]
