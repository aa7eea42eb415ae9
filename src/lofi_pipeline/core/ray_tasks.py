"""Jobs as Ray tasks: join (or start) a cluster, send the jobs' shared input once, keep a
window of tasks out, hand results back in job order.

A worker that dies mid-task (killed, out of memory, its node lost) is retried by Ray, up to
RETRIES times; an exception a job raises is not retried (the same input fails the same way)
and reaches the stage as itself. Before its job, a task checks that its node runs the
driver's code and libraries: a node with another checkout would write other bytes under
the driver's keys.
"""
from __future__ import annotations

import functools
import signal
from collections import deque
from typing import Any, Callable, Iterable, Iterator

import ray

from .errors import StageError
from .hashing import PACKAGE, code_fingerprint, hash_json
from .parallel import call

RETRIES = 3


def connect(address: str) -> None:
    """Join the cluster at `address` ("" joins RAY_ADDRESS or the instance `ray start` left on
    this machine, else starts one here for this run)."""
    if ray.is_initialized():
        return
    # ray.init installs its own SIGTERM handler; the CLI's (SIGTERM stops like Ctrl-C) must stay.
    handler = signal.getsignal(signal.SIGTERM)
    try:
        ray.init(address=address or None, logging_level="warning", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StageError(f"run.ray_address={address!r}: cannot join the Ray cluster ({first}); start one with "
                         "`ray start --head` (and the same RAY_AUTH_MODE/token) or fix the address") from None
    finally:
        signal.signal(signal.SIGTERM, handler)


@functools.lru_cache(maxsize=None)
def code_digest(module: str) -> str:
    """The digest of a pipeline module's code closure ("" for a function from elsewhere)."""
    return hash_json(code_fingerprint(module)) if module.startswith(f"{PACKAGE}.") else ""


def _checked_call(fn: Callable, driver_code: str, shared: Any, job: Any):
    if code_digest(fn.__module__) != driver_code:
        raise StageError(f"Ray node {ray.util.get_node_ip_address()} has other code or library versions for "
                         f"{fn.__module__} than the driver: install the same checkout and versions on every node")
    return call(fn, shared, job)


_task = ray.remote(_checked_call)


def _check_fits(cpus: float, gpus: float, fn: Callable) -> None:
    """A task no node can hold would wait forever: say so instead."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if not any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
        biggest = max((n.get("CPU", 0) for n in nodes), default=0)
        raise StageError(f"no node of the Ray cluster has {cpus:g} CPUs{f' and {gpus:g} GPUs' if gpus else ''} "
                         f"for one {fn.__name__} task (the largest has {biggest:g} CPUs): lower train.threads "
                         "(or train.member_gpus), or start nodes with more (`ray start --num-cpus N`)")


def _result(ref):
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:  # the job raised: hand on its own exception
        raise exc.cause from None
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
            ray.exceptions.OutOfMemoryError) as exc:
        raise StageError(f"a Ray task's worker died {RETRIES + 1} times ({type(exc).__name__}); "
                         "see `ray status` and the node's logs under /tmp/ray") from None


def ray_map(fn: Callable, jobs: Iterable, shared: Any, address: str, cpus: float, gpus: float,
            in_flight: int) -> Iterator:
    """Parallel.Executor.map on a Ray cluster."""
    connect(address)
    _check_fits(cpus, gpus, fn)
    # Named after the job (`ray::render._render_job` in ps, `ray list tasks` and Ray's logs).
    name = f"{fn.__module__.rpartition('.')[2]}.{fn.__name__}"
    task = _task.options(name=name, num_cpus=cpus, num_gpus=gpus, max_retries=RETRIES, retry_exceptions=False)
    driver_code = code_digest(fn.__module__)
    shared_ref = ray.put(shared)
    window = in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1) // max(cpus, 0.01)))
    pending: deque = deque()
    try:
        for job in jobs:
            pending.append(task.remote(fn, driver_code, shared_ref, job))
            if len(pending) >= window:
                yield _result(pending.popleft())
        while pending:
            yield _result(pending.popleft())
    except BaseException:  # an interrupt, a failed job, or the caller gave up: stop the rest
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
