"""Takes: each run the page starts is a take with a name of its own (its album tag and track
titles), listed until deleted. A finished take is copied (hard links where the file system
allows) into `<outputs>/takes/<id>/` as a folder that stands alone: its MP3s, a playlist of
those only, the report with its images, the DAW folder (MIDI per part, stems when made). A
tweak revises the take on screen; past `kept` takes the oldest one not marked kept goes."""
from __future__ import annotations

import json
import re
import shutil
import tempfile
import threading
import time
import zipfile
from pathlib import Path

from ..audio.playlist import PLAYLIST, merge_playlist
from ..core import atomic
from ..stages import catalog

TAKE_FILE = "take.json"
REPORT_FILES = re.compile(r"""(?:src|href)='(report/[^']+)'""")


class Takes:
    def __init__(self, outputs: Path, kept: int):
        self.outputs, self.folder, self.kept = outputs, outputs / "takes", kept
        self.lock = threading.Lock()
        self.version = 0  # bumped by every change to the takes (what the page's stream watches)

    def list(self) -> list[dict]:
        """Every take, newest first."""
        found = []
        for path in self.folder.glob(f"*/{TAKE_FILE}"):
            try:
                found.append(_read(path))
            except (OSError, ValueError):
                continue  # one being written or deleted just now
        return sorted(found, key=lambda t: t["id"], reverse=True)

    def next_id(self) -> int:
        return max((t["id"] for t in self.list()), default=0) + 1

    def record(self, take_id: int, name: str, choice: dict) -> dict:
        """Copy the outputs' finished run into take `take_id` (replacing what it held)."""
        exports = catalog.exports.read(self.outputs / "export")
        with self.lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".take-{take_id}-", dir=self.folder))
            files = [f for e in exports for f in (e.file, *e.stems)]
            report = self.outputs / "report.html"
            if report.exists():
                files += ["report.html", *dict.fromkeys(REPORT_FILES.findall(report.read_text()))]
            for name_ in files:
                if (self.outputs / name_).is_file():
                    atomic.link_or_copy(self.outputs / name_, tmp / name_)
            merge_playlist(tmp / PLAYLIST, [(e.extinf, e.file) for e in exports])
            old = self.get(take_id)
            take = {"id": take_id, "name": name, "choice": choice, "kept": bool(old and old["kept"]),
                    "created": old["created"] if old else time.strftime("%Y-%m-%d %H:%M"),
                    "revised": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "tracks": [{"title": e.title, "file": e.file, "seconds": e.seconds} for e in exports]}
            atomic.write_json(tmp / TAKE_FILE, take)
            atomic.replace_dir(tmp, self.folder / str(take_id))
            self.version += 1
        self._trim()
        return take

    def get(self, take_id: int) -> dict | None:
        path = self.folder / str(take_id) / TAKE_FILE
        return _read(path) if path.is_file() else None

    def keep(self, take_id: int, kept: bool) -> dict | None:
        with self.lock:
            take = self.get(take_id)
            if take is not None:
                take["kept"] = kept
                atomic.write_json(self.folder / str(take_id) / TAKE_FILE, take)
                self.version += 1
        return take

    def delete(self, take_id: int) -> bool:
        with self.lock:
            path = self.folder / str(take_id)
            if not path.is_dir():
                return False
            shutil.rmtree(path)
            self.version += 1
            return True

    def _trim(self) -> None:
        takes = self.list()
        for take in [t for t in takes if not t["kept"]][::-1][:max(0, len(takes) - self.kept)]:
            self.delete(take["id"])

    def zip_to(self, take_id: int, target: Path) -> str:
        """Take `take_id` as one zip at `target`, written a file at a time; returns its name."""
        folder = self.folder / str(take_id)
        take = self.get(take_id)
        top = re.sub(r"[^A-Za-z0-9._-]+", "-", take["name"]).strip("-") or f"take-{take_id}"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as z:
            for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != TAKE_FILE):
                z.write(path, f"{top}/{path.relative_to(folder).as_posix()}")
        return f"{top}.zip"


def _read(path: Path) -> dict:
    return json.loads(path.read_text())
