"""Face detection: OpenCV's Haar cascade for frontal faces, which ships inside the
``opencv-contrib-python-headless`` wheel (the ``faces`` extra): nothing is downloaded.

``detect_faces`` returns every face it finds, largest first, so the caller can say "no face"
and "several faces"; the face preprocessing crops to the largest. The cascade looks at the image
with a replicated border around it: its windows need a little context around a face, and a tight
crop (a face that fills the image, as in Extended Yale B or a face held close to a camera) is
otherwise missed.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..errors import ConfigError

_CASCADE = "haarcascade_frontalface_default.xml"
#: Border added around the image before detection, as a fraction of its longer side.
_BORDER = 0.25


def opencv() -> Any:
    """The cv2 module, or ConfigError saying how to install it."""
    try:
        import cv2
    except ImportError as exc:
        raise ConfigError("face detection needs OpenCV: pip install 'siamid[faces]' "
                          "(opencv-contrib-python-headless)") from exc
    return cv2


@functools.lru_cache(maxsize=1)
def _cascade() -> Any:
    cv2 = opencv()
    path = f"{cv2.data.haarcascades}{_CASCADE}"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise ConfigError(f"OpenCV {cv2.__version__} has no face cascade at {path}; install "
                          "opencv-contrib-python-headless 4.x (pip install 'siamid[faces]')")
    return cascade


def detect_faces(gray: np.ndarray, min_side: int) -> list[tuple[int, int, int, int]]:
    """Faces in a uint8 (H, W) image as (x, y, width, height), largest first; a box may reach
    past the image's edge (the crop pads it)."""
    gray = np.ascontiguousarray(gray, dtype=np.uint8)
    border = int(round(_BORDER * max(gray.shape)))
    framed = opencv().copyMakeBorder(gray, border, border, border, border, opencv().BORDER_REPLICATE)
    found = _cascade().detectMultiScale(framed, scaleFactor=1.1, minNeighbors=5,
                                        minSize=(min_side, min_side))
    boxes = [(x - border, y - border, w, h)
             for x, y, w, h in (tuple(int(v) for v in box) for box in np.asarray(found).reshape(-1, 4))]
    return sorted(boxes, key=lambda b: (-b[2] * b[3], b[1], b[0]))


__all__ = ["detect_faces", "opencv"]
