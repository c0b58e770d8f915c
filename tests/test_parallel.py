"""Tests of siamid.parallel: worker processes run their numeric libraries on one thread."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pytest

threadpoolctl = pytest.importorskip("threadpoolctl")

from siamid.parallel import (  # noqa: E402  (after the skip: the helpers need threadpoolctl)
    limit_numeric_threads,
    numeric_thread_counts,
    single_threaded_numerics,
)

needs_fork = pytest.mark.skipif(
    os.name != "posix" or not Path("/proc/self/task").is_dir(),
    reason="checks forked workers' OS threads through /proc",
)


def _worker_state(_: object = None) -> tuple[dict[str, int], int]:
    """In a worker: its numeric pool sizes and its OS threads after a BLAS product big enough
    to be split across threads if the pool allowed it."""
    a = np.ones((400, 400), np.float32)
    a @ a
    return numeric_thread_counts(), len(os.listdir("/proc/self/task"))


def test_single_threaded_numerics_limits_then_restores():
    with threadpoolctl.threadpool_limits(limits=2):
        before = numeric_thread_counts()
        assert before and set(before.values()) == {2}
        with single_threaded_numerics():
            assert set(numeric_thread_counts().values()) == {1}
        assert numeric_thread_counts() == before


@needs_fork
def test_fork_pool_workers_are_single_threaded_and_start_no_blas_threads():
    with threadpoolctl.threadpool_limits(limits=2):
        with single_threaded_numerics(), ProcessPoolExecutor(
            2, mp_context=get_context("fork"), initializer=limit_numeric_threads
        ) as pool:
            states = list(pool.map(_worker_state, range(2)))
    for counts, os_threads in states:
        assert set(counts.values()) == {1}
        assert os_threads == 1  # no idle BLAS threads left spinning beside the worker


@needs_fork
def test_initializer_limits_workers_forked_with_a_multithreaded_blas():
    # Workers forked outside single_threaded_numerics (or spawned) still end up single-threaded.
    with threadpoolctl.threadpool_limits(limits=2):
        with ProcessPoolExecutor(
            1, mp_context=get_context("fork"), initializer=limit_numeric_threads
        ) as pool:
            counts, _ = pool.submit(_worker_state).result()
    assert set(counts.values()) == {1}


def _prep_reporting_threads(job: tuple[str, int, object]) -> np.ndarray:
    """Stand-in for training._prep_one: the image is the worker's largest numeric pool size."""
    return np.full((1, 2, 2), max(numeric_thread_counts().values()), np.uint8)


@needs_fork
def test_training_preprocessing_workers_are_single_threaded(monkeypatch):
    import multiprocessing

    training = pytest.importorskip("siamid.training")  # needs torch
    if multiprocessing.get_start_method() != "fork":
        pytest.skip("the stand-in preprocessor reaches workers only through fork")
    from siamid.config import PreprocessConfig
    from siamid.dataset import Entry
    from siamid.types import SampleId

    monkeypatch.setattr(training, "_prep_one", _prep_reporting_threads)
    entries = [Entry(SampleId(f"s{i}", "left/index", 1), Path(f"{i}.png"), 500) for i in range(64)]
    with threadpoolctl.threadpool_limits(limits=2):
        images = training.prepare_images(entries, PreprocessConfig(), workers=2)
    assert images.shape[0] == 64
    assert set(np.unique(images)) == {1}
