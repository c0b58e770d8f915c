"""Typed, frozen configuration: the one home of defaults.

A TOML file maps onto ``Config`` section by section (``[data]``, ``[preprocess]``, ``[train]``,
``[train.augment]``); an unknown key is an error naming the key and the file. ``save_config``
writes the resolved config (every default filled in) into a run folder.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class PreprocessConfig:
    """How a raw image becomes a network input, and when it is refused. Travels in the ModelCard.

    Order: size limits (before any work), to gray/channels, resample to ``target_dpi``, crop
    ``crop`` x ``crop`` pixels (the R503 window is 192x192 at ~500 dpi) centred on the
    foreground, contrast balance, local normalisation (when ``local_window`` > 0), ridge
    enhancement (when ``enhance``), sharpen,
    resize to ``size`` x ``size``, round to 8 bits: the network input is uint8 (C, size, size),
    fed as ``k / 255`` in float32 at training and at run time alike. Quality scores come from
    the cropped image (mean, contrast) and the cropped, balanced image (the rest), or from a
    ``quality_crop`` window placed the same way.

    Every number that changes the network input or the verdict is a field here, so the card
    carries all of it. Defaults are the values every model so far was trained with: a card
    exported before a field existed lacks its key and loads with exactly that behaviour. Pixel
    counts (``block``, ``crop``, ``quality_crop``, ``local_window``, ``min_side``, ``max_side``) are at
    ``target_dpi``; levels and scores are fractions of full scale (0..1).
    """

    target_dpi: int = 500
    # Images within this relative dpi difference of target_dpi are not resampled (interpolation
    # would only blur them).
    resample_tolerance: float = 0.02
    crop: int = 192
    size: int = 96
    # The quality verdict judges a quality_crop x quality_crop window, centred on the finger as
    # a crop of that size would be (0: the crop itself). A crop wider than the sensor's image is
    # mostly padding or background around the finger; judging a sensor-sized window keeps the
    # verdict (and the thresholds below) what they are for a 192-pixel crop.
    quality_crop: int = 0
    channels: int = 1
    center_on_foreground: bool = True
    # Alignment: centre the crop on the finger's core (siamid/align.py) where one is found,
    # on the foreground's centroid otherwise. Needs center_on_foreground.
    center_on_core: bool = False
    # Alignment of direction: turn the image about the core, before the crop, so that the
    # core's direction (siamid/align.py core_pose) points straight down as an upright finger's
    # does; not when that takes more than max_core_rotation degrees (an estimate that far off is
    # more likely wrong than the finger), nor when no core is found or it responds with less than
    # core_direction_strength of a perfect core (an arch's apex: a place, no direction). Needs
    # center_on_core.
    rotate_to_core: bool = False
    max_core_rotation: float = 45.0
    core_direction_strength: float = 0.6
    # Side of the square blocks that measure ridge contrast: about two ridge periods at 500 dpi.
    # The window of the foreground mask, the ridge-area blocks and the coherence window.
    block: int = 16
    # Foreground (ridge) pixels for centring the crop: local std over one block above this
    # fraction of the image's gray spread, the spread being between its foreground_quantile
    # and 1 - foreground_quantile quantiles.
    foreground_contrast: float = 0.15
    foreground_quantile: float = 0.05
    # Centre on the foreground only when it covers at least this fraction of the image;
    # otherwise (a blank or nearly blank image) centre on the image.
    min_foreground: float = 0.02
    # Pad the crop where it leaves the image with this quantile of the image: fingerprint
    # background is light, and padding must not look like ridges.
    pad_quantile: float = 0.9
    balance: bool = True
    balance_border: int = 8          # pixels ignored at each edge when finding dark/light levels
    balance_low: float = 0.02        # quantile taken as black
    balance_high: float = 0.98       # quantile taken as white
    local_window: int = 0            # local normalisation window (pixels at target_dpi); 0 disables
    # Local normalisation: out = 0.5 + local_gain * (pixel - local mean) / max(local std,
    # local_std_floor); the floor keeps flat background flat gray instead of amplified noise.
    local_gain: float = 0.2
    local_std_floor: float = 0.05
    # Ridge enhancement (siamid/enhance.py), after local normalisation, when ``enhance``:
    # oriented even Gabor filtering at the ridge period, integer kernels, background mid gray.
    enhance: bool = False
    enhance_period: float = 9.0      # ridge period in pixels at target_dpi (about 0.46 mm)
    enhance_sigma: float = 4.0       # gaussian envelope of the Gabor kernels, pixels
    enhance_angles: int = 8          # kernels in the bank, evenly spaced over 180 degrees
    enhance_orient_sigma: float = 6.0  # smoothing of the structure tensor (orientation field)
    enhance_scale_quantile: float = 0.95  # this quantile of |response| maps to full contrast
    enhance_binarise: bool = False   # ridges 0, valleys 1, background 0.5
    sharpen_amount: int = 1          # out = orig + (orig - blur) * amount; 0 disables
    # Quality scores.
    ridge_std: float = 0.12          # a block is "ridge" when its balanced std exceeds this
    quality_sigma: float = 1.0       # gaussian smoothing (pixels) before the sharpness Laplacian
                                     # and the coherence gradients: ignores pixel noise
    contrast_quantile: float = 0.02  # contrast = spread between this and 1 - this quantile
    # Quality limits (fractions of full scale unless noted).
    min_mean: float = 0.08           # mean gray of raw crop: darker is "too dark"
    max_mean: float = 0.96           # lighter is "too light" (no finger)
    min_contrast: float = 0.04       # contrast at or below this is "flat" (and has no ridges)
    min_sharpness: float = 0.010     # mean |Laplacian| of the balanced crop, 0..1 scale
    min_ridge_area: float = 0.25     # fraction of the crop covered by ridges
    min_center_ridge_area: float = 0.40  # the same in the central half
    min_coherence: float = 0.25      # ridge orientation coherence; noise and smudges score low
    # Input size limits, checked before any work. Sides are pixels at target_dpi (scaled to the
    # image's own dpi): 64 px is 3 mm, too small for any sensor (an R503 window is 192; FVC
    # images are up to 640x480); 2048 px is 10 cm, more than a four-finger slap. max_pixels
    # caps the raw image whatever its dpi (memory and time), and is what ``load_image`` refuses
    # from a file's header before decoding it.
    min_side: int = 64
    max_side: int = 2048
    max_pixels: int = 4096 * 4096
    # Faces (``modality = "face"``, siamid/faces): the fingerprint stages above (resample, crop
    # on the finger, balance per channel, enhancement, sharpening) and their quality checks do
    # not run. A face image is read with the channels ``face_channels`` names (``channels`` must
    # be their count: gray 1, rgb 3, depth 1, ir 1, rgbd 4), cropped to the face (found by
    # OpenCV's Haar cascade when ``face_detect``, the whole image otherwise), padded to a square,
    # its colour planes balanced between the balance_low/balance_high quantiles, resized to
    # size x size. Depth is relative: the face's median depth is mid-gray, +-depth_range depth
    # units (the file's own) span the whole range, background (no depth) is 0. Quality: min_mean
    # and max_mean judge the face's gray level; the checks below say no face, several faces,
    # depth missing and depth flat.
    modality: str = "finger"         # finger | face
    face_channels: str = "gray"      # gray | rgb | depth | ir | rgbd
    face_detect: bool = False        # find the face and crop to it (images that are not crops)
    face_margin: float = 0.2         # margin around a detected face, fraction of its side
    min_face_side: int = 48          # smallest face the detector reports, pixels
    depth_range: float = 32.0        # depth units from the face's median to full scale
    min_depth_area: float = 0.1      # less of the crop with depth is "depth missing"
    # Liveness from depth: the spread (std, 0..1 scale) of the face's relative depth around the
    # plane that fits it best. A head has a nose, cheeks and shoulders (0.055 or more on every
    # RAP3DF capture); a photo or screen is a plane, flat or tilted (0.001 or less): "depth flat".
    min_depth_relief: float = 0.02
    # Integer preprocessing (siamid/fixedpoint.py, docs/firmware.md): every stage on 8-bit
    # images with integer arithmetic and explicit rounding, the definition the firmware's C
    # reference (siamid/firmware) runs bit for bit. Images must come at target_dpi (no
    # resampler), one gray channel; no core centring, local normalisation or enhancement.
    integer: bool = False


@dataclass(frozen=True)
class DataConfig:
    """Where the images are and how to split them (by subject)."""

    root: str | list[str] = ""      # one folder, or a list of folders merged into one dataset
    format: str = "auto"             # auto or one of siamid.dataset.FORMATS
    dpi: int = 0                     # 0 = the adapter's default for the format
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation of training images only (network-input pixels); the defaults suit
    fingerprints, a face recipe sets ``partial_contact = 0``, ``pad = 0`` and ``flip``."""

    rotation_deg: float = 20.0
    translate: float = 0.08          # fraction of the side
    scale: float = 0.0               # zoom by up to 1 +- scale (faces: framing varies)
    partial_contact: float = 0.3     # probability of blanking a side band (finger partly off)
    contrast: float = 0.25           # +- gain jitter
    noise: float = 0.05              # gaussian sigma, 0..1 scale
    # What rotation and translation uncover: 1.0 (white) is fingerprint background, 0.0 the
    # removed background of a face crop.
    pad: float = 1.0
    flip: float = 0.0                # probability of a left-right mirror (faces, not fingers)


