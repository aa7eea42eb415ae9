"""export: MP3s with ID3 tags (tempo and key among them) into outputs/tracks/, listed in
outputs/playlist.m3u8, and each track's stems and MIDI into outputs/daw/<the MP3's name>/.

MP3s are named by a digest of their own bytes and never replaced, so a playlist entry always
points at a file, the same take gets the same name whatever code made it, and re-running
appends new entries and never duplicates or drops one. A track's folder in outputs/daw/ takes
its MP3's name and always holds what the stems stage last made for that take.
"""
from __future__ import annotations

from pathlib import Path

from mutagen.mp3 import MP3

from ..audio.mp3 import tagged_mp3_bytes
from ..audio.playlist import PLAYLIST, copy_to_library, merge_playlist
from ..core import atomic
from ..core.hashing import file_digest, path_digest
from ..core.runner import Stage, StageContext
from . import catalog
from .track_midi import given_midi_records

DAW = "daw"  # outputs/daw/<track>/: a track's stems and MIDI, for a DAW


def _export_job(bitrate_kbps: int, job) -> bytes:
    wav, tags = job
    return tagged_mp3_bytes(wav, bitrate_kbps, tags)


class ExportStage(Stage):
    name = "export"
    takes = (catalog.MASTERS, catalog.MASTERED, catalog.STEMS, catalog.STEM_FILES, catalog.TRACKS)
    gives = (catalog.EXPORTS,)
    reads = ("export", "run.name", "run.seed", "render.midi")
    owns = ("tracks", DAW, PLAYLIST)
    help = "encode tagged MP3s, add them to outputs/playlist.m3u8, put each track's stems and MIDI in outputs/daw/"

    def inputs(self, params):
        # --midi: the records come from the given files' names, not from arrange
        return self.takes[:4] if params.render.midi else self.takes

    def external_inputs(self, params, root):
        if not params.render.midi:
            return {}
        return {"midi": ",".join(path_digest(f) for f in catalog.given_midi_files(root / params.render.midi))}

    def run(self, ctx: StageContext) -> dict:
        p, run = ctx.params.export, ctx.params.run
        mastered = ctx.source(catalog.MASTERED)
        masters = catalog.masters.read(mastered)
        if ctx.params.render.midi:
            records = [r for r, _ in given_midi_records(ctx.path(ctx.params.render.midi))]
        else:
            records = catalog.tracks.read(ctx.source(catalog.TRACKS))
        by_stem = {r.stem: r for r in records}
        stem_sets = {s.stem: s for s in catalog.stem_sets.read(ctx.source(catalog.STEMS))}
        library = ctx.outputs_root / "tracks"
        library.mkdir(parents=True, exist_ok=True)
        tracks = []
        for n, m in enumerate(masters, 1):
            r = by_stem[Path(m.file).stem]
            tracks.append((m.file, r, catalog.track_tags(r, n, len(masters), p, run)))
        # Each job carries a master's WAV bytes and hands back the MP3's; an MP3 is named by a digest
        # of its bytes, so an existing file of that name is already complete.
        jobs = (((mastered / wav).read_bytes(), tags) for wav, _, tags in tracks)
        exported = []
        encoded = ctx.fan_out(_export_job, jobs, total=len(tracks), workers=p.workers, shared=p.bitrate_kbps)
        for (_, record, tags), data in zip(tracks, encoded, strict=True):
            mp3 = library / catalog.mp3_name(run.name, record.index, data)
            if not mp3.exists():
                atomic.write_bytes(mp3, data)
            ctx.record_output(mp3)
            seconds = MP3(mp3).info.length
            stems = self._copy_stems(ctx, stem_sets[record.stem], ctx.outputs_root / DAW / mp3.stem)
            exported.append(catalog.Export(record.index, f"tracks/{mp3.name}", tags["title"], round(seconds, 2),
                                           f"#EXTINF:{round(seconds)},{p.artist} - {tags['title']}", stems))
            ctx.log(f"tracks/{mp3.name}: {tags['title']} ({seconds:.0f}s)")
        catalog.exports.write(ctx.out_dir, exported)
        return {"files": len(exported)}

    @staticmethod
    def _copy_stems(ctx: StageContext, stem_set: catalog.StemSet, folder: Path) -> list[str]:
        """`folder` holds exactly the track's stem and MIDI files, hard links to the stems
        artifact's: a file there that is not the artifact's (stems made again, or from another
        run) is replaced, one the set no longer has is removed. Their paths under the outputs root."""
        source = ctx.source(catalog.STEMS)
        names = stem_set.files()
        for stale in folder.glob("*") if folder.is_dir() else ():
            if stale.name not in names:
                stale.unlink()
        for name in names:
            there, made = folder / name, source / name
            if not (there.exists() and (there.samefile(made) or file_digest(there) == file_digest(made))):
                atomic.link_or_copy(made, there)
            ctx.record_output(folder / name)
        return [(folder / name).relative_to(ctx.outputs_root).as_posix() for name in names]

    def deliver(self, ctx: StageContext) -> None:
        """On every run: the playlist lists this take, and a music library gets its copies."""
        exports = catalog.exports.read(ctx.out_dir)
        entries = [(e.extinf, e.file) for e in exports]
        added = merge_playlist(ctx.outputs_root / PLAYLIST, entries)
        if added:
            ctx.log(f"playlist: {added} new entries in {ctx.outputs_root / PLAYLIST}")
        if ctx.params.export.playlist_dir:
            target = ctx.path(ctx.params.export.playlist_dir)
            copied = copy_to_library(ctx.outputs_root, [e.file for e in exports], entries, target)
            if copied:
                ctx.log(f"copied {copied} MP3s and the playlist to {target}")
