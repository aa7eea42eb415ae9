"""The web app's state: where outputs live, the options every run gets, the run going on,
what the page chose (`choice`) and what the take on screen was made with (`settled`), the
takes and the radio; and what the page is sent of it."""
from __future__ import annotations

import copy
import json
import threading
from pathlib import Path

from ..core.config import ConfigError
from ..stages import catalog
from .controls import checked
from .jobs import PipelineJob, RunState
from .radio import Radio
from .takes import Takes

# The profiles the page offers (core/config.py defines them), each with the words its menu shows.
PROFILES = {"default": "default (about 5 minutes)", "quick": "quick (a tiny smoke run)"}


class ServerState:
    """The server's state: where outputs live, the arguments every run gets, the run going on,
    what the page chose (`choice`) and what the take on screen was made with (`settled`)."""

    def __init__(self, root: Path, outputs: Path, base_args: list[str], upload_limit_bytes: int, serve,
                 say=print):
        self.root, self.outputs, self.base_args = root, outputs, base_args
        self.upload_limit_bytes, self.serve, self.say = upload_limit_bytes, serve, say
        self.job = PipelineJob(root, on_end=self._ended, say=say)
        self.radio: Radio | None = None
        self.takes = Takes(outputs, serve.takes_kept)
        latest = next(iter(self.takes.list()), None)
        self.changes = 0  # bumped when `choice` or `settled` is set
        self.settled: dict | None = latest["choice"] if latest else None
        self.choice: dict = dict(self.settled or {"archive": "", "archive_name": "the default set",
                                                  "profile": "default", "tweaks": {}, "take": 0, "name": ""})
        self.lock = threading.Lock()

    @property
    def choice(self) -> dict:
        return self._choice

    @choice.setter
    def choice(self, value: dict) -> None:
        self._choice, self.changes = value, self.changes + 1

    @property
    def settled(self) -> dict | None:
        return self._settled

    @settled.setter
    def settled(self, value: dict | None) -> None:
        self._settled, self.changes = value, self.changes + 1

    def token(self) -> tuple:
        """Moves whenever what `snapshot` shows may have changed (the page's event stream)."""
        return self.job.state.number, self.job.state.version, self.takes.version, self.changes

    def run_args(self, choice: dict) -> list[str]:
        """The CLI options of a run as the page chose them (the radio's too, with its own outputs)."""
        args = list(self.base_args)
        if choice["archive"]:
            args += ["--archive", choice["archive"]]
        if choice["profile"] != "default":
            args += ["--profile", choice["profile"]]
        if choice["name"]:
            args += ["--set", f"run.name={json.dumps(choice['name'])}"]
        for key, value in choice["tweaks"].items():
            args += ["--set", f"{key}={json.dumps(value)}"]
        return args

    def choice_for(self, body: dict) -> dict:
        """The choice a Start (a new take) or an Apply (the take on screen, revised) asks for."""
        base = self.settled if body.get("take") == "current" and self.settled else None
        tweaks = dict(base["tweaks"]) if base else {}
        tweaks.update(checked(dict(body.get("tweaks") or {})))
        if base:
            return {**base, "tweaks": tweaks}
        profile = body.get("profile", "default")
        if profile not in PROFILES:
            raise ConfigError(f"unknown profile {profile!r} ({', '.join(PROFILES)})")
        archive = body.get("archive") or ""
        uploads = (self.outputs / "uploads").resolve()
        if archive and not (isinstance(archive, str) and Path(archive).resolve().parent == uploads
                            and Path(archive).suffix == ".zip" and Path(archive).is_file()):
            raise ConfigError("choose the default set or upload an archive")
        label = Path(self.upload_name(archive)).stem if archive else "the default set"
        take = self.takes.next_id()
        return {"archive": archive, "archive_name": self.upload_name(archive) if archive else label,
                "profile": profile, "tweaks": tweaks, "take": take, "name": f"{label}, take {take}"}

    def playing(self, body: dict) -> int | None:
        """The track the page is playing, made first when the take on screen is revised."""
        index = body.get("playing")
        if body.get("take") != "current" or self.settled is None or index is None:
            return None
        if not isinstance(index, int) or isinstance(index, bool) or index < 1:
            raise ValueError("playing: send the track's number")
        return index

    def start(self, choice: dict, preview: int | None = None) -> None:
        """Run `choice`; with `preview`, that track of it is made first (`lofi preview`), to be
        heard while the run catches up."""
        self.choice = choice
        args = ["--outputs", str(self.outputs), *self.run_args(choice)]
        self.job.start(["all", *args], args, ["preview", str(preview), *args] if preview else None)

    def _ended(self, state: RunState) -> None:
        """A run has ended: a done run is its take, and the take on screen; a failed one says
        which file it was, by the name the user gave it."""
        choice = self.choice
        if state.status == "done":
            self.takes.record(choice["take"], choice["name"], choice)
            self.settled = choice
        elif choice["archive"]:
            state.error = state.error.replace(choice["archive"], choice["archive_name"])

    def tracks(self) -> list[dict]:
        """The exported tracks of the last finished run, with what the page shows of each."""
        try:
            exports = catalog.exports.read(self.outputs / "export")
        except Exception:  # noqa: BLE001 - no finished run yet (or one from another version)
            return []
        records = {}
        if (self.outputs / "arrange" / catalog.TRACKS.pattern).exists():
            records = {r.index: r for r in catalog.tracks.read(self.outputs / "arrange")}
        out = []
        for e in exports:
            r = records.get(e.index)
            out.append({"index": e.index, "title": e.title, "seconds": e.seconds, "mp3": e.file,
                        "stems": e.stems, "key": r.key if r else None, "tempo_bpm": r.tempo_bpm if r else None,
                        "form": r.form if r else "", "metre": r.metre if r else None,
                        "midi": f"arrange/{catalog.midi_name(r)}" if r else None,
                        "wav": f"master/{r.stem}.wav" if r else None, "seed": r.seed if r else None,
                        "melody": r.lead if r else None, "drums": r.drums if r else None,
                        "roll": f"/api/roll/{e.index}.png" if r else None})
        return out

    def snapshot(self) -> dict:
        with self.job.lock:  # the reader thread writes into the run's state as its output comes
            run = copy.deepcopy(self.job.state.to_json())
        return {"run": run, "tracks": self.tracks() if self.job.state.status != "running" else [],
                "choice": self.choice, "settled": self.settled, "takes": self.takes.list()}

    def safe_path(self, relative: str) -> Path | None:
        """The file `relative` names under the outputs folder, or None: no `..`, no absolute path,
        no symlink anywhere on the way, nothing outside."""
        base = self.outputs.resolve()
        candidate = (base / relative)
        try:
            resolved = candidate.resolve(strict=True)
        except (OSError, RuntimeError, ValueError):  # missing, a loop, a NUL byte
            return None
        if not resolved.is_relative_to(base) or not resolved.is_file():
            return None
        walked = base
        for part in Path(relative).parts:
            walked = walked / part
            if part in ("..", "") or walked.is_symlink():
                return None
        return resolved

    def upload_name(self, path: str) -> str:
        try:
            return json.loads(Path(path).with_suffix(".json").read_text())["name"]
        except (OSError, ValueError, KeyError):
            return Path(path).name
