"""A pipeline run for the web app and what the page shows of it: the CLI's log read line by line
into each stage's state (waiting, running, cached, done, failed) with its time, training checks
with the dev loss, a progress share and an ETA, and the one-line error of a run that failed.
When no run of this server has happened yet, and when one ends, `lofi status --json` says
what the outputs hold (a finished run reads done or cached, with its times)."""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ..pipeline import STAGE_NAMES
from .process import PipelineProcess

# What `lofi serve` writes under the outputs root (`lofi clean` removes these too): the uploads,
# the radio's own outputs folder and the takes.
SERVE_PATHS = ("uploads", "radio", "takes")
_STAGE = re.compile(r"^\[(\w+)\] (running|cached|done in ([\d.]+)s)")
_EPOCH = re.compile(r"^Epoch (\d+)/(\d+)")
_VAL_LOSS = re.compile(r"val_loss: ([\d.]+)")
_MEMBERS = re.compile(r"^\[train\] (member_\d+): kernel")
_PREVIEW = re.compile(r"^preview: (\S+) \(track (\d+), (.+) in ([\d.]+) s\)")
LOG_LINES_KEPT = 200  # of a run's output (the page shows the last 40): a long run's memory stays flat


def _keep_log(log: list, lines: list[str]) -> None:
    log.extend(lines)
    del log[:-LOG_LINES_KEPT]


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
    seconds: float | None = None  # the whole run's, once it has ended
    number: int = 0  # runs this server has started, this one included
    previews: dict = field(default_factory=dict)  # track number -> its preview, made before the run
    version: int = 0

    def to_json(self) -> dict:
        return {"status": self.status, "stages": self.stages, "error": self.error, "log": self.log[-40:],
                "training": self.training, "command": self.command, "seconds": self.seconds,
                "number": self.number, "previews": self.previews, "version": self.version}


class PipelineJob:
    """One CLI run at a time; `state` is updated from its output as it comes, and `on_end(state)`
    is called (in the reader's thread) with its status and error (which it may reword) once the
    run has ended and its stages are read back."""

    def __init__(self, root, env: dict | None = None, on_end: Callable[[RunState], None] | None = None,
                 say: Callable[[str], None] = print):
        self.process = PipelineProcess(root, env)
        self.state = RunState()
        self.lock = threading.Lock()  # over `state`, which the reader thread and the routes share
        self.rekeys: dict = {}  # config key -> the stages a change of it re-runs (from `lofi status --json`)
        self.stopping = threading.Event()  # stop() was called: a run waiting on its preview does not start
        self.reader: threading.Thread | None = None
        self.on_end, self.say = on_end, say

    @property
    def running(self) -> bool:
        """Until its output is read to the end, not only until the process has exited."""
        return self.reader is not None and self.reader.is_alive()

    def read_back(self, args: list[str], state: RunState | None = None) -> None:
        """Stage states and times as the outputs hold them for these options (no run going)."""
        status = self.process.status_json(args)
        if status is None:
            return
        with self.lock:
            self.rekeys = status["rekeys"]
            s = state or self.state
            for row in status["stages"]:
                now = s.stages.get(row["name"], {})
                if row["fresh"]:
                    kept = now.get("state") in ("cached", "done")  # this run's word, when it ran
                    s.stages[row["name"]] = {"state": now["state"] if kept else "done",
                                             "seconds": now.get("seconds", row["seconds"])}
                elif now.get("state") not in ("failed", "stopped"):
                    s.stages[row["name"]] = {"state": "waiting", "why": row["why"]}
            self._bump()

    def start(self, args: list[str], status_args: list[str], preview_args: list[str] | None = None) -> None:
        """Start `lofi ARGS`, after `lofi PREVIEW_ARGS` (one track made first, heard while the
        run catches up) when given; the caller checks `running` first (the runner's lock is the
        last word)."""
        state = RunState(status="running", command=["lofi", *args], started=time.monotonic(),
                         number=self.state.number + 1)
        with self.lock:
            state.version = self.state.version + 1
            self.state = state
        self.process.reset()
        self.stopping.clear()
        self.say(f"run: started lofi {' '.join(args)}")
        self.reader = threading.Thread(target=self._read, args=(args, state, status_args, preview_args),
                                       daemon=True)
        self.reader.start()

    def _read(self, args: list[str], state: RunState, status_args: list[str], preview_args: list[str] | None) -> None:
        """Runs the job on the worker and reads its output into that run's state (never a later
        run's); the run reads as ended only once its stages are read back and `on_end` has run
        (its take is listed). A preview goes first, on the same worker; a preview that fails
        is logged and the run goes on."""
        if preview_args:
            self._preview(preview_args, state)
        code = self.process.run(args, lambda line: self._line(line, state), self.stopping.is_set)
        with self.lock:
            s = state
            status = "done" if code == 0 else ("stopped" if code in (None, 130, 143, -15, -9) else "failed")
            for info in s.stages.values():
                if info["state"] == "running":
                    info["state"] = "failed" if status == "failed" else "stopped"
            if status == "failed" and not s.error:
                s.error = next((x for x in reversed(s.log) if x.startswith("lofi:")), f"exited {code}")
            s.seconds = round(time.monotonic() - s.started, 1)
            s.training["eta_s"] = None
        self.read_back(status_args, state)
        ended = RunState(status=status, error=s.error)
        if self.on_end is not None:
            try:
                self.on_end(ended)
            except Exception as exc:  # noqa: BLE001 - the run's end must still be told
                ended.status, ended.error = "failed", f"lofi serve: could not keep the take: {exc}"
        with self.lock:
            s.status, s.error = ended.status, ended.error
            self._bump()
        self.say(f"run: {s.status} in {s.seconds} s" + (f": {s.error}" if s.error else ""))

    def _preview(self, args: list[str], state: RunState) -> None:
        """`lofi preview N ...`: its file into the run's `previews`."""
        lines: list[str] = []
        code = self.process.run(args, lines.append)
        with self.lock:
            _keep_log(state.log, lines)
            if m := next(filter(None, map(_PREVIEW.match, lines)), None):
                state.previews[int(m.group(2))] = {"file": m.group(1), "how": m.group(3),
                                                    "seconds": float(m.group(4))}
                self.say(f"run: track {m.group(2)} {m.group(3)} first, in {m.group(4)} s: {m.group(1)}")
            else:
                self.say(f"run: no preview ({next((x for x in lines if x.startswith('lofi:')), f'exit {code}')})")
            self._bump()

    def _line(self, line: str, s: RunState) -> None:
        with self.lock:
            _keep_log(s.log, [line])
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

    def _bump(self) -> None:  # under self.lock
        self.state.version += 1

    def stop(self, grace_s: float = 10.0, for_good: bool = False) -> None:
        self.stopping.set()
        self.process.stop(grace_s, for_good)
