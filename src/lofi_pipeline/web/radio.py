"""The radio: new tracks from the trained models, one after another, while somebody listens.

It works in an outputs folder of its own (`<outputs>/radio/`), into which the run's intake,
extract, encode and train artifacts are linked once: their keys come out the same, so the CLI
finds the models fresh and runs generate onward only, one track a time, numbered on from the
last it made (a restarted radio too). Its tracks draw from the radio's own stream of seeds
(`generate.seed_stream = "radio"`), so none has the seed, and so the audio, of a run's track.
At most `ahead` tracks wait unplayed; it pauses when no page listens; played tracks past
`kept` are deleted with their DAW folders. The run's own artifacts are never touched."""
from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

from ..core import atomic
from ..pipeline import stages_through
from ..stages import catalog
from .process import PipelineProcess

COUNTER = "radio.json"


class Radio:
    def __init__(self, root: Path, outputs: Path, run_args: list[str], name: str, ahead: int = 2, kept: int = 6):
        self.outputs, self.ahead, self.kept = outputs, ahead, kept
        self.folder = outputs / "radio"
        self.run_args = run_args  # the main run's options (archive, profile, config, --set ...)
        self.name = name
        self.queue: list[dict] = []  # made tracks, in order: {index, title, file, seconds, seed}
        self.played = 0  # how many the page has started
        self.deleted = 0  # played tracks whose files were removed (the disk cap)
        self.listeners = 0
        self.error = ""
        self.lock = threading.Condition()
        self.process = PipelineProcess(root)
        self.stopping = False
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Copy the trained run in and start making tracks (idempotent)."""
        if self.thread is not None and self.thread.is_alive():
            return
        if not catalog.built(self.outputs, "train"):
            raise RuntimeError("no trained models yet: start a run first, the radio plays what it learned")
        catalog.link_stages(self.outputs, self.folder, stages_through("train"))
        self.stopping = False
        self.process.reset()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stopping:
            with self.lock:
                self.lock.wait_for(lambda: self.stopping or (self.listeners > 0
                                                             and len(self.queue) - self.played < self.ahead))
                if self.stopping:
                    return
                number = (self.queue[-1]["index"] + 1) if self.queue else self._first()
            try:
                made = self._make(number)
            except Exception as exc:  # noqa: BLE001 - the page shows it; the thread stays up
                self.error, made = f"the radio could not read its track: {exc}", None
            with self.lock:
                if made:
                    self.queue.append(made)
                    atomic.write_json(self.folder / COUNTER, {"next": number + 1})
                self.lock.notify_all()
            if not made:
                time.sleep(1.0)  # a failed track (the message is in `error`): do not spin

    def _first(self) -> int:
        """The number after the last track this radio folder made (a restarted radio counts on)."""
        try:
            return int(json.loads((self.folder / COUNTER).read_text())["next"])
        except (OSError, ValueError, KeyError):
            return 1

    def _make(self, number: int) -> dict | None:
        args = ["export", *self.run_args, "--outputs", str(self.folder), "--set", "generate.tracks=1",
                "--set", f"generate.first_track={number}", "--set", "generate.seed_stream=\"radio\"",
                "--set", f"run.name={json.dumps(self.name)}"]
        lines: list[str] = []
        code = self.process.run(args, lines.append)
        if code is None:  # stop() has run: nothing was made
            return None
        if code != 0:
            if not self.stopping:
                self.error = next((x for x in reversed(lines) if x.startswith("lofi:")),
                                  f"the radio's run exited {code}")
            return None
        self.error = ""
        export = catalog.exports.read(self.folder / "export")[0]
        seed = catalog.tracks.read(self.folder / "arrange")[0].seed
        return {"index": number, "title": export.title, "file": f"radio/{export.file}", "seconds": export.seconds,
                "seed": seed}

    def listening(self, delta: int) -> None:
        with self.lock:
            self.listeners += delta
            self.lock.notify_all()

    def started_playing(self, index: int) -> None:
        with self.lock:
            self.played = max(self.played, sum(1 for t in self.queue if t["index"] <= index))
            self.lock.notify_all()
        self._trim()

    def _trim(self) -> None:
        """Delete the oldest played tracks past `kept` (never one that waits or plays)."""
        with self.lock:
            doomed = self.queue[self.deleted:max(self.deleted, self.played - 1 - self.kept)]
            self.deleted += len(doomed)
        for track in doomed:
            mp3 = self.outputs / track["file"]
            mp3.unlink(missing_ok=True)
            shutil.rmtree(self.folder / "daw" / mp3.stem, ignore_errors=True)

    def state(self) -> dict:
        with self.lock:
            waiting = self.queue[self.played:]
            return {"queue": self.queue[max(self.deleted, len(self.queue) - 8):], "played": self.played,
                    "made": len(self.queue), "on_disk": len(self.queue) - self.deleted,
                    "next": waiting[0]["title"] if waiting else None, "listeners": self.listeners,
                    "error": self.error, "on": self.thread is not None}

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            self.lock.notify_all()
        self.process.stop(for_good=True)
