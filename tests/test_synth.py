"""Tests of the synthetic fingerprint generator (siamid.synth)."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.signal import fftconvolve

from siamid.errors import ConfigError
from siamid.synth import (
    CLASS_FREQUENCIES,
    FINGERPRINT_CLASSES,
    SENSORS,
    finger_folder,
    generate_dataset,
    generate_finger,
    make_master,
    render_impression,
    sample_class,
)
from siamid.synth.masters import draw_creases
from siamid.synth.orientation import PERIOD_RANGE, smooth_noise

R503_LEVELS = {k * 17 for k in range(16)}


@pytest.fixture(scope="module")
def master():
    return make_master(np.random.default_rng(11), fingerprint_class="left_loop")


def max_ncc(a: np.ndarray, b: np.ndarray, patch: int = 96, search: int = 40) -> float:
    """Best zero-mean normalised cross-correlation of a's central patch within +-search px of b."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    h, w = a.shape
    y0, x0 = (h - patch) // 2, (w - patch) // 2
    t = a[y0 : y0 + patch, x0 : x0 + patch]
    t = t - t.mean()
    t /= np.linalg.norm(t) + 1e-9
    region = b[y0 - search : y0 + patch + search, x0 - search : x0 + patch + search]
    num = fftconvolve(region, t[::-1, ::-1], mode="valid")
    ones = np.ones((patch, patch))
    s1 = fftconvolve(region, ones, mode="valid")
    s2 = fftconvolve(region**2, ones, mode="valid")
    var = np.maximum(s2 - s1**2 / patch**2, 1e-9)
    return float((num / np.sqrt(var)).max())


def dominant_period(image: np.ndarray) -> float:
    """Power-weighted mean wavelength (pixels) of the strongest spectral components.

    Only wavelengths up to 20 px count: slower variation is contrast and background, not ridges.
    """
    image = image - image.mean()
    fy = np.fft.fftfreq(image.shape[0])[:, None]
    fx = np.fft.fftfreq(image.shape[1])[None, :]
    radius = np.hypot(fy, fx)
    power = np.where(radius >= 1 / 20, np.abs(np.fft.fft2(image)) ** 2, 0.0)
    strong = power > 0.2 * power.max()
    return float(power[strong].sum() / (radius[strong] * power[strong]).sum())


# --- determinism -------------------------------------------------------------------------------


def test_same_seed_gives_identical_images_and_other_seeds_differ():
    m1, a = generate_finger(5, 2)
    m2, b = generate_finger(5, 2)
    assert m1.fingerprint_class == m2.fingerprint_class
    np.testing.assert_array_equal(m1.ridges, m2.ridges)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    _, other_seed = generate_finger(6, 2)
    _, other_index = generate_finger(5, 2, index=1)
    assert not np.array_equal(a[0], other_seed[0])
    assert not np.array_equal(a[0], other_index[0])
    assert not np.array_equal(a[0], a[1])  # two takes of one finger are not copies


def test_first_impressions_do_not_depend_on_how_many_are_asked_for():
    _, two = generate_finger(9, 2)
    _, three = generate_finger(9, 3)
    for x, y in zip(two, three):
        np.testing.assert_array_equal(x, y)


