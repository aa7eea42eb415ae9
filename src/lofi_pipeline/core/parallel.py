"""Where a stage's independent jobs run: worker processes on this machine (`local`), or tasks
on a Ray cluster (`ray`). Either way the stage gets each job's result back, in job order, as
it comes; only the driver writes artifacts, so the runner's caching and atomic writes hold
whichever executor ran the work, and the bytes are the same.

At most `in_flight` jobs are out at once: jobs are made lazily (a job may carry a track's
audio) and results are consumed as they come, so memory stays bounded however many tracks.

concurrent.futures' pool finishes its queued work before an interrupted `with` block exits;
here an interrupt (Ctrl-C, or SIGTERM turned into one by the CLI) or any error terminates
the workers at once. Workers ignore SIGINT: the terminal sends it to the whole process
group, and only the parent decides what happens. Each worker is one of several: its numeric
libraries get one thread each (left to themselves, two workers ran two BLAS threads each on
two cores and read MIDI files slower than one process did).
"""
from __future__ import annotations

import importlib
import itertools
import multiprocessing
import os
import signal
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class _NoShared:
    """No input shared by the jobs; pickles as a reference, so it stays itself in a worker."""
    def __reduce__(self):
        return "NO_SHARED"


NO_SHARED = _NoShared()


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


def call(fn: Callable, shared: Any, job: Any):
    """One job: fn(job), or fn(shared, job) when the jobs share an input."""
    return fn(job) if shared is NO_SHARED else fn(shared, job)


def process_map(fn: Callable, jobs: Iterable, workers: int, shared: Any = NO_SHARED,
                in_flight: int = 0) -> Iterator:
    """fn(job) (or fn(shared, job)) for each job, in order, on up to `workers` spawned
    processes, at most `in_flight` (default 2 x workers) out at once; in this process when one
    worker or one job is enough. `fn` must be a module-level function."""
    jobs = iter(jobs)
    first = list(itertools.islice(jobs, 2))
    if workers <= 1 or len(first) <= 1:
        yield from (call(fn, shared, job) for job in itertools.chain(first, jobs))
        return
    with _child_environment(ONE_THREAD):  # read by the children as they start, inside Pool()
        pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_ignore_sigint)
    window = in_flight or 2 * workers
    pending: deque = deque()
    try:
        for job in itertools.chain(first, jobs):
            pending.append(pool.apply_async(call, (fn, shared, job)))
            if len(pending) >= window:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
        pool.close()
    except BaseException:  # an interrupt, an error in a job, or the caller gave up
        pool.terminate()
        raise
    finally:
        pool.join()


@dataclass(frozen=True)
class Executor:
    """How one stage fans out: `kind` is local or ray; `workers` is the local pool's size;
    `ray_address` is the cluster to join ("" starts or joins a Ray instance on this machine)."""
    kind: str = "local"
    workers: int = 1
    ray_address: str = ""

    def map(self, fn: Callable, jobs: Iterable, *, shared: Any = NO_SHARED, cpus: float = 1.0,
            gpus: float = 0.0, in_flight: int = 0) -> Iterator:
        """fn(job), or fn(shared, job), for each job; results in job order, as they come.
        `cpus` and `gpus` are what one job asks of a Ray node (the local pool runs one job per
        worker); `shared` is sent to a cluster once, not with every job."""
        if self.kind == "ray":
            # Imported by name: Ray moves work and never changes it, so its version stays out
            # of the keys of the stages that fan out (installing Ray leaves caches fresh).
            ray_tasks = importlib.import_module(f"{__package__}.ray_tasks")
            yield from ray_tasks.ray_map(fn, jobs, shared, self.ray_address, cpus, gpus, in_flight)
        else:
            yield from process_map(fn, jobs, self.workers, shared, in_flight)
