"""Folders of images <-> Samples: format adapters, manifests and subject-disjoint splits.

A dataset is a list of ``Entry`` records (who, which take, where, at what resolution). Scanning
only lists folders and parses file names: no image byte is read until ``load_samples`` decodes
the images or ``manifest`` hashes the files, so a 40,000-image folder scans in about a second.

Layouts read in place, without renaming anything:

- ``standard``: ``<subject>/<hand>/<finger>/<take>.<ext>`` (trait ``hand/finger``) and
  ``<subject>/face/<take>.<ext>`` (trait ``face``); an optional ``<root>/synth.json`` may give
  ``"dpi"`` (default 500).
- ``fvc``: ``<finger>_<impression>.tif`` in one database folder (``fvc2000/DB1_B``) or in the
  database folders under a competition folder (``fvc2000``). Subjects are prefixed with the
  competition and database (``fvc2000-DB1_B-101``) so merged databases never collide.
- ``upek``: ``<finger>_<impression>.png``; subjects ``upek-<finger>``.
- ``socofing``: ``Real/`` and ``Altered/Altered-<level>/`` files named
  ``<subject>__<M|F>_<Left|Right>_<finger>_finger[_CR|_Obl|_Zcut].BMP``. The real impression is
  take ``real``, alterations are takes like ``Altered-Easy-CR``.
- ``orl``: ``s<subject>/<n>.pgm`` faces; ``yale``: ``subject<NN>.<condition>`` faces.
- ``yaleb``: Extended Yale B crops ``yaleB<NN>/yaleB<NN>_P00A<az>E<el>.<ext>``; takes are the
  lighting (``A+035E+15``).
- ``rap3df``: Kinect faces ``<person>/<pose>_<k>_<channel>.png``; one entry per capture, its
  path the registered colour file (``_rgb_registered``), whose depth and infrared companions
  ``siamid.faces.channels`` finds by name; takes are ``<pose>_<k>`` (``front_1``).

Ordering is natural everywhere (``9`` before ``10``) and entries of a ``Dataset`` are always
sorted, so every derived list (identities, pairs, splits) is deterministic.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .config import PreprocessConfig
from .errors import DatasetError
from .types import Sample, SampleId

__all__ = [
    "DEFAULT_DPI",
    "FORMATS",
    "IMAGE_EXTENSIONS",
    "Dataset",
    "Entry",
    "Splits",
    "load_image",
    "load_samples",
    "load_splits",
    "merge_datasets",
    "scan_dataset",
    "split_dataset",
    "synthetic_sensor",
    "to_uint8_array",
]

DEFAULT_DPI = 500
IMAGE_EXTENSIONS = frozenset({".png", ".bmp", ".tif", ".tiff", ".pgm", ".jpg", ".jpeg"})
FORMATS = ("standard", "fvc", "upek", "socofing", "orl", "yale", "yaleb", "rap3df")
SPLIT_NAMES = ("train", "val", "test")
_SPLITS_FILE_FORMAT = "siamid-splits/1"
_MANIFEST_FORMAT = "siamid-manifest/1"

# What each layout looks like, for error messages that say what was looked for.
_LAYOUTS = {
    "standard": "<subject>/<hand>/<finger>/<take>.<ext> or <subject>/face/<take>.<ext> "
                "(ext: png, bmp, tif, tiff, pgm, jpg, jpeg)",
    "fvc": "<finger>_<impression>.tif files such as 101_1.tif, in the folder or in its "
           "database subfolders (DB1_B, ...)",
    "upek": "<finger>_<impression>.png files such as 1_1.png",
    "socofing": "Real/ and Altered/Altered-<level>/ holding "
                "<subject>__<M|F>_<Left|Right>_<finger>_finger[_CR|_Obl|_Zcut].BMP",
    "orl": "s<subject>/<n>.pgm",
    "yale": "subject<NN>.<condition> files (GIF without extension)",
    "yaleb": "yaleB<NN>/yaleB<NN>_P00A<azimuth>E<elevation>.png",
    "rap3df": "<person>/<pose>_<k>_rgb_registered.png (with _depth.png, _ir.png beside it)",
}

_IMG_EXT = r"(?:png|bmp|tif|tiff|pgm|jpg|jpeg)"
_NUMBERED_RE = re.compile(rf"^(\d+)_(\d+)\.{_IMG_EXT}$", re.IGNORECASE)
_SOCO_RE = re.compile(
    r"^(\d+)__([MF])_(Left|Right)_(thumb|index|middle|ring|little)_finger"
    r"(?:_(CR|Obl|Zcut))?\.bmp$",
    re.IGNORECASE,
)
_ORL_DIR_RE = re.compile(r"^s(\d+)$")
_ORL_FILE_RE = re.compile(r"^(\d+)\.pgm$", re.IGNORECASE)
_YALE_RE = re.compile(r"^subject(\d+)\.([a-z]+)$", re.IGNORECASE)
_NOT_YALE_CONDITIONS = frozenset({"md", "txt", "json", "csv", "py", "zip", "gif", "pdf", "html"})
_YALEB_DIR_RE = re.compile(r"^yaleB(\d+)$")
_YALEB_FILE_RE = re.compile(rf"^yaleB(\d+)_P\d+(A[+-]\d+E[+-]\d+)\.{_IMG_EXT}$", re.IGNORECASE)
_RAP3DF_RE = re.compile(r"^([a-z]+_\d+)_rgb_registered\.png$", re.IGNORECASE)
_FVC_YEAR_RE = re.compile(r"fvc[ _-]?(\d{4})", re.IGNORECASE)
_FVC_DB_RE = re.compile(r"db[ _-]?(\d)", re.IGNORECASE)

# Resolutions that differ from 500 dpi, from the competitions' database tables (and for the
# databases present in ../shared/data, from their SOURCE.md). FVC2004 DB2 follows SOURCE.md
# (U.are.U 4000, 512 dpi); some tables list it as 500 dpi: a 2% scale either way.
_FVC_DPI = {
    ("2002", "2"): 569,   # Biometrika FX2000
    ("2004", "2"): 512,   # Digital Persona U.are.U 4000
    ("2004", "3"): 512,   # Atmel FingerChip thermal sweep
    ("2006", "1"): 250,   # AuthenTec electric field
    ("2006", "2"): 569,   # Biometrika FX3000
}
_UPEK_DPI = 500   # UPEK SOURCE.md states none; TouchChip sensors are nominally 500-508 dpi
# Face photographs have no physical resolution. They get the default target resolution so
# that preprocessing does not rescale them.
_FACE_DPI = DEFAULT_DPI


# --------------------------------------------------------------------------------------------
# Records


@functools.lru_cache(maxsize=1 << 16)
def _natural_key(text: str) -> tuple[Any, ...]:
    """Sort key that orders digit runs by value (``9_1`` before ``10_1``); ties by the text."""
    parts = re.split(r"(\d+)", text)
    # re.split with a group alternates text, digits, text...: positions keep one type each.
    return (tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), text)


def _id_key(sample_id: SampleId) -> tuple[Any, ...]:
    return (_natural_key(sample_id.subject), _natural_key(sample_id.trait),
            _natural_key(sample_id.take))


def _identity_key(identity: str) -> tuple[Any, ...]:
    subject, _, trait = identity.partition("/")
    return (_natural_key(subject), _natural_key(trait))


@dataclass(frozen=True)
class Entry:
    """One image file of a dataset: who and which take (``id``), where (``path``), ``dpi``.

    ``relative`` is the file's path relative to its dataset's root (POSIX separators); it is
    what the manifest records, so a manifest does not depend on where the data lies on disk.
    """

    id: SampleId
    path: Path
    dpi: int
    relative: str = ""

    @property
    def manifest_path(self) -> str:
        """The path the manifest records: ``relative``, or the file name when it is unset."""
        return self.relative or Path(self.path).name


_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, cached per (path, size, mtime) so a changed file is re-hashed."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise DatasetError(
            f"cannot read {path} to hash it ({exc.strerror}); was it moved or deleted after the "
            "scan? Re-scan the dataset"
        ) from exc
    key = (str(path), st.st_size, st.st_mtime_ns)
    digest = _HASH_CACHE.get(key)
    if digest is None:
        try:
            with open(path, "rb") as fh:
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
        except OSError as exc:
            raise DatasetError(f"cannot read {path} to hash it: {exc}") from exc
        _HASH_CACHE[key] = digest
    return digest


def _sha256_json(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, repr=False)
class Dataset:
    """A named, immutable set of entries, kept sorted naturally by (subject, trait, take).

    Identity labels are ``SampleId.identity`` (``subject/trait``): each finger is its own
    identity, while splits are made by subject so a person's other fingers never leak.
    Two entries with the same SampleId are refused.
    """

    name: str
    entries: tuple[Entry, ...] = field(default=())

    def __post_init__(self) -> None:
        entries = sorted(self.entries, key=lambda e: _id_key(e.id))
        for before, after in zip(entries, entries[1:]):
            if before.id == after.id:
                raise DatasetError(
                    f"dataset {self.name!r}: sample {after.id} appears twice ({before.path} and "
                    f"{after.path}); keep one of the files or rename the take"
                )
        object.__setattr__(self, "entries", tuple(entries))

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, entries={len(self.entries)}, "
                f"identities={len(self._identities)}, subjects={len(self._subjects)})")

    @functools.cached_property
    def _groups(self) -> dict[str, tuple[Entry, ...]]:
        groups: dict[str, list[Entry]] = {}
        for entry in self.entries:   # already sorted: identities and takes come out in order
            groups.setdefault(entry.id.identity, []).append(entry)
        return {k: tuple(v) for k, v in groups.items()}

    @functools.cached_property
    def _identities(self) -> tuple[str, ...]:
        return tuple(sorted(self._groups, key=_identity_key))

    @functools.cached_property
    def _subjects(self) -> tuple[str, ...]:
        return tuple(sorted({e.id.subject for e in self.entries}, key=_natural_key))

    @property
    def identities(self) -> list[str]:
        """Identity labels (``subject/trait``), sorted naturally (``9`` before ``10``)."""
        return list(self._identities)

    @property
    def subjects(self) -> list[str]:
        """Subjects (people), sorted naturally."""
        return list(self._subjects)

    def by_identity(self) -> dict[str, list[Entry]]:
        """Entries grouped by identity label, identities and takes in natural order."""
        return {identity: list(self._groups[identity]) for identity in self._identities}

    def subset(self, subjects: Iterable[str]) -> Dataset:
        """The entries of the given subjects; DatasetError naming any subject not in the data."""
        wanted = set(subjects)
        missing = wanted.difference(self._subjects)
        if missing:
            names = sorted(missing, key=_natural_key)
            raise DatasetError(
                f"dataset {self.name!r} has no subject {names[0]!r}"
                + (f" (nor {len(names) - 1} other(s))" if len(names) > 1 else "")
                + f"; it has {len(self._subjects)} subjects: check the subject names or the data"
            )
        return Dataset(self.name, tuple(e for e in self.entries if e.id.subject in wanted))

    def manifest(self) -> list[dict[str, Any]]:
        """One row per entry: subject, trait, take, relative path, dpi and sha256 of the file.

        Hashing reads every file once; hashes are cached per path, size and modification time.
        """
        return [
            {
                "subject": e.id.subject,
                "trait": e.id.trait,
                "take": e.id.take,
                "path": e.manifest_path,
                "dpi": e.dpi,
                "sha256": _file_sha256(e.path),
            }
            for e in self.entries
        ]

    def manifest_hash(self) -> str:
        """sha256 hex over the sorted manifest: changes with any file's content, label or dpi,
        not with where the dataset lies on disk nor with its name."""
        rows = sorted(self.manifest(),
                      key=lambda r: (r["subject"], r["trait"], r["take"], r["path"]))
        return _sha256_json({"format": _MANIFEST_FORMAT, "rows": rows})

    def summary(self) -> dict[str, Any]:
        """Counts for people and logs: entries, identities, subjects, impressions, dpi values."""
        counts = [len(v) for v in self._groups.values()]
        return {
            "name": self.name,
            "entries": len(self.entries),
            "identities": len(self._identities),
            "subjects": len(self._subjects),
            "min_impressions": min(counts, default=0),
            "max_impressions": max(counts, default=0),
            "dpi": sorted({e.dpi for e in self.entries}),
        }


# --------------------------------------------------------------------------------------------
# Scanning


def _walk_files(root: Path, max_depth: int) -> Iterator[tuple[tuple[str, ...], str]]:
    """(parts relative to root, absolute path) of every non-hidden file at depth <= max_depth.

    Uses os.scandir, whose directory entries know their type without a stat per file.
    """
    stack: list[tuple[tuple[str, ...], str]] = [((), str(root))]
    while stack:
        parts, folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                items = list(it)
        except OSError as exc:
            raise DatasetError(f"cannot list folder {folder}: {exc.strerror or exc}; "
                               "check that it exists and is readable") from exc
        for item in items:
            if item.name.startswith("."):   # .DS_Store, .ipynb_checkpoints, editor files
                continue
            if item.is_dir():
                if len(parts) + 1 < max_depth:
                    stack.append((parts + (item.name,), item.path))
            elif item.is_file():
                yield parts + (item.name,), item.path


def _list_dir(folder: Path) -> tuple[list[str], list[str]]:
    """Names of the (files, folders) directly in ``folder``, hidden ones left out."""
    files: list[str] = []
    dirs: list[str] = []
    try:
        with os.scandir(folder) as it:
            for item in it:
                if item.name.startswith("."):
                    continue
                if item.is_dir():
                    dirs.append(item.name)
                elif item.is_file():
                    files.append(item.name)
    except OSError as exc:
        raise DatasetError(f"cannot list folder {folder}: {exc.strerror or exc}") from exc
    return sorted(files, key=_natural_key), sorted(dirs, key=_natural_key)


def synthetic_sensor(root: str | Path) -> str | None:
    """The sensor a synthetic set under ``root`` was rendered for (from its ``synth.json``), or
    None where ``root`` is not a set made by ``siamid synth``."""
    meta = Path(root) / "synth.json"
    try:
        data = json.loads(meta.read_text())
    except (OSError, ValueError):
        return None
    return str(data.get("sensor", "")) if isinstance(data, dict) else None


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file that must hold an object (a dataset's synth.json, a capture manifest);
    DatasetError naming the file when it is unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not readable JSON ({exc}); fix or delete the file") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object, got {type(data).__name__}; fix "
                           "or delete the file")
    return data


def _standard_dpi(root: Path) -> int:
    meta = root / "synth.json"
    if not meta.is_file():
        return DEFAULT_DPI
    data = read_json_object(meta)
    dpi = data.get("dpi", DEFAULT_DPI)
    if not isinstance(dpi, int) or isinstance(dpi, bool) or dpi <= 0:
        raise DatasetError(f"{meta}: \"dpi\" must be a positive integer, got {dpi!r}")
    return dpi


def _scan_standard(root: Path) -> tuple[str, list[Entry]]:
    dpi = _standard_dpi(root)
    entries = []
    for parts, path in _walk_files(root, 4):
        if len(parts) not in (3, 4):
            continue   # files at the root (synth.json, README) or in the subject folder
        stem, ext = os.path.splitext(parts[-1])
        if ext.lower() not in IMAGE_EXTENSIONS:
            continue
        sample_id = SampleId(parts[0], "/".join(parts[1:-1]), stem)
        entries.append(Entry(sample_id, Path(path), dpi, "/".join(parts)))
    return root.name, entries


def _fvc_dpi(folder: Path) -> int:
    where = f"{folder.parent.name}/{folder.name}"
    year = _FVC_YEAR_RE.search(where)
    db = _FVC_DB_RE.search(folder.name)
    if year and db:
        return _FVC_DPI.get((year.group(1), db.group(1)), DEFAULT_DPI)
    return DEFAULT_DPI


def _numbered_folders(root: Path) -> list[Path]:
    """``root`` and/or its direct subfolders that hold ``<finger>_<impression>`` images."""
    files, dirs = _list_dir(root)
    found = [root] if any(_NUMBERED_RE.match(f) for f in files) else []
    for name in dirs:
        sub_files, _ = _list_dir(root / name)
        if any(_NUMBERED_RE.match(f) for f in sub_files):
            found.append(root / name)
    return found


def _scan_numbered(root: Path, kind: str) -> tuple[str, list[Entry]]:
    folders = _numbered_folders(root)
    entries = []
    prefixes = []
    for folder in folders:
        if kind == "fvc":
            # Competition and database in the subject: FVC2000 and FVC2004 both have finger 101.
            prefix = f"{folder.parent.name}-{folder.name}"
            rel_dir = f"{folder.parent.name}/{folder.name}"
            dpi = _fvc_dpi(folder)
        else:
            prefix = rel_dir = folder.name
            dpi = _UPEK_DPI
        prefixes.append(prefix)
        files, _ = _list_dir(folder)
        for name in files:
            m = _NUMBERED_RE.match(name)
            if m:
                sample_id = SampleId(f"{prefix}-{m.group(1)}", "finger", m.group(2))
                entries.append(Entry(sample_id, folder / name, dpi, f"{rel_dir}/{name}"))
    name = prefixes[0] if len(prefixes) == 1 else root.name
    return name, entries


def _socofing_base(file: Path) -> Path:
    """The SOCOFing root (holding Real/ and Altered/) that ``file`` belongs to, if recognisable."""
    parent = file.parent
    if parent.name.lower() == "real":
        return parent.parent
    if parent.name.lower().startswith("altered-") and parent.parent.name.lower() == "altered":
        return parent.parent.parent
    return parent


def _scan_socofing(root: Path) -> tuple[str, list[Entry]]:
    entries = []
    for parts, path in _walk_files(root, 3):
        m = _SOCO_RE.match(parts[-1])
        if not m:
            continue
        subject, _sex, hand, finger, alteration = m.groups()
        file = Path(path)
        if alteration is None:
            take = "real"
        else:
            take = f"{file.parent.name}-{alteration}"
        sample_id = SampleId(f"socofing-{int(subject)}", f"{hand.lower()}/{finger.lower()}", take)
        relative = file.relative_to(_socofing_base(file)).as_posix()
        entries.append(Entry(sample_id, file, DEFAULT_DPI, relative))
    return "socofing", entries


def _scan_faces(root: Path, name: str,
                sample_id: Callable[[str, str], SampleId | None]) -> tuple[str, list[Entry]]:
    """Face files one folder deep (``<person>/<file>``): ``sample_id(folder, file)`` names each
    one, or None for a file that is not a sample of the layout."""
    entries = []
    for parts, path in _walk_files(root, 2):
        if len(parts) == 2:
            found = sample_id(*parts)
            if found is not None:
                entries.append(Entry(found, Path(path), _FACE_DPI, "/".join(parts)))
    return name, entries


def _orl_id(folder: str, file: str) -> SampleId | None:
    d, f = _ORL_DIR_RE.match(folder), _ORL_FILE_RE.match(file)
    return SampleId(f"orl-{int(d.group(1))}", "face", f.group(1)) if d and f else None


def _yaleb_id(folder: str, file: str) -> SampleId | None:
    d, f = _YALEB_DIR_RE.match(folder), _YALEB_FILE_RE.match(file)
    if d and f and d.group(1) == f.group(1):
        return SampleId(f"yaleb-{int(d.group(1))}", "face", f.group(2))
    return None


def _rap3df_id(folder: str, file: str) -> SampleId | None:
    m = _RAP3DF_RE.match(file)
    return SampleId(f"rap3df-{folder}", "face", m.group(1).lower()) if m else None


def _scan_yale(root: Path) -> tuple[str, list[Entry]]:
    files, _ = _list_dir(root)
    entries = []
    for name in files:
        m = _YALE_RE.match(name)
        if m and m.group(2).lower() not in _NOT_YALE_CONDITIONS:
            sample_id = SampleId(f"yale-{m.group(1)}", "face", m.group(2).lower())
            entries.append(Entry(sample_id, root / name, _FACE_DPI, name))
    return "yale", entries


def _detect_format(root: Path) -> str | None:
    """The layout of ``root`` from a look at its first two levels, or None."""
    files, dirs = _list_dir(root)
    if any(_SOCO_RE.match(f) for f in files):
        return "socofing"
    if any(_NUMBERED_RE.match(f) for f in files):
        return "upek" if "upek" in root.name.lower() else "fvc"
    if any(_YALE_RE.match(f) and f.rsplit(".", 1)[1].lower() not in _NOT_YALE_CONDITIONS
           for f in files):
        return "yale"
    # Datasets are homogeneous: a few subfolders tell the layout without listing thousands.
    for name in dirs[:20]:
        sub_files, _ = _list_dir(root / name)
        if any(_SOCO_RE.match(f) for f in sub_files[:50]):
            return "socofing"
        if name.lower() == "altered":
            for level in _list_dir(root / name)[1][:3]:
                if any(_SOCO_RE.match(f) for f in _list_dir(root / name / level)[0][:50]):
                    return "socofing"
        if _ORL_DIR_RE.match(name) and any(_ORL_FILE_RE.match(f) for f in sub_files):
            return "orl"
        if _YALEB_DIR_RE.match(name) and any(_YALEB_FILE_RE.match(f) for f in sub_files[:50]):
            return "yaleb"
        if any(_RAP3DF_RE.match(f) for f in sub_files[:50]):
            return "rap3df"
        if any(_NUMBERED_RE.match(f) for f in sub_files):
            return "upek" if "upek" in name.lower() else "fvc"
    return "standard" if dirs else None


_ADAPTERS = {
    "standard": _scan_standard,
    "fvc": lambda root: _scan_numbered(root, "fvc"),
    "upek": lambda root: _scan_numbered(root, "upek"),
    "socofing": _scan_socofing,
    "orl": lambda root: _scan_faces(root, "orl", _orl_id),
    "yale": _scan_yale,
    "yaleb": lambda root: _scan_faces(root, "yaleb", _yaleb_id),
    "rap3df": lambda root: _scan_faces(root, "rap3df", _rap3df_id),
}


def _layouts_tried() -> str:
    return "; ".join(f"{k}: {v}" for k, v in _LAYOUTS.items())


def scan_dataset(root: str | Path, format: str = "auto", dpi: int = 0,
                 min_impressions: int = 2) -> Dataset:
    """List the images under ``root`` as a Dataset, without reading any image.

    ``format`` is one of ``auto`` or ``FORMATS`` (``standard``, ``fvc``, ``upek``, ``socofing``,
    ``orl``, ``yale``, ``yaleb``, ``rap3df``); ``auto`` recognises the layout from file and folder names. ``dpi`` > 0 overrides
    the layout's resolution for every entry (0 keeps it: 500 unless the layout says otherwise).
    Every identity must have at least ``min_impressions`` images (``1`` allows single images,
    as for SOCOFing ``Real`` alone).
    """
    root_path = Path(root).expanduser()
    if not root_path.exists():
        raise DatasetError(f"dataset folder {root_path} does not exist; check the path")
    if not root_path.is_dir():
        raise DatasetError(f"dataset root {root_path} is not a folder; give the folder that "
                           "holds the images")
    root_path = root_path.absolute()
    if format != "auto" and format not in _ADAPTERS:
        raise DatasetError(f"unknown dataset format {format!r}; use auto or one of "
                           f"{', '.join(FORMATS)}")
    if not isinstance(dpi, int) or isinstance(dpi, bool) or dpi < 0:
        raise DatasetError(f"dpi must be 0 (the layout's default) or a positive integer, "
                           f"got {dpi!r}")
    if not isinstance(min_impressions, int) or min_impressions < 1:
        raise DatasetError(f"min_impressions must be an integer >= 1, got {min_impressions!r}")

    layout = format if format != "auto" else _detect_format(root_path)
    entries: list[Entry] = []
    name = root_path.name
    if layout is not None:
        name, entries = _ADAPTERS[layout](root_path)
    if not entries:
        if format == "auto":
            raise DatasetError(f"no images found under {root_path}; looked for these layouts: "
                               f"{_layouts_tried()}")
        raise DatasetError(f"no images found under {root_path} in the {format} layout "
                           f"({_LAYOUTS[format]}); check the folder, or use format='auto'")
    if dpi:
        entries = [replace(e, dpi=dpi) for e in entries]
    ds = Dataset(name, tuple(entries))
    if min_impressions > 1:
        short = [(ident, group) for ident, group in ds._groups.items()
                 if len(group) < min_impressions]
        if short:
            short.sort(key=lambda item: _identity_key(item[0]))
            ident, group = short[0]
            others = f" (and {len(short) - 1} other identities)" if len(short) > 1 else ""
            raise DatasetError(
                f"identity {ident!r} in {root_path} has {len(group)} impression(s) "
                f"({group[0].path}){others}, fewer than min_impressions={min_impressions}: "
                "genuine pairs need several impressions of a finger. Add impressions, remove "
                "the identity, or pass min_impressions=1 to accept single images"
            )
    return ds


def merge_datasets(datasets: Sequence[Dataset], name: str = "merged") -> Dataset:
    """One dataset from several; DatasetError if a subject appears in more than one of them.

    A shared subject name would silently join two people (or two fingers 101 of different
    databases) into one; the FVC and public adapters prefix subjects so this does not happen.
    """
    if not datasets:
        raise DatasetError("merge_datasets needs at least one dataset")
    owner: dict[str, str] = {}
    for ds in datasets:
        for subject in ds._subjects:
            if subject in owner:
                raise DatasetError(
                    f"subject {subject!r} is in both dataset {owner[subject]!r} and dataset "
                    f"{ds.name!r}; merging would treat two people as one. Rename the subject "
                    "folders, or put one person's images in a single dataset"
                )
            owner[subject] = ds.name
    return Dataset(name, tuple(e for ds in datasets for e in ds.entries))


# --------------------------------------------------------------------------------------------
# Loading images


def to_uint8_array(im: Image.Image) -> np.ndarray:
    """A decoded picture as uint8 pixels, gray (H, W) or colour (H, W, 3+): the last step of
    ``load_image``, also what a camera frame goes through."""
    mode = im.mode
    if mode == "L":
        return np.array(im, dtype=np.uint8)
    if mode.startswith("I;16"):
        return (np.array(im).astype(np.uint16) >> 8).astype(np.uint8)
    if mode in ("I", "F"):
        arr = np.array(im)
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            # 16-bit data opened as 32-bit: keep the top byte of the 16-bit range.
            arr = np.clip(arr, 0, 65535).astype(np.uint16) >> 8
        return np.clip(arr, 0, 255).astype(np.uint8)
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "LA":
        return np.array(im.convert("L"), dtype=np.uint8)
    elif mode not in ("RGB", "RGBA"):
        im = im.convert("RGB")
    arr = np.array(im, dtype=np.uint8)
    if arr.shape[2] == 4 and not ((arr[..., 3] != 0) & (arr[..., 3] != 255)).any():
        # An alpha of only 0/255 is a mask (32-bit BMPs such as SOCOFing Real carry one that
        # just repeats black pixels), not data; a 4th channel with levels (depth) is kept.
        arr = arr[..., :3]
    if arr.shape[2] == 3 and np.array_equal(arr[..., 0], arr[..., 1]) \
            and np.array_equal(arr[..., 1], arr[..., 2]):
        arr = arr[..., 0]    # gray content stored as colour (SOCOFing, UPEK palettes)
    return np.ascontiguousarray(arr)


def load_image(path: str | Path, max_pixels: int = PreprocessConfig.max_pixels) -> np.ndarray:
    """Decode an image file to uint8 (H, W) gray or (H, W, C).

    Gray content stored as palette, RGB or RGBA comes back as (H, W); 16-bit gray keeps its
    top 8 bits; an alpha channel of only 0 and 255 (a mask) is dropped, a 4th channel with
    other levels (RGB-D depth) is kept.
    An image of more than ``max_pixels`` pixels (default: ``PreprocessConfig.max_pixels``) is
    refused from its header, before any pixel is decoded: a huge or malicious file costs
    neither memory nor time.
    DatasetError naming the file if it is missing, too large, truncated or not an image.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # PIL warns (and above twice its own limit raises) about huge images; ours is lower
            # and checked below, with a message naming the file.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:  # reads the header only
                width, height = im.size
                if width * height > max_pixels:
                    raise DatasetError(_too_large(path, f"{width}x{height} pixels", max_pixels))
                im.load()   # decode fully now so a truncated file fails here, naming the file
                return to_uint8_array(im)
    except FileNotFoundError as exc:
        raise DatasetError(f"image file {path} not found; check the path (a dataset whose "
                           "files moved needs a new scan)") from exc
    except Image.DecompressionBombError as exc:
        raise DatasetError(_too_large(path, "larger than PIL decodes", max_pixels)) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise DatasetError(f"cannot read image {path}: {exc}. The file is corrupt or not an "
                           "image: replace or delete it, then re-scan") from exc