def test_render_impression_is_deterministic_in_its_generator(master):
    a = render_impression(master, np.random.default_rng(3))
    b = render_impression(master, np.random.default_rng(3))
    c = render_impression(master, np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


# --- images --------------------------------------------------------------------------------------


def test_r503_impressions_are_192_square_with_16_gray_levels(master):
    spec = SENSORS["r503"]
    assert (spec.height, spec.width, spec.dpi, spec.gray_levels) == (192, 192, 500, 16)
    assert set(spec.levels.tolist()) == R503_LEVELS
    for k in range(4):
        img = render_impression(master, np.random.default_rng(k), "r503")
        assert img.shape == (192, 192) and img.dtype == np.uint8
        values = set(np.unique(img).tolist())
        assert values <= R503_LEVELS
        assert len(values) >= 8  # a real gray image, not a binary or blank one


def test_500dpi_impressions_are_8_bit_and_show_the_whole_fingertip(master):
    spec = SENSORS["500dpi"]
    img = render_impression(master, np.random.default_rng(0), "500dpi")
    assert img.shape == (spec.height, spec.width) == (320, 288)
    assert img.dtype == np.uint8
    assert len(np.unique(img)) > 64
    # Light background in the corners, dark ridges in the middle.
    corners = np.concatenate([img[:12, :12].ravel(), img[:12, -12:].ravel()])
    centre = img[120:200, 104:184]
    assert corners.mean() > 180
    assert np.percentile(centre, 10) < 110


def test_ridges_are_dark_on_light_and_have_a_fingerprint_period(master):
    # Some touches are poor (faint, noisy) on purpose, so judge the typical one of several.
    centres = [
        render_impression(master, np.random.default_rng(k), "r503")[48:144, 48:144].astype(float)
        for k in range(6)
    ]
    assert np.median([np.percentile(c, 10) for c in centres]) < 100
    assert np.median([np.percentile(c, 90) for c in centres]) > 150
    assert 7.0 <= np.median([dominant_period(c) for c in centres]) <= 12.0
    assert 7.5 <= dominant_period(master.ridges[96:224, 96:224]) <= 11.5


def test_master_print_fields(master):
    assert master.ridges.dtype == np.float32 and master.ridges.shape == (320, 320)
    assert master.ridges.min() >= -1.0 and master.ridges.max() <= 1.0
    assert master.orientation.shape == master.ridges.shape
    assert 0.0 <= master.orientation.min() and master.orientation.max() < np.pi
    assert PERIOD_RANGE[0] <= master.period.min() and master.period.max() <= PERIOD_RANGE[1]
    assert master.mask.dtype == bool and 0.4 < master.mask.mean() < 0.9
    assert master.mask[160, 160]  # the finger covers the centre
    assert master.fingerprint_class == master.class_name == "left_loop"
    assert len(master.cores) == 1 and len(master.deltas) == 1
    # A left loop's delta lies right of and below its core.
    assert master.deltas[0][0] > master.cores[0][0]
    assert master.deltas[0][1] > master.cores[0][1]


@pytest.mark.parametrize(
    "cls,cores,deltas",
    [("arch", 0, 0), ("tented_arch", 1, 1), ("right_loop", 1, 1), ("whorl", 2, 2)],
)
def test_each_class_has_its_singular_points(cls, cores, deltas):
    m = make_master(np.random.default_rng(0), size=128, fingerprint_class=cls)
    assert m.fingerprint_class == cls
    assert (len(m.cores), len(m.deltas)) == (cores, deltas)


def test_impressions_of_one_finger_match_better_than_different_fingers():
    fingers = [generate_finger(3, 3, index=i)[1] for i in range(5)]
    genuine = [max_ncc(f[i], f[j]) for f in fingers for i in range(3) for j in range(3) if i != j]
    impostor = [max_ncc(fingers[i][0], fingers[j][1]) for i in range(5) for j in range(5) if i != j]
    assert np.mean(genuine) > np.mean(impostor) + 0.12


def test_smooth_noise_is_standardised_and_smooth():
    field = smooth_noise((100, 120), 40.0, np.random.default_rng(0))
    assert field.shape == (100, 120) and field.dtype == np.float32
    assert abs(float(field.mean())) < 1e-4 and abs(float(field.std()) - 1.0) < 1e-3
    # Neighbouring pixels are strongly correlated (white noise would give ~0).
    assert np.corrcoef(field[:, :-1].ravel(), field[:, 1:].ravel())[0, 1] > 0.95


# --- classes -------------------------------------------------------------------------------------


def test_class_sampler_matches_natural_frequencies():
    rng = np.random.default_rng(0)
    n = 20000
    counts = Counter(sample_class(rng) for _ in range(n))
    assert set(counts) == set(FINGERPRINT_CLASSES)
    for cls, expected in CLASS_FREQUENCIES.items():
        assert abs(counts[cls] / n - expected) < 0.012, cls


@pytest.mark.slow
def test_master_classes_match_natural_frequencies():
    rng = np.random.default_rng(1)
    n = 300
    counts = Counter(make_master(rng, size=96).fingerprint_class for _ in range(n))
    for cls, expected in CLASS_FREQUENCIES.items():
        # 3.5 binomial standard deviations, at least 2 %.
        tolerance = max(0.02, 3.5 * np.sqrt(expected * (1 - expected) / n))
        assert abs(counts[cls] / n - expected) < tolerance, (cls, counts)


# --- datasets ------------------------------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*.png"))
    }


