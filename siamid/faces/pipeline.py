"""The face stages of ``siamid.preprocess.Preprocessor`` (``[preprocess] modality = "face"``).

Input: float32 (H, W, C) in [0, 1] with the planes ``face_channels`` names (``load_face`` makes
them). Stages: the face's box (detected, or the whole image), a square crop around it padded
with 0, colour planes balanced between two quantiles of the face's pixels, resize. The verdict
says depth missing, depth flat (a photo or a screen), no face, several faces, too dark or too
light, in that order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import PreprocessConfig
from ..preprocess import _LUMA, _window, resize
from .channels import FACE_CHANNELS
from .detect import detect_faces


@dataclass(frozen=True)
class FaceStages:
    """Every stage (float32 (H, W, C) in [0, 1]) and what the detector found (None: not run)."""

    stages: dict[str, np.ndarray]
    faces: int | None


def _colour_planes(spec: str) -> list[int]:
    return [i for i, name in enumerate(FACE_CHANNELS[spec]) if name not in ("depth",)]


def face_gray(img: np.ndarray, spec: str) -> np.ndarray:
    """The image's gray level for detection and the brightness check."""
    planes = _colour_planes(spec)
    if not planes:
        return img[:, :, 0]
    colour = img[:, :, planes]
    if colour.shape[2] == 3:
        return colour @ _LUMA
    return colour.mean(axis=2)


def _balance(img: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Colour planes stretched jointly so the face's balance_low/high quantiles are 0 and 1;
    pixels outside the face (0 in every plane: removed background, padding) stay 0."""
    planes = _colour_planes(cfg.face_channels)
    if not planes:
        return img
    colour = img[:, :, planes]
    inside = colour.max(axis=2) > 0
    if inside.sum() < 16:
        return img
    values = colour[inside]
    lo, hi = np.quantile(values, cfg.balance_low), np.quantile(values, cfg.balance_high)
    stretched = np.clip((colour - lo) / max(hi - lo, 1.0 / 255.0), 0.0, 1.0)
    out = img.copy()
    out[:, :, planes] = np.where(inside[:, :, None], stretched, 0.0)
    return out


def face_stages(img: np.ndarray, cfg: PreprocessConfig) -> FaceStages:
    """The stages of one face image."""
    stages = {"1_input": img}
    h, w = img.shape[:2]
    faces = None
    cy, cx, side = h / 2.0, w / 2.0, max(h, w)
    if cfg.face_detect:
        gray = np.clip(np.rint(face_gray(img, cfg.face_channels) * 255.0), 0, 255).astype(np.uint8)
        boxes = detect_faces(gray, cfg.min_face_side)
        faces = len(boxes)
        if boxes:
            x, y, bw, bh = boxes[0]
            cy, cx = y + bh / 2.0, x + bw / 2.0
            side = max(int(round(max(bw, bh) * (1.0 + 2.0 * cfg.face_margin))), 1)
    img = _window(img, side, cy, cx, np.zeros(img.shape[2], np.float32))
    stages["3_cropped"] = img
    if cfg.balance:
        img = _balance(img, cfg)
        stages["4_balanced"] = img
    stages["6_network_input"] = resize(img, cfg.size)
    return FaceStages(stages, faces)


def depth_relief(depth: np.ndarray) -> float:
    """Std of relative depth (0..1) around its least-squares plane, over the pixels with depth:
    a head is not flat; a photo or a screen, held straight or at an angle, is."""
    ys, xs = np.nonzero(depth > 0)
    if ys.size < 3:
        return 0.0
    values = depth[ys, xs].astype(np.float64)
    design = np.column_stack([ys, xs, np.ones(ys.size)]).astype(np.float64)
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    return float((values - design @ coef).std())


def face_scores(found: FaceStages, cfg: PreprocessConfig) -> dict[str, float]:
    cropped = found.stages["3_cropped"]
    names = FACE_CHANNELS[cfg.face_channels]
    scores: dict[str, float] = {}
    if "depth" in names:
        depth = cropped[:, :, names.index("depth")]
        scores["depth_area"] = float((depth > 0).mean())
        scores["depth_relief"] = depth_relief(depth)
    if _colour_planes(cfg.face_channels):
        gray = face_gray(cropped, cfg.face_channels)
        inside = cropped[:, :, _colour_planes(cfg.face_channels)].max(axis=2) > 0
        scores["mean"] = float(gray[inside].mean()) if inside.any() else 0.0
    if found.faces is not None:
        scores["faces"] = float(found.faces)
    return scores


def face_verdict(found: FaceStages, cfg: PreprocessConfig) -> tuple[str, dict[str, float]]:
    """('' or the reason the image is refused, the scores)."""
    scores = face_scores(found, cfg)
    depth, mean = scores.get("depth_area"), scores.get("mean")
    relief = scores.get("depth_relief")
    checks = [
        (depth is not None and depth < cfg.min_depth_area,
         f"depth missing ({(depth or 0.0):.0%} of the face has depth < {cfg.min_depth_area:.0%})"),
        (relief is not None and relief < cfg.min_depth_relief,
         f"depth flat (relief {(relief or 0.0):.3f} < {cfg.min_depth_relief}): a photo or a "
         "screen?"),
        (found.faces == 0, "no face found"),
        ((found.faces or 0) > 1, f"several faces ({found.faces}); one person at a time"),
        (mean is not None and mean < cfg.min_mean,
         f"too dark (mean {(mean or 0.0):.2f} < {cfg.min_mean})"),
        (mean is not None and mean > cfg.max_mean,
         f"too light (mean {(mean or 0.0):.2f} > {cfg.max_mean})"),
    ]
    for failed, reason in checks:
        if failed:
            return reason, scores
    return "", scores


__all__ = ["FaceStages", "face_gray", "face_stages", "face_verdict"]
