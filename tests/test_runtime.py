"""Embedder and Gallery on a tiny exported model; the runtime's independence from torch.

The model is a hand-built orientation-energy tower (a bank of 8 oriented Gabor filters): stripe
images at one angle all map to nearly the same signature and stripes 60 degrees apart to very
different ones, so enroll/verify/identify decisions are deterministic without any training.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from siamid.calibration import legacy_calibration
from siamid.config import PreprocessConfig
from siamid.errors import (
    ConfigError,
    ModelError,
    ModelMismatchError,
    NotEnrolledError,
    QualityError,
    TemplateError,
)
from siamid.exporting import export_onnx
from siamid.runtime import Embedder, Gallery, default_model_path
from siamid.store import TemplateStore
from siamid.types import ModelCard, Template

SIZE = 64
THRESHOLD = 0.5  # genuine distances here are ~0.1-0.2, impostor ones > 1.2
IMPOSTOR = (0.2, 0.4, 0.6, 0.8, 1.0)


class GaborTower(nn.Module):
    """(N, 1, 64, 64) -> (N, 8): mean energy of 8 oriented filters, centred, L2-normalised."""

    architecture = "gabor"
    embedding_size = 8
    input_size = (SIZE, SIZE)
    in_channels = 1

    def __init__(self, wavelength: float = 4.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 7, padding=3, bias=False)
        self.fc = nn.Linear(8, 8)
        y, x = np.mgrid[-3:4, -3:4].astype(np.float64)
        kernels = []
        for i in range(8):
            u = x * np.cos(np.pi * i / 8) + y * np.sin(np.pi * i / 8)
            k = np.exp(-(x**2 + y**2) / 8.0) * np.cos(2 * np.pi * u / wavelength)
            k -= k.mean()
            kernels.append(k / np.abs(k).sum())
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(np.stack(kernels)[:, None], dtype=torch.float32))
            self.fc.weight.copy_(torch.eye(8) - 1.0 / 8.0)  # centring: contrast between orientations
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        energy = self.conv(x)
        return F.normalize(self.fc((energy * energy).mean((2, 3))), dim=1)


def stripes(angle: float, phase: float = 0.0, seed: int = 0, n: int = 192) -> np.ndarray:
    """A fingerprint-like uint8 image: parallel ridges, 12 px period, a little noise."""
    y, x = np.mgrid[0:n, 0:n]
    t = np.deg2rad(angle)
    v = 0.5 + 0.4 * np.sin(2 * np.pi * (x * np.cos(t) + y * np.sin(t)) / 12.0 + phase)
    v = v + np.random.default_rng(seed).normal(0, 0.05, v.shape)
    return (np.clip(v, 0, 1) * 255).astype(np.uint8)


DARK = np.full((192, 192), 5, np.uint8)
NOISE = np.random.default_rng(7).integers(0, 256, (192, 192)).astype(np.uint8)


def _export(tower: nn.Module, out, impostor=IMPOSTOR) -> ModelCard:
    card = ModelCard(
        model_id="",
        architecture=tower.architecture,
        embedding_size=tower.embedding_size,
        input_size=tower.input_size,
        channels=tower.in_channels,
        preprocess=dataclasses.asdict(PreprocessConfig(size=SIZE)),
        threshold=1.9,  # deliberately loose: tests pass THRESHOLD as the override
        threshold_fmr=0.01,
        calibration=legacy_calibration(1.9, 0.01, impostor, {}) if impostor else {},
    )
    return export_onnx(tower.eval(), card, out).fp32_path


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return _export(GaborTower(), tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def embedder(model_path):
    return Embedder(model_path)


@pytest.fixture
def gallery(embedder, tmp_path):
    store = TemplateStore(tmp_path / "gallery.db", key=None, create=True)
    yield Gallery(embedder, store, threshold=THRESHOLD)
    store.close()


def _enroll_three(gallery: Gallery) -> None:
    for name, angle in [("alice", 0), ("bob", 60), ("carol", 120)]:
        images = [stripes(angle + d, phase=i, seed=i) for i, d in enumerate([-3, 0, 3])]
        gallery.enroll(name, images)


# -- Embedder ------------------------------------------------------------------------------------


def test_embedder_reads_everything_from_the_card(embedder, model_path):
    assert embedder.model_id.startswith("gabor-") and embedder.path == model_path
    assert embedder.preprocess_config == PreprocessConfig(size=SIZE)
    assert embedder.threshold == 1.9 and embedder.embedding_size == 8


def test_embed_shapes_and_consistency(embedder):
    images = [stripes(0), stripes(60, seed=1), stripes(120, seed=2)]
    sigs = embedder.embed(images)
    assert sigs.shape == (3, 8) and sigs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(sigs, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(embedder.embed_one(images[1]), sigs[1], atol=1e-6)
    assert embedder.embed([]).shape == (0, 8)
    # The same input through prepare + the torch tower gives the same signature.
    x = np.stack([embedder.prepare(im) for im in images])
    assert x.shape == (3, 1, SIZE, SIZE)
    with torch.no_grad():
        want = GaborTower().eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(sigs, want, atol=1e-4)


def test_embed_batches_larger_than_one_call(embedder):
    # 70 inputs cross the 64-per-call chunking; chunked output must equal per-item output.
    x = np.stack([embedder.prepare(stripes(a * 5, seed=a)) for a in range(10)] * 7)
    whole = embedder.embed_prepared(x)
    assert whole.shape == (70, 8)
    np.testing.assert_allclose(whole[65], embedder.embed_prepared(x[65:66])[0], atol=1e-6)
    with pytest.raises(ModelError, match="expects"):
        embedder.embed_prepared(np.zeros((2, 1, 32, 32), np.float32))


def test_prepare_rejects_poor_quality(embedder):
    with pytest.raises(QualityError, match="too dark") as info:
        embedder.prepare(DARK)
    assert info.value.reason.startswith("too dark")
    with pytest.raises(QualityError, match="no ridge pattern"):
        embedder.embed([stripes(0), NOISE])
    # check=False skips the verdict (for callers that already checked, or that want raw output).
    assert embedder.embed_one(NOISE, check=False).shape == (8,)


def test_fmr_estimate(embedder, tmp_path):
    # Impostor distances (0.2, 0.4, 0.6, 0.8, 1.0): the fraction at or below each distance.
    fmr = embedder.calibration.fmr_estimate
    assert fmr(0.1) == 0.0
    assert fmr(0.4) == pytest.approx(2 / 5)
    assert fmr(0.5) == pytest.approx(2 / 5)
    assert fmr(0.95) == pytest.approx(4 / 5)
    assert fmr(1.5) == 1.0
    bare = Embedder(_export(GaborTower(wavelength=5.0), tmp_path, impostor=()))
    assert bare.calibration.fmr_estimate(0.3) is None


def test_missing_models(tmp_path, monkeypatch):
    with pytest.raises(ModelError, match="not found"):
        Embedder(tmp_path / "nope.onnx")
    assert default_model_path().name == "default.onnx"
    assert default_model_path().parent.name == "models"
    monkeypatch.setattr("siamid.runtime.default_model_path", lambda: tmp_path / "default.onnx")
    with pytest.raises(ModelError, match="default.onnx not found"):
        Embedder()


# -- Gallery -------------------------------------------------------------------------------------


def test_enroll_verify(gallery):
    _enroll_three(gallery)
    assert gallery.store.subjects() == ["alice", "bob", "carol"]
    genuine = gallery.verify("alice", stripes(1, phase=2.5, seed=11))
    assert genuine.accepted and genuine.subject == "alice"
    assert genuine.distance < 0.3 and genuine.threshold == THRESHOLD
    assert genuine.fmr_estimate == pytest.approx(sum(d <= genuine.distance for d in IMPOSTOR) / 5)
    impostor = gallery.verify("alice", stripes(61, phase=1.0, seed=12))
    assert not impostor.accepted and impostor.distance > 1.0
    assert impostor.fmr_estimate == 1.0
    with pytest.raises(NotEnrolledError, match="dave"):
        gallery.verify("dave", stripes(0))


def test_verify_rules_by_hand(gallery, embedder):
    # A template with known signatures; the distances are computed here by hand.
    probe_image = stripes(0, seed=3)
    probe = embedder.embed_one(probe_image)
    e = np.eye(8, dtype=np.float32)
    sigs = np.stack([e[0], e[1], -probe])
    gallery.store.put(Template("zed", embedder.model_id, sigs))
    want_min = min(np.linalg.norm(probe - s) for s in sigs)
    mean = sigs.mean(axis=0)
    want_mean = np.linalg.norm(probe - mean / np.linalg.norm(mean))
    assert gallery.verify("zed", probe_image, rule="min").distance == pytest.approx(want_min, abs=1e-5)
    assert gallery.verify("zed", probe_image, rule="mean").distance == pytest.approx(
        want_mean, abs=1e-5
    )
    assert want_min != pytest.approx(want_mean, abs=1e-3)  # the rules really differ here
    with pytest.raises(ConfigError, match="median"):
        gallery.verify("zed", probe_image, rule="median")


def test_identify(gallery):
    _enroll_three(gallery)
    results = gallery.identify(stripes(122, phase=0.7, seed=21), top_k=2)
    assert [r.subject for r in results][0] == "carol" and len(results) == 2
    assert results[0].accepted and not results[1].accepted
    assert results[0].distance <= results[1].distance
    everyone = gallery.identify(stripes(122, phase=0.7, seed=21), rule="mean", top_k=10)
    assert [r.subject for r in everyone][0] == "carol" and len(everyone) == 3
    assert [r.distance for r in everyone] == sorted(r.distance for r in everyone)
    stranger = gallery.identify(stripes(90, seed=22))
    assert not any(r.accepted for r in stranger)
    with pytest.raises(ConfigError, match="top_k"):
        gallery.identify(stripes(0), top_k=0)


def test_identify_empty_gallery(gallery):
    assert gallery.identify(stripes(0)) == []


def test_threshold_from_card_and_override(embedder, tmp_path):
    with TemplateStore(tmp_path / "g.db", create=True) as store:
        assert Gallery(embedder, store).threshold == 1.9
        assert Gallery(embedder, store, threshold=0.25).threshold == 0.25
        with pytest.raises(ConfigError, match="threshold"):
            Gallery(embedder, store, threshold=-1.0)


def test_enroll_rejects_poor_images_with_reasons(gallery):
    images = [stripes(0, seed=1), DARK, stripes(1, seed=2), NOISE, stripes(-1, seed=3)]
    result = gallery.enroll("alice", images)
    assert result.accepted == [0, 2, 4]
    assert [i for i, _ in result.rejected] == [1, 3]
    assert result.rejected[0][1].startswith("too dark")
    assert result.rejected[1][1].startswith("no ridge pattern")
    assert result.template.signatures.shape == (3, 8)
    sigs = result.template.signatures
    spread = max(np.linalg.norm(a - b) for a in sigs for b in sigs)
    assert result.spread == pytest.approx(spread, abs=1e-6) and 0 < result.spread < THRESHOLD
    np.testing.assert_array_equal(gallery.store.get("alice").signatures, sigs)


def test_enroll_fails_with_too_few_good_images(gallery):
    with pytest.raises(QualityError, match="1 of 3 images passed") as info:
        gallery.enroll("bob", [stripes(60), DARK, NOISE])
    assert "image 1: too dark" in str(info.value) and "image 2: no ridge pattern" in str(info.value)
    assert "bob" not in gallery.store  # nothing half-enrolled
    result = gallery.enroll("bob", [stripes(60), DARK], min_images=1)
    assert result.accepted == [0]


def test_enroll_replace(gallery):
    gallery.enroll("alice", [stripes(0, seed=i) for i in range(3)])
    with pytest.raises(TemplateError, match="already enrolled"):
        gallery.enroll("alice", [stripes(60, seed=i) for i in range(3)])
    assert gallery.verify("alice", stripes(0, seed=9)).accepted  # the old template is intact
    gallery.enroll("alice", [stripes(60, seed=i) for i in range(4)], replace=True)
    assert gallery.store.get("alice").signatures.shape == (4, 8)
    assert gallery.verify("alice", stripes(60, seed=9)).accepted
    assert not gallery.verify("alice", stripes(0, seed=9)).accepted


def test_template_of_another_model_is_refused(gallery, embedder):
    other = "gabor-0123456789ab"
    gallery.store.put(Template("eve", other, np.eye(8, dtype=np.float32)[:3]))
    with pytest.raises(ModelMismatchError) as info:
        gallery.verify("eve", stripes(0))
    message = str(info.value)
    assert other in message and embedder.model_id in message and "re-enroll" in message
    with pytest.raises(ModelMismatchError, match=other):
        gallery.identify(stripes(0))
    # ModelMismatchError is also a TemplateError and a ModelError, so either handler catches it.
    assert isinstance(info.value, TemplateError) and isinstance(info.value, ModelError)


def test_encrypted_gallery_end_to_end(embedder, tmp_path):
    from siamid.store import new_key

    key = new_key()
    with TemplateStore(tmp_path / "g.db", key=key, create=True) as store:
        Gallery(embedder, store, threshold=THRESHOLD).enroll(
            "alice", [stripes(0, seed=i) for i in range(3)]
        )
    with TemplateStore(tmp_path / "g.db", key=key) as store:
        assert Gallery(embedder, store, threshold=THRESHOLD).verify("alice", stripes(2)).accepted


# -- the runtime layer never needs torch -----------------------------------------------------------

_TORCH_FREE = """
import sys, json
for name in ("torch", "onnx", "matplotlib"):
    sys.modules[name] = None  # any import of these now raises ImportError
