"""Faces: channel files, depth normalisation, the face preprocessing stages and verdicts, the
face tower and the face dataset layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from siamid.config import AugmentConfig, PreprocessConfig
from siamid.dataset import scan_dataset
from siamid.errors import ConfigError, DatasetError, QualityError
from siamid.faces import companions, load_face, normalise_depth
from siamid.nets import count_parameters, create_tower
from siamid.preprocess import Preprocessor
from siamid.training import augment


def face_config(spec: str = "rgbd", **kw) -> PreprocessConfig:
    channels = {"gray": 1, "rgb": 3, "depth": 1, "ir": 1, "rgbd": 4}[spec]
    return PreprocessConfig(modality="face", face_channels=spec, channels=channels, size=32, **kw)


def head(h: int = 120, w: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A colour head on black with a 16-bit depth map (a dome, 150..180 units)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot((yy - h / 2) / (h * 0.4), (xx - w / 2) / (w * 0.4))
    inside = r < 1
    colour = np.zeros((h, w, 3), np.uint8)
    colour[inside] = rng.integers(90, 200, size=(int(inside.sum()), 3))
    depth = np.zeros((h, w), np.uint16)
    depth[inside] = np.rint(150 + 30 * np.sqrt(1 - r[inside] ** 2)).astype(np.uint16)
    return colour, depth


def write_capture(folder: Path, base: str, colour: np.ndarray, depth: np.ndarray | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{base}_rgb_registered.png"
    Image.fromarray(colour).save(path)
    if depth is not None:
        Image.fromarray(depth).save(folder / f"{base}_depth.png")
    return path


# --------------------------------------------------------------------------------------------
# Channel files and depth


def test_companions_follow_both_namings(tmp_path):
    colour, depth = head()
    rap = write_capture(tmp_path / "p1", "front_1", colour, depth)
    found = companions(rap)
    assert found == {"colour": rap, "depth": tmp_path / "p1" / "front_1_depth.png"}
    # Given the depth file, the colour file is found too.
    assert companions(tmp_path / "p1" / "front_1_depth.png")["colour"] == rap
    plain = tmp_path / "s1" / "face" / "3.png"
    plain.parent.mkdir(parents=True)
    Image.fromarray(colour).save(plain)
    assert companions(plain) == {"colour": plain}
    Image.fromarray(depth).save(plain.with_name("3_depth.png"))
    assert companions(plain)["depth"] == plain.with_name("3_depth.png")


def test_normalise_depth_is_relative_to_the_face():
    depth = np.array([[0, 100, 110], [120, 130, 0]], np.float32)
    out = normalise_depth(depth, depth_range=10.0)
    assert out[0, 0] == 0 and out[1, 2] == 0          # background stays 0
    # The median of 100..130 is 115; 5 units either side of it are 127 * 5 / 10 levels off.
    assert (out[0, 2], out[1, 0]) == (64, 192)
    assert out[0, 1] == 1 and out[1, 1] == 255         # +-15 units saturate at +-10
    # The same face 50 units further away gives the same pixels.
    far = np.where(depth > 0, depth + 50, 0)
    np.testing.assert_array_equal(normalise_depth(far, 10.0), out)
    # A flat depth map (a photo held to the camera) is one level.
    flat = normalise_depth(np.full((4, 4), 140.0), 10.0)
    assert set(np.unique(flat)) == {128}
    with pytest.raises(ConfigError):
        normalise_depth(depth, 0.0)


def test_load_face_stacks_colour_and_depth(tmp_path):
    colour, depth = head()
    path = write_capture(tmp_path, "left_2", colour, depth)
    img = load_face(path, face_config("rgbd"))
    assert img.shape == (120, 96, 4) and img.dtype == np.uint8
    np.testing.assert_array_equal(img[:, :, :3], colour)
    np.testing.assert_array_equal(img[:, :, 3], normalise_depth(depth, 32.0))
    assert load_face(path, face_config("depth")).shape == (120, 96)
    assert load_face(path, face_config("rgb")).shape == (120, 96, 3)


def test_load_face_names_a_missing_or_mismatched_depth_file(tmp_path):
    colour, depth = head()
    path = write_capture(tmp_path, "up_1", colour, None)
    with pytest.raises(DatasetError, match="up_1_depth.png"):
        load_face(path, face_config("rgbd"))
    Image.fromarray(depth[:100]).save(tmp_path / "up_1_depth.png")
    with pytest.raises(DatasetError, match="registered"):
        load_face(path, face_config("rgbd"))


# --------------------------------------------------------------------------------------------
# Preprocessing and verdicts


def test_face_config_is_checked():
    with pytest.raises(ConfigError, match="channels must be 4"):
        Preprocessor(PreprocessConfig(modality="face", face_channels="rgbd", channels=3))
    with pytest.raises(ConfigError, match="face_channels"):
        Preprocessor(PreprocessConfig(modality="face", face_channels="rgbx", channels=4))
    with pytest.raises(ConfigError, match="modality"):
        Preprocessor(PreprocessConfig(modality="iris"))
    with pytest.raises(ConfigError, match="depth_range"):
        Preprocessor(face_config("rgbd", depth_range=0.0))
    with pytest.raises(ConfigError, match="min_depth_relief"):
        Preprocessor(face_config("rgbd", min_depth_relief=-0.1))


def test_rgbd_face_is_squared_balanced_and_resized(tmp_path):
    colour, depth = head()
    pre = Preprocessor(face_config("rgbd"))
    img = pre.load(write_capture(tmp_path, "front_1", colour, depth))
    result = pre.process(img, 500)
    assert result.quality.ok, result.quality.reason
    assert result.network_input.shape == (4, 32, 32)
    # Background stays 0 in every plane; the face's colour is stretched to the full range.
    assert result.network_input[:, 0, 0].tolist() == [0, 0, 0, 0]
    stages = pre.trace(img, 500)
    assert stages["4_balanced"][:, :, :3].max() == 255 and stages["1_input"][:, :, :3].max() < 200
    assert stages["3_cropped"].shape[:2] == (120, 120)   # padded to a square, not squeezed


def test_missing_or_flat_depth_is_refused_with_its_reason():
    colour, depth = head()
    pre = Preprocessor(face_config("rgbd"))
    no_depth = np.dstack([colour, np.zeros_like(colour[:, :, 0])])
    verdict = pre.process(no_depth, 500).quality
    assert not verdict.ok and verdict.reason.startswith("depth missing")
    with pytest.raises(QualityError, match="depth missing"):
        pre.process(colour, 500)     # a colour image given to an RGB-D model
    real = np.dstack([colour, normalise_depth(depth, 32.0)])
    assert pre.process(real, 500).quality.ok
    from siamid.faces.attacks import photo_attack
    for kind in ("flat", "tilted"):
        verdict = pre.process(photo_attack(real, kind, pre.config), 500).quality
        assert not verdict.ok and verdict.reason.startswith("depth flat"), kind
        assert verdict.scores["depth_relief"] < 0.005 < pre.process(real, 500).quality.scores[
            "depth_relief"]


def test_dark_face_is_refused():
    colour, depth = head()
    dark = (colour // 20).astype(np.uint8)
    verdict = Preprocessor(face_config("rgb", balance=False)).process(dark, 500).quality
    assert not verdict.ok and verdict.reason.startswith("too dark")


def test_detection_says_no_face_on_noise():
    pytest.importorskip("cv2")
    noise = np.random.default_rng(1).integers(0, 255, (240, 320), dtype=np.uint8)
    verdict = Preprocessor(face_config("gray", face_detect=True)).process(noise, 500).quality
    assert not verdict.ok and verdict.reason == "no face found"
    assert verdict.scores["faces"] == 0


def face_set(shared_data, name: str):
    """A shared face set's folder, with OpenCV; the test is skipped without either."""
    pytest.importorskip("cv2")
    folder = shared_data / name
    if not folder.is_dir():
        pytest.skip(f"{name} not available")
    return folder


