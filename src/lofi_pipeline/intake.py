"""intake: open a zip (or a folder) safely and keep its MIDI files.

Reading is a pure function of the archive's bytes; the stage writes the kept files under
content-hash names, so nothing an entry's name says can place a file outside the artifact.
"""
from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from . import atomic
from .runner import Stage, StageContext, StageError, hash_json, sha256_file

MIDI_SUFFIXES = (".mid", ".midi")
MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    max_entry_bytes: int = 32 * MiB
    max_total_bytes: int = 512 * MiB
    max_entries: int = 50000


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


def midi_header_reason(data: bytes) -> str | None:
    if not data:
        return "empty file: 0 bytes"
    if data[:4] == b"MThd":
        return None
    if data[:4] == b"RIFF" and data[8:12] == b"RMID":
        return None
    return "not a MIDI file: no MThd header"


def _read_capped(opened, cap: int) -> bytes | None:
    """Read at most cap bytes; None if there is more. Never trusts the header's size."""
    chunks, total = [], 0
    while True:
        chunk = opened.read(min(1 << 16, cap + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > cap:
            return None


class _Collector:
    def __init__(self, limits: Limits, source: str):
        self.limits, self.source = limits, source
        self.result = IntakeResult()
        self.seen: dict[str, str] = {}
        self.total = 0

    def skip(self, name: str, reason: str) -> None:
        self.result.skipped.append((name, reason))

    def read(self, name: str, open_entry, read_errors: tuple = (OSError,)) -> None:
        """Keep one entry if it is a MIDI file within the size limit; `open_entry()` gives a reader."""
        if not name.lower().endswith(MIDI_SUFFIXES):
            self.skip(name, "not MIDI: extension is not .mid/.midi")
            return
        try:
            with open_entry() as opened:
                data = _read_capped(opened, self.limits.max_entry_bytes)
        except read_errors as exc:
            self.skip(name, f"corrupt entry: {exc}")
            return
        if data is None:
            self.skip(name, f"too large: inflates past {self.limits.max_entry_bytes / MiB:g} MiB "
                            "(intake.max_entry_mib)")
            return
        self.add(name, data)

    def add(self, name: str, data: bytes) -> None:
        self.total += len(data)
        if self.total > self.limits.max_total_bytes:
            raise StageError(
                f"{self.source}: MIDI entries inflate past {self.limits.max_total_bytes / MiB:g} MiB "
                f"in total (intake.max_total_mib); refusing the archive")
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
            col.read(name, lambda: archive.open(info), (zipfile.BadZipFile, zipfile.LargeZipFile, OSError,
                                                       EOFError, NotImplementedError, RuntimeError))
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
            col.read(rel, lambda: open(full, "rb"))
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


def folder_digest(path: Path) -> str:
    items = []
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        dirnames.sort()
        for fname in sorted(filenames):
            full = Path(dirpath) / fname
            if full.is_file() and not full.is_symlink():
                items.append((full.relative_to(path).as_posix(), sha256_file(full)))
    return hash_json(items)


def archive_path(cfg, root: Path) -> Path:
    return root / (cfg.run.archive or "dataset/default.zip")


class IntakeStage(Stage):
    name = "intake"
    version = "1"
    help = "open the archive safely and keep its MIDI files"

    def params(self, cfg):
        return cfg.section("intake")

    def external_inputs(self, cfg, root):
        path = archive_path(cfg, root)
        if path.is_dir():
            return {"archive": folder_digest(path)}
        return {"archive": sha256_file(path) if path.is_file() else "missing"}

    def check(self, cfg, root):
        path = archive_path(cfg, root)
        if not path.exists():
            hint = ("run `make dataset` to build it" if not cfg.run.archive
                    else "check the path given to --archive / ARCHIVE=")
            raise StageError(f"{path}: archive not found; {hint}")

    def run(self, ctx: StageContext) -> dict:
        cfg = ctx.cfg.intake
        limits = Limits(int(cfg.max_entry_mib * MiB), int(cfg.max_total_mib * MiB), cfg.max_entries)
        result = read_archive(archive_path(ctx.cfg, Path(".")), limits)
        files = sorted(result.files, key=lambda b: b.name)
        if cfg.max_files:
            files = files[:cfg.max_files]
        (ctx.out_dir / "midi").mkdir()
        listing = []
        for blob in files:
            (ctx.out_dir / "midi" / f"{blob.sha[:20]}.mid").write_bytes(blob.data)
            listing.append({"name": blob.name, "sha256": blob.sha, "file": f"midi/{blob.sha[:20]}.mid",
                            "bytes": len(blob.data)})
        for name, reason in result.skipped:
            ctx.log(f"skipped {name!r}: {reason}")
        atomic.write_json(ctx.out_dir / "files.json", {
            "files": listing,
            "skipped": [{"name": n, "reason": r} for n, r in result.skipped],
            "duplicates": [{"name": n, "same_as": s} for n, s in result.duplicates]})
        ctx.log(f"kept {len(listing)} MIDI files, skipped {len(result.skipped)}, "
                f"{len(result.duplicates)} duplicates")
        return {"files_kept": len(listing), "files_skipped": len(result.skipped),
                "files_duplicate": len(result.duplicates),
                "skipped_by_reason": result.skip_counts()}