import numpy as np
import siamid.runtime as rt
e = rt.Embedder(sys.argv[1])
image = np.frombuffer(bytes.fromhex(sys.argv[2]), np.uint8).reshape(192, 192)
print(json.dumps(e.embed_one(image).tolist()))
"""


def test_runtime_works_without_torch(model_path, embedder):
    image = stripes(30, seed=5)
    proc = subprocess.run(
        [sys.executable, "-c", _TORCH_FREE, str(model_path), image.tobytes().hex()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    got = np.array(json.loads(proc.stdout.strip().splitlines()[-1]), np.float32)
    np.testing.assert_allclose(got, embedder.embed_one(image), atol=1e-6)


def test_blocking_torch_really_blocks():
    # Guards the test above: with the same trick, importing torch must fail.
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['torch'] = None; import torch"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr


def test_decisions_use_the_cards_threshold_for_the_template_size(model_path, tmp_path):
    from siamid.cardfile import write_card
    from siamid.runtime import read_card

    sized = tmp_path / "sized.onnx"
    sized.write_bytes(model_path.read_bytes())
    write_card(sized, read_card(model_path).with_changes(calibration=legacy_calibration(
        1.9, 0.01, IMPOSTOR, {"2": 0.9, "3": 0.7, "5": 0.6})))
    store = TemplateStore(tmp_path / "g.db", key=None, create=True)
    gallery = Gallery(Embedder(sized), store)
    assert [gallery.threshold_for(k) for k in (1, 2, 3, 4, 5, 9)] == [1.9, 0.9, 0.7, 0.7, 0.6, 0.6]
    assert gallery.threshold_for(3, rule="mean") == 1.9  # calibrated for min only
    gallery.enroll("alice", [stripes(d, phase=i, seed=i) for i, d in enumerate([-3, 0, 3])])
    result = gallery.verify("alice", stripes(60, seed=9))
    assert result.threshold == 0.7 and result.accepted == (result.distance < 0.7)
    (best,) = gallery.identify(stripes(60, seed=9), top_k=1)
    assert best.threshold == 0.7
    fixed = Gallery(Embedder(sized), store, threshold=THRESHOLD)
    assert fixed.threshold_for(3) == THRESHOLD  # an explicit threshold wins for every size
    assert fixed.verify("alice", stripes(60, seed=9)).threshold == THRESHOLD
    store.close()


# -- enrollment checks its images are one finger, each given once ---------------------------------


@pytest.fixture(scope="module")
def shipped():
    """The shipped model, with synthetic fingers from the real generator (deterministic)."""
    from siamid.synth import generate_finger

    # finger 1 is one whose three impressions the shipped model enrolls; 2 and 3 are others
    fingers = {k: generate_finger(seed=1, impressions=3, index=i)[1]
               for k, i in ((1, 6), (2, 2), (3, 3))}
    return Embedder(), fingers


@pytest.fixture
def shipped_gallery(shipped, tmp_path):
    store = TemplateStore(tmp_path / "shipped.db", key=None, create=True)
    yield Gallery(shipped[0], store), shipped[1]
    store.close()


def test_enroll_genuine_images_reports_spread_and_threshold(shipped_gallery):
    gallery, fingers = shipped_gallery
    result = gallery.enroll("alice", fingers[1])
    assert result.threshold == gallery.embedder.calibration.enrollment_threshold()
    assert result.threshold >= gallery.threshold_for(1)
    sigs = result.template.signatures
    assert result.spread == pytest.approx(max(np.linalg.norm(a - b) for a in sigs for b in sigs))
    assert 0 < result.spread < 1.0 and "alice" in gallery.store


def test_enroll_refuses_images_of_different_fingers(shipped_gallery):
    gallery, fingers = shipped_gallery
    with pytest.raises(QualityError, match="not of one finger \\(or face\\)") as info:
        gallery.enroll("mixed", [fingers[1][0], fingers[2][0], fingers[3][0]])
    message = str(info.value)
    assert "images 0, 1, 2 match none of the others" in message
    threshold = gallery.embedder.calibration.enrollment_threshold()
    assert f"{threshold:.4f}" in message and "distances" in message
    assert "mixed" not in gallery.store


def test_enroll_names_the_one_image_that_does_not_match(shipped_gallery):
    gallery, fingers = shipped_gallery
    with pytest.raises(QualityError, match="image 2 matches none of the others") as info:
        gallery.enroll("odd", [fingers[1][0], fingers[1][1], fingers[3][0]])
    assert "image 0" not in str(info.value).split("match none")[0]
    assert "odd" not in gallery.store


def test_enroll_refuses_the_same_image_given_twice(shipped_gallery):
    gallery, fingers = shipped_gallery
    image = fingers[1][0]
    with pytest.raises(QualityError, match="same image given twice") as info:
        gallery.enroll("copy", [image, image, image])
    assert "images 0 and 1" in str(info.value)
    # A copy with the same pixels is the same image too, even among other good images.
    with pytest.raises(QualityError, match=r"images 1 and 3 are the same image given twice"):
        gallery.enroll("copy", [fingers[1][0], fingers[1][1], fingers[1][2], fingers[1][1].copy()])
    assert "copy" not in gallery.store
    # One image is enough where asked for: there is nothing to compare it with.
    assert gallery.enroll("single", [image], min_images=1).spread == 0.0


def test_unmatched_images_names_each_image_no_other_comes_close_to():
    from siamid.runtime import unmatched_images

    d = np.array([[0.0, 0.2, 0.9], [0.2, 0.0, 0.8], [0.9, 0.8, 0.0]])
    assert unmatched_images(d, 0.5) == [2]
    assert unmatched_images(d, 0.1) == [0, 1, 2]
    assert unmatched_images(d, 0.85) == []
    assert unmatched_images(np.zeros((1, 1)), 0.5) == []  # one image has nothing to agree with


def test_enrollment_records_each_image_pose(gallery, tmp_path):
    images = [stripes(30 + d, phase=i, seed=i) for i, d in enumerate([-3, 0, 3])]
    result = gallery.enroll("dana", images, poses=["front", "left", "right"])
    assert [o.pose for o in result.template.origins] == ["front", "left", "right"]
    stored = gallery.store.get("dana")
    assert [o.pose for o in stored.origins] == ["front", "left", "right"]
    [entry] = [e for e in gallery.store.entries() if e.subject == "dana"]
    assert entry.poses == ("front", "left", "right")
    # Without poses nothing is recorded; a count that does not match the images is refused.
    assert all(o.pose is None for o in gallery.enroll("eve", images).template.origins)
    with pytest.raises(ConfigError, match="2 poses for 3 images"):
        gallery.enroll("fay", images, poses=["front", "left"])
    assert "fay" not in gallery.store
