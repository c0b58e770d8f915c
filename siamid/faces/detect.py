"""Face detection: OpenCV's Haar cascade for frontal faces, which ships inside the
``opencv-contrib-python-headless`` wheel (the ``faces`` extra): nothing is downloaded.

``detect_faces`` returns every face it finds, largest first, so the caller can say "no face"
and "several faces"; the face preprocessing crops to the largest.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..errors import ConfigError

_CASCADE = "haarcascade_frontalface_default.xml"


def _cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise ConfigError("face detection needs OpenCV: pip install 'siamid[faces]' "
                          "(opencv-contrib-python-headless)") from exc
    return cv2


@functools.lru_cache(maxsize=1)
def _cascade() -> Any:
    cv2 = _cv2()
    path = f"{cv2.data.haarcascades}{_CASCADE}"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise ConfigError(f"OpenCV {cv2.__version__} has no face cascade at {path}; install "
                          "opencv-contrib-python-headless 4.x (pip install 'siamid[faces]')")
    return cascade


def detect_faces(gray: np.ndarray, min_side: int) -> list[tuple[int, int, int, int]]:
    """Faces in a uint8 (H, W) image as (x, y, width, height), largest first."""
    gray = np.ascontiguousarray(gray, dtype=np.uint8)
    found = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5,
                                        minSize=(min_side, min_side))
    boxes = [tuple(int(v) for v in box) for box in np.asarray(found).reshape(-1, 4)]
    return sorted(boxes, key=lambda b: (-b[2] * b[3], b[1], b[0]))


__all__ = ["detect_faces"]