def _too_large(path: Path, size: str, max_pixels: int) -> str:
    return (f"image {path} is too large ({size}); at most {max_pixels:,} pixels are "
            "read: crop or downscale it to the finger or face")


def _describe_shape(shape: tuple[int, ...]) -> str:
    text = f"{shape[1]}x{shape[0]} (width x height)"
    return text if len(shape) == 2 else f"{text} with {shape[2]} channels"


def load_samples(dataset: Dataset, same_size: bool = True) -> list[Sample]:
    """Decode every entry into a Sample, in the dataset's order.

    With ``same_size`` every image must have the shape of the first one; DatasetError names
    the first file that differs and the expected size.
    """
    samples: list[Sample] = []
    first: tuple[tuple[int, ...], Path] | None = None
    for entry in dataset.entries:
        pixels = load_image(entry.path)
        if same_size:
            if first is None:
                first = (pixels.shape, entry.path)
            elif pixels.shape != first[0]:
                raise DatasetError(
                    f"{entry.path} is {_describe_shape(pixels.shape)} but dataset "
                    f"{dataset.name!r} expects {_describe_shape(first[0])} like {first[1]}; "
                    "resize the images to one size, or load with same_size=False and let "
                    "preprocessing crop and resize"
                )
        samples.append(Sample(pixels=pixels, dpi=entry.dpi, id=entry.id, path=entry.path))
    return samples