def test_detection_finds_the_face_in_yale_photos(shared_data):
    folder = face_set(shared_data, "yalefaces")
    pre = Preprocessor(face_config("gray", face_detect=True))
    files = sorted(folder.glob("subject0[1-3].*"))[:12]
    verdicts = [pre.process(pre.load(f), 500).quality for f in files]
    found = [v.scores["faces"] for v in verdicts]
    assert sum(v.ok for v in verdicts) >= 10, found
    # The crop is the face, not the 320x243 photo.
    stages = pre.trace(pre.load(files[0]), 500)
    assert max(stages["3_cropped"].shape[:2]) < 243


def test_old_cards_are_fingerprint_cards():
    card = {"crop": 192, "size": 96}
    assert Preprocessor.from_card(card).config.modality == "finger"


# --------------------------------------------------------------------------------------------
# Tower, augmentation, datasets


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_face_tower_takes_any_channel_count(channels):
    tower = create_tower("face", 128, channels, 64).eval()
    out = tower(torch.rand(3, channels, 64, 64))
    assert out.shape == (3, 128)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))
    assert 150_000 < count_parameters(tower) < 250_000


def test_augment_pads_with_the_background_and_flips():
    batch = torch.zeros(4, 1, 16, 16)
    batch[:, :, :, :8] = 1.0     # left half white
    gen = torch.Generator().manual_seed(0)
    face = AugmentConfig(rotation_deg=0, translate=0.2, partial_contact=0, contrast=0, noise=0,
                         pad=0.0, flip=1.0)
    out = augment(batch, face, gen)
    assert out[:, :, :, -1].mean() > 0.5        # mirrored: the white half is now on the right
    unflipped = AugmentConfig(rotation_deg=0, translate=0.2, partial_contact=0, contrast=0,
                              noise=0, pad=0.0)
    covered = augment(torch.ones(4, 1, 16, 16), unflipped, torch.Generator().manual_seed(0))
    assert covered.min() == 0.0                  # uncovered border is black for faces
    finger = AugmentConfig(rotation_deg=0, translate=0.2, partial_contact=0, contrast=0, noise=0)
    shifted = augment(torch.zeros(4, 1, 16, 16), finger, torch.Generator().manual_seed(0))
    assert shifted.max() == 1.0                  # uncovered border is white for fingerprints


