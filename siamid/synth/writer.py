"""Whole synthetic fingers and datasets on disk in the standard layout.

Finger ``i`` of a dataset made with ``seed`` is drawn from ``SeedSequence([seed, i])`` alone, so
its images are the same whatever the worker count, the order fingers finish in, or whether the
run was interrupted and resumed. Impression ``k`` of a finger has its own child seed, so asking
for more impressions later keeps the first ones unchanged.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from ..atomic import write_atomic
from ..errors import ConfigError
from ..parallel import available_cores, limit_numeric_threads, single_threaded_numerics
from .impressions import SENSORS, check_harshness, render_impression, sensor_spec
from .masters import MasterPrint, make_master

#: Bumped whenever a change makes the same seed produce different images.
GENERATOR_VERSION = 2
HANDS = ("left", "right")
FINGERS = ("thumb", "index", "middle", "ring", "little")
FINGERS_PER_SUBJECT = len(HANDS) * len(FINGERS)
META_FILE = "synth.json"


def master_size_for(sensor: str) -> int:
    """Canvas side of the master prints used for ``sensor``: big enough for any pose."""
    spec = sensor_spec(sensor)
    return 320 if max(spec.height, spec.width) <= 224 else 400


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def generate_finger(
    seed: int, impressions: int, sensor: str = "r503", index: int = 0, harshness: float = 0.0
) -> tuple[MasterPrint, list[np.ndarray]]:
    """One synthetic finger: its master print and ``impressions`` uint8 images on ``sensor``.

    Deterministic in (``seed``, ``index``, ``harshness``); ``index`` is the finger's number
    within a dataset; ``harshness`` is ``render_impression``'s.
    """
    seed = _check_int("seed", seed, 0)
    index = _check_int("index", index, 0)
    impressions = _check_int("impressions", impressions, 1)
    sensor_spec(sensor)
    harshness = check_harshness(harshness)
    master_seq, impression_seq = np.random.SeedSequence([seed, index]).spawn(2)
    master = make_master(np.random.default_rng(master_seq), size=master_size_for(sensor))
    images = [
        render_impression(master, np.random.default_rng(child), sensor, harshness)
        for child in impression_seq.spawn(impressions)
    ]
    return master, images


def finger_folder(index: int, identities: int) -> Path:
    """Relative folder ``<subject>/<hand>/<finger>`` of finger ``index``: 10 per subject."""
    subjects = (identities + FINGERS_PER_SUBJECT - 1) // FINGERS_PER_SUBJECT
    width = max(4, len(str(subjects - 1)))
    subject, rest = divmod(index, FINGERS_PER_SUBJECT)
    hand, finger = divmod(rest, len(FINGERS))
    return Path(f"synth{subject:0{width}d}") / HANDS[hand] / FINGERS[finger]


def _write_png_atomic(path: Path, pixels: np.ndarray) -> None:
    """Write through a temporary file and rename, so a crash never leaves half an image."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        # Level 1: 4x faster than the default for about 15 % larger files, and dataset
        # generation would otherwise spend as long compressing as rendering.
        image = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8))
        image.save(tmp, format="PNG", compress_level=1)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _finger_done(folder: Path, impressions: int) -> bool:
    return all((folder / f"{take}.png").is_file() for take in range(1, impressions + 1))


def _write_finger(task: tuple[str, int, int, int, int, str, float]) -> int:
    """Worker: generate finger ``index`` and write its PNGs. Returns the index."""
    out, identities, index, seed, impressions, sensor, harshness = task
    folder = Path(out) / finger_folder(index, identities)
    folder.mkdir(parents=True, exist_ok=True)
    _, images = generate_finger(seed, impressions, sensor, index=index, harshness=harshness)
    for take, pixels in enumerate(images, start=1):
        _write_png_atomic(folder / f"{take}.png", pixels)
    return index


def _write_meta(out: Path, meta: dict[str, object]) -> None:
    meta_path = out / META_FILE
    if meta_path.is_file():
        try:
            old = json.loads(meta_path.read_text())
        except ValueError:
            old = {}
        old.setdefault("harshness", 0.0)  # sets written before harshness existed
        for key in ("sensor", "seed", "generator_version", "harshness"):
            if key in old and old[key] != meta[key]:
                raise ConfigError(
                    f"{out} already holds a synthetic set made with {key}={old[key]!r}, "
                    f"not {meta[key]!r}; choose another output folder or delete it"
                )
    write_atomic(meta_path, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())


