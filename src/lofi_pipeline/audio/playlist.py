"""The playlist: an extended M3U file (#EXTINF lines, relative paths) that re-runs extend and
never duplicate or shorten, and copies into a music library."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from ..core import atomic

PLAYLIST = "playlist.m3u8"


def read_playlist(path: Path) -> list[tuple[str, str]]:
    """(#EXTINF line, relative path) entries of an extended M3U file, in order."""
    if not path.exists():
        return []
    entries, info = [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("#EXTINF"):
            info = line
        elif line and not line.startswith("#"):
            entries.append((info or f"#EXTINF:-1,{line}", line))
            info = None
    return entries


def merge_playlist(path: Path, new: list[tuple[str, str]]) -> int:
    """Append entries whose path is not listed yet; returns how many were added."""
    entries = read_playlist(path)
    listed = {p for _, p in entries}
    added = [(i, p) for i, p in new if p not in listed and not listed.add(p)]
    if not added and path.exists():
        return 0
    lines = ["#EXTM3U"] + [x for i, p in entries + added for x in (i, p)]
    atomic.write_text(path, "\n".join(lines) + "\n")
    return len(added)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "track"


def copy_to_library(outputs_root: Path, files: list[str], entries: list[tuple[str, str]], target: Path) -> int:
    """Copy the MP3s (paths under `outputs_root`) that are not there yet and merge the playlist;
    returns files copied."""
    (target / "tracks").mkdir(parents=True, exist_ok=True)
    copied = 0
    for rel in files:
        if not (target / rel).exists():
            with atomic.atomic_path(target / rel) as tmp:
                shutil.copyfile(outputs_root / rel, tmp)
            copied += 1
    merge_playlist(target / PLAYLIST, entries)
    return copied
