"""siamid camera: video files of ORL faces stand in for a webcam (OpenCV reads both alike).

The accept/reject tests need the gray face model a camera uses, siamid/models/face_gray.onnx;
SIAMID_CAMERA_TEST_MODEL names another exported gray or rgb face model with face detection
(for example one trained briefly on ORL) and is used instead when set.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from siamid.camera import (
    FrameSource,
    camera_model_path,
    check_camera_model,
    enroll_from_frames,
    frame_to_image,
    save_frame,
    unlock_from_frames,
)
from siamid.cli.main import app
from siamid.config import PreprocessConfig
from siamid.errors import ModelError, QualityError
from siamid.runtime import Embedder, Gallery, default_model_path
from siamid.store import TemplateStore

cv2 = pytest.importorskip("cv2")

MODEL_VARIABLE = "SIAMID_CAMERA_TEST_MODEL"
# ORL persons (folders s<N>): A enrolls and unlocks, B is the stranger. Both have a face the
# detector finds in every take. The decision depends on the model; a tower trained briefly on ORL
# alone already tells these two apart.
PERSON_A, PERSON_B = 14, 18
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def face_model() -> Path:
    """The camera's face model (SIAMID_CAMERA_TEST_MODEL overrides); skips where missing."""
    override = os.environ.get(MODEL_VARIABLE)
    path = Path(override) if override else camera_model_path()
    if not path.is_file():
        pytest.skip(f"no face model for the camera tests: {path} is missing (export a gray "
                    f"face model there, or name one in {MODEL_VARIABLE})")
    return path


def write_video(path: Path, images: list[np.ndarray], repeat: int = 1) -> Path:
    """An MJPG .avi of gray or BGR images, each held for ``repeat`` frames."""
    height, width = images[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (width, height))
    if not writer.isOpened():
        pytest.skip("this OpenCV cannot write MJPG .avi files")
    for image in images:
        frame = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image
        for _ in range(repeat):
            writer.write(frame)
    writer.release()
    return path


def orl(shared_data: Path, person: int, takes) -> list[np.ndarray]:
    folder = shared_data / "orl_faces" / f"s{person}"
    if not folder.is_dir():
        pytest.skip(f"ORL faces not available at {folder}")
    return [cv2.imread(str(folder / f"{take}.pgm"), cv2.IMREAD_GRAYSCALE) for take in takes]


@pytest.fixture(scope="module")
def videos(shared_data, tmp_path_factory) -> dict[str, Path]:
    """A's enrollment video (takes 1-5, each held 3 frames), A's unlock video (takes 6-10),
    B's video (takes 1-10) and a video of an empty gray wall."""
    root = tmp_path_factory.mktemp("videos")
    return {
        "enroll_a": write_video(root / "enroll_a.avi", orl(shared_data, PERSON_A, range(1, 6)),
                                repeat=3),
        "unlock_a": write_video(root / "unlock_a.avi", orl(shared_data, PERSON_A, range(6, 11))),
        "b": write_video(root / "b.avi", orl(shared_data, PERSON_B, range(1, 11))),
        "wall": write_video(root / "wall.avi", [np.full((112, 92), 128, np.uint8)] * 12),
    }


def open_gallery(model: Path, path: Path) -> Gallery:
    return Gallery(Embedder(model), TemplateStore(path, create=True))


def test_enroll_looks_at_one_frame_in_every_and_unlock_tells_a_from_b(face_model, videos,
                                                                     tmp_path):
    gallery = open_gallery(face_model, tmp_path / "g.db")
    with FrameSource(videos["enroll_a"]) as frames:
        enrolled = enroll_from_frames(gallery, "alice", frames, count=5, every=3)
    # each take is held 3 frames: looking at one in 3 uses each take once, then stops
    assert enrolled.frames == [0, 3, 6, 9, 12]
    assert (enrolled.counts.read, enrolled.counts.looked, enrolled.counts.used) == (13, 5, 5)
    assert enrolled.enrolled.template.signatures.shape[0] == 5
    assert "alice" in gallery.store

    with FrameSource(videos["unlock_a"]) as frames:
        mine = unlock_from_frames(gallery, "alice", frames)
    assert mine.stopped == "accepted" and mine.accepted is not None
    assert mine.accepted.distance < mine.accepted.threshold
    with FrameSource(videos["b"]) as frames:
        other = unlock_from_frames(gallery, "alice", frames)
    assert other.stopped == "source ended" and other.accepted is None
    assert other.counts.read == 10 and other.attempts
    assert len(other.attempts) == other.counts.used == 10 - sum(other.counts.refused.values())
    assert not any(result.accepted for _, result in other.attempts)

    # the frame budget and the clock stop the loop before the video ends
    with FrameSource(videos["b"]) as frames:
        short = unlock_from_frames(gallery, "alice", frames, max_frames=3)
    assert short.stopped == "max frames" and short.counts.read == 3
    ticks = iter(range(100))
    with FrameSource(videos["b"]) as frames:
        timed = unlock_from_frames(gallery, "alice", frames, timeout=4.5,
                                   clock=lambda: float(next(ticks)))
    assert timed.stopped == "timeout" and timed.counts.read == 4  # seconds 1..4, then 5 >= 4.5
    gallery.store.close()