@dataclass(frozen=True)
class TrainConfig:
    """What to train and how long."""

    tower: str = "small_pool"        # tiny | small | small_pool | medium (see siamid.nets)
    embedding_size: int = 32
    loss: str = "triplet"            # triplet | contrastive | cosface | arcface
    margin: float = 0.0              # 0 = the loss's default (contrastive 1.0, triplet 0.3,
                                     # cosface 0.35, arcface 0.5 radians)
    scale: float = 30.0              # cosface / arcface: logit scale
    mining: str = "all"              # triplet mining: all (batch-all) | semi_hard | batch_hard
    epochs: int = 20
    steps_per_epoch: int = 50
    identities_per_batch: int = 16
    samples_per_identity: int = 4
    lr: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 5                # epochs without a better validation EER before stopping
    target_fmr: float = 0.01         # the threshold is chosen at this FMR on the validation split
    # The protocol whose validation EER picks the best epoch (fvc, all, enrollK): FVC's 45
    # impostor pairs per 10 identities are few on a small validation split (faces: use all).
    val_protocol: str = "fvc"
    seed: int = 0
    threads: int = 0                 # torch threads; 0 = all cores
    init: str = ""                   # fine-tune: a run folder (its best.pt) or a .pt file of the same tower
    # Also train on each training image as these sensors would deliver it (comma-separated
    # siamid.scoring.VIEWS names, e.g. "r503"): extra copies with the same finger labels, so the
    # tower learns to match whole prints and sensor windows alike. Validation stays as stored.
    sensor_views: str = ""
    # Faces with depth: also train on photo attacks of every training image (comma-separated
    # siamid.faces.attacks.ATTACKS kinds, e.g. "flat,tilted"): the real colour over fake depth,
    # each person's attacks an identity of their own, so the tower learns that a photo of a
    # person is not that person.
    face_attacks: str = ""
    # Owner-vs-others training (siamid/owner.py): the subject whose photos are the only triplet
    # anchors, in every batch; owner_holdout of their images are kept out for the owner's numbers.
    owner: str = ""
    owner_holdout: float = 0.34
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass(frozen=True)
class Config:
    """A whole run: data, preprocessing, training."""

    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _coerce(value: Any, kind: Any, where: str) -> Any:
    """Check ``value`` against the annotated ``kind``; build nested dataclasses from tables."""
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return from_dict(kind, value, where)
    origin = typing.get_origin(kind)
    if origin in (types.UnionType, typing.Union):  # only `root`: a string or a list of strings
        if isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            return value
        raise ConfigError(f"{where}: expected a string or a list of strings, got {value!r}")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (int, float, str, bool) and (
        not isinstance(value, kind) or (kind is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")
    return value


def from_dict(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    """Build the frozen dataclass ``cls`` from a dict, refusing unknown keys."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r} (known keys: {', '.join(sorted(names))})"
        )
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain nested dicts (TOML/JSON-ready)."""
    return dataclasses.asdict(config)


def load_config(path: str | Path) -> Config:
    """Read a TOML run config; every missing key takes its default."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return from_dict(Config, data, str(path))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def dumps_config(config: Config) -> str:
    """The resolved config as TOML text (tomllib reads it back to an equal Config)."""
    lines: list[str] = []

    def table(name: str, data: dict[str, Any]) -> None:
        lines.append(f"[{name}]")
        nested = {k: v for k, v in data.items() if isinstance(v, dict)}
        for key, value in data.items():
            if key not in nested:
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
        for key, value in nested.items():
            table(f"{name}.{key}", value)

    for section, data in to_dict(config).items():
        table(section, data)
    return "\n".join(lines)


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config to ``path`` as TOML."""
    Path(path).write_text(dumps_config(config))
