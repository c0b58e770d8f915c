"""Photo attacks on a depth camera, made from real captures: the real colour, fake depth.

A printed or on-screen photo held to an RGB-D camera shows the real person's colour over a
depth map that is flat (``flat``: the head's outline at one depth), a leaning plane (``tilted``:
a photo or screen held at an angle) or missing altogether (``none``). These functions work on
face inputs as ``siamid.faces.load_face`` makes them (depth already relative: the face's median
is 128), so training (``[train] face_attacks``: each training person's attacks become an
identity of their own, which the loss pushes away from the person) and the benchmark
(bench/faces.py) make exactly the same attacks.
"""

from __future__ import annotations

import numpy as np

from ..config import PreprocessConfig
from ..errors import ConfigError
from .channels import FACE_CHANNELS

ATTACKS = ("flat", "tilted", "none")
# How far a tilted photo leans from the top of the head's outline to its bottom, in depth
# units (RAP3DF's: a head is about 30 of them deep from nose to ears).
TILT_UNITS = 30.0


def check_attacks(names: str, cfg: PreprocessConfig) -> list[str]:
    """``[train] face_attacks`` as a list; ConfigError for an unknown kind or a model without
    depth (for an RGB model an attack is the real image: nothing to learn)."""
    kinds = [k.strip() for k in names.split(",") if k.strip()]
    for kind in kinds:
        if kind not in ATTACKS:
            raise ConfigError(f"[train] face_attacks: unknown attack {kind!r}; use "
                              f"{', '.join(ATTACKS)}")
    if kinds and (cfg.modality != "face" or "depth" not in FACE_CHANNELS.get(
            cfg.face_channels, ())):
        raise ConfigError("[train] face_attacks needs a face model whose face_channels include "
                          "depth (depth or rgbd)")
    return kinds


def photo_attack(image: np.ndarray, kind: str, cfg: PreprocessConfig) -> np.ndarray:
    """``image`` (a face input of ``cfg``'s channels, uint8) with its depth plane faked."""
    if kind not in ATTACKS:
        raise ConfigError(f"unknown photo attack {kind!r}; use {', '.join(ATTACKS)}")
    planes = FACE_CHANNELS[cfg.face_channels]
    if "depth" not in planes:
        return image  # a camera without depth sees the photo as the face itself
    arr = np.array(image, dtype=np.uint8, copy=True)
    depth = arr if arr.ndim == 2 else arr[:, :, planes.index("depth")]
    outline = depth > 0
    fake = np.zeros(depth.shape, np.float64)
    if kind != "none" and outline.any():
        fake[:] = 128.0
        if kind == "tilted":
            rows = np.nonzero(outline.any(axis=1))[0]
            top, bottom = rows[0], max(rows[-1], rows[0] + 1)
            levels = TILT_UNITS * 127.0 / cfg.depth_range
            fake += levels * ((np.arange(depth.shape[0]) - top) / (bottom - top) - 0.5)[:, None]
        fake = np.where(outline, np.clip(np.rint(fake), 1, 255), 0.0)
    depth[...] = fake.astype(np.uint8)
    return arr


__all__ = ["ATTACKS", "TILT_UNITS", "check_attacks", "photo_attack"]