# --------------------------------------------------------------------------------------------
# Splits


@dataclass(frozen=True)
class Splits:
    """Subject-disjoint train / validation / test datasets."""

    train: Dataset
    val: Dataset
    test: Dataset

    def _parts(self) -> dict[str, Dataset]:
        return {"train": self.train, "val": self.val, "test": self.test}

    @property
    def manifest_hash(self) -> str:
        """sha256 hex over the three manifests with their split names (reads files once)."""
        return _sha256_json({"format": _MANIFEST_FORMAT,
                             "splits": {k: v.manifest_hash() for k, v in self._parts().items()}})

    def save(self, path: str | Path) -> None:
        """Write the split as JSON: split name -> sorted subjects, plus manifest hashes."""
        path = Path(path)
        parts = self._parts()
        data = {
            "format": _SPLITS_FILE_FORMAT,
            "dataset": self.train.name.rsplit(":", 1)[0],
            **{k: v.subjects for k, v in parts.items()},
            "hashes": {k: v.manifest_hash() for k, v in parts.items()},
            "manifest_hash": self.manifest_hash,
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data, indent=1) + "\n")
        except OSError as exc:
            raise DatasetError(f"cannot write splits to {path}: {exc}") from exc


def _split_count(fraction: float, n: int) -> int:
    if fraction <= 0:
        return 0
    # Round half up (not to even), and at least one subject when a fraction is asked for.
    return max(1, int(fraction * n + 0.5))


