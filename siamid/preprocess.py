"""Image -> network input, and the quality check. The same code at training and at run time.

Every parameter comes from a ``PreprocessConfig``, which travels inside the exported model's
ModelCard; the runtime rebuilds preprocessing from the card, so the network is always fed what it
was trained on. Each stage is simple enough to port to a microcontroller: a resample, a crop, a
linear contrast stretch between two quantiles, and a 3x3 integer sharpening kernel with a shift.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy import ndimage

from .config import PreprocessConfig
from .errors import ConfigError, QualityError

# Side of the square blocks used to find ridge area: about two ridge periods at 500 dpi.
_BLOCK = 16
# A block is "ridge" when its contrast (std of the balanced image, 0..1) exceeds this.
_RIDGE_STD = 0.12


@dataclass(frozen=True)
class Quality:
    """The verdict of ``check_quality``: ``reason`` is '' when ``ok``."""

    ok: bool
    reason: str
    scores: dict[str, float] = field(default_factory=dict)


def to_float(image: np.ndarray, channels: int = 1) -> np.ndarray:
    """uint8 (H, W) or (H, W, C) -> float32 (H, W, channels) in [0, 1]."""
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise QualityError(f"expected a 2-D or 3-D image, got shape {arr.shape}", "bad shape")
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
            return (out[:, :, :3] @ np.array([0.299, 0.587, 0.114], np.float32))[:, :, None]
        return out.mean(axis=2, keepdims=True)
    if have == 1:
        return np.repeat(out, channels, axis=2)
    raise QualityError(
        f"image has {have} channels, the model expects {channels}", "wrong channel count"
    )


def resample(img: np.ndarray, dpi: int, target_dpi: int) -> np.ndarray:
    """Rescale (H, W, C) so that its resolution becomes ``target_dpi``."""
    if dpi <= 0:
        raise QualityError(f"dpi must be positive, got {dpi}", "bad dpi")
    scale = target_dpi / dpi
    if abs(scale - 1.0) < 0.02:
        return img
    return np.clip(ndimage.zoom(img, (scale, scale, 1), order=1), 0.0, 1.0)


def foreground_mask(gray: np.ndarray) -> np.ndarray:
    """Boolean (H, W): where ridges are, by local contrast (std over ~one block)."""
    mean = ndimage.uniform_filter(gray, _BLOCK)
    sq = ndimage.uniform_filter(gray * gray, _BLOCK)
    std = np.sqrt(np.maximum(sq - mean * mean, 0.0))
    spread = float(np.quantile(gray, 0.95) - np.quantile(gray, 0.05)) + 1e-6
    return std > 0.15 * spread


def crop_center(img: np.ndarray, side: int, center_on_foreground: bool) -> np.ndarray:
    """A ``side`` x ``side`` window centred on the foreground (or the image); pads with background."""
    h, w = img.shape[:2]
    cy, cx = h / 2.0, w / 2.0
    if center_on_foreground:
        mask = foreground_mask(img.mean(axis=2))
        if mask.sum() > 0.02 * mask.size:
            ys, xs = np.nonzero(mask)
            cy, cx = float(ys.mean()), float(xs.mean())
    top = int(round(cy - side / 2.0))
    left = int(round(cx - side / 2.0))
    # Fingerprint background is light: pad with the light level so padding is not "ridge".
    fill = np.quantile(img, 0.9, axis=(0, 1)).astype(np.float32)
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


#: Local normalisation: output = 0.5 + LOCAL_GAIN * z, z = (pixel - local mean) / local std.
LOCAL_GAIN = 0.2
#: Local std floor: flat background stays flat gray instead of amplified noise.
LOCAL_STD_FLOOR = 0.05


def local_normalise(img: np.ndarray, window: int) -> np.ndarray:
    """Per channel, subtract the mean and divide by the std of a ``window`` x ``window`` box.

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
        std = np.maximum(np.sqrt(np.maximum(var, 0.0)), LOCAL_STD_FLOOR)
        out[:, :, c] = 0.5 + LOCAL_GAIN * (plane - mean) / std
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


def _stages(image: np.ndarray, dpi: int, cfg: PreprocessConfig) -> dict[str, np.ndarray]:
    """Every stage in order, as float32 (H, W, C) in [0, 1]."""
    stages: dict[str, np.ndarray] = {}
    img = to_float(image, cfg.channels)
    stages["1_input"] = img
    img = resample(img, dpi, cfg.target_dpi)
    stages["2_resampled"] = img
    if cfg.crop > 0:
        img = crop_center(img, cfg.crop, cfg.center_on_foreground)
    stages["3_cropped"] = img
    if cfg.balance:
        img = balance(img, cfg.balance_border, cfg.balance_low, cfg.balance_high)
    stages["4_balanced"] = img
    if cfg.local_window > 0:
        img = local_normalise(img, cfg.local_window)
        stages["4_normalised"] = img
    img = sharpen(img, cfg.sharpen_amount)
    stages["5_sharpened"] = img
    stages["6_network_input"] = resize(img, cfg.size)
    return stages