def _pool_context() -> multiprocessing.context.BaseContext:
    """Fork where the platform has it, else spawn.

    Fork, because spawn and forkserver re-import the caller's main module in every worker: a
    script without an ``if __name__ == "__main__"`` guard would then start a pool inside each
    worker, fail, and have the pool respawn workers forever at full CPU. The workers only run
    numpy, scipy and Pillow code (no OpenMP, nothing from torch), which is safe in a forked
    child even when the parent has loaded torch, as PyTorch's own DataLoader workers are.
    Where there is no fork (Windows, and macOS by default) the usual ``__main__`` guard is needed.
    """
    # macOS lists fork but defaults to spawn because its system frameworks break after fork.
    if "fork" in multiprocessing.get_all_start_methods() and sys.platform != "darwin":
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def generate_dataset(
    out: str | Path,
    identities: int,
    impressions: int,
    sensor: str = "r503",
    seed: int = 0,
    workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
    harshness: float = 0.0,
) -> Path:
    """Write ``identities`` synthetic fingers x ``impressions`` takes under ``out``.

    Layout: ``out/<subject>/<hand>/<finger>/<take>.png`` with subjects ``synth0000``, ... of ten
    fingers each, takes ``1`` .. ``impressions``, plus ``out/synth.json`` recording the
    parameters. Fingers whose takes all exist are skipped, so an interrupted run resumes; a
    folder made with another sensor, seed, harshness or generator version is refused.
    ``harshness`` is ``render_impression``'s (0: generator v2's images). ``workers=0`` uses
    every core: one worker process per core, each with single-threaded BLAS, so the speed grows
    with the core count (``workers=1`` runs in this process, also single-threaded).
    ``progress(done, total)`` is called as fingers finish (skipped ones count as done at once).
    Returns ``out`` as a Path.
    """
    identities = _check_int("identities", identities, 1)
    impressions = _check_int("impressions", impressions, 1)
    seed = _check_int("seed", seed, 0)
    workers = _check_int("workers", workers, 0)
    harshness = check_harshness(harshness)
    spec = sensor_spec(sensor)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output {out} is a file, not a folder; choose a folder path")
    out.mkdir(parents=True, exist_ok=True)
    _write_meta(
        out,
        {
            "generator": "siamid.synth",
            "generator_version": GENERATOR_VERSION,
            "sensor": spec.name,
            "height": spec.height,
            "width": spec.width,
            "dpi": spec.dpi,
            "gray_levels": spec.gray_levels,
            "harshness": harshness,
            "seed": seed,
            "identities": identities,
            "impressions": impressions,
            "subjects": (identities + FINGERS_PER_SUBJECT - 1) // FINGERS_PER_SUBJECT,
            "fingers_per_subject": FINGERS_PER_SUBJECT,
            "master_size": master_size_for(sensor),
        },
    )
    pending = [
        i for i in range(identities)
        if not _finger_done(out / finger_folder(i, identities), impressions)
    ]
    done = identities - len(pending)
    if progress is not None and done:
        progress(done, identities)
    tasks = [(str(out), identities, i, seed, impressions, sensor, harshness) for i in pending]
    n_workers = min(workers or available_cores(), len(tasks))
    # One BLAS thread per process, the pool's workers included: the pool is the parallelism,
    # and extra BLAS threads make the small matrix products slower (see siamid.parallel).
    with single_threaded_numerics():
        if n_workers <= 1:
            for task in tasks:
                _write_finger(task)
                done += 1
                if progress is not None:
                    progress(done, identities)
            return out
        with _pool_context().Pool(n_workers, initializer=limit_numeric_threads) as pool:
            for _ in pool.imap_unordered(_write_finger, tasks, chunksize=1):
                done += 1
                if progress is not None:
                    progress(done, identities)
    return out


__all__ = [
    "FINGERS",
    "GENERATOR_VERSION",
    "HANDS",
    "SENSORS",
    "finger_folder",
    "generate_dataset",
    "generate_finger",
    "master_size_for",
]