def test_generate_dataset_writes_the_layout_and_resumes(tmp_path):
    calls: list[tuple[int, int]] = []
    out = generate_dataset(
        tmp_path / "set", identities=3, impressions=2, seed=4, workers=1,
        progress=lambda d, t: calls.append((d, t)),
    )
    assert out == tmp_path / "set"
    assert calls == [(1, 3), (2, 3), (3, 3)]
    expected = {
        f"synth0000/left/{finger}/{take}.png"
        for finger in ("thumb", "index", "middle")
        for take in (1, 2)
    }
    assert set(_snapshot(out)) == expected
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    meta = json.loads((out / "synth.json").read_text())
    assert meta["sensor"] == "r503" and meta["dpi"] == 500 and meta["seed"] == 4
    assert (meta["identities"], meta["impressions"]) == (3, 2)
    assert "generator_version" in meta

    # The written image is exactly the generator's output for (seed, finger index).
    _, images = generate_finger(4, 2, index=1)
    on_disk = np.array(Image.open(out / "synth0000/left/index/2.png"))
    np.testing.assert_array_equal(on_disk, images[1])

    before = _snapshot(out)
    original = (out / "synth0000/left/middle/1.png").read_bytes()
    (out / "synth0000/left/middle/1.png").unlink()
    calls.clear()
    generate_dataset(out, identities=3, impressions=2, seed=4, workers=1,
                     progress=lambda d, t: calls.append((d, t)))
    after = _snapshot(out)
    assert calls == [(2, 3), (3, 3)]
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed == {"synth0000/left/middle/1.png", "synth0000/left/middle/2.png"}
    assert (out / "synth0000/left/middle/1.png").read_bytes() == original


def test_dataset_subjects_have_ten_fingers():
    assert finger_folder(0, 25) == Path("synth0000/left/thumb")
    assert finger_folder(9, 25) == Path("synth0000/right/little")
    assert finger_folder(12, 25) == Path("synth0001/left/middle")
    assert finger_folder(5, 100_000) == Path("synth0000/right/thumb")  # subjects 0..9999
    assert finger_folder(5, 100_001) == Path("synth00000/right/thumb")


def test_dataset_does_not_depend_on_worker_count(tmp_path):
    one = generate_dataset(tmp_path / "one", identities=3, impressions=1, seed=2, workers=1)
    two = generate_dataset(tmp_path / "two", identities=3, impressions=1, seed=2, workers=2)
    files = sorted(p.relative_to(one) for p in one.rglob("*.png"))
    assert len(files) == 3
    for rel in files:
        assert (one / rel).read_bytes() == (two / rel).read_bytes()


#: sha256 (first 16 hex digits) of the pixels of seed 7's first three fingers, two takes each,
#: as written before the worker pools were made single-threaded. Faster generation must not
#: change a single pixel; a deliberate change of the images bumps GENERATOR_VERSION and these.
GOLDEN_PIXELS_SEED_7 = {
    "synth0000/left/thumb/1.png": "2ab8efd1a0bc06f4",
    "synth0000/left/thumb/2.png": "9fff8230abb6d66e",
    "synth0000/left/index/1.png": "4c04f96c3df0621e",
    "synth0000/left/index/2.png": "e74ce5210a8350c1",
    "synth0000/left/middle/1.png": "b41596e8553f7ff7",
    "synth0000/left/middle/2.png": "0bd2141b22634156",
}


