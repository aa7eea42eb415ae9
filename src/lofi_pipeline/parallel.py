"""Work spread over worker processes that stop when the run stops.

concurrent.futures' pool finishes its queued work before an interrupted `with` block exits;
here an interrupt (Ctrl-C, or SIGTERM turned into one by the CLI) or any error terminates
the workers at once. Workers ignore SIGINT: the terminal sends it to the whole process
group, and only the parent decides what happens. Each worker is one of several: its numeric
libraries get one thread each (left to themselves, two workers ran two BLAS threads each on
two cores and read MIDI files slower than one process did).
"""
from __future__ import annotations

import multiprocessing
import os
import signal
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@contextmanager
def _child_environment(values: dict[str, str]):
    """Variables the spawned children start with (the user's own settings win)."""
    added = {k: v for k, v in values.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def process_map(fn: Callable, jobs: Iterable, workers: int, chunksize: int = 1) -> Iterator:
    """fn(job) for each job, in order, on up to `workers` spawned processes (in this process
    when one worker or one job is enough). `fn` must be a module-level function."""
    jobs = list(jobs)
    if workers <= 1 or len(jobs) <= 1:
        yield from map(fn, jobs)
        return
    with _child_environment(ONE_THREAD):  # read by the children as they start, inside Pool()
        pool = multiprocessing.get_context("spawn").Pool(min(workers, len(jobs)), initializer=_ignore_sigint)
    try:
        yield from pool.imap(fn, jobs, chunksize)
        pool.close()
    except BaseException:  # an interrupt, an error in a job, or the caller gave up
        pool.terminate()
        raise
    finally:
        pool.join()
