"""Worker processes for numeric work: one thread per worker, because the pool is the parallelism.

numpy and scipy link OpenBLAS (torch adds OpenMP), whose thread pools are sized to every core,
and forked workers inherit that size: N workers may run N x cores threads (256 on 16 cores).
OpenBLAS threads spin while they wait for work, so on small matrices a second thread costs far
more than it saves: ``synth.orientation.smooth_noise`` (192-400 pixel fields times thin
interpolation matrices) ran 6-10x slower with 2 threads than with 1 on a 2-core machine, and a
synthetic finger took twice the CPU time. Environment variables
such as ``OPENBLAS_NUM_THREADS`` are read once, when the library loads, so setting them in a
forked worker (whose parent already loaded numpy) changes nothing; the thread counts have to be
set through the libraries' own calls, which threadpoolctl makes for every library it finds.

threadpoolctl is an optional dependency (the ``train`` extra, where synthesis and training
live). Without it these helpers do nothing and results are the same, only slower on many cores.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

try:
    from threadpoolctl import threadpool_info, threadpool_limits
except ImportError:  # pragma: no cover - exercised only on installs without the train extra
    threadpool_info = threadpool_limits = None


def limit_numeric_threads() -> None:
    """Pool initializer: this process's BLAS and OpenMP thread pools use one thread from now on.

    Meant for worker processes that live only to serve a pool (``multiprocessing.Pool`` or
    ``ProcessPoolExecutor`` ``initializer=``); the limit is never lifted. Workers forked inside
    ``single_threaded_numerics`` already have it, and are left alone: in a forked child,
    OpenBLAS's set-threads call first restarts its thread pool at the full size, leaving idle
    threads that spin for a while.
    """
    if threadpool_limits is not None and any(n != 1 for n in numeric_thread_counts().values()):
        threadpool_limits(limits=1)


@contextmanager
def single_threaded_numerics() -> Iterator[None]:
    """Run the body with one BLAS / OpenMP thread, then restore the previous thread counts.

    Wrap both the work done in the calling process instead of a pool (one worker in-process
    then runs as fast as one pool worker) and the creation of a fork pool: forked workers
    inherit the single-thread setting and never start the threads at all. Pass
    ``initializer=limit_numeric_threads`` as well, for spawned workers and any forked later.
    The limit is process-wide, so other threads of the caller run single-threaded meanwhile.
    """
    if threadpool_limits is None:
        yield
        return
    with threadpool_limits(limits=1):
        yield


def numeric_thread_counts() -> dict[str, int]:
    """Thread-pool size of each numeric library loaded in this process, e.g. ``{"openblas": 1}``.

    Keys are threadpoolctl's ``internal_api`` names (openblas, mkl, blis, openmp); where one is
    loaded twice (numpy's and scipy's OpenBLAS) the larger size is reported. Empty without
    threadpoolctl. Used by tests and benchmarks to show what a worker runs with.
    """
    if threadpool_info is None:
        return {}
    counts: dict[str, int] = {}
    for lib in threadpool_info():
        api = str(lib["internal_api"])
        counts[api] = max(counts.get(api, 0), int(lib["num_threads"]))
    return counts


__all__ = ["limit_numeric_threads", "numeric_thread_counts", "single_threaded_numerics"]


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity where the platform reports it (a
    container or ``taskset`` limit), else the machine's count. The default worker count."""
    import os

    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):  # not on macOS or Windows
        return os.cpu_count() or 1
