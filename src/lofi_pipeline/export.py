"""export: MP3s with ID3 tags into outputs/tracks/, listed in outputs/playlist.m3u8.

MP3s are named by content key and never replaced, so a playlist entry always points at a
file; re-running appends new entries and never duplicates or drops one.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from mutagen.id3 import COMM, ID3, TALB, TCON, TIT2, TPE1, TRCK, ID3NoHeaderError
from mutagen.mp3 import MP3

from . import atomic
from .render import read_audio, write_audio
from .runner import Stage, StageContext

PLAYLIST = "playlist.m3u8"


def write_mp3(wav: Path, mp3: Path, bitrate_kbps: int = 192) -> float:
    """Encode with pedalboard's built-in LAME (its default would be 320 kbps); returns seconds."""
    audio, sr = read_audio(wav)
    write_audio(mp3, audio, sr, "mp3", quality=bitrate_kbps)
    return audio.shape[1] / sr


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
    lines = ["#EXTM3U"] + [x for i, p in entries + added for x in (i, p)]
    atomic.write_text(path, "\n".join(lines) + "\n")
    return len(added)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "track"


class ExportStage(Stage):
    name = "export"
    requires = ("master",)
    version = "1"
    help = "encode tagged MP3s and add them to outputs/playlist.m3u8"

    def params(self, cfg):
        # playlist_dir is only where copies go: moving it must not re-key the tracks.
        return {**{k: v for k, v in cfg.section("export").items() if k != "playlist_dir"},
                "album": cfg.run.name, "seed": cfg.run.seed}

    def run(self, ctx: StageContext) -> dict:
        cfg = ctx.cfg.export
        masters = json.loads((ctx.inputs["master"] / "masters.json").read_text())["masters"]
        library = ctx.outputs_root / "tracks"
        library.mkdir(parents=True, exist_ok=True)
        # The export key chains the archive's bytes, every stage's parameters and code versions.
        album, config_hash = ctx.cfg.run.name, ctx.key
        exported, entries = [], []
        for n, m in enumerate(masters, 1):
            meta = m.get("meta") or {}
            title = meta.get("title") or Path(m["file"]).stem
            name = f"{slug(album)}-{n:02d}-{ctx.key[:8]}.mp3"
            mp3 = library / name
            if not mp3.exists():  # named by content key: an existing one is already complete
                comment = (f"seed={meta.get('seed', ctx.cfg.run.seed)} run_seed={ctx.cfg.run.seed} "
                           f"config={config_hash} key={meta.get('key', '?')} tempo={meta.get('tempo_bpm', '?')}")
                with atomic.atomic_path(mp3) as tmp:
                    write_mp3(ctx.inputs["master"] / m["file"], tmp, cfg.bitrate_kbps)
                    tag_mp3(tmp, title, cfg.artist, album, n, len(masters), comment)
            seconds = MP3(mp3).info.length
            entries.append((f"#EXTINF:{round(seconds)},{cfg.artist} - {title}", f"tracks/{name}"))
            exported.append({"file": f"tracks/{name}", "title": title, "seconds": round(seconds, 2), **meta})
            ctx.log(f"tracks/{name}: {title} ({seconds:.0f}s)")
        added = merge_playlist(ctx.outputs_root / PLAYLIST, entries)
        if cfg.playlist_dir:
            target = Path(cfg.playlist_dir).expanduser()
            (target / "tracks").mkdir(parents=True, exist_ok=True)
            for e in exported:
                if not (target / e["file"]).exists():
                    shutil.copyfile(ctx.outputs_root / e["file"], target / e["file"])
            merge_playlist(target / PLAYLIST, entries)
            ctx.log(f"copied {len(exported)} MP3s and the playlist to {target}")
        atomic.write_json(ctx.out_dir / "exports.json", {"exports": exported, "config_hash": config_hash})
        ctx.log(f"playlist: {added} new entries in {ctx.outputs_root / PLAYLIST}")
        return {"files": len(exported), "playlist_added": added, "config_hash": config_hash}
