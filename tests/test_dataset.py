"""Tests of siamid.dataset: layouts, errors, manifests, subject-disjoint splits, adapters."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from siamid.dataset import (
    Dataset,
    Entry,
    Splits,
    load_image,
    load_samples,
    load_splits,
    merge_datasets,
    scan_dataset,
    split_dataset,
)
from siamid.errors import DatasetError, SiamidError
from siamid.types import SampleId

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _png(path: Path, value: int = 0, size: tuple[int, int] = (8, 6)) -> Path:
    """A gray PNG of ``size`` (width, height) whose pixel (0, 0) is ``value``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size[1], size[0]), 128, np.uint8)
    arr[0, 0] = value
    Image.fromarray(arr).save(path)
    return path


def _standard(root: Path, subjects=("alice", "bob"), traits=("left/index", "right/thumb"),
              takes=3, face: bool = False) -> Path:
    value = 0
    for subject in subjects:
        for trait in traits:
            for take in range(1, takes + 1):
                _png(root / subject / trait / f"{take}.png", value)
                value += 1
        if face:
            for take in range(1, takes + 1):
                _png(root / subject / "face" / f"{take}.png", value)
                value += 1
    return root


def _many_subjects(root: Path, n: int, takes: int = 2) -> Path:
    for s in range(n):
        for trait in ("left/index", "right/index"):
            for take in range(1, takes + 1):
                _png(root / f"p{s}" / trait / f"{take}.png", s)
    return root