def preprocess(image: np.ndarray, dpi: int, cfg: PreprocessConfig) -> np.ndarray:
    """Raw image -> float32 (C, size, size) in [0, 1], the network's input."""
    return np.ascontiguousarray(_stages(image, dpi, cfg)["6_network_input"].transpose(2, 0, 1))


def trace(image: np.ndarray, dpi: int, cfg: PreprocessConfig) -> dict[str, np.ndarray]:
    """Each stage as a uint8 image (H, W) or (H, W, C), for ``siamid prep --trace-dir``."""
    out = {}
    for name, img in _stages(image, dpi, cfg).items():
        u8 = np.round(img * 255.0).astype(np.uint8)
        out[name] = u8[:, :, 0] if u8.shape[2] == 1 else u8
    return out


def _ridge_fraction(balanced_gray: np.ndarray) -> tuple[float, float]:
    """Fractions of blocks with ridge contrast, overall and in the central half."""
    h, w = balanced_gray.shape
    nby, nbx = h // _BLOCK, w // _BLOCK
    if nby == 0 or nbx == 0:
        return 0.0, 0.0
    blocks = balanced_gray[: nby * _BLOCK, : nbx * _BLOCK].reshape(nby, _BLOCK, nbx, _BLOCK)
    ridge = blocks.std(axis=(1, 3)) > _RIDGE_STD
    qy, qx = max(nby // 4, 0), max(nbx // 4, 0)
    center = ridge[qy : nby - qy, qx : nbx - qx]
    return float(ridge.mean()), float(center.mean()) if center.size else 0.0


def coherence(gray: np.ndarray) -> float:
    """Mean orientation coherence (0 = isotropic noise, 1 = parallel lines) of a gray image.

    Ridges are locally parallel; noise, smudges and faces are not. Structure tensor smoothed over
    one block, coherence weighted by gradient energy.
    """
    smooth = ndimage.gaussian_filter(gray, 1.0)
    gy = ndimage.sobel(smooth, axis=0)
    gx = ndimage.sobel(smooth, axis=1)
    jxx = ndimage.uniform_filter(gx * gx, _BLOCK)
    jyy = ndimage.uniform_filter(gy * gy, _BLOCK)
    jxy = ndimage.uniform_filter(gx * gy, _BLOCK)
    energy = jxx + jyy
    aniso = np.sqrt((jxx - jyy) ** 2 + 4.0 * jxy * jxy)
    return float(aniso.sum() / max(float(energy.sum()), 1e-12))


def check_quality(image: np.ndarray, dpi: int, cfg: PreprocessConfig) -> Quality:
    """Accept or reject an image before it is enrolled or trained on, with a reason.

    Checks, in order: too dark, too light (no finger), too blurred, too little ridge area overall,
    too little ridge area in the centre, no parallel-ridge pattern. Scores are returned either way so a user can tune limits.
    """
    img = to_float(image, cfg.channels)
    img = resample(img, dpi, cfg.target_dpi)
    if cfg.crop > 0:
        img = crop_center(img, cfg.crop, cfg.center_on_foreground)
    gray = img.mean(axis=2)
    bal = balance(img, cfg.balance_border, cfg.balance_low, cfg.balance_high).mean(axis=2)
    smooth = ndimage.gaussian_filter(bal, 1.0)
    sharpness = float(np.abs(ndimage.laplace(smooth)).mean())
    span = float(np.quantile(gray, 0.98) - np.quantile(gray, 0.02))
    ridge, center = _ridge_fraction(bal) if span > 0.04 else (0.0, 0.0)
    scores = {
        "mean": float(gray.mean()),
        "contrast": span,
        "sharpness": sharpness,
        "ridge_area": ridge,
        "center_ridge_area": center,
        "coherence": coherence(bal),
    }
    checks = [
        (scores["mean"] < cfg.min_mean, f"too dark (mean {scores['mean']:.2f} < {cfg.min_mean})"),
        (scores["mean"] > cfg.max_mean,
         f"too light, no finger? (mean {scores['mean']:.2f} > {cfg.max_mean})"),
        (sharpness < cfg.min_sharpness or span <= 0.04,
         f"too blurred or flat (sharpness {sharpness:.3f} < {cfg.min_sharpness})"),
        (ridge < cfg.min_ridge_area,
         f"too little ridge area ({ridge:.0%} < {cfg.min_ridge_area:.0%})"),
        (center < cfg.min_center_ridge_area,
         f"too little ridge area in the centre ({center:.0%} < {cfg.min_center_ridge_area:.0%})"),
        (scores["coherence"] < cfg.min_coherence,
         f"no ridge pattern (orientation coherence {scores['coherence']:.2f} < {cfg.min_coherence})"),
    ]
    for failed, reason in checks:
        if failed:
            return Quality(False, reason, scores)
    return Quality(True, "", scores)


def prepare(image: np.ndarray, dpi: int, cfg: PreprocessConfig, check: bool = True) -> np.ndarray:
    """``preprocess`` after ``check_quality``; raises QualityError with the reason on rejection."""
    if check:
        verdict = check_quality(image, dpi, cfg)
        if not verdict.ok:
            raise QualityError(f"image rejected: {verdict.reason}", verdict.reason)
    return preprocess(image, dpi, cfg)