def test_failed_unlocks_lock_the_camera_out_and_an_accept_clears_them(face_model, videos,
                                                                       tmp_path):
    from siamid.lockout import Lockout, LockoutPolicy

    gallery = open_gallery(face_model, tmp_path / "g.db")
    with FrameSource(videos["enroll_a"]) as frames:
        enroll_from_frames(gallery, "alice", frames, count=5, every=3)
    now = [1000.0]
    lockout = Lockout(tmp_path / "g.lockout.json", LockoutPolicy(max_failures=2),
                      clock=lambda: now[0])

    def unlock(video: str):
        with FrameSource(videos[video]) as frames:
            return unlock_from_frames(gallery, "alice", frames, lockout=lockout)

    assert unlock("b").locked_for == 0 and lockout.failures_left == 1
    assert unlock("unlock_a").stopped == "accepted" and lockout.failures_left == 2
    assert unlock("b").locked_for == 0
    assert unlock("b").locked_for == 30.0  # the second failure in a row starts the lockout
    locked = unlock("unlock_a")  # even the owner waits, and no frame is read
    assert locked.stopped == "locked out" and locked.counts.read == 0 and not locked.attempts
    assert locked.locked_for == 30.0
    now[0] += 31
    assert unlock("unlock_a").stopped == "accepted"
    # a session with no usable face compares nothing and does not count
    with FrameSource(videos["wall"]) as frames:
        blank = unlock_from_frames(gallery, "alice", frames, lockout=lockout)
    assert not blank.attempts and lockout.failures_left == 2
    gallery.store.close()


def test_cli_enroll_then_unlock_exit_codes(face_model, videos, tmp_path):
    db, save = tmp_path / "g.db", tmp_path / "seen"
    res = invoke("camera", "enroll", "alice", "--gallery", db, "--model", face_model,
                 "--source", videos["enroll_a"], "--every", 3, "--save", save)
    assert res.exit_code == 0, res.output
    assert "enrolled alice with 5 signatures" in res.output
    assert "13 read, 5 looked at (one in 3), 0 refused, 5 used" in res.output
    saved = sorted(save.glob("*.png"))
    assert [p.name for p in saved] == [f"frame_{i:06d}_used.png" for i in (0, 3, 6, 9, 12)]
    picture = np.asarray(Image.open(saved[0]).convert("RGB"))
    green = (picture[:, :, 1] == 200) & (picture[:, :, 0] == 0) & (picture[:, :, 2] == 0)
    assert green.sum() > 40  # the face box is drawn over the gray face

    res = invoke("camera", "unlock", "alice", "--gallery", db, "--model", face_model,
                 "--source", videos["unlock_a"], "--adapt")
    assert res.exit_code == 0, res.output
    assert "ACCEPTED alice: distance" in res.output and "threshold" in res.output
    assert "unlocked alice at frame" in res.output
    assert re.search(r"template (not )?updated: ", res.output)  # what adaptation did, as verify

    res = invoke("camera", "unlock", "alice", "--gallery", db, "--model", face_model,
                 "--source", videos["b"])
    assert res.exit_code == 1, res.output
    attempts = res.output.count("REJECTED alice: distance")
    assert attempts > 0 and "ACCEPTED" not in res.output
    assert (f"not unlocked: no frame accepted in {attempts} attempts (the source ended)"
            in res.output)
    assert "4 failed unlocks left before a lockout" in res.output
    for _ in range(4):
        res = invoke("camera", "unlock", "alice", "--gallery", db, "--model", face_model,
                     "--source", videos["b"])
    assert res.exit_code == 1 and "locked out for 30 s" in res.output
    res = invoke("camera", "unlock", "alice", "--gallery", db, "--model", face_model,
                 "--source", videos["unlock_a"])
    assert res.exit_code == 1 and "locked out: 30 s more" in res.output, res.output
    assert "ACCEPTED" not in res.output and (tmp_path / "g.db.lockout.json").exists()


def test_no_face_refuses_the_enrollment_and_says_why(face_model, videos, tmp_path):
    gallery = open_gallery(face_model, tmp_path / "g.db")
    with FrameSource(videos["wall"]) as frames, pytest.raises(QualityError) as caught:
        enroll_from_frames(gallery, "alice", frames, count=3, every=2)
    assert "0 good frames of 3" in str(caught.value)
    assert "no face found 6" in str(caught.value)  # 12 frames, one in 2 looked at
    gallery.store.close()

    db = tmp_path / "cli.db"
    res = invoke("camera", "enroll", "alice", "--gallery", db, "--model", face_model,
                 "--source", videos["wall"], "--max-frames", 4, "--every", 1)
    assert res.exit_code == 3
    assert "no face found 4" in res.output and "the limit of 4 frames reached" in res.output
    assert not db.exists()  # a refused first enrollment leaves no empty gallery


