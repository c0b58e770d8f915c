"""The R503 view: what an R503-class sensor would deliver for a finger in any dataset image.

An R503 uploads a 192 x 192 image at about 500 dpi with 4-bit pixels (16 gray levels). Whole-
finger datasets (FVC, 300-640 px wide) show far more ridge area than that, and small-area
sensors are where minutiae matchers struggle, so accuracy is also reported on this view:
resample to 500 dpi, keep the 192 x 192 window centred on the finger, quantise to 16 levels.

The window is centred on the finger's foreground rather than on the image, because a user puts
the finger on the sensor: in FVC images the finger is often off-centre, and the image centre
can be blank glass. Where the image is smaller than the window, it is padded with its own light
background level, as ``preprocess.crop_center`` does.
"""

from __future__ import annotations

import numpy as np

from ..errors import QualityError
from ..preprocess import crop_center, resample, to_float

R503_SIDE = 192
R503_DPI = 500
R503_GRAY_LEVELS = 16


def quantise(gray: np.ndarray, levels: int = R503_GRAY_LEVELS) -> np.ndarray:
    """float image in [0, 1] -> uint8 with ``levels`` values ``k * 255 // (levels - 1)``.

    For 16 levels the values are 0, 17, ..., 255, the same as ``siamid.synth``'s r503 sensor.
    """
    if not 2 <= levels <= 256:
        raise QualityError(f"gray levels must be 2 to 256, got {levels}", "bad gray levels")
    top = levels - 1
    # Computed in the input's own float precision, so a float64 image rounds as float64.
    k = np.round(np.clip(np.asarray(gray, dtype=np.result_type(gray, np.float32)), 0.0, 1.0) * top)
    k = k.astype(np.int32)
    return (k * 255 // top).astype(np.uint8)


def r503_view(image: np.ndarray, dpi: int, center_on_foreground: bool = True) -> np.ndarray:
    """The 192 x 192, 16-level uint8 image an R503 would give for ``image`` taken at ``dpi``.

    ``image`` is a 2-D or 3-D uint8/uint16/float array (colour is turned to gray); raises
    QualityError for an empty image or a non-positive dpi.
    """
    gray = resample(to_float(image, 1), dpi, R503_DPI)
    window = crop_center(gray, R503_SIDE, center_on_foreground)[:, :, 0]
    return quantise(window)
