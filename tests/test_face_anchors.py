"""The face benchmark's anchors (bench/face_anchors.py): OpenCV LBPH distances on synthetic
images, and dlib's face embedding on real RAP3DF captures where its optional packages and the
shared data are present."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fa():
    sys.path.insert(0, str(ROOT))
    spec = importlib.util.spec_from_file_location("bench.face_anchors", ROOT / "bench" / "face_anchors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cv2_face():
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "face"):
        pytest.skip("cv2.face needs opencv-contrib-python(-headless)")
    return cv2


def _smooth_images(n: int, shape=(72, 64), seed: int = 0) -> list[np.ndarray]:
    """Blurred noise: face-sized gray images with structure for the local binary patterns."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.normal(size=shape)
        for axis in (0, 1):
            x = (np.roll(x, 1, axis) + x + np.roll(x, -1, axis)) / 3
            x = (np.roll(x, 2, axis) + x + np.roll(x, -2, axis)) / 3
        x = (x - x.min()) / (x.max() - x.min())
        out.append((x * 255).astype(np.uint8))
    return out


def test_lbph_matrix_is_lbph_predict_confidence(fa, cv2_face):
    base = _smooth_images(3)
    rng = np.random.default_rng(1)
    noisy = np.clip(base[0] + rng.normal(0, 4, base[0].shape), 0, 255).astype(np.uint8)
    images = [*base, noisy]
    d = fa.lbph_distances(images)
    assert d.shape == (4, 4) and d.dtype == np.float64
    assert np.array_equal(d, d.T)
    assert np.all(np.diag(d) == 0) and np.all(d[~np.eye(4, dtype=bool)] > 0)
    # The noisy copy of image 0 is nearer to it than the two other images are.
    assert d[0, 3] < min(d[0, 1], d[0, 2])
    for i, j in [(0, 1), (0, 3), (2, 1)]:
        recognizer = cv2_face.face.LBPHFaceRecognizer_create(radius=1, neighbors=8, grid_x=8, grid_y=8)
        recognizer.train([images[i]], np.array([7], dtype=np.int32))
        label, confidence = recognizer.predict(images[j])
        assert label == 7
        assert d[i, j] == pytest.approx(confidence, rel=1e-6)


def test_lbph_parameters_and_inputs(fa, cv2_face):
    images = _smooth_images(3, shape=(40, 48), seed=3)
    d = fa.lbph_distances(images, radius=2, neighbors=4, grid=(4, 5))
    recognizer = cv2_face.face.LBPHFaceRecognizer_create(radius=2, neighbors=4, grid_x=4, grid_y=5)
    recognizer.train([images[1]], np.array([0], dtype=np.int32))
    assert d[1, 2] == pytest.approx(recognizer.predict(images[2])[1], rel=1e-6)
    assert fa.lbph_histograms(images, radius=2, neighbors=4, grid=(4, 5)).shape == (3, 4 * 5 * 16)
    rgb = [np.stack([im] * 3, axis=-1) for im in images]  # RGB of gray is the same gray
    assert np.allclose(fa.lbph_distances(rgb, radius=2, neighbors=4, grid=(4, 5)), d)
    with pytest.raises(ValueError, match="one size"):
        fa.lbph_distances([images[0], images[0][:-1]])


def test_missing_dlib_names_the_make_target(fa, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(fa, "_face_recognition", None)
    monkeypatch.setattr(fa, "_import_error", None)
    monkeypatch.setattr(fa.importlib.util, "find_spec",
                        lambda name, *a: None if name == "dlib" else real_find_spec(name, *a))
    assert fa.dlib_available() is False
    with pytest.raises(ImportError, match="make bench-faces-deps"):
        fa.dlib_signatures([np.zeros((8, 8), np.uint8)])


def test_dlib_distances_are_euclidean(fa):
    sig = np.random.default_rng(0).normal(size=(5, 128)).astype(np.float32)
    d = fa.dlib_distances(sig)
    assert np.allclose(d, np.linalg.norm(sig[:, None] - sig[None], axis=-1), atol=1e-5)
    assert np.all(np.diag(d) == 0)


@pytest.fixture(scope="module")
def dlib_fa(fa):
    # A bare `import face_recognition` quits the interpreter where setuptools lacks pkg_resources;
    # dlib_available() imports it the way the benchmark does, after which importorskip is safe.
    if not fa.dlib_available():
        pytest.skip("dlib's face embedding not installed (make bench-faces-deps)")
    pytest.importorskip("face_recognition")
    return fa


def _rgb(path: Path) -> np.ndarray:
    from PIL import Image

    if not path.is_file():
        pytest.skip(f"{path} not found")
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_dlib_same_person_closer_than_another(dlib_fa, shared_data):
    rap = shared_data / "rap3df"
    a1 = _rgb(rap / "07RI3W42UF" / "front_1_rgb.png")
    a2 = _rgb(rap / "07RI3W42UF" / "down_1_rgb.png")
    b = _rgb(rap / "0Z2TD6A9JJ" / "front_1_rgb.png")
    sig = dlib_fa.dlib_signatures([a1, a2, b])
    assert sig.shape == (3, 128) and sig.dtype == np.float32
    d = dlib_fa.dlib_distances(sig)
    assert d[0, 1] < 0.6  # dlib's usual same-person threshold
    assert d[0, 1] < min(d[0, 2], d[1, 2])


def test_dlib_takes_gray_crops(dlib_fa, shared_data):
    from PIL import Image

    folder = shared_data / "extended_yale_b" / "yaleB01"
    paths = sorted(folder.glob("*.png"))[:1] if folder.is_dir() else []
    if not paths:
        pytest.skip(f"no images in {folder}")
    with Image.open(paths[0]) as im:
        gray = np.asarray(im.convert("L"))
    sig = dlib_fa.dlib_signatures([gray], locate="whole")
    assert sig.shape == (1, 128) and np.isfinite(sig).all()
    assert np.allclose(sig, dlib_fa.dlib_signatures([np.stack([gray] * 3, -1)], locate="whole"))
