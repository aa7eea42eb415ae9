"""Work spread over worker processes that stop when the run stops.

concurrent.futures' pool finishes its queued work before an interrupted `with` block exits;
here an interrupt (Ctrl-C, or SIGTERM turned into one by the CLI) or any error terminates
the workers at once. Workers ignore SIGINT: the terminal sends it to the whole process
group, and only the parent decides what happens.
"""
from __future__ import annotations

import multiprocessing
import signal
from typing import Callable, Iterable, Iterator


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def process_map(fn: Callable, jobs: Iterable, workers: int, chunksize: int = 1) -> Iterator:
    """fn(job) for each job, in order, on up to `workers` spawned processes (in this process
    when one worker or one job is enough). `fn` must be a module-level function."""
    jobs = list(jobs)
    if workers <= 1 or len(jobs) <= 1:
        yield from map(fn, jobs)
        return
    pool = multiprocessing.get_context("spawn").Pool(min(workers, len(jobs)), initializer=_ignore_sigint)
    try:
        yield from pool.imap(fn, jobs, chunksize)
        pool.close()
    except BaseException:  # an interrupt, an error in a job, or the caller gave up
        pool.terminate()
        raise
    finally:
        pool.join()