def _need(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.is_dir():
        pytest.skip(f"{path} not present")
    return path


# --- standard layout -------------------------------------------------------------------------


def test_standard_layout_ids_traits_identities(tmp_path):
    root = _standard(tmp_path / "data", face=True)
    (root / "README.txt").write_text("not an image")
    (root / "alice" / "left" / "index" / "notes.txt").write_text("ignored")
    ds = scan_dataset(root)
    assert ds.name == "data"
    assert len(ds) == 2 * 3 * 3
    assert ds.subjects == ["alice", "bob"]
    assert ds.identities == ["alice/face", "alice/left/index", "alice/right/thumb",
                             "bob/face", "bob/left/index", "bob/right/thumb"]
    first = ds.entries[0]
    assert first.id == SampleId("alice", "face", "1")
    assert first.path == root / "alice" / "face" / "1.png"
    assert first.relative == "alice/face/1.png"
    assert first.dpi == 500
    groups = ds.by_identity()
    assert [e.id.take for e in groups["bob/right/thumb"]] == ["1", "2", "3"]
    assert {e.id.trait for e in ds.entries} == {"face", "left/index", "right/thumb"}


def test_natural_order_of_subjects_and_takes(tmp_path):
    root = tmp_path / "d"
    for subject in ("10", "9"):
        for take in (10, 2, 1):
            _png(root / subject / "left" / "index" / f"{take}.png")
    ds = scan_dataset(root)
    assert ds.subjects == ["9", "10"]
    assert [str(e.id) for e in ds.entries[:3]] == ["9/left/index/1", "9/left/index/2",
                                                   "9/left/index/10"]
    # Construction order does not matter: a Dataset always holds its entries sorted.
    assert Dataset("x", tuple(reversed(ds.entries))).entries == ds.entries


def test_dpi_from_synth_json_and_override(tmp_path):
    root = _standard(tmp_path / "d")
    (root / "synth.json").write_text(json.dumps({"dpi": 1000, "seed": 3}))
    assert {e.dpi for e in scan_dataset(root).entries} == {1000}
    assert {e.dpi for e in scan_dataset(root, dpi=250).entries} == {250}
    (root / "synth.json").write_text(json.dumps({"dpi": "high"}))
    with pytest.raises(DatasetError, match="synth.json"):
        scan_dataset(root)


def test_scan_reads_no_image_bytes(tmp_path):
    # Zero-byte files are not images: a scan that decoded or hashed anything would fail.
    root = tmp_path / "d"
    for take in ("1", "2"):
        path = root / "s1" / "left" / "index" / f"{take}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    ds = scan_dataset(root)
    assert len(ds) == 2
    with pytest.raises(DatasetError, match="1.png"):
        load_samples(ds)


# --- errors ------------------------------------------------------------------------------------


def test_missing_root_and_file_root(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        scan_dataset(tmp_path / "nope")
    file = tmp_path / "f.png"
    file.write_bytes(b"x")
    with pytest.raises(DatasetError, match="not a folder"):
        scan_dataset(file)


def test_empty_folder_names_layouts_tried(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(DatasetError) as info:
        scan_dataset(tmp_path / "empty")
    message = str(info.value)
    assert str(tmp_path / "empty") in message
    for layout in ("standard", "fvc", "socofing", "orl"):
        assert layout in message
    with pytest.raises(DatasetError, match="fvc layout"):
        scan_dataset(_standard(tmp_path / "d"), format="fvc")
    with pytest.raises(DatasetError, match="unknown dataset format 'nist'"):
        scan_dataset(tmp_path / "d", format="nist")


def test_single_impression_identity_is_named(tmp_path):
    root = _standard(tmp_path / "d")
    _png(root / "carol" / "left" / "ring" / "1.png")
    with pytest.raises(DatasetError) as info:
        scan_dataset(root)
    assert "carol/left/ring" in str(info.value)
    assert "min_impressions" in str(info.value)
    ds = scan_dataset(root, min_impressions=1)
    assert len(ds.by_identity()["carol/left/ring"]) == 1
    # The first short identity in natural order is named, with the count of the others.
    with pytest.raises(DatasetError, match=r"'alice/left/index'.*and 4 other identities"):
        scan_dataset(root, min_impressions=4)


def test_duplicate_take_is_refused(tmp_path):
    root = _standard(tmp_path / "d")
    _png(root / "alice" / "left" / "index" / "1.bmp")
    with pytest.raises(DatasetError, match=r"alice/left/index/1 appears twice"):
        scan_dataset(root)


def test_corrupt_file_is_named(tmp_path):
    root = _standard(tmp_path / "d")
    bad = root / "bob" / "left" / "index" / "2.png"
    bad.write_bytes(bad.read_bytes()[:40])   # truncated PNG
    ds = scan_dataset(root)
    with pytest.raises(DatasetError, match=str(bad)):
        load_samples(ds)
    (root / "x.png").write_bytes(b"not a png at all")
    with pytest.raises(DatasetError, match="x.png"):
        load_image(root / "x.png")
    with pytest.raises(DatasetError, match="not found"):
        load_image(root / "missing.png")


def test_mixed_sizes_name_file_and_expected_size(tmp_path):
    root = _standard(tmp_path / "d")
    odd = _png(root / "bob" / "left" / "index" / "2.png", size=(10, 6))
    ds = scan_dataset(root)
    with pytest.raises(DatasetError) as info:
        load_samples(ds)
    message = str(info.value)
    assert str(odd) in message
    assert "10x6" in message and "8x6" in message
    samples = load_samples(ds, same_size=False)
    assert len(samples) == len(ds)
    assert {s.pixels.shape for s in samples} == {(6, 8), (6, 10)}


def test_errors_are_siamid_errors():
    assert issubclass(DatasetError, SiamidError)


# --- images ------------------------------------------------------------------------------------


def test_load_samples_pixels_and_metadata(tmp_path):
    root = _standard(tmp_path / "d", subjects=("a",), traits=("left/index",), takes=2)
    samples = load_samples(scan_dataset(root))
    assert [str(s.id) for s in samples] == ["a/left/index/1", "a/left/index/2"]
    assert samples[1].pixels.dtype == np.uint8 and samples[1].pixels.shape == (6, 8)
    assert samples[1].pixels[0, 0] == 1 and samples[1].pixels[1, 1] == 128
    assert samples[0].dpi == 500 and samples[0].path == root / "a" / "left" / "index" / "1.png"


def test_load_image_modes(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    # Palette image with gray content -> (H, W).
    Image.fromarray(gray).convert("P").save(tmp_path / "p.png")
    np.testing.assert_array_equal(load_image(tmp_path / "p.png"), gray)
    # RGBA with gray content and a 0/255 mask alpha (as SOCOFing Real BMPs) -> (H, W).
    rgba = np.dstack([gray, gray, gray, np.where(gray > 0, 255, 0).astype(np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "m.png")
    np.testing.assert_array_equal(load_image(tmp_path / "m.png"), gray)
    # Colour stays colour.
    rgb = np.dstack([gray, gray // 2, 255 - gray])
    Image.fromarray(rgb).save(tmp_path / "c.png")
    out = load_image(tmp_path / "c.png")
    assert out.shape == (3, 4, 3)
    np.testing.assert_array_equal(out, rgb)
    # A 4th channel with levels (depth of RGB-D) is kept.
    rgbd = np.dstack([rgb, gray + 1])
    Image.fromarray(rgbd, "RGBA").save(tmp_path / "d.png")
    assert load_image(tmp_path / "d.png").shape == (3, 4, 4)
    # 16-bit gray keeps its top byte.
    Image.fromarray(np.array([[0, 256, 65535]], np.uint16)).save(tmp_path / "w.png")
    np.testing.assert_array_equal(load_image(tmp_path / "w.png"), [[0, 1, 255]])


def test_load_image_refuses_oversize_file_from_its_header(tmp_path, monkeypatch):
    from PIL import ImageFile

    from siamid.config import PreprocessConfig

    path = _png(tmp_path / "wide [red]x.png", size=(120, 50))
    assert load_image(path, max_pixels=6000).shape == (50, 120)

    def no_decoding(self):
        raise AssertionError("pixels were decoded before the size was checked")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(DatasetError) as info:
        load_image(path, max_pixels=5999)
    message = str(info.value)
    assert str(path) in message and "120x50" in message and "5,999" in message
    # The default limit is the preprocessing one: one home for the number.
    assert PreprocessConfig().max_pixels == 4096 * 4096
    assert f"{PreprocessConfig().max_pixels:,}" in _too_large_message(tmp_path, monkeypatch)


def _too_large_message(tmp_path, monkeypatch) -> str:
    """The message for a file over the default limit, without writing a huge file."""
    path = _png(tmp_path / "big.png")
    monkeypatch.setattr(Image.Image, "size", property(lambda self: (5000, 5000)))
    with pytest.raises(DatasetError) as info:
        load_image(path)
    return str(info.value)


def test_load_image_turns_pil_decompression_bomb_into_dataset_error(tmp_path, monkeypatch):
    path = _png(tmp_path / "bomb.png", size=(40, 30))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # 1,200 px is over twice PIL's limit
    with pytest.raises(DatasetError) as info:
        load_image(path, max_pixels=10**9)
    assert str(path) in str(info.value) and "1,000,000,000" in str(info.value)
    # Between PIL's limit and twice it PIL only warns; our own limit decides, silently.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(path, max_pixels=10**9).shape == (30, 40)


# --- manifest ----------------------------------------------------------------------------------


def test_manifest_rows_and_hash(tmp_path):
    root = _standard(tmp_path / "d", subjects=("a",), traits=("left/index",), takes=2)
    ds = scan_dataset(root)
    rows = ds.manifest()
    file = root / "a" / "left" / "index" / "2.png"
    assert rows[1] == {
        "subject": "a", "trait": "left/index", "take": "2", "path": "a/left/index/2.png",
        "dpi": 500, "sha256": hashlib.sha256(file.read_bytes()).hexdigest(),
    }
    first = ds.manifest_hash()
    assert len(first) == 64 and int(first, 16) >= 0
    # Same content elsewhere on disk (and under another name): same hash.
    moved = tmp_path / "elsewhere" / "other"
    shutil.copytree(root, moved)
    assert scan_dataset(moved).manifest_hash() == first
    # A changed pixel changes the hash, even with the same size and the cache warm.
    _png(file, value=200)
    stat = file.stat()
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert ds.manifest_hash() != first
    # dpi is part of the manifest.
    assert scan_dataset(moved, dpi=1000).manifest_hash() != first


def test_subset_and_repr(tmp_path):
    ds = scan_dataset(_standard(tmp_path / "d"))
    sub = ds.subset(["bob"])
    assert sub.subjects == ["bob"] and len(sub) == 6
    assert sub.identities == ["bob/left/index", "bob/right/thumb"]
    with pytest.raises(DatasetError, match="'zed'"):
        ds.subset(["bob", "zed"])
    assert "entries=12" in repr(ds)
    ds.identities.append("mutated")   # a copy: the dataset cannot be changed through it
    assert len(ds.identities) == 4


# --- splits ------------------------------------------------------------------------------------


def test_split_is_subject_disjoint_complete_and_deterministic(tmp_path):
    ds = scan_dataset(_many_subjects(tmp_path / "d", 20))
    splits = split_dataset(ds, 0.15, 0.15, seed=0)
    train, val, test = (set(p.subjects) for p in (splits.train, splits.val, splits.test))
    assert (len(train), len(val), len(test)) == (14, 3, 3)   # round(0.15 * 20) = 3
    assert not (train & val or train & test or val & test)
    assert train | val | test == set(ds.subjects)
    assert len(splits.train) + len(splits.val) + len(splits.test) == len(ds)
    # Both fingers of a person land in the same split.
    for part in (splits.train, splits.val, splits.test):
        for subject in part.subjects:
            assert {e.id.trait for e in part.entries if e.id.subject == subject} == \
                {"left/index", "right/index"}
    again = split_dataset(ds, 0.15, 0.15, seed=0)
    assert again.test.subjects == splits.test.subjects and again.val.subjects == splits.val.subjects
    others = [split_dataset(ds, 0.15, 0.15, seed=s).test.subjects for s in range(1, 6)]
    assert any(o != splits.test.subjects for o in others)


def test_split_fractions_and_errors(tmp_path):
    ds = scan_dataset(_many_subjects(tmp_path / "d", 4))
    no_val = split_dataset(ds, 0.0, 0.25, seed=1)
    assert len(no_val.val) == 0 and len(no_val.test.subjects) == 1
    assert len(no_val.train.subjects) == 3
    # A non-zero fraction gets at least one subject.
    tiny = split_dataset(ds, 0.01, 0.01)
    assert [len(p.subjects) for p in (tiny.train, tiny.val, tiny.test)] == [2, 1, 1]
    two = ds.subset(ds.subjects[:2])
    with pytest.raises(DatasetError, match="2 subject"):
        split_dataset(two, 0.15, 0.15)
    with pytest.raises(DatasetError, match="test_fraction"):
        split_dataset(ds, 0.1, 1.5)
    with pytest.raises(DatasetError, match="< 1"):
        split_dataset(ds, 0.5, 0.5)


def test_splits_save_load_and_hash(tmp_path):
    root = _many_subjects(tmp_path / "d", 10)
    ds = scan_dataset(root)
    splits = split_dataset(ds, 0.2, 0.2, seed=7)
    path = tmp_path / "run" / "splits.json"
    splits.save(path)
    saved = json.loads(path.read_text())
    assert saved["test"] == splits.test.subjects and saved["val"] == splits.val.subjects
    assert saved["manifest_hash"] == splits.manifest_hash
    assert saved["hashes"]["train"] == splits.train.manifest_hash()
    loaded = load_splits(path, scan_dataset(root), verify=True)
    assert isinstance(loaded, Splits)
    assert loaded.train.entries == splits.train.entries
    assert loaded.test.entries == splits.test.entries
    assert loaded.manifest_hash == splits.manifest_hash
    # Moving a subject between splits changes the split hash though the files are the same.
    moved = Splits(splits.train.subset(splits.train.subjects[1:]),
                   merge_datasets([splits.val, splits.train.subset(splits.train.subjects[:1])]),
                   splits.test)
    assert moved.manifest_hash != splits.manifest_hash
    # A changed file changes the hash and fails verification.
    file = splits.test.entries[0].path
    _png(file, value=99)
    stat = file.stat()
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert split_dataset(ds, 0.2, 0.2, seed=7).manifest_hash != saved["manifest_hash"]
    with pytest.raises(DatasetError, match="test split"):
        load_splits(path, ds, verify=True)
    # Subjects the data no longer has.
    missing = splits.test.subjects[0]
    with pytest.raises(DatasetError, match=repr(missing)):
        load_splits(path, ds.subset(s for s in ds.subjects if s != missing))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DatasetError, match="bad.json"):
        load_splits(tmp_path / "bad.json", ds)


# --- merging -----------------------------------------------------------------------------------


def test_merge_refuses_shared_subjects(tmp_path):
    a = scan_dataset(_standard(tmp_path / "a"))
    b = scan_dataset(_standard(tmp_path / "b", subjects=("carol",)))
    merged = merge_datasets([a, b], name="ab")
    assert merged.name == "ab" and merged.subjects == ["alice", "bob", "carol"]
    assert len(merged) == len(a) + len(b)
    c = scan_dataset(_standard(tmp_path / "c", subjects=("bob",)))
    with pytest.raises(DatasetError, match="'bob'"):
        merge_datasets([a, c])
    with pytest.raises(DatasetError):
        merge_datasets([])


def test_entry_without_relative_path_uses_file_name(tmp_path):
    file = _png(tmp_path / "x.png")
    ds = Dataset("manual", (Entry(SampleId("s", "face", "1"), file, 500),))
    assert ds.manifest()[0]["path"] == "x.png"


# --- public datasets in ../shared/data --------------------------------------------------------


def test_fvc_database():
    root = _need("fvc2000", "DB1_B")
    ds = scan_dataset(root)
    assert ds.name == "fvc2000-DB1_B"
    assert len(ds.identities) == 10
    assert all(len(v) == 8 for v in ds.by_identity().values())
    assert ds.identities[0] == "fvc2000-DB1_B-101/finger"
    assert [e.id.take for e in ds.by_identity()["fvc2000-DB1_B-110/finger"]] == \
        [str(i) for i in range(1, 9)]
    assert {e.dpi for e in ds.entries} == {500}
    assert ds.entries[0].relative == "fvc2000/DB1_B/101_1.tif"
    assert scan_dataset(root, format="fvc").entries == ds.entries
    samples = load_samples(ds.subset(ds.subjects[:1]))
    assert samples[0].pixels.shape == (300, 300)


def test_fvc_dpi_per_database():
    assert {e.dpi for e in scan_dataset(_need("fvc2004", "DB3_B")).entries} == {512}
    assert {e.dpi for e in scan_dataset(_need("fvc2004", "DB1_B")).entries} == {500}


def test_merged_fvc_subjects_do_not_collide():
    dbs = [scan_dataset(_need("fvc2000", "DB1_B")), scan_dataset(_need("fvc2004", "DB1_B")),
           scan_dataset(_need("fvc2002", "DB1_B"))]
    merged = merge_datasets(dbs)
    assert len(merged.subjects) == 30 and len(merged) == 240
    # A whole competition folder reads all its databases with the same subjects.
    year = scan_dataset(_need("fvc2000"))
    assert len(year.identities) == 40
    assert set(dbs[0].subjects) <= set(year.subjects)


def test_upek():
    ds = scan_dataset(_need("upek"))
    assert len(ds.identities) == 16
    assert all(len(v) == 8 for v in ds.by_identity().values())
    assert ds.subjects[:3] == ["upek-1", "upek-2", "upek-3"]
    assert load_image(ds.entries[0].path).ndim == 2


def test_socofing():
    root = _need("socofing")
    ds = scan_dataset(root)
    assert len(ds.identities) == 200 and len(ds.subjects) == 20
    groups = ds.by_identity()
    ident = groups["socofing-1/left/index"]
    takes = [e.id.take for e in ident]
    assert "real" in takes and "Altered-Easy-CR" in takes
    assert sum(len(v) for v in groups.values()) == 1831
    real = scan_dataset(root / "Real", min_impressions=1)
    assert len(real) == 200 and {e.id.take for e in real.entries} == {"real"}
    with pytest.raises(DatasetError, match="min_impressions"):
        scan_dataset(root / "Real")
    # The same file has the same manifest path whichever folder was scanned.
    assert real.entries[0].relative == ds.subset(["socofing-1"]).by_identity()[
        real.entries[0].id.identity][-1].relative
    samples = load_samples(ds.subset(["socofing-1"]))
    assert {s.pixels.shape for s in samples} == {(103, 96)}


def test_orl_faces():
    ds = scan_dataset(_need("orl_faces"))
    assert len(ds.identities) == 40
    assert all(len(v) == 10 for v in ds.by_identity().values())
    assert ds.identities[:2] == ["orl-1/face", "orl-2/face"]
    assert [e.id.take for e in ds.entries[:10]] == [str(i) for i in range(1, 11)]


@pytest.mark.slow
def test_scan_40000_images_is_fast(tmp_path):
    root = tmp_path / "big"
    for s in range(1000):
        for hand in ("left", "right"):
            for finger in ("thumb", "index", "middle", "ring", "little"):
                folder = root / f"{s:04d}" / hand / finger
                folder.mkdir(parents=True)
                for take in range(1, 5):
                    (folder / f"{take}.png").touch()
    start = time.perf_counter()
    ds = scan_dataset(root)
    elapsed = time.perf_counter() - start
    assert len(ds) == 40_000 and len(ds.identities) == 10_000
    assert elapsed < 5.0
