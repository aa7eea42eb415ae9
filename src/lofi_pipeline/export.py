"""export: MP3s with ID3 tags into outputs/tracks/, listed in outputs/playlist.m3u8.

MP3s are named by their own bytes and never replaced, so a playlist entry always points at a
file, the same take gets the same name whatever code made it, and re-running appends new
entries and never duplicates or drops one.
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

from mutagen.id3 import COMM, ID3, TALB, TCON, TIT2, TPE1, TRCK, ID3NoHeaderError
from mutagen.mp3 import MP3
from pedalboard.io import AudioFile
from tqdm import tqdm

from . import atomic
from .audio_io import read_wav
from .hashing import sha256_bytes
from .parallel import Executor
from .runner import Stage, StageContext

PLAYLIST = "playlist.m3u8"


def write_mp3(wav: Path | bytes, mp3: Path, bitrate_kbps: int = 192) -> float:
    """Encode a WAV file (or its bytes) with pedalboard's built-in LAME (its default would be
    320 kbps); returns seconds."""
    audio, sr = read_wav(wav)
    with open(mp3, "wb") as fh, AudioFile(fh, "w", sr, audio.shape[0], format="mp3",
                                          quality=bitrate_kbps) as f:
        f.write(audio)
    return audio.shape[1] / sr


def tagged_mp3_bytes(wav: bytes, bitrate_kbps: int, tags: dict) -> bytes:
    """A master's WAV bytes as a tagged MP3's bytes (LAME and mutagen work on files: a private
    temporary one)."""
    with tempfile.TemporaryDirectory(prefix="lofi-export-") as tmp:
        mp3 = Path(tmp) / "track.mp3"
        write_mp3(wav, mp3, bitrate_kbps)
        tag_mp3(mp3, **tags)
        return mp3.read_bytes()


def _export_job(bitrate_kbps: int, job) -> bytes:
    wav, tags = job
    return tagged_mp3_bytes(wav, bitrate_kbps, tags)


def tag_mp3(path: Path, title: str, artist: str, album: str, track: int, total: int, comment: str) -> None:
    try:
        tags = ID3(path)
    except ID3NoHeaderError:
        tags = ID3()
    tags.add(TIT2(encoding=3, text=title))
    tags.add(TPE1(encoding=3, text=artist))
    tags.add(TALB(encoding=3, text=album))
    tags.add(TRCK(encoding=3, text=f"{track}/{total}"))
    tags.add(TCON(encoding=3, text="Lo-fi"))
    tags.add(COMM(encoding=3, lang="eng", desc="lofi_pipeline", text=comment))
    tags.save(path)


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


def copy_to_library(outputs_root: Path, exports: list[dict], entries: list[tuple[str, str]],
                    target: Path) -> int:
    """Copy the MP3s that are not there yet and merge the playlist; returns files copied."""
    (target / "tracks").mkdir(parents=True, exist_ok=True)
    copied = 0
    for e in exports:
        if not (target / e["file"]).exists():
            with atomic.atomic_path(target / e["file"]) as tmp:
                shutil.copyfile(outputs_root / e["file"], tmp)
            copied += 1
    merge_playlist(target / PLAYLIST, entries)
    return copied


class ExportStage(Stage):
    name = "export"
    requires = ("master",)
    reads = ("export", "run.name", "run.seed", "run.executor", "run.ray_address")
    owns = ("tracks", PLAYLIST)
    help = "encode tagged MP3s and add them to outputs/playlist.m3u8"

    def run(self, ctx: StageContext) -> dict:
        p = ctx.params.export
        masters = json.loads((ctx.inputs["master"] / "masters.json").read_text())["masters"]
        library = ctx.outputs_root / "tracks"
        library.mkdir(parents=True, exist_ok=True)
        album = ctx.params.run.name
        tracks = []
        for n, m in enumerate(masters, 1):
            meta = m.get("meta") or {}
            title = meta.get("title") or Path(m["file"]).stem
            comment = (f"seed={meta.get('seed', ctx.params.run.seed)} run_seed={ctx.params.run.seed} "
                       f"key={meta.get('key', '?')} tempo={meta.get('tempo_bpm', '?')}")
            tracks.append((m["file"], meta, {"title": title, "artist": p.artist, "album": album, "track": n,
                                             "total": len(masters), "comment": comment}))
        # Each job carries a master's WAV bytes and hands back the MP3's; an MP3 is named by a digest
        # of its bytes, so an existing file of that name is already complete.
        jobs = (((ctx.inputs["master"] / wav).read_bytes(), tags) for wav, _, tags in tracks)
        encoded = Executor.for_stage(ctx.params, p.workers).map(_export_job, jobs, shared=p.bitrate_kbps)
        named = []
        for (wav, meta, tags), data in tqdm(zip(tracks, encoded, strict=True), total=len(tracks), desc="export",
                                            unit="track", disable=None):
            mp3 = library / f"{slug(album)}-{tags['track']:02d}-{sha256_bytes(data)[:8]}.mp3"
            if not mp3.exists():
                atomic.write_bytes(mp3, data)
            named.append((mp3, wav, meta, tags))
        exported = []
        for mp3, _, meta, tags in named:
            ctx.record_output(mp3)
            seconds = MP3(mp3).info.length
            exported.append({"file": f"tracks/{mp3.name}", "title": tags["title"], "seconds": round(seconds, 2),
                             "extinf": f"#EXTINF:{round(seconds)},{p.artist} - {tags['title']}", **meta})
            ctx.log(f"tracks/{mp3.name}: {tags['title']} ({seconds:.0f}s)")
        atomic.write_json(ctx.out_dir / "exports.json", {"exports": exported})
        return {"files": len(exported)}

    def deliver(self, ctx: StageContext) -> None:
        """On every run: the playlist lists this take, and a music library gets its copies."""
        exports = json.loads((ctx.out_dir / "exports.json").read_text())["exports"]
        entries = [(e["extinf"], e["file"]) for e in exports]
        added = merge_playlist(ctx.outputs_root / PLAYLIST, entries)
        if added:
            ctx.log(f"playlist: {added} new entries in {ctx.outputs_root / PLAYLIST}")
        if ctx.params.export.playlist_dir:
            target = ctx.path(ctx.params.export.playlist_dir)
            copied = copy_to_library(ctx.outputs_root, exports, entries, target)
            if copied:
                ctx.log(f"copied {copied} MP3s and the playlist to {target}")