def _subject_rank(seed: int, subject: str) -> str:
    return hashlib.sha256(f"{seed}\0{subject}".encode("utf-8")).hexdigest()


def split_dataset(ds: Dataset, val_fraction: float = 0.15, test_fraction: float = 0.15,
                  seed: int = 0) -> Splits:
    """Split ``ds`` by subject into train / val / test, deterministically from ``seed``.

    Subjects are ranked by a hash of (seed, subject): the first ``round(test_fraction * n)``
    go to test, the next ``round(val_fraction * n)`` to val, the rest to train (a non-zero
    fraction gets at least one subject). Ranking by hash rather than shuffling keeps each
    subject's place when subjects are added or removed, so splits change as little as possible.
    """
    for label, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise DatasetError(f"{label} must be in [0, 1), got {value!r}")
    if val_fraction + test_fraction >= 1.0:
        raise DatasetError(f"val_fraction + test_fraction must be < 1 to leave subjects for "
                           f"training, got {val_fraction} + {test_fraction}")
    subjects = ds.subjects
    n = len(subjects)
    n_test, n_val = _split_count(test_fraction, n), _split_count(val_fraction, n)
    if n - n_test - n_val < 1:
        needed = 1 + (val_fraction > 0) + (test_fraction > 0)
        raise DatasetError(
            f"dataset {ds.name!r} has {n} subject(s): too few to split into train, val "
            f"(val_fraction={val_fraction}) and test (test_fraction={test_fraction}) with at "
            f"least one subject each; use at least {needed} subjects or set a fraction to 0"
        )
    ranked = sorted(subjects, key=lambda s: _subject_rank(seed, s))
    test = set(ranked[:n_test])
    val = set(ranked[n_test:n_test + n_val])
    train = set(ranked[n_test + n_val:])
    return Splits(
        train=replace(ds.subset(train), name=f"{ds.name}:train"),
        val=replace(ds.subset(val), name=f"{ds.name}:val"),
        test=replace(ds.subset(test), name=f"{ds.name}:test"),
    )


