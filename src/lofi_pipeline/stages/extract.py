"""extract: MIDI bytes -> Piece (melody, harmony, bass, drums, chord changes, key), per file.

Files are read with symusic (mido, then music21, when a reader rejects one) and analysed on
the run's executor (one job per file, its bytes sent with it); results are cached per file,
by the driver, by content hash plus the stage's code key (its code, libraries and
parameters), so editing the analysis re-reads every file.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from ..core import atomic
from ..core.runner import Stage, StageContext
from ..music.drum_format import piece_drum_bars
from ..music.midi_io import UnusableMidi, key_profiles, read_midi
from ..music.performance import ReadingParams, analyse
from ..music.piece import MAJOR, MINOR
from . import catalog


def extract_file(data: bytes, name: str, sha256: str, profiles, params: ReadingParams) -> dict:
    """{"piece": ...} or {"skip": reason}: never raises for a bad file."""
    try:
        return {"piece": analyse(read_midi(data), name, sha256, profiles, params).to_json()}
    except UnusableMidi as exc:
        return {"skip": str(exc)}
    except Exception as exc:  # a file no rule foresaw fails alone, counted, never the whole stage
        return {"skip": f"analysis failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"}


def _extract_job(shared, job) -> dict:
    profiles, params = shared
    data, name, sha = job
    return extract_file(data, name, sha, profiles, params)


def drum_reading(pieces: list[dict]) -> dict:
    """What the drum model will read of the pieces' drums (channel 10 or a track named as drums),
    and what the drum format drops or merges there, by reason (a drum-only file is skipped above:
    it has no music to go with)."""
    counts, bars = Counter(), 0
    for p in pieces:
        if p.get("drum_hits"):
            bars += len(piece_drum_bars(p["drum_hits"], p["metre"][0][1] if p["metre"] else "4/4", counts))
    return {"pieces_with_drums": sum(bool(p.get("drum_hits")) for p in pieces), "drum_bars": bars,
            "drum_hits_left_out": dict(counts)}


def reading_params(p) -> ReadingParams:
    return ReadingParams(max_beats=p.max_beats, onset_tolerance_ms=p.onset_tolerance_ms,
                         min_tempo_bpm=p.min_tempo_bpm, max_tempo_bpm=p.max_tempo_bpm, min_notes=p.min_notes)


class ExtractStage(Stage):
    name = "extract"
    takes = (catalog.SOURCE_MIDI, catalog.SOURCE_FILES)
    gives = (catalog.PIECES,)
    reads = ("extract",)
    help = "read performed MIDI: onsets, grid, pedal, melody/harmony/bass/drums, chords, key"

    @staticmethod
    def _cache_path(ctx: StageContext, sha256: str) -> Path:
        return ctx.cache_dir / f"{sha256[:32]}-{ctx.code_key}.json"

    def run(self, ctx: StageContext) -> dict:
        p = ctx.params.extract
        intake = ctx.source(catalog.SOURCE_FILES)
        listing = catalog.read_intake(intake).files
        results: dict[str, dict] = {}
        todo = []
        for item in listing:
            try:
                results[item.sha256] = json.loads(self._cache_path(ctx, item.sha256).read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                todo.append(item)
        ctx.log(f"{len(listing)} files: {len(listing) - len(todo)} from the per-file cache, "
                f"{len(todo)} to read")
        jobs = (((intake / item.file).read_bytes(), item.name, item.sha256) for item in todo)
        read = ctx.fan_out(_extract_job, jobs, total=len(todo), unit="file", workers=p.workers,
                           shared=(key_profiles(), reading_params(p)))
        for item, res in zip(todo, read, strict=True):
            atomic.write_json(self._cache_path(ctx, item.sha256), res)
            results[item.sha256] = res
        pieces, skipped = [], []
        for item in listing:
            res = results[item.sha256]
            if "piece" in res:
                pieces.append(res["piece"])
            else:
                skipped.append({"name": item.name, "reason": res["skip"]})
                ctx.log(f"skipped {item.name!r}: {res['skip']}")
        catalog.write_pieces(ctx.out_dir, pieces, skipped)
        drums = drum_reading(pieces)
        by_reason = Counter(s["reason"].split(":")[0].split(" (")[0] for s in skipped)
        stats = [p["stats"] for p in pieces]
        modes = [p["mode"] for p in pieces]
        total = Counter()
        for s in stats:
            total.update({k: int(v) for k, v in s.items() if isinstance(v, (int, bool)) and k != "reader"})
        ctx.log(f"{len(pieces)} pieces ({modes.count(MAJOR)} major, {modes.count(MINOR)} minor), "
                f"{len(skipped)} skipped; {total['notes']} notes in {total['chord_onsets']} onsets, "
                f"{total['pedal_extended']} held by the pedal")
        return {"pieces": len(pieces), "files_read": len(todo), "files_from_cache": len(listing) - len(todo),
                "files_skipped": len(skipped), "skipped_by_reason": dict(by_reason),
                "readers": dict(Counter(s["reader"] for s in stats)),
                "grid": dict(Counter(s["grid"] for s in stats)),
                "melody_from": dict(Counter(s["melody_source"].split(" ")[0] for s in stats)),
                "tempo_missing": total["tempo_missing"], "tempos_ignored": total["tempos_ignored"],
                "notes": total["notes"], "onsets": total["onsets"], "chord_onsets": total["chord_onsets"],
                "repeats_dropped": total["repeats_dropped"], "pedal_extended": total["pedal_extended"],
                "notes_cropped": total["cropped"],
                "melody_notes_below_the_top": total["melody_notes_below_the_top"],
                "pitches_clipped": total["pitches_clipped"],
                "metres": dict(Counter(m for p in pieces for m in {seg[1] for seg in p["metre"]})),
                "metre_changes": total["metre_changes"], "beats_moved": total["beat_moved"],
                "downbeats_moved": total["downbeat_moved"],
                "timing_error_ms_mean": round(sum(s["timing_error_ms"] for s in stats) / max(1, len(stats)), 1),
                "melody_notes": sum(len(p["melody"]) for p in pieces),
                "chord_changes": sum(len(p["chords"]) for p in pieces),
                "drum_hits": sum(len(p["drums"]) for p in pieces), **drums,
                "major": modes.count(MAJOR), "minor": modes.count(MINOR)}