def test_dataset_images_are_unchanged_pixel_for_pixel(tmp_path):
    # Through the worker pool, whose processes run single-threaded BLAS. (Another CPU family
    # or numpy build could in principle round a float differently: that would show up here.)
    out = generate_dataset(tmp_path, identities=3, impressions=2, seed=7, workers=2)
    got = {
        rel: hashlib.sha256(np.asarray(Image.open(out / rel)).tobytes()).hexdigest()[:16]
        for rel in GOLDEN_PIXELS_SEED_7
    }
    assert got == GOLDEN_PIXELS_SEED_7


def _report_threads(seed, impressions, sensor="r503", index=0, harshness=0.0):
    """Stand-in for generate_finger: records the numeric thread pools of the process it runs in."""
    from siamid.parallel import numeric_thread_counts

    report = Path(os.environ["SIAMID_TEST_THREADS_DIR"]) / f"{os.getpid()}-{index}.json"
    report.write_text(json.dumps(numeric_thread_counts()))
    return None, [np.zeros((4, 4), np.uint8)] * impressions


@pytest.mark.parametrize("workers", [1, 2])
def test_dataset_workers_run_single_threaded_numerics(tmp_path, monkeypatch, workers):
    # N workers x an all-cores BLAS pool each oversubscribed the machine, so generation did not
    # scale with cores. The parent is set to 2 threads first, so that forked workers inherit a
    # multi-threaded BLAS whatever this machine's core count, as they did before the fix.
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from siamid.parallel import numeric_thread_counts
    from siamid.synth import writer

    if workers > 1 and writer._pool_context().get_start_method() != "fork":
        pytest.skip("the stand-in generator reaches workers only through fork")
    reports = tmp_path / "threads"
    reports.mkdir()
    monkeypatch.setenv("SIAMID_TEST_THREADS_DIR", str(reports))
    monkeypatch.setattr(writer, "generate_finger", _report_threads)
    with threadpoolctl.threadpool_limits(limits=2):
        before = numeric_thread_counts()
        assert before and set(before.values()) == {2}
        generate_dataset(tmp_path / "set", identities=4, impressions=1, workers=workers)
        assert numeric_thread_counts() == before  # the caller's own setting is left alone
    counts = [json.loads(p.read_text()) for p in sorted(reports.glob("*.json"))]
    assert len(counts) == 4
    assert all(c and set(c.values()) == {1} for c in counts), counts


def test_dataset_refuses_a_folder_made_with_another_seed(tmp_path):
    generate_dataset(tmp_path, identities=1, impressions=1, seed=1, workers=1)
    with pytest.raises(ConfigError, match="seed=1"):
        generate_dataset(tmp_path, identities=1, impressions=1, seed=2, workers=1)


def test_dataset_refuses_a_folder_made_with_another_harshness(tmp_path):
    generate_dataset(tmp_path, identities=1, impressions=1, seed=1, workers=1)
    assert json.loads((tmp_path / "synth.json").read_text())["harshness"] == 0.0
    with pytest.raises(ConfigError, match="harshness=0.0"):
        generate_dataset(tmp_path, identities=1, impressions=1, seed=1, workers=1, harshness=0.5)
    # A set written before harshness was recorded is a harshness-0 set: it resumes as one.
    meta = json.loads((tmp_path / "synth.json").read_text())
    del meta["harshness"]
    (tmp_path / "synth.json").write_text(json.dumps(meta))
    generate_dataset(tmp_path, identities=2, impressions=1, seed=1, workers=1)
    with pytest.raises(ConfigError, match="harshness"):
        generate_dataset(tmp_path, identities=2, impressions=1, seed=1, workers=1, harshness=1)


# --- harshness -----------------------------------------------------------------------------------


def test_harshness_zero_is_generator_v2_and_harsher_touches_differ(master):
    v2 = render_impression(master, np.random.default_rng(3), "500dpi")
    np.testing.assert_array_equal(v2, render_impression(master, np.random.default_rng(3), "500dpi", 0.0))
    harsh = render_impression(master, np.random.default_rng(3), "500dpi", 1.0)
    np.testing.assert_array_equal(harsh, render_impression(master, np.random.default_rng(3), "500dpi", 1.0))
    assert harsh.shape == v2.shape and not np.array_equal(harsh, v2)


