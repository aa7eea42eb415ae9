"""extract: MIDI bytes -> Piece (melody, harmony, bass, drums, chord changes, key), per file.

Files are read with symusic (mido, then music21, when a reader rejects one) and analysed in
worker processes; results are cached per file by content hash plus the stage's code key (its
code, libraries and parameters), so editing the analysis re-reads every file.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from . import atomic
from .events import MAJOR, MINOR
from .midi_io import UnusableMidi, key_profiles, read_midi
from .parallel import process_map
from .performance import ReadingParams, analyse
from .runner import Stage, StageContext


def extract_file(data: bytes, name: str, sha256: str, profiles, params: ReadingParams) -> dict:
    """{"piece": ...} or {"skip": reason}: never raises for a bad file."""
    try:
        return {"piece": analyse(read_midi(data), name, sha256, profiles, params).to_json()}
    except UnusableMidi as exc:
        return {"skip": str(exc)}


def _extract_job(args) -> dict:
    path, name, sha, profiles, params, cache_path = args
    result = extract_file(Path(path).read_bytes(), name, sha, profiles, params)
    atomic.write_json(cache_path, result)
    return result


def reading_params(p) -> ReadingParams:
    return ReadingParams(max_beats=p.max_beats, onset_tolerance_ms=p.onset_tolerance_ms,
                         min_tempo_bpm=p.min_tempo_bpm, max_tempo_bpm=p.max_tempo_bpm, min_notes=p.min_notes)


class ExtractStage(Stage):
    name = "extract"
    requires = ("intake",)
    reads = ("extract",)
    help = "read performed MIDI: onsets, grid, pedal, melody/harmony/bass/drums, chords, key"

    def run(self, ctx: StageContext) -> dict:
        p = ctx.params.extract
        listing = json.loads((ctx.inputs["intake"] / "files.json").read_text())["files"]
        results: dict[str, dict] = {}
        jobs = []
        profiles, params = key_profiles(), reading_params(p)
        for item in listing:
            cache_path = ctx.cache_dir / f"{item['sha256'][:32]}-{ctx.code_key}.json"
            try:
                results[item["sha256"]] = json.loads(cache_path.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                jobs.append((str(ctx.inputs["intake"] / item["file"]), item["name"], item["sha256"],
                             profiles, params, cache_path))
        ctx.log(f"{len(listing)} files: {len(listing) - len(jobs)} from the per-file cache, "
                f"{len(jobs)} to read")
        with tqdm(total=len(jobs), desc="extract", unit="file", disable=None) as bar:
            for i, res in enumerate(process_map(_extract_job, jobs, p.workers, chunksize=8)):
                results[jobs[i][2]] = res
                bar.update()
        pieces, skipped = [], []
        for item in listing:
            res = results[item["sha256"]]
            if "piece" in res:
                pieces.append(res["piece"])
            else:
                skipped.append({"name": item["name"], "reason": res["skip"]})
                ctx.log(f"skipped {item['name']!r}: {res['skip']}")
        atomic.write_json(ctx.out_dir / "pieces.json", {"pieces": pieces, "skipped": skipped})
        by_reason = Counter(s["reason"].split(":")[0].split(" (")[0] for s in skipped)
        stats = [p["stats"] for p in pieces]
        modes = [p["mode"] for p in pieces]
        total = Counter()
        for s in stats:
            total.update({k: int(v) for k, v in s.items() if isinstance(v, (int, bool)) and k != "reader"})
        ctx.log(f"{len(pieces)} pieces ({modes.count(MAJOR)} major, {modes.count(MINOR)} minor), "
                f"{len(skipped)} skipped; {total['notes']} notes in {total['chord_onsets']} onsets, "
                f"{total['pedal_extended']} held by the pedal")
        return {"pieces": len(pieces), "files_read": len(jobs), "files_from_cache": len(listing) - len(jobs),
                "files_skipped": len(skipped), "skipped_by_reason": dict(by_reason),
                "readers": dict(Counter(s["reader"] for s in stats)),
                "grid": dict(Counter(s["grid"] for s in stats)),
                "melody_from": dict(Counter(s["melody_source"].split(" ")[0] for s in stats)),
                "tempo_missing": total["tempo_missing"], "tempos_ignored": total["tempos_ignored"],
                "notes": total["notes"], "onsets": total["onsets"], "chord_onsets": total["chord_onsets"],
                "repeats_dropped": total["repeats_dropped"], "pedal_extended": total["pedal_extended"],
                "notes_cropped": total["cropped"],
                "timing_error_ms_mean": round(sum(s["timing_error_ms"] for s in stats) / max(1, len(stats)), 1),
                "melody_notes": sum(len(p["melody"]) for p in pieces),
                "chord_changes": sum(len(p["chords"]) for p in pieces),
                "drum_hits": sum(len(p["drums"]) for p in pieces),
                "major": modes.count(MAJOR), "minor": modes.count(MINOR)}
