"""Image -> quality verdict and network input, in one pass. The same code at training and run time.

A ``Preprocessor`` is built from a ``PreprocessConfig``, which travels inside the exported
model's ModelCard (``Preprocessor.from_card``): the runtime rebuilds preprocessing from the card,
so the network is always fed what it was trained on. ``Preprocessor.process`` resamples, crops
and balances an image once and derives both the quality verdict and the network input from those
arrays. The network input is uint8 (C, S, S); ``input_to_float`` is the one definition of the
float32 values the network sees (``k / 255``), which training's ``to_tensor`` computes alike.

Each stage is simple enough to port to a microcontroller: a resample, a crop, a linear contrast
stretch between two quantiles, optional ridge enhancement by integer Gabor kernels
(``siamid.enhance``), and a 3x3 integer sharpening kernel with a shift. The stage
functions take their parameters explicitly; their defaults are the ``PreprocessConfig`` ones.
With ``integer = true`` the Preprocessor runs the integer stages of ``siamid.fixedpoint``
instead, which the firmware's C reference reproduces bit for bit (docs/firmware.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from .config import PreprocessConfig, from_dict
from .dataset import load_image
from .align import core_pose
from .enhance import enhance
from .errors import ConfigError, ModelError, QualityError

_D = PreprocessConfig  # the stage functions' defaults are the config's: one home for each value

# ITU-R BT.601 luma weights: the standard definition of gray from RGB, not a tuning knob.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class Quality:
    """The quality verdict: ``reason`` is '' when ``ok``; ``scores`` are kept either way."""

    ok: bool
    reason: str
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Prepared:
    """What ``Preprocessor.process`` makes of one image.

    ``quality`` is the verdict; ``network_input`` is the network's input as uint8 (C, S, S),
    read-only. ``as_float()`` gives the float32 values the network is fed.
    """

    quality: Quality
    network_input: np.ndarray

    def as_float(self) -> np.ndarray:
        """The network input as float32 (C, S, S), values ``k / 255``: see ``input_to_float``."""
        return input_to_float(self.network_input)


def input_to_float(pixels: np.ndarray) -> np.ndarray:
    """uint8 network inputs (any shape) -> float32 ``k / 255``, correctly rounded.

    The one definition of what the network sees: training's ``to_tensor`` divides by 255 in
    float32 the same way (IEEE division, bit for bit the same values), so the exported model
    at run time is fed exactly the numbers it was trained on.
    """
    arr = np.asarray(pixels)
    if arr.dtype != np.uint8:
        raise QualityError(f"network input must be uint8, got {arr.dtype}", "bad input type")
    return arr.astype(np.float32) / np.float32(255.0)


def to_float(image: np.ndarray, channels: int = 1) -> np.ndarray:
    """uint8 (H, W) or (H, W, C) -> float32 (H, W, channels) in [0, 1]."""
    arr = np.asarray(image)
    _check_shape(arr)
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        out = arr.astype(np.float32) / 65535.0
    else:
        out = np.clip(arr.astype(np.float32), 0.0, 1.0)
    if out.ndim == 2:
        out = out[:, :, None]
    have = out.shape[2]
    if have == channels:
        return out
    if channels == 1:
        if have in (3, 4):  # RGB(A) or RGB-D to gray: luma of the colour planes
            return (out[:, :, :3] @ _LUMA)[:, :, None]
        return out.mean(axis=2, keepdims=True)
    if have == 1:
        return np.repeat(out, channels, axis=2)
    raise QualityError(
        f"image has {have} channels, the model expects {channels}", "wrong channel count"
    )


def _check_shape(arr: np.ndarray) -> None:
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise QualityError(f"expected a 2-D or 3-D image, got shape {arr.shape}", "bad shape")


def _check_dpi(dpi: int) -> None:
    if dpi <= 0:
        raise QualityError(f"dpi must be positive, got {dpi}", "bad dpi")


def resample(img: np.ndarray, dpi: int, target_dpi: int,
             tolerance: float = _D.resample_tolerance) -> np.ndarray:
    """Rescale (H, W, C) so that its resolution becomes ``target_dpi``.

    Left alone (the same array) when ``dpi`` is within ``tolerance`` of ``target_dpi``.
    """
    _check_dpi(dpi)
    scale = target_dpi / dpi
    if abs(scale - 1.0) < tolerance:
        return img
    return np.clip(ndimage.zoom(img, (scale, scale, 1), order=1), 0.0, 1.0)


def foreground_mask(gray: np.ndarray, block: int = _D.block,
                    contrast: float = _D.foreground_contrast,
                    quantile: float = _D.foreground_quantile) -> np.ndarray:
    """Boolean (H, W): where ridges are, by local contrast (std over ``block`` pixels).

    A pixel is foreground when its local std exceeds ``contrast`` times the image's gray spread
    (between its ``quantile`` and ``1 - quantile`` quantiles).
    """
    mean = ndimage.uniform_filter(gray, block)
    sq = ndimage.uniform_filter(gray * gray, block)
    std = np.sqrt(np.maximum(sq - mean * mean, 0.0))
    spread = float(np.quantile(gray, 1.0 - quantile) - np.quantile(gray, quantile)) + 1e-6
    return std > contrast * spread


def crop_center(img: np.ndarray, side: int, center_on_foreground: bool, *,
                block: int = _D.block, foreground_contrast: float = _D.foreground_contrast,
                foreground_quantile: float = _D.foreground_quantile,
                min_foreground: float = _D.min_foreground,
                pad_quantile: float = _D.pad_quantile,
                center_on_core: bool = _D.center_on_core,
                rotate_to_core: bool = _D.rotate_to_core,
                max_core_rotation: float = _D.max_core_rotation,
                core_direction_strength: float = _D.core_direction_strength) -> np.ndarray:
    """A ``side`` x ``side`` window centred on the foreground (or the image); pads with background.

    The foreground (``foreground_mask``) is used when it covers at least ``min_foreground`` of
    the image; with ``center_on_core`` the window is centred on the finger's core
    (``siamid.align.core_point``) where one is found, and the window (around the core or the
    centroid) is moved as little as needed to stay inside the image: an image no larger than the
    window is not shifted. With ``rotate_to_core`` as well, the image is first turned about the
    core so that the core's direction (``siamid.align.core_pose``) points straight down, the
    direction of an upright finger, unless that takes a turn of more than
    ``max_core_rotation`` degrees (then it is not turned: fingers on a sensor are mostly upright,
    and so large an estimate is more likely wrong than the finger) or the core is weaker than
    ``core_direction_strength`` (an arch's apex: no direction). Padding takes the
    ``pad_quantile`` level of each channel (light background).
    """
    return crop_windows(img, (side,), center_on_foreground, block=block,
                        foreground_contrast=foreground_contrast,
                        foreground_quantile=foreground_quantile, min_foreground=min_foreground,
                        pad_quantile=pad_quantile, center_on_core=center_on_core,
                        rotate_to_core=rotate_to_core, max_core_rotation=max_core_rotation,
                        core_direction_strength=core_direction_strength)[0]


def crop_windows(img: np.ndarray, sides: tuple[int, ...], center_on_foreground: bool, *,
                 block: int = _D.block, foreground_contrast: float = _D.foreground_contrast,
                 foreground_quantile: float = _D.foreground_quantile,
                 min_foreground: float = _D.min_foreground,
                 pad_quantile: float = _D.pad_quantile,
                 center_on_core: bool = _D.center_on_core,
                 rotate_to_core: bool = _D.rotate_to_core,
                 max_core_rotation: float = _D.max_core_rotation,
                 core_direction_strength: float = _D.core_direction_strength
                 ) -> list[np.ndarray]:
    """``crop_center``'s window for each of ``sides``, finding the finger (and its core) once."""
    h, w = img.shape[:2]
    centroid, core, found, turn = (h / 2.0, w / 2.0), None, False, 0.0
    if center_on_foreground:
        gray = img.mean(axis=2)
        mask = foreground_mask(gray, block, foreground_contrast, foreground_quantile)
        if mask.sum() > min_foreground * mask.size:
            ys, xs = np.nonzero(mask)
            centroid, found = (float(ys.mean()), float(xs.mean())), True
            # an image no larger than every window is never moved: no core needed, unless to
            # turn it (about the core, which does not move the window either)
            if center_on_core and (max(h, w) > min(sides) or rotate_to_core):
                pose = core_pose(gray, mask, direction_strength=core_direction_strength)
                core = (pose.y, pose.x) if pose else centroid
                if rotate_to_core and pose and pose.direction is not None:
                    turn = core_turn(pose.direction, max_core_rotation)
    # Fingerprint background is light: pad with the light level so padding is not "ridge".
    fill = np.quantile(img, pad_quantile, axis=(0, 1)).astype(np.float32)
    if turn:
        img = rotate_about(img, core, turn, fill)
    windows = []
    for side in sides:
        cy, cx = core or centroid
        if center_on_core and found:  # the core where one is clear; the window inside the image
            cy, cx = (float(np.clip(c, side / 2.0, n - side / 2.0)) if n >= side else n / 2.0
                      for c, n in zip((cy, cx), (h, w)))
        windows.append(_window(img, side, cy, cx, fill))
    return windows


#: The core direction of an upright finger (degrees, 0 to the right, +90 up): its innermost
#: loop opens towards the base of the finger, straight down.
UPRIGHT_CORE = -90.0


def core_turn(direction: float, max_turn: float = _D.max_core_rotation) -> float:
    """Degrees (counterclockwise on screen) that bring a core pointing at ``direction`` upright.

    0 when that turn exceeds ``max_turn``: the estimate is more likely wrong than the finger.
    """
    turn = (UPRIGHT_CORE - direction + 180.0) % 360.0 - 180.0
    return float(turn) if abs(turn) <= max_turn else 0.0


def rotate_about(img: np.ndarray, center: tuple[float, float], degrees: float,
                 fill: np.ndarray) -> np.ndarray:
    """(H, W, C) turned by ``degrees`` counterclockwise on screen about ``center`` (y, x).

    Same shape; bilinear; where the turned image leaves the frame, each channel's ``fill``.
    """
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    # output (row, col) -> input: the inverse turn about the centre (rows grow downward)
    matrix = np.array([[c, s], [-s, c]])
    centre = np.asarray(center, np.float64)
    offset = centre - matrix @ centre
    out = np.empty(img.shape, np.float32)
    for k in range(img.shape[2]):
        out[:, :, k] = ndimage.affine_transform(img[:, :, k], matrix, offset, order=1,
                                                mode="constant", cval=float(fill[k]))
    return out


def _window(img: np.ndarray, side: int, cy: float, cx: float, fill: np.ndarray) -> np.ndarray:
    """The ``side`` x ``side`` window of ``img`` centred on (cy, cx), ``fill`` outside it."""
    h, w = img.shape[:2]
    top = int(round(cy - side / 2.0))
    left = int(round(cx - side / 2.0))
    out = np.empty((side, side, img.shape[2]), np.float32)
    out[:] = fill
    sy0, sx0 = max(top, 0), max(left, 0)
    sy1, sx1 = min(top + side, h), min(left + side, w)
    if sy1 > sy0 and sx1 > sx0:
        out[sy0 - top : sy1 - top, sx0 - left : sx1 - left] = img[sy0:sy1, sx0:sx1]
    return out


def balance(img: np.ndarray, border: int, low: float, high: float) -> np.ndarray:
    """Stretch each channel so its ``low``/``high`` quantiles (inside a border) become 0 and 1."""
    h, w = img.shape[:2]
    b = min(border, h // 4, w // 4)
    inner = img[b : h - b, b : w - b] if b > 0 else img
    lo = np.quantile(inner, low, axis=(0, 1))
    hi = np.quantile(inner, high, axis=(0, 1))
    span = np.maximum(hi - lo, 1.0 / 255.0)
    return np.clip((img - lo) / span, 0.0, 1.0).astype(np.float32)


def local_normalise(img: np.ndarray, window: int, gain: float = _D.local_gain,
                    std_floor: float = _D.local_std_floor) -> np.ndarray:
    """Per channel, ``0.5 + gain * (pixel - mean) / max(std, std_floor)`` over a ``window`` box.

    Pressure, dryness and the sensor's contrast change the local gray level and ridge contrast
    from touch to touch and from sensor to sensor; after this step a ridge is a ridge wherever it
    is. Box filters only (two running sums per pixel): cheap enough for a microcontroller.
    """
    if window < 3:
        raise ConfigError(f"local_window must be >= 3 pixels (about 2 ridge periods), got {window}")
    out = np.empty_like(img)
    for c in range(img.shape[2]):
        plane = img[:, :, c].astype(np.float64)
        mean = ndimage.uniform_filter(plane, window, mode="reflect")
        var = ndimage.uniform_filter(plane * plane, window, mode="reflect") - mean * mean
        std = np.maximum(np.sqrt(np.maximum(var, 0.0)), std_floor)
        out[:, :, c] = 0.5 + gain * (plane - mean) / std
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def sharpen_kernel(amount: int) -> tuple[np.ndarray, int]:
    """The integer 3x3 kernel and right shift for ``orig + (orig - blur) * amount``.

    blur is the binomial [1 2 1] x [1 2 1] / 16, so the whole operation is
    ``(kernel * pixels) >> 4`` with integer weights: what a microcontroller can run.
    """
    binomial = np.outer([1, 2, 1], [1, 2, 1]).astype(np.int32)
    kernel = -amount * binomial
    kernel[1, 1] += 16 * (1 + amount)
    return kernel, 4


def sharpen(img: np.ndarray, amount: int) -> np.ndarray:
    """Apply ``sharpen_kernel(amount)`` per channel with edge replication, clipped to [0, 1]."""
    if amount <= 0:
        return img
    kernel, shift = sharpen_kernel(amount)
    weights = kernel.astype(np.float32) / float(1 << shift)
    out = np.empty_like(img)
    for c in range(img.shape[2]):
        out[:, :, c] = ndimage.correlate(img[:, :, c], weights, mode="nearest")
    return np.clip(out, 0.0, 1.0)


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """Area-average (H, W, C) down (or bilinear up) to ``size`` x ``size``."""
    h, w, c = img.shape
    if (h, w) == (size, size):
        return img
    if h == w and h % size == 0:
        f = h // size
        return img.reshape(size, f, size, f, c).mean(axis=(1, 3))
    planes = [
        np.asarray(Image.fromarray(img[:, :, i]).resize((size, size), Image.Resampling.BOX))
        for i in range(c)
    ]
    return np.stack(planes, axis=2).astype(np.float32)


def _ridge_fraction(balanced_gray: np.ndarray, block: int, ridge_std: float
                    ) -> tuple[float, float]:
    """Fractions of blocks with ridge contrast, overall and in the central half."""
    h, w = balanced_gray.shape
    nby, nbx = h // block, w // block
    if nby == 0 or nbx == 0:
        return 0.0, 0.0
    blocks = balanced_gray[: nby * block, : nbx * block].reshape(nby, block, nbx, block)
    ridge = blocks.std(axis=(1, 3)) > ridge_std
    qy, qx = max(nby // 4, 0), max(nbx // 4, 0)
    center = ridge[qy : nby - qy, qx : nbx - qx]
    return float(ridge.mean()), float(center.mean()) if center.size else 0.0


def coherence(gray: np.ndarray, block: int = _D.block, sigma: float = _D.quality_sigma) -> float:
    """Mean orientation coherence (0 = isotropic noise, 1 = parallel lines) of a gray image.

    Ridges are locally parallel; noise, smudges and faces are not. Gradients after a gaussian
    of ``sigma`` pixels, structure tensor smoothed over one ``block``, coherence weighted by
    gradient energy.
    """
    smooth = ndimage.gaussian_filter(gray, sigma)
    gy = ndimage.sobel(smooth, axis=0)
    gx = ndimage.sobel(smooth, axis=1)
    jxx = ndimage.uniform_filter(gx * gx, block)
    jyy = ndimage.uniform_filter(gy * gy, block)
    jxy = ndimage.uniform_filter(gx * gy, block)
    energy = jxx + jyy
    aniso = np.sqrt((jxx - jyy) ** 2 + 4.0 * jxy * jxy)
    return float(aniso.sum() / max(float(energy.sum()), 1e-12))


def to_uint8(img: np.ndarray) -> np.ndarray:
    """float [0, 1] -> uint8, rounded to the nearest of the 256 levels."""
    return np.round(img * 255.0).astype(np.uint8)


class Preprocessor:
    """Raw image -> quality verdict and network input, by one ``PreprocessConfig``.

    ``process`` does both in one pass; ``network_input`` skips the quality scores (training);
    ``trace`` returns every stage for inspection. All three run the same stages. Images whose
    size is outside the config's limits are refused with QualityError before any work.
    """

    def __init__(self, config: PreprocessConfig | None = None) -> None:
        self.config = config if config is not None else PreprocessConfig()
        _check_config(self.config)
        self._face = None
        if self.config.modality == "face":
            from .faces import pipeline  # the face stages build on this module's functions
            self._face = pipeline
        self._integer = None
        if self.config.integer:
            from .fixedpoint import IntegerParams  # its stages build on this module's kernel
            self._integer = IntegerParams.from_config(self.config)

    def load(self, path: str | Path) -> np.ndarray:
        """The image file at ``path`` as this preprocessing takes it: a face with the companion
        planes its ``face_channels`` need (``siamid.faces.load_face``), otherwise the file."""
        if self._face is not None:
            from .faces.channels import load_face
            return load_face(path, self.config)
        return load_image(path, self.config.max_pixels)

    @classmethod
    def from_card(cls, card: Any, source: str = "model") -> "Preprocessor":
        """The Preprocessor a ModelCard (or its ``preprocess`` dict) describes.

        Keys the card lacks take their defaults, which are exactly the behaviour of the siamid
        version that exported it. Raises ModelError for unknown keys (a newer siamid exported
        the model: upgrade or re-export), for a malformed value, and for a preprocessing output
        that does not fit the card's input size and channels (re-export). ``source`` names the
        model in messages.
        """
        data = card if isinstance(card, Mapping) else card.preprocess
        if not isinstance(data, Mapping):
            raise ModelError(f"{source}: ModelCard.preprocess must be a table, got {data!r}; "
                             "re-export the model")
        try:
            config = from_dict(PreprocessConfig, dict(data), f"{source} ModelCard.preprocess")
            pre = cls(config)
        except ConfigError as exc:
            text = str(exc) if str(exc).startswith(source) else f"{source}: {exc}"
            raise ModelError(
                f"{text}; the model was exported by another siamid version: upgrade siamid or "
                "re-export the model"
            ) from exc
        if not isinstance(card, Mapping):
            want = (card.channels, *card.input_size)
            have = (config.channels, config.size, config.size)
            if have != want:
                raise ModelError(
                    f"{source}: preprocessing gives {have} but the model expects {want}; the "
                    "card's preprocess.size/channels disagree with its input size: re-export"
                )
        return pre

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, S, S) of the network input."""
        return (self.config.channels, self.config.size, self.config.size)

    def process(self, image: np.ndarray, dpi: int) -> Prepared:
        """The quality verdict and the network input of ``image`` taken at ``dpi``, in one pass.

        Raises QualityError (with ``reason``) only for an image that cannot be processed at
        all: bad shape, bad dpi, wrong channel count, or a size outside the limits. A poor image
        is not an error here: its verdict says why.
        """
        cfg = self.config
        if self._integer is not None:
            from .fixedpoint import quality_of
            result = self._integer_result(image, dpi)
            ok, reason, scores = quality_of(result.scores, self._integer, cfg)
            return Prepared(Quality(ok, reason, scores), self._finish_u8(result.network_input))
        if self._face is not None:
            found = self._face.face_stages(self._face_input(image, dpi), cfg)
            reason, scores = self._face.face_verdict(found, cfg)
            return Prepared(Quality(not reason, reason, scores),
                            self._finish(found.stages["6_network_input"]))
        stages = self._stages(image, dpi)
        if cfg.quality_crop:
            verdict = self._judge(stages["3_judged"], None)
        else:
            verdict = self._judge(stages["3_cropped"], stages["4_balanced"] if cfg.balance else None)
        return Prepared(verdict, self._finish(stages["6_network_input"]))

    def network_input(self, image: np.ndarray, dpi: int) -> np.ndarray:
        """Only the network input, uint8 (C, S, S): what training stores and feeds."""
        if self._integer is not None:
            return self._finish_u8(self._integer_result(image, dpi).network_input)
        return self._finish(self._stages(image, dpi)["6_network_input"])

    def trace(self, image: np.ndarray, dpi: int) -> dict[str, np.ndarray]:
        """Each stage as a uint8 image (H, W) or (H, W, C), for ``siamid prep --trace-dir``.

        The last, ``6_network_input``, is ``network_input`` in (H, W, C) order. Integer
        preprocessing has no resampling stage: its ``2_resampled`` is the input.
        """
        if self._integer is not None:
            gray = self._integer_input(image, dpi)
            stages = self._integer_stages(gray)
            return {"1_input": gray, "2_resampled": gray, **stages}
        out = {}
        for name, img in self._stages(image, dpi).items():
            u8 = to_uint8(img)
            out[name] = u8[:, :, 0] if u8.shape[2] == 1 else u8
        return out

    def check_size(self, image: np.ndarray, dpi: int) -> None:
        """QualityError unless ``image`` (taken at ``dpi``) is within the config's size limits.

        Cheap: looks at the shape only. Side limits are scaled from ``target_dpi`` to ``dpi``.
        """
        arr = np.asarray(image)
        _check_shape(arr)
        _check_dpi(dpi)
        cfg = self.config
        h, w = arr.shape[:2]
        scale = dpi / cfg.target_dpi
        low = math.ceil(cfg.min_side * scale)
        high = math.floor(cfg.max_side * scale)
        at = f"at {dpi} dpi"
        if min(h, w) < low:
            reason = f"image too small: {w}x{h} px, at least {low}x{low} px {at} needed"
        elif max(h, w) > high:
            reason = f"image too large: {w}x{h} px, at most {high}x{high} px {at} allowed"
        elif h * w > cfg.max_pixels:
            reason = (f"image too large: {w}x{h} px is {h * w:,} pixels, at most "
                      f"{cfg.max_pixels:,} allowed")
        else:
            return
        raise QualityError(f"image refused: {reason}", reason)

    def _integer_input(self, image: np.ndarray, dpi: int) -> np.ndarray:
        """The uint8 (H, W) gray image integer preprocessing takes (errors as ``process``'s)."""
        from .fixedpoint import at_target_dpi, gray_pixels
        self.check_size(image, dpi)
        return at_target_dpi(gray_pixels(image), dpi, self.config)

    def _integer_result(self, image: np.ndarray, dpi: int):
        from .fixedpoint import prepare
        return prepare(self._integer_input(image, dpi), self._integer)

    def _integer_stages(self, gray: np.ndarray) -> dict[str, np.ndarray]:
        from .fixedpoint import prepare
        return prepare(gray, self._integer).stages

    def _face_input(self, image: np.ndarray, dpi: int) -> np.ndarray:
        self.check_size(image, dpi)
        arr = np.asarray(image)
        have = 1 if arr.ndim == 2 else arr.shape[2]
        if have != self.config.channels and "depth" in self._face.FACE_CHANNELS[
                self.config.face_channels]:
            raise QualityError(
                f"image has {have} channels but the model takes {self.config.face_channels} "
                f"({self.config.channels}): depth missing", "depth missing")
        return to_float(arr, self.config.channels)

    def _stages(self, image: np.ndarray, dpi: int) -> dict[str, np.ndarray]:
        """Every stage in order, as float32 (H, W, C) in [0, 1]."""
        if self._face is not None:
            return self._face.face_stages(self._face_input(image, dpi), self.config).stages
        self.check_size(image, dpi)
        cfg = self.config
        stages: dict[str, np.ndarray] = {}
        img = to_float(image, cfg.channels)
        stages["1_input"] = img
        img = resample(img, dpi, cfg.target_dpi, cfg.resample_tolerance)
        stages["2_resampled"] = img
        sides = tuple(side for side in (cfg.crop, cfg.quality_crop) if side > 0)
        if sides:
            windows = crop_windows(img, sides, cfg.center_on_foreground, block=cfg.block,
                                   foreground_contrast=cfg.foreground_contrast,
                                   foreground_quantile=cfg.foreground_quantile,
                                   min_foreground=cfg.min_foreground,
                                   pad_quantile=cfg.pad_quantile,
                                   center_on_core=cfg.center_on_core,
                                   rotate_to_core=cfg.rotate_to_core,
                                   max_core_rotation=cfg.max_core_rotation,
                                   core_direction_strength=cfg.core_direction_strength)
            if cfg.quality_crop:  # the window the verdict judges, placed as a crop of its size
                stages["3_judged"] = windows.pop()
            img = windows[0] if cfg.crop else img
        stages["3_cropped"] = img
        if cfg.balance:
            img = self._balance(img)
        stages["4_balanced"] = img
        if cfg.local_window > 0:
            img = local_normalise(img, cfg.local_window, cfg.local_gain, cfg.local_std_floor)
            stages["4_normalised"] = img
        if cfg.enhance:
            img = self._enhance(img)
            stages["4_enhanced"] = img
        img = sharpen(img, cfg.sharpen_amount)
        stages["5_sharpened"] = img
        stages["6_network_input"] = resize(img, cfg.size)
        return stages

    def _balance(self, img: np.ndarray) -> np.ndarray:
        cfg = self.config
        return balance(img, cfg.balance_border, cfg.balance_low, cfg.balance_high)

    def _enhance(self, img: np.ndarray) -> np.ndarray:
        """Ridge enhancement (``siamid.enhance``) of each channel, foreground from its own gray."""
        cfg = self.config
        out = np.empty_like(img)
        for c in range(img.shape[2]):
            plane = img[:, :, c]
            mask = foreground_mask(plane, cfg.block, cfg.foreground_contrast,
                                   cfg.foreground_quantile)
            out[:, :, c] = enhance(plane, mask, period=cfg.enhance_period,
                                   sigma=cfg.enhance_sigma, angles=cfg.enhance_angles,
                                   orient_sigma=cfg.enhance_orient_sigma,
                                   scale_quantile=cfg.enhance_scale_quantile,
                                   binarise=cfg.enhance_binarise)
        return out

    @staticmethod
    def _finish(img: np.ndarray) -> np.ndarray:
        out = np.ascontiguousarray(to_uint8(img).transpose(2, 0, 1))
        out.setflags(write=False)
        return out

    @staticmethod
    def _finish_u8(gray: np.ndarray) -> np.ndarray:
        """An integer stage's uint8 (S, S) as the network input (1, S, S), read-only."""
        out = np.ascontiguousarray(gray[None, :, :])
        out.setflags(write=False)
        return out

    def _judge(self, cropped: np.ndarray, balanced: np.ndarray | None) -> Quality:
        """The verdict from the cropped image and its balanced version (made here if None).

        Checks, in order: too dark, too light (no finger), too blurred or flat, too little ridge
        area overall, too little ridge area in the centre, no parallel-ridge pattern.
        """
        cfg = self.config
        gray = cropped.mean(axis=2)
        bal = (balanced if balanced is not None else self._balance(cropped)).mean(axis=2)
        smooth = ndimage.gaussian_filter(bal, cfg.quality_sigma)
        sharpness = float(np.abs(ndimage.laplace(smooth)).mean())
        q = cfg.contrast_quantile
        span = float(np.quantile(gray, 1.0 - q) - np.quantile(gray, q))
        flat = span <= cfg.min_contrast
        ridge, center = (0.0, 0.0) if flat else _ridge_fraction(bal, cfg.block, cfg.ridge_std)
        scores = {
            "mean": float(gray.mean()),
            "contrast": span,
            "sharpness": sharpness,
            "ridge_area": ridge,
            "center_ridge_area": center,
            "coherence": coherence(bal, cfg.block, cfg.quality_sigma),
        }
        mean, coh = scores["mean"], scores["coherence"]
        failed = [
            mean < cfg.min_mean,
            mean > cfg.max_mean,
            sharpness < cfg.min_sharpness or flat,
            ridge < cfg.min_ridge_area,
            center < cfg.min_center_ridge_area,
            coh < cfg.min_coherence,
        ]
        for check, fails in zip(QUALITY_CHECKS, failed):
            if fails:
                return Quality(False, quality_reason(check, scores, cfg), scores)
        return Quality(True, "", scores)


#: The quality checks in the order the verdict makes them (float and integer alike).
QUALITY_CHECKS = ("too_dark", "too_light", "blurred_or_flat", "little_ridge_area",
                  "little_center_ridge_area", "no_ridge_pattern")


def quality_reason(check: str, scores: Mapping[str, float], cfg: PreprocessConfig) -> str:
    """The reason a verdict gives when ``check`` (one of QUALITY_CHECKS) fails on ``scores``."""
    mean, coh = scores["mean"], scores["coherence"]
    ridge, center = scores["ridge_area"], scores["center_ridge_area"]
    reasons = {
        "too_dark": lambda: f"too dark (mean {mean:.2f} < {cfg.min_mean})",
        "too_light": lambda: f"too light, no finger? (mean {mean:.2f} > {cfg.max_mean})",
        "blurred_or_flat": lambda: (f"too blurred or flat (sharpness {scores['sharpness']:.3f}"
                                    f" < {cfg.min_sharpness})"),
        "little_ridge_area": lambda: (f"too little ridge area ({ridge:.0%} < "
                                      f"{cfg.min_ridge_area:.0%})"),
        "little_center_ridge_area": lambda: (f"too little ridge area in the centre "
                                             f"({center:.0%} < {cfg.min_center_ridge_area:.0%})"),
        "no_ridge_pattern": lambda: (f"no ridge pattern (orientation coherence {coh:.2f} < "
                                     f"{cfg.min_coherence})"),
    }
    return reasons[check]()


# (name, test, what it must be): values outside these make preprocessing meaningless or crash.
_RULES: list[tuple[str, Any, str]] = [
    ("target_dpi", lambda v: v > 0, "> 0"),
    ("size", lambda v: v > 0, "> 0"),
    ("channels", lambda v: v > 0, "> 0"),
    ("crop", lambda v: v >= 0, ">= 0 (0 = no crop)"),
    ("quality_crop", lambda v: v == 0 or v >= 32, "0 (the whole crop) or >= 32 pixels"),
    ("block", lambda v: v >= 2, ">= 2 pixels"),
    ("local_window", lambda v: v == 0 or v >= 3, "0 or >= 3 pixels"),
    ("sharpen_amount", lambda v: v >= 0, ">= 0"),
    ("enhance_period", lambda v: v >= 2.0, ">= 2 pixels"),
    ("enhance_sigma", lambda v: v > 0.0, "> 0"),
    ("enhance_angles", lambda v: v >= 2, ">= 2"),
    ("enhance_orient_sigma", lambda v: v > 0.0, "> 0"),
    ("enhance_scale_quantile", lambda v: 0.5 <= v <= 1.0, "in [0.5, 1]"),
    ("min_side", lambda v: v >= 1, ">= 1 pixel"),
    ("max_pixels", lambda v: v >= 1, ">= 1 pixel"),
    ("resample_tolerance", lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
    ("foreground_quantile", lambda v: 0.0 <= v < 0.5, "in [0, 0.5)"),
    ("contrast_quantile", lambda v: 0.0 <= v < 0.5, "in [0, 0.5)"),
    ("pad_quantile", lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
    ("quality_sigma", lambda v: v >= 0.0, ">= 0"),
    ("local_std_floor", lambda v: v > 0.0, "> 0"),
    ("max_core_rotation", lambda v: 0.0 <= v <= 180.0, "in [0, 180] degrees"),
    ("core_direction_strength", lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
]


def _check_config(cfg: PreprocessConfig) -> None:
    """ConfigError naming the first field whose value cannot work."""
    for name, ok, must in _RULES:
        value = getattr(cfg, name)
        if not ok(value):
            raise ConfigError(f"preprocess.{name} must be {must}, got {value!r}")
    if not 0.0 <= cfg.balance_low < cfg.balance_high <= 1.0:
        raise ConfigError(
            f"preprocess.balance_low and balance_high must satisfy 0 <= low < high <= 1, got "
            f"{cfg.balance_low} and {cfg.balance_high}"
        )
    if cfg.modality not in ("finger", "face"):
        raise ConfigError(f"preprocess.modality must be finger or face, got {cfg.modality!r}")
    if cfg.modality == "face":
        from .faces.channels import channel_count
        count = channel_count(cfg.face_channels)
        if cfg.channels != count:
            raise ConfigError(f"preprocess.channels must be {count} for face_channels = "
                              f"{cfg.face_channels!r}, got {cfg.channels}")
        if not 0.0 <= cfg.face_margin <= 1.0:
            raise ConfigError(f"preprocess.face_margin must be in [0, 1], got {cfg.face_margin}")
        if cfg.depth_range <= 0.0:
            raise ConfigError(f"preprocess.depth_range must be > 0, got {cfg.depth_range}")
        if cfg.min_depth_relief < 0.0:
            raise ConfigError(f"preprocess.min_depth_relief must be >= 0, got "
                              f"{cfg.min_depth_relief}")
        if cfg.min_face_side < 16:
            raise ConfigError(f"preprocess.min_face_side must be >= 16 pixels, got "
                              f"{cfg.min_face_side}")
    if cfg.rotate_to_core and not cfg.center_on_core:
        raise ConfigError("preprocess.rotate_to_core needs center_on_core = true (the turn is "
                          "about the core, which only core centring looks for)")
    if cfg.max_side < cfg.min_side:
        raise ConfigError(f"preprocess.max_side ({cfg.max_side}) must be >= min_side "
                          f"({cfg.min_side})")
    if cfg.integer:
        from .fixedpoint import check_integer_config
        check_integer_config(cfg)


__all__ = [
    "QUALITY_CHECKS",
    "Prepared",
    "Preprocessor",
    "Quality",
    "balance",
    "coherence",
    "core_turn",
    "crop_center",
    "crop_windows",
    "foreground_mask",
    "input_to_float",
    "local_normalise",
    "quality_reason",
    "resample",
    "resize",
    "rotate_about",
    "sharpen",
    "sharpen_kernel",
    "to_float",
    "to_uint8",
]