def test_face_layouts_are_scanned(tmp_path):
    colour, depth = head()
    for person in ("AAA1", "BBB2"):
        for take in ("front_1", "left_1"):
            write_capture(tmp_path / "rap" / person, take, colour, depth)
    ds = scan_dataset(tmp_path / "rap")
    assert [str(e.id) for e in ds.entries] == [
        "rap3df-AAA1/face/front_1", "rap3df-AAA1/face/left_1",
        "rap3df-BBB2/face/front_1", "rap3df-BBB2/face/left_1"]
    yb = tmp_path / "yb" / "yaleB02"
    yb.mkdir(parents=True)
    for light in ("A+000E+00", "A-035E+15"):
        Image.fromarray(colour[:, :, 0]).save(yb / f"yaleB02_P00{light}.png")
    ds = scan_dataset(tmp_path / "yb")
    assert ds.name == "yaleb"
    assert [e.id.take for e in ds.entries] == ["A+000E+00", "A-035E+15"]


def test_shared_face_sets_scan(shared_data):
    for folder, count, people in (("rap3df", 521, 80), ("extended_yale_b", 2414, 38)):
        if not (shared_data / folder).is_dir():
            continue
        ds = scan_dataset(shared_data / folder)
        assert len(ds.entries) == count
        assert len({e.id.subject for e in ds.entries}) == people


# --------------------------------------------------------------------------------------------
# Photo attacks, pose protocol, training on attacks


def test_photo_attacks_fake_only_the_depth_plane(tmp_path):
    from siamid.faces.attacks import check_attacks, photo_attack

    colour, depth = head()
    cfg = face_config("rgbd")
    img = load_face(write_capture(tmp_path, "front_1", colour, depth), cfg)
    outline = img[:, :, 3] > 0
    flat = photo_attack(img, "flat", cfg)
    np.testing.assert_array_equal(flat[:, :, :3], img[:, :, :3])        # the real colour
    assert set(np.unique(flat[:, :, 3][outline])) == {128}               # one depth
    assert not flat[:, :, 3][~outline].any()                             # same outline
    tilted = photo_attack(img, "tilted", cfg)[:, :, 3].astype(int)
    rows = np.nonzero(outline.any(axis=1))[0]
    top, bottom = tilted[rows[0]][outline[rows[0]]], tilted[rows[-1]][outline[rows[-1]]]
    assert bottom.mean() - top.mean() == pytest.approx(30 * 127 / 32, abs=1.5)  # 30 units
    assert not photo_attack(img, "none", cfg)[:, :, 3].any()
    assert img[:, :, 3][outline].std() > 0       # the input itself was not changed
    rgb = face_config("rgb")
    np.testing.assert_array_equal(photo_attack(img[:, :, :3], "flat", rgb), img[:, :, :3])
    assert check_attacks("flat, tilted", cfg) == ["flat", "tilted"]
    with pytest.raises(ConfigError, match="unknown attack"):
        check_attacks("mask", cfg)
    with pytest.raises(ConfigError, match="include depth"):
        check_attacks("flat", rgb)