def test_a_frame_and_its_saved_picture_have_the_same_signature(face_model, videos, tmp_path):
    embedder = Embedder(face_model)
    with FrameSource(videos["unlock_a"]) as frames:
        decoded = next(iter(frames))
    tinted = decoded.copy()
    tinted[:, :, 0] //= 2  # a colour frame (less blue), as a webcam gives
    gray = np.repeat(decoded[:, :, 1:2], 3, axis=2)  # a gray scene: a file of it reads (H, W)
    for name, frame in (("decoded", decoded), ("tinted", tinted), ("gray", gray)):
        path = tmp_path / f"{name}.png"
        assert cv2.imwrite(str(path), frame)
        image = frame_to_image(frame, embedder.preprocess_config)
        loaded = embedder.preprocessor.load(path)
        assert image.dtype == loaded.dtype and np.array_equal(image, loaded), name
        assert np.array_equal(embedder.embed_one(image), embedder.embed_one(loaded)), name
    assert frame_to_image(tinted, embedder.preprocess_config).shape == (*tinted.shape[:2], 3)
    assert frame_to_image(gray, embedder.preprocess_config).shape == gray.shape[:2]


def test_bad_sources_are_siamid_errors(face_model, tmp_path):
    res = invoke("camera", "unlock", "alice", "--model", face_model, "--gallery",
                 tmp_path / "g.db", "--source", tmp_path / "missing.avi")
    assert res.exit_code == 3
    assert "video file" in res.output and "missing.avi not found" in res.output
    text = tmp_path / "notes.avi"
    text.write_text("not a video")
    res = invoke("camera", "enroll", "alice", "--model", face_model, "--gallery",
                 tmp_path / "g.db", "--source", text)
    assert res.exit_code == 3 and "cannot read video" in res.output
    res = invoke("camera", "enroll", "alice", "--model", face_model, "--gallery",
                 tmp_path / "g.db", "--source", "97")
    assert res.exit_code == 3 and "camera 97 cannot be opened" in res.output
    assert not (tmp_path / "g.db").exists()


def test_models_a_webcam_cannot_feed_are_refused(tmp_path):
    rgbd = default_model_path().with_name("face_rgbd.onnx")
    res = invoke("camera", "enroll", "alice", "--model", rgbd, "--gallery", tmp_path / "g.db",
                 "--source", tmp_path / "missing.avi")
    assert res.exit_code == 3, res.output
    assert "'rgbd'" in res.output and "colour only" in res.output
    res = invoke("camera", "unlock", "alice", "--model", default_model_path(), "--gallery",
                 tmp_path / "g.db")
    assert res.exit_code == 3 and "finger model" in res.output
    assert not (tmp_path / "g.db").exists()
    for spec, channels in (("depth", 1), ("ir", 1), ("rgbd", 4)):
        with pytest.raises(ModelError, match="colour only"):
            check_camera_model(PreprocessConfig(modality="face", face_channels=spec,
                                                channels=channels, face_detect=True))
    with pytest.raises(ModelError, match="whole scene"):
        check_camera_model(PreprocessConfig(modality="face", face_channels="gray", channels=1,
                                            face_detect=False))
    check_camera_model(PreprocessConfig(modality="face", face_channels="rgb", channels=3,
                                        face_detect=True))


def test_a_refused_enrollment_names_the_frames(face_model, shared_data, tmp_path):
    # a still picture held in front of the camera: every frame is the same image
    still = write_video(tmp_path / "still.avi", orl(shared_data, PERSON_A, [1]), repeat=6)
    gallery = open_gallery(face_model, tmp_path / "g.db")
    with FrameSource(still) as frames, pytest.raises(QualityError) as caught:
        enroll_from_frames(gallery, "alice", frames, count=2, every=3)
    assert "images 0 and 1 are the same image given twice" in str(caught.value)
    assert "image 0 = frame 0, image 1 = frame 3" in str(caught.value)
    assert "alice" not in gallery.store
    gallery.store.close()


@pytest.mark.parametrize("shape", [(40, 30), (40, 30, 3)])
def test_saving_a_frame_draws_on_a_copy(tmp_path, shape):
    image = np.full(shape, 100, np.uint8)
    before = image.copy()
    path = save_frame(tmp_path / "f.png", image, [(5, 5, 20, 20), (-3, 30, 10, 10)])
    assert np.array_equal(image, before)  # the pixels enrolled or compared stay as they were
    drawn = np.asarray(Image.open(path))
    assert drawn.shape == (40, 30, 3)
    assert tuple(drawn[5, 10]) == (0, 200, 0)  # the largest face's box, green
    assert tuple(drawn[35, 6]) == (220, 0, 0)  # another face's box, red, clipped at the edge
    assert tuple(drawn[15, 15]) == (100, 100, 100)  # inside the box: the frame
