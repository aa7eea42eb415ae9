"""Reading an archive of MIDI files safely: a zip (or a folder) in, its MIDI files' bytes out,
every refused entry with its reason. A pure function of the archive's bytes: nothing an
entry's name says can place a file anywhere, and every size and ratio limit is checked while
inflating, never taken from a header.
"""
from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..core.errors import StageError
from .midi_io import midi_header_reason

MIDI_SUFFIXES = (".mid", ".midi")
MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """max_entry_bytes: one entry, inflated. max_total_bytes: every byte inflated, whatever
    became of its entry. max_ratio: inflated / compressed bytes of one entry. max_read_bytes:
    compressed bytes read from the archive (file bytes, for a folder)."""
    max_entry_bytes: int = 32 * MiB
    max_total_bytes: int = 512 * MiB
    max_entries: int = 50000
    max_ratio: float = 100.0
    max_read_bytes: int = 1024 * MiB


@dataclass
class MidiBlob:
    name: str
    data: bytes

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class IntakeResult:
    files: list[MidiBlob] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    inflated_bytes: int = 0  # every byte inflated, kept or not
    read_bytes: int = 0      # compressed bytes read from the archive

    def skip_counts(self) -> dict[str, int]:
        return dict(Counter(reason.split(":")[0] for _, reason in self.skipped))


def unsafe_name_reason(name: str) -> str | None:
    """Why an entry name could escape the extraction folder, or None if it cannot."""
    if "\x00" in name:
        return "unsafe path: NUL byte in name"
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        return "unsafe path: absolute path"
    if ".." in PurePosixPath(normalised).parts:
        return "unsafe path: escapes the archive with '..'"
    return None


class _Collector:
    def __init__(self, limits: Limits, source: str):
        self.limits, self.source = limits, source
        self.result = IntakeResult()
        self.seen: dict[str, str] = {}

    def skip(self, name: str, reason: str) -> None:
        self.result.skipped.append((name, reason))

    def _count(self, n: int) -> None:
        """Every inflated byte counts toward the total, kept or not."""
        self.result.inflated_bytes += n
        if self.result.inflated_bytes > self.limits.max_total_bytes:
            raise StageError(
                f"{self.source}: entries inflate past {self.limits.max_total_bytes / MiB:g} MiB "
                f"in total (intake.max_total_mib); refusing the archive")

    def _read_capped(self, opened, stored_bytes: int) -> tuple[bytes | None, str]:
        """Read one entry chunk by chunk, never trusting its header's sizes; (None, reason)
        once it inflates past the entry limit or the compression-ratio limit."""
        ratio_cap = self.limits.max_ratio * max(stored_bytes, 1)
        cap = self.limits.max_entry_bytes
        chunks, size = [], 0
        while True:
            chunk = opened.read(1 << 16)
            if not chunk:
                return b"".join(chunks), ""
            self._count(len(chunk))
            chunks.append(chunk)
            size += len(chunk)
            if size > cap:
                return None, f"too large: inflates past {cap / MiB:g} MiB (intake.max_entry_mib)"
            if size > ratio_cap:
                return None, (f"compression ratio: inflates over {self.limits.max_ratio:g}x its "
                              f"{stored_bytes} stored bytes (intake.max_ratio)")

    def read(self, name: str, open_entry, stored_bytes: int, read_errors: tuple = (OSError,)) -> None:
        """Keep one entry if it is a MIDI file within the limits; `open_entry()` gives a reader
        and `stored_bytes` is what it reads from disk (compressed size, or file size)."""
        if not name.lower().endswith(MIDI_SUFFIXES):
            self.skip(name, "not MIDI: extension is not .mid/.midi")
            return
        self.result.read_bytes += stored_bytes
        if self.result.read_bytes > self.limits.max_read_bytes:
            raise StageError(f"{self.source}: reading past {self.limits.max_read_bytes / MiB:g} MiB of "
                             f"the archive (intake.max_read_mib); refusing the archive")
        try:
            with open_entry() as opened:
                data, reason = self._read_capped(opened, stored_bytes)
        except StageError:  # a limit on the whole archive: a RuntimeError, but not the entry's fault
            raise
        except read_errors as exc:
            self.skip(name, f"corrupt entry: {exc}")
            return
        if data is None:
            self.skip(name, reason)
            return
        self.add(name, data)

    def add(self, name: str, data: bytes) -> None:
        reason = midi_header_reason(data)
        if reason:
            self.skip(name, reason)
            return
        blob = MidiBlob(name, data)
        if blob.sha in self.seen:
            self.result.duplicates.append((name, self.seen[blob.sha]))
            return
        self.seen[blob.sha] = name
        self.result.files.append(blob)


def read_zip(path: Path, limits: Limits = Limits()) -> IntakeResult:
    source = str(path)
    if not zipfile.is_zipfile(path):
        raise StageError(f"{source}: not a zip archive (or truncated: no central directory)")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise StageError(f"{source}: unreadable zip archive ({exc})") from None
    col = _Collector(limits, source)
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_entries:
            raise StageError(f"{source}: {len(infos)} entries, more than intake.max_entries="
                             f"{limits.max_entries}; refusing the archive")
        for info in infos:
            name = info.filename
            if info.is_dir():
                continue
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                col.skip(name, "symlink entry: links are never followed")
                continue
            unsafe = unsafe_name_reason(name)
            if unsafe:
                col.skip(name, unsafe)
                continue
            if info.flag_bits & 0x1:
                col.skip(name, "encrypted entry: cannot be read without a password")
                continue
            # zipfile reports damage (bad CRC, unknown compression, truncation) in many ways.
            col.read(name, lambda: archive.open(info), info.compress_size,
                     (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError, RuntimeError))
    return col.result


def read_folder(path: Path, limits: Limits = Limits()) -> IntakeResult:
    col = _Collector(limits, str(path))
    entries = 0
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        dirnames.sort()
        for fname in sorted(filenames):
            full = Path(dirpath) / fname
            rel = full.relative_to(path).as_posix()
            entries += 1
            if entries > limits.max_entries:
                raise StageError(f"{path}: more than intake.max_entries={limits.max_entries} files")
            if full.is_symlink():
                col.skip(rel, "symlink entry: links are never followed")
                continue
            col.read(rel, lambda: open(full, "rb"), full.stat().st_size)
    return col.result


def read_archive(path: Path, limits: Limits = Limits()) -> IntakeResult:
    path = Path(path)
    if not path.exists():
        raise StageError(f"{path}: archive not found; pass --archive PATH to a .zip or a folder of MIDI files")
    result = read_folder(path, limits) if path.is_dir() else read_zip(path, limits)
    if not result.files:
        counts = ", ".join(f"{n} {r}" for r, n in sorted(result.skip_counts().items())) or "no entries"
        raise StageError(f"{path}: no usable MIDI files ({counts})")
    return result
