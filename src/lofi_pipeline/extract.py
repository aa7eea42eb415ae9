"""extract: MIDI bytes -> Piece (notes, chords, drums, tempo, meter, key), per file.

Parsing is slow, so files are parsed in worker processes and cached by content hash: the
per-file cache key is the file's bytes plus the stage's code key (its code, libraries and
parameters), so editing the parser or upgrading music21 re-parses every file.
"""
from __future__ import annotations

import json
from pathlib import Path

from tqdm import tqdm

from . import atomic
from .events import MAJOR, MINOR
from .midi_io import UnusableMidi, midi_bytes_to_piece
from .parallel import process_map
from .runner import Stage, StageContext


def _parse_job(args) -> dict:
    path, name, sha, grid, max_beats, cache_path = args
    try:
        result = {"piece": midi_bytes_to_piece(Path(path).read_bytes(), name, sha, grid,
                                               max_beats).to_json()}
    except UnusableMidi as exc:
        result = {"skip": str(exc)}
    atomic.write_json(cache_path, result)
    return result


class ExtractStage(Stage):
    name = "extract"
    requires = ("intake",)
    reads = ("extract",)
    help = "parse MIDI with music21: notes, chords, tempo, key; transpose to C major / A minor"

    def run(self, ctx: StageContext) -> dict:
        p = ctx.params.extract
        listing = json.loads((ctx.inputs["intake"] / "files.json").read_text())["files"]
        results: dict[str, dict] = {}
        jobs = []
        for item in listing:
            cache_path = ctx.cache_dir / f"{item['sha256'][:32]}-{ctx.code_key}.json"
            try:
                results[item["sha256"]] = json.loads(cache_path.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                jobs.append((str(ctx.inputs["intake"] / item["file"]), item["name"], item["sha256"],
                             p.grid_per_beat, p.max_beats, cache_path))
        ctx.log(f"{len(listing)} files: {len(listing) - len(jobs)} from the per-file cache, "
                f"{len(jobs)} to parse")
        with tqdm(total=len(jobs), desc="extract", unit="file", disable=None) as bar:
            for i, res in enumerate(process_map(_parse_job, jobs, p.workers, chunksize=2)):
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
        by_reason: dict[str, int] = {}
        for s in skipped:
            reason = s["reason"].split(":")[0]
            by_reason[reason] = by_reason.get(reason, 0) + 1
        modes = [p["mode"] for p in pieces]
        ctx.log(f"{len(pieces)} pieces ({modes.count(MAJOR)} major, {modes.count(MINOR)} minor), "
                f"{len(skipped)} skipped")
        return {"pieces": len(pieces), "files_parsed": len(jobs),
                "files_from_cache": len(listing) - len(jobs),
                "files_skipped": len(skipped), "skipped_by_reason": by_reason,
                "notes": sum(len(p["notes"]) for p in pieces),
                "drum_hits": sum(len(p["drums"]) for p in pieces),
                "major": modes.count(MAJOR), "minor": modes.count(MINOR)}