def test_harsher_impressions_of_one_finger_match_worse():
    # Harshness is meant to make genuine pairs harder: stronger distortion, poorer touches,
    # sensor noise. Over a few fingers, two takes of one finger correlate less than at v2.
    def mean_similarity(harshness: float) -> float:
        sims = []
        for index in range(4):
            _, (a, b) = generate_finger(21, 2, "500dpi", index=index, harshness=harshness)
            sims.append(max_ncc(a, b))
        return float(np.mean(sims))

    assert mean_similarity(1.0) < mean_similarity(0.0) - 0.03


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"identities": 0}, "identities"),
        ({"impressions": 0}, "impressions"),
        ({"impressions": 2.5}, "2.5"),
        ({"sensor": "r999"}, "r999"),
        ({"seed": -1}, "-1"),
        ({"workers": -2}, "-2"),
        ({"harshness": -0.1}, "harshness"),
        ({"harshness": 1.5}, "1.5"),
        ({"harshness": "x"}, "harshness"),
        ({"harshness": True}, "harshness"),
    ],
)
def test_generate_dataset_rejects_bad_arguments(tmp_path, kwargs, needle):
    args = {"identities": 2, "impressions": 2, "workers": 1} | kwargs
    with pytest.raises(ConfigError, match=needle):
        generate_dataset(tmp_path / "out", **args)
    assert not (tmp_path / "out").exists()  # nothing written before arguments are checked


def test_generate_dataset_rejects_a_file_as_output(tmp_path):
    target = tmp_path / "taken.txt"
    target.write_text("not a folder")
    with pytest.raises(ConfigError, match="taken.txt"):
        generate_dataset(target, identities=1, impressions=1)


def test_unknown_sensor_and_class_are_config_errors(master):
    with pytest.raises(ConfigError, match="r999"):
        render_impression(master, np.random.default_rng(0), "r999")
    with pytest.raises(ConfigError, match="r999"):
        generate_finger(0, 1, "r999")
    with pytest.raises(ConfigError, match="double_loop"):
        make_master(np.random.default_rng(0), fingerprint_class="double_loop")
    with pytest.raises(ConfigError, match="0"):
        generate_finger(0, 0)


def test_no_temp_files_are_left_when_writing_fails(tmp_path, monkeypatch):
    from siamid.synth import writer

    def broken_save(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"half an image")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        writer._write_png_atomic(tmp_path / "1.png", np.zeros((4, 4), np.uint8))
    assert os.listdir(tmp_path) == []


def test_dataset_workers_start_from_a_script_without_a_main_guard(tmp_path):
    # Spawned workers re-import the caller's script; without a __main__ guard that used to make
    # the pool respawn failing workers forever. Fork-started workers do not re-import it.
    import subprocess
    import sys

    script = tmp_path / "make_set.py"
    script.write_text(
        "from siamid.synth import generate_dataset\n"
        f"generate_dataset({str(tmp_path / 'set')!r}, identities=2, impressions=1, workers=2)\n"
    )
    if sys.platform == "darwin" or os.name != "posix":
        pytest.skip("workers are spawned on this platform; a __main__ guard is required")
    subprocess.run([sys.executable, str(script)], check=True, timeout=120, cwd=tmp_path)
    assert len(list((tmp_path / "set").rglob("*.png"))) == 2


def test_creases_are_thin_lines_that_break_ridges():
    rng = np.random.default_rng(0)
    creases = draw_creases((320, 320), rng, mean=4.0)
    assert creases.dtype == np.float32 and creases.shape == (320, 320)
    assert 0.0 <= creases.min() and creases.max() <= 1.0
    covered = creases > 0.5
    # A few strokes a few pixels wide: some pixels, far from most of the finger.
    assert 0.001 < covered.mean() < 0.08
    assert not draw_creases((320, 320), np.random.default_rng(0), mean=0.0).any()
