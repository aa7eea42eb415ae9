"""Atomic writes: a file appears complete or not at all, so a killed run never leaves a
half-written artifact that a later run trusts."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path`; on success it is renamed over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def link_or_copy(source: str | Path, path: str | Path) -> None:
    """`path` as a hard link to `source` (the bytes once on disk) where both share a file
    system, else as a copy; atomically either way. The link is made under a temporary name and
    renamed, touching nothing of the shared file (no fsync, no chmod). Safe because no artifact
    is changed in place: a re-run writes new files and renames them over the old."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.link")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    try:
        os.link(source, tmp)
    except OSError:  # another file system, or one without hard links
        with atomic_path(path) as copy:
            shutil.copyfile(source, copy)
        return
    os.replace(tmp, path)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def replace_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Swap a fully written folder into place. A crash between the two renames leaves no
    folder at `final_dir`, which the runner reads as 'not built', never as 'built'."""
    old = final_dir.with_name(f".{final_dir.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final_dir.exists():
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    shutil.rmtree(old, ignore_errors=True)