def load_splits(path: str | Path, ds: Dataset, verify: bool = False) -> Splits:
    """Re-apply a split saved by ``Splits.save`` to ``ds``.

    DatasetError if the file is unreadable or a saved subject is not in ``ds``. Subjects of
    ``ds`` that the file does not name are left out of all three splits (they were not there
    when the split was made; putting them anywhere could leak). With ``verify`` the manifest
    hashes must equal the saved ones (reads every file).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise DatasetError(f"splits file {path} not found") from exc
    except (OSError, ValueError) as exc:
        raise DatasetError(f"splits file {path} is not readable JSON ({exc}); make a new "
                           "split") from exc
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in SPLIT_NAMES):
        raise DatasetError(f"splits file {path} lacks the train/val/test subject lists; it was "
                           "not written by Splits.save")
    seen: dict[str, str] = {}
    for split in SPLIT_NAMES:
        for subject in data[split]:
            if subject in seen:
                raise DatasetError(f"splits file {path}: subject {subject!r} is in both "
                                   f"{seen[subject]} and {split}; make a new split")
            seen[subject] = split
    known = set(ds.subjects)
    missing = [s for s in seen if s not in known]
    if missing:
        raise DatasetError(
            f"splits file {path} names {len(missing)} subject(s) that dataset {ds.name!r} does "
            f"not have, e.g. {missing[0]!r} ({seen[missing[0]]}); scan the same data the split "
            "was made from, or make a new split"
        )
    splits = Splits(*(replace(ds.subset(data[k]), name=f"{ds.name}:{k}") for k in SPLIT_NAMES))
    if verify:
        saved = data.get("hashes", {})
        for split, part in splits._parts().items():
            if saved.get(split) != part.manifest_hash():
                raise DatasetError(
                    f"the {split} split of {ds.name!r} no longer matches {path}: files were "
                    "added, removed or changed since the split was saved"
                )
    return splits
