"""Which planes a face input has, where they are on disk, and how depth becomes pixels.

A face sample is one file of colour (or gray) and, for depth and infrared, companion files
beside it named after it: ``NAME.png`` with ``NAME_depth.png`` and ``NAME_ir.png``; a colour
file named ``BASE_rgb_registered.png`` or ``BASE_rgb.png`` (RAP3DF's naming) has its companions
at ``BASE_depth.png`` and ``BASE_ir.png``; with depth, the colour registered onto it
(``BASE_rgb_registered.png``) is read even when ``BASE_rgb.png`` was named. ``load_face`` reads what ``face_channels`` asks for
and stacks it into one uint8 (H, W, C) image, depth already made relative by
``normalise_depth`` with the card's ``depth_range``: the Preprocessor takes it from there.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import PreprocessConfig
from ..dataset import load_image
from ..errors import ConfigError, DatasetError

# Each spec's planes, in network-input order.
FACE_CHANNELS: dict[str, tuple[str, ...]] = {
    "gray": ("gray",),
    "rgb": ("red", "green", "blue"),
    "depth": ("depth",),
    "ir": ("ir",),
    "rgbd": ("red", "green", "blue", "depth"),
}
_COLOUR_SUFFIX = re.compile(r"_(rgb_registered|rgb)$", re.IGNORECASE)
_COMPANION_SUFFIX = re.compile(r"_(depth|ir)$", re.IGNORECASE)


def channel_count(spec: str) -> int:
    """Planes of a ``face_channels`` spec; ConfigError naming the known specs otherwise."""
    if spec not in FACE_CHANNELS:
        raise ConfigError(f"preprocess.face_channels must be one of "
                          f"{', '.join(FACE_CHANNELS)}, got {spec!r}")
    return len(FACE_CHANNELS[spec])


def companions(path: str | Path) -> dict[str, Path]:
    """``{"colour": path, "depth": ..., "ir": ...}`` for a face file; only files that exist.

    ``path`` may be the colour file or one of its companions.
    """
    path = Path(path)
    stem, suffix = path.stem, path.suffix
    base = _COMPANION_SUFFIX.sub("", stem)
    colour_base = _COLOUR_SUFFIX.sub("", base)
    found: dict[str, Path] = {}
    if base != stem:  # a depth or infrared file was given: find its colour file
        for name in (f"{base}_rgb_registered", f"{base}_rgb", base):
            for ext in (suffix, ".png"):
                candidate = path.with_name(name + ext)
                if candidate.is_file():
                    found["colour"] = candidate
                    break
            if "colour" in found:
                break
    elif path.is_file():
        found["colour"] = path
    for kind in ("depth", "ir"):
        for name in dict.fromkeys((f"{colour_base}_{kind}", f"{base}_{kind}")):
            candidate = path.with_name(name + ".png")
            if candidate.is_file():
                found[kind] = candidate
                break
    return found


def read_levels(path: Path, max_pixels: int) -> np.ndarray:
    """A one-plane file's values as they are stored (8 or 16 bits), float32 (H, W)."""
    image = load_image(path, max_pixels)  # refuses huge, missing or corrupt files first
    with warnings.catch_warnings(), Image.open(path) as im:
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        if im.mode.startswith("I") or im.mode == "F":
            return np.asarray(im, dtype=np.float32)
    return (image if image.ndim == 2 else image.mean(axis=2)).astype(np.float32)


def normalise_depth(depth: np.ndarray, depth_range: float) -> np.ndarray:
    """Depth in the file's units -> uint8: background (0 = no depth) 0, the face's median
    depth 128, ``depth_range`` units either side from 1 to 255. Relative depth does not care
    how far the face was from the camera; a flat depth map (a photo) is one gray level."""
    depth = np.asarray(depth, dtype=np.float32)
    if depth_range <= 0:
        raise ConfigError(f"preprocess.depth_range must be > 0, got {depth_range}")
    valid = depth > 0
    out = np.zeros(depth.shape, np.uint8)
    if valid.any():
        median = float(np.median(depth[valid]))
        scaled = 128.0 + (depth[valid] - median) * (127.0 / depth_range)
        out[valid] = np.clip(np.rint(scaled), 1, 255).astype(np.uint8)
    return out


def _plane(path: Path, kind: str, cfg: PreprocessConfig) -> np.ndarray:
    levels = read_levels(path, cfg.max_pixels)
    if kind == "depth":
        return normalise_depth(levels, cfg.depth_range)
    top = float(levels.max()) if levels.size else 0.0
    scale = 255.0 / top if top > 255.0 else 1.0  # 16-bit infrared to 8 bits
    return np.clip(np.rint(levels * scale), 0, 255).astype(np.uint8)


def load_face(path: str | Path, cfg: PreprocessConfig) -> np.ndarray:
    """The face input ``cfg.face_channels`` asks for, uint8 (H, W) or (H, W, C).

    Colour comes as stored (gray or RGB; the Preprocessor converts between them); a spec with
    depth or infrared needs the companion file, and DatasetError names the file it looked for.
    """
    path = Path(path)
    spec = cfg.face_channels
    channel_count(spec)
    files = companions(path)
    registered = path.with_name(_COLOUR_SUFFIX.sub("", path.stem) + "_rgb_registered.png")
    if "depth" in FACE_CHANNELS[spec] and registered.is_file():
        files["colour"] = registered  # the colour that lies pixel on pixel over the depth
    planes: list[np.ndarray] = []
    if spec in ("gray", "rgb", "rgbd"):
        if "colour" not in files:
            raise DatasetError(f"face image {path} not found; check the path")
        colour = load_image(files["colour"], cfg.max_pixels)
        if spec != "rgbd":
            return colour
        planes = [colour if colour.ndim == 3 else np.repeat(colour[:, :, None], 3, axis=2)]
        planes[0] = planes[0][:, :, :3]
    for kind in ("depth", "ir"):
        if kind in FACE_CHANNELS[spec]:
            if kind not in files:
                stem = _COLOUR_SUFFIX.sub("", _COMPANION_SUFFIX.sub("", path.stem))
                raise DatasetError(
                    f"{path}: the model takes {spec} but its {kind} file "
                    f"{path.with_name(f'{stem}_{kind}.png')} is missing; give the {kind} image "
                    "beside the colour one")
            planes.append(_plane(files[kind], kind, cfg)[:, :, None])
    shapes = {p.shape[:2] for p in planes}
    if len(shapes) > 1:
        raise DatasetError(f"{path}: its colour, depth and infrared images differ in size "
                           f"({', '.join(f'{w}x{h}' for h, w in sorted(shapes))}); they must be "
                           "registered pixel to pixel")
    out = np.concatenate(planes, axis=2)
    return out[:, :, 0] if out.shape[2] == 1 else out


__all__ = ["FACE_CHANNELS", "channel_count", "companions", "load_face", "normalise_depth",
           "read_levels"]
