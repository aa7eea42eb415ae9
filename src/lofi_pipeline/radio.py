"""The radio: new tracks from the trained models, one after another, while somebody listens.

It works in an outputs folder of its own (`<outputs>/radio/`), into which the run's intake,
extract, encode and train artifacts are copied once: their keys come out the same, so the CLI
finds the models fresh and runs generate onward only, with one track a time and
`generate.first_track` counting on, so each track has a seed and a title of its own. The
run's own artifacts are never touched. At most `ahead` tracks wait unplayed; it pauses when no
page listens and resumes when one does."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .stages import catalog

COPIED = ("intake", "extract", "encode", "train")


class Radio:
    def __init__(self, root: Path, outputs: Path, run_args: list[str], ahead: int = 2):
        self.root, self.outputs, self.ahead = root, outputs, ahead
        self.folder = outputs / "radio"
        self.run_args = run_args  # the main run's options (archive, profile, config, --set ...)
        self.queue: list[dict] = []  # made tracks, in order: {index, title, file, seconds}
        self.played = 0  # how many the page has started
        self.listeners = 0
        self.error = ""
        self.lock = threading.Condition()
        self.proc: subprocess.Popen | None = None
        self.stopping = False
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Copy the trained run in and start making tracks (idempotent)."""
        if self.thread is not None and self.thread.is_alive():
            return
        if not (self.outputs / "train" / "manifest.json").exists():
            raise RuntimeError("no trained models yet: start a run first, the radio plays what it learned")
        for stage in COPIED:
            shutil.rmtree(self.folder / stage, ignore_errors=True)
            shutil.copytree(self.outputs / stage, self.folder / stage, symlinks=True)
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stopping:
            with self.lock:
                self.lock.wait_for(lambda: self.stopping or (self.listeners > 0
                                                             and len(self.queue) - self.played < self.ahead))
                if self.stopping:
                    return
                number = (self.queue[-1]["index"] + 1) if self.queue else 1
            try:
                made = self._make(number)
            except Exception as exc:  # noqa: BLE001 - the page shows it; the thread stays up
                self.error, made = f"the radio could not read its track: {exc}", None
            with self.lock:
                if made:
                    self.queue.append(made)
                self.lock.notify_all()
            if not made:
                time.sleep(1.0)  # a failed track (the message is in `error`): do not spin

    def _make(self, number: int) -> dict | None:
        args = [sys.executable, "-m", "lofi_pipeline", "export", *self.run_args, "--outputs", str(self.folder),
                "--set", "generate.tracks=1", "--set", f"generate.first_track={number}"]
        with self.lock:
            if self.stopping:  # stop() has run: start nothing it cannot see
                return None
            self.proc = subprocess.Popen(args, cwd=self.root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         text=True, start_new_session=True)
        _, err = self.proc.communicate()
        if self.proc.returncode != 0:
            if not self.stopping:
                self.error = next((x for x in reversed(err.splitlines()) if x.startswith("lofi:")),
                                  f"the radio's run exited {self.proc.returncode}")
            return None
        self.error = ""
        export = catalog.exports.read(self.folder / "export")[0]
        return {"index": number, "title": export.title, "file": f"radio/{export.file}", "seconds": export.seconds}

    def listening(self, delta: int) -> None:
        with self.lock:
            self.listeners += delta
            self.lock.notify_all()

    def started_playing(self, index: int) -> None:
        with self.lock:
            self.played = max(self.played, sum(1 for t in self.queue if t["index"] <= index))
            self.lock.notify_all()

    def state(self) -> dict:
        return {"queue": self.queue[-8:], "played": self.played, "made": len(self.queue),
                "listeners": self.listeners, "error": self.error, "on": self.thread is not None}

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            self.lock.notify_all()
            proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
