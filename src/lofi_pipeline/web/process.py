"""Pipeline work for the web app: `lofi ARGS` jobs on a long-lived worker (worker.py) in a
process group of its own, so the page drives exactly the runner, config keys, cache and lock
the command line does, without starting Python and TensorFlow for every job. Stopping a job
sends SIGTERM to the group (the CLI turns it into a prompt stop of its workers, and the worker
waits for the next job); one that has not ended after a grace period is killed with its worker,
and the next job starts a fresh one. The run and the radio each have one."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from typing import Callable

from .worker import DONE, RESTART


class PipelineProcess:
    def __init__(self, root, env: dict | None = None):
        self.root = root
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.worker: subprocess.Popen | None = None
        self.idle = threading.Event()  # no job is going on
        self.idle.set()
        self.lock = threading.Lock()
        self.stopped = False  # stop(for_good=True) was called: run() refuses until reset()

    def _worker(self) -> subprocess.Popen:  # under self.lock
        if self.worker is None or self.worker.poll() is not None:
            self.worker = subprocess.Popen([sys.executable, "-m", "lofi_pipeline.web.worker"], cwd=self.root,
                                           text=True, env=self.env, start_new_session=True, stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1)
        return self.worker

    def warm(self) -> None:
        """Start the worker now, so the first job does not wait for it."""
        with self.lock:
            if not self.stopped:
                self._worker()

    def run(self, args: list[str], on_line: Callable[[str], None],
            cancelled: Callable[[], bool] = lambda: False) -> int | None:
        """`lofi ARGS` on the worker, each line of its output to `on_line`; its exit status
        (negative: the worker was killed), or None if stop(for_good=True) or `cancelled()` came
        first (asked under the lock stop() takes, so a stop is never missed between jobs)."""
        for _ in range(2):  # a second go on a fresh worker if the code changed under the first
            with self.lock:
                if self.stopped or cancelled():
                    return None
                worker = self._worker()
                self.idle.clear()
                try:
                    worker.stdin.write(json.dumps({"args": args}) + "\n")
                    worker.stdin.flush()
                except (BrokenPipeError, OSError):
                    pass  # it died just now: its end is read below
            try:
                for line in worker.stdout:
                    line = line.rstrip("\n")
                    if line.startswith(DONE):
                        return int(line.split()[-1])
                    if line == RESTART:
                        worker.wait()
                        break
                    on_line(line)
                else:
                    return worker.wait() or -signal.SIGKILL
            finally:
                self.idle.set()
        return None

    def reset(self) -> None:
        with self.lock:
            self.stopped = False

    def stop(self, grace_s: float = 10.0, for_good: bool = False) -> None:
        """Stop the job going on: SIGTERM to the worker's process group, SIGKILL (the worker
        too) if the job has not ended within `grace_s`. With `for_good` the worker ends too,
        and no job starts after this until reset()."""
        with self.lock:
            self.stopped = self.stopped or for_good
            worker = self.worker
        if worker is None or worker.poll() is not None:
            return
        try:
            if not self.idle.is_set():
                os.killpg(worker.pid, signal.SIGTERM)
                if not self.idle.wait(grace_s):
                    os.killpg(worker.pid, signal.SIGKILL)
            if for_good:
                with contextlib.suppress(OSError):
                    worker.stdin.close()  # the worker's loop ends
                try:
                    worker.wait(grace_s)
                except subprocess.TimeoutExpired:
                    os.killpg(worker.pid, signal.SIGKILL)
                    worker.wait()
        except ProcessLookupError:
            pass  # it ended on its own just now

    def status_json(self, args: list[str]) -> dict | None:
        """`lofi status --json ARGS` (a short process of its own: it needs no TensorFlow)."""
        out = subprocess.run([sys.executable, "-m", "lofi_pipeline", "status", "--json", *args], cwd=self.root,
                             capture_output=True, text=True, env=self.env, start_new_session=True, timeout=120)
        try:
            return json.loads(out.stdout) if out.returncode == 0 else None
        except ValueError:
            return None
