"""A pipeline run for the web app: the CLI (`python -m lofi_pipeline ...`) in a subprocess of
its own, so the page drives exactly the runner, config keys and cache the command line does,
and its log read line by line into a state the page is sent: each stage's state (waiting,
running, cached, done, failed), training checks with the dev loss and an ETA, the one-line
error of a run that failed. Stopping it sends SIGTERM to its process group, which the CLI
turns into a prompt stop of its workers (no artifact a later run trusts is left)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from .pipeline import STAGE_NAMES

# What `lofi serve` writes under the outputs root (`lofi clean` removes these too): the uploads,
# and the radio's own outputs folder.
SERVE_PATHS = ("uploads", "radio")
_STAGE = re.compile(r"^\[(\w+)\] (running|cached|done in ([\d.]+)s)")
_EPOCH = re.compile(r"^Epoch (\d+)/(\d+)")
_VAL_LOSS = re.compile(r"val_loss: ([\d.]+)")
_MEMBERS = re.compile(r"^\[train\] (member_\d+): kernel")


@dataclass
class RunState:
    """What the page shows of the current (or last) run."""
    status: str = "idle"  # idle, running, done, failed, stopped
    command: list = field(default_factory=list)
    stages: dict = field(default_factory=lambda: {n: {"state": "waiting"} for n in STAGE_NAMES})
    error: str = ""
    log: list = field(default_factory=list)
    training: dict = field(default_factory=lambda: {"checks": 0, "of": 0, "members": 0, "dev_loss": [],
                                                     "eta_s": None})
    started: float = 0.0
    version: int = 0

    def to_json(self) -> dict:
        return {"status": self.status, "stages": self.stages, "error": self.error, "log": self.log[-40:],
                "training": self.training, "command": self.command, "version": self.version}


class PipelineJob:
    """One CLI run at a time; `state` is updated from its output as it comes."""

    def __init__(self, root, env: dict | None = None):
        self.root = root
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.state = RunState()
        self.changed = threading.Condition()
        self.proc: subprocess.Popen | None = None
        self.reader: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Until its output is read to the end, not only until the process has exited."""
        return self.reader is not None and self.reader.is_alive()

    def start(self, args: list[str]) -> None:
        """Start `lofi ARGS`; the caller checks `running` first (the runner's lock is the last word)."""
        state = RunState(status="running", command=["lofi", *args], started=time.monotonic())
        with self.changed:
            state.version = self.state.version + 1
            self.state = state
            self.changed.notify_all()
        self.proc = subprocess.Popen([sys.executable, "-m", "lofi_pipeline", *args], cwd=self.root,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=self.env, start_new_session=True)
        self.reader = threading.Thread(target=self._read, args=(self.proc, state), daemon=True)
        self.reader.start()

    def _read(self, proc: subprocess.Popen, state: RunState) -> None:
        """Reads one run's output into that run's state (never a later run's)."""
        for line in proc.stdout:
            self._line(line.rstrip("\n"), state)
        code = proc.wait()
        with self.changed:
            s = state
            if s.status == "running":
                s.status = "done" if code == 0 else ("stopped" if code in (130, 143, -15) else "failed")
            for info in s.stages.values():
                if info["state"] == "running":
                    info["state"] = "failed" if s.status == "failed" else "stopped"
            if s.status == "failed" and not s.error:
                s.error = next((x for x in reversed(s.log) if x.startswith("lofi:")), f"exited {code}")
            self._bump()

    def _line(self, line: str, s: RunState) -> None:
        with self.changed:
            s.log.append(line)
            del s.log[:-200]
            if (m := _STAGE.match(line)) and m.group(1) in s.stages:
                name, what = m.group(1), m.group(2)
                if what == "running":
                    s.stages[name] = {"state": "running", "since": time.time()}
                elif what == "cached":
                    s.stages[name] = {"state": "cached"}
                else:
                    s.stages[name] = {"state": "done", "seconds": float(m.group(3))}
            elif _MEMBERS.match(line):
                s.training["members"] += 1
            elif m := _EPOCH.match(line):
                s.training["of"] = int(m.group(2)) * max(1, s.training["members"])
            elif m := _VAL_LOSS.search(line):
                t = s.training
                t["checks"] += 1
                t["dev_loss"].append(float(m.group(1)))
                since = s.stages["train"].get("since")
                if since and t["of"] > t["checks"]:
                    t["eta_s"] = round((time.time() - since) / t["checks"] * (t["of"] - t["checks"]))
                else:
                    t["eta_s"] = 0
            elif line.startswith("lofi:"):
                s.error = line
            self._bump()

    def _bump(self) -> None:  # under self.changed
        self.state.version += 1
        self.changed.notify_all()

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to the run's process group, SIGKILL if it has not ended within `grace_s`."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass  # it ended on its own just now