def test_pose_trials_enroll_the_front_capture():
    from siamid.faces.protocols import pose_trials
    from siamid.types import SampleId

    ids = [SampleId(p, "face", t) for p in ("a", "b", "c")
           for t in ("front_1", "front_2", "left_1", "up_1")]
    ids.remove(SampleId("c", "face", "front_1"))
    ids.remove(SampleId("c", "face", "front_2"))    # c cannot enroll, but still probes
    trials = pose_trials(ids)
    assert list(trials) == ["front", "left", "up"]
    left = trials["left"]
    assert sum(t.is_match for t in left) == 2                 # a and b probe themselves
    assert sum(not t.is_match for t in left) == 4             # 3 probes x other templates
    assert all(t.template[0].take == "front_1" for t in left)
    assert [t.probe.take for t in trials["front"] if t.is_match] == ["front_2", "front_2"]


def test_training_set_gets_one_photo_identity_per_person(tmp_path):
    from siamid.training import image_set

    colour, depth = head()
    for person in ("p1", "p2"):
        for take in ("front_1", "left_1"):
            write_capture(tmp_path / person, take, colour, depth)
    ds = scan_dataset(tmp_path, format="rap3df")
    cfg = face_config("rgbd")
    data = image_set(ds, cfg, workers=1, attacks=["flat", "none"])
    assert len(data) == 12
    assert data.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3]
    assert str(data.ids[4]) == "rap3df-p1/face/photo/front_1/flat"
    fake, real = data.images[4:8, 3], data.images[:4, 3]
    assert fake.max() == 128 and np.median(fake[fake > 0]) == 128   # flat, edges area-averaged
    assert real.max() > 128
    assert not data.images[8:, 3].any()                              # no depth at all


def test_prep_reports_face_scores_and_writes_colour_and_depth_stages(tmp_path):
    from typer.testing import CliRunner

    from siamid.cli.main import app

    colour, depth = head()
    good = write_capture(tmp_path / "p1", "front_1", colour, depth)
    flat = write_capture(tmp_path / "p2", "front_1", colour, np.zeros_like(depth))
    config = tmp_path / "face.toml"
    config.write_text('[preprocess]\nmodality = "face"\nface_channels = "rgbd"\nchannels = 4\n'
                      'size = 32\n')
    res = CliRunner().invoke(app, ["prep", str(good), str(flat), "--config", str(config),
                                   "--trace-dir", str(tmp_path / "trace")])
    assert res.exit_code == 1, res.output           # one image rejected
    assert "depth area" in res.output and "ridge area" not in res.output
    assert "depth missing" in res.output
    stages = tmp_path / "trace" / good.stem
    assert (stages / "6_network_input.png").is_file()
    assert (stages / "6_network_input_depth.png").is_file()
    with Image.open(stages / "6_network_input.png") as im:
        assert im.mode == "RGB" and im.size == (32, 32)


def test_face_demo_unlocks_unseen_persons_and_refuses_their_photos(shared_data, tmp_path):
    from typer.testing import CliRunner

    from siamid.cli.main import app

    if not (shared_data / "rap3df").is_dir():
        pytest.skip("rap3df not available")
    res = CliRunner().invoke(app, ["demo", "--faces", "--data", str(shared_data / "rap3df"),
                                   "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "enrolled 11 of 12" in res.output or "enrolled 12 of 12" in res.output
    rows = {r.split("│")[1].strip(): r.split("│")[2].strip()
            for r in res.output.splitlines() if r.count("│") == 4}
    assert rows["photo"] == "0" and rows["impostor"] == "0"
    assert int(rows["genuine"]) >= 25               # of 33 or 36 genuine attempts
    assert (tmp_path / "face-gallery.db").is_file()


def test_face_demo_says_what_it_needs(tmp_path):
    from typer.testing import CliRunner

    from siamid.cli.main import app

    res = CliRunner().invoke(app, ["demo", "--faces", "--data", str(tmp_path / "none"),
                                   "--out", str(tmp_path)])
    assert res.exit_code == 3 and "RAP3DF not found" in res.output


def test_detection_finds_faces_that_fill_the_image(shared_data):
    # ORL's crops leave the face almost no margin: the detector must look past the image's edge.
    folder = face_set(shared_data, "orl_faces")
    from siamid.faces.detect import detect_faces

    pre = Preprocessor(face_config("gray", face_detect=True))
    files = [folder / f"s{k}" / "1.pgm" for k in range(1, 21)]
    grays = [pre.load(f) for f in files]
    boxes = [detect_faces(g, 48) for g in grays]
    assert all(len(b) == 1 for b in boxes), boxes
    # Some boxes reach past the image's edge, and the crop pads them.
    assert any(x < 0 or y < 0 or x + w > 92 or y + h > 112 for [(x, y, w, h)] in boxes)
