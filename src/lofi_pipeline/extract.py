"""extract: MIDI bytes -> Piece, through music21, transposed to C major / A minor.

This is the only module that talks to music21's parser, so its camelCase stays here.
Parsing is slow, so files are parsed in worker processes and cached by content hash.
"""
from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

from . import atomic
from .events import MAJOR, MINOR, PITCH_NAMES, NoteEvent, Piece, transposition_to_reference
from .runner import Stage, StageContext, hash_json

EXTRACT_VERSION = "2"


class UnusableMidi(ValueError):
    """A file that parses but cannot be used, or does not parse; the message is the reason."""


def _tempo_and_meter(flat) -> tuple[float, str]:
    from music21 import meter, tempo
    marks = list(flat.getElementsByClass(tempo.MetronomeMark))
    bpm = 120.0
    if marks:
        q = marks[0].getQuarterBPM()
        if q and q > 0:
            bpm = float(q)
    sigs = list(flat.getElementsByClass(meter.TimeSignature))
    return bpm, (sigs[0].ratioString if sigs else "4/4")


def _is_drum_part(part) -> bool:
    from music21 import instrument
    inst = part.getInstrument(returnDefault=False)
    return isinstance(inst, instrument.UnpitchedPercussion) or (
        inst is not None and getattr(inst, "midiChannel", None) == 9)


def _drum_keys(el) -> tuple[int, ...]:
    """GM drum keys of an Unpitched, a PercussionChord, or a note on the drum channel."""
    members = list(getattr(el, "notes", ())) or [el]
    keys = set()
    for m in members:
        inst = getattr(m, "storedInstrument", None)
        key = getattr(inst, "percMapPitch", None)
        if key is None and hasattr(m, "pitch"):
            key = m.pitch.midi
        keys.add(int(key) if key is not None else 38)
    return tuple(sorted(keys))


def midi_bytes_to_piece(data: bytes, name: str, sha256: str, grid: int = 12,
                        max_beats: int = 4000) -> Piece:
    """Parse one MIDI file; raise UnusableMidi with a reason when it cannot be used."""
    from music21 import chord, midi as m21midi, note, percussion
    try:
        mf = m21midi.MidiFile()
        mf.readstr(data)
        score = m21midi.translate.midiFileToStream(mf, quantizePost=False)
    except Exception as exc:  # music21 raises many types on bad bytes
        raise UnusableMidi(f"unparseable: {type(exc).__name__}: {str(exc)[:120]}") from None

    limit = max_beats * grid
    notes: list[NoteEvent] = []
    drums: list[NoteEvent] = []
    pitched_parts = []
    for part in score.parts:
        drum_part = _is_drum_part(part)
        if not drum_part:
            pitched_parts.append(part)
        # music21 splits notes at barlines into tied pieces; one sounding note is one event.
        for el in part.stripTies().flatten().notes:
            onset = round(float(el.offset) * grid)
            if onset >= limit:
                continue
            duration = max(1, min(round(float(el.quarterLength) * grid), limit - onset))
            vel = el.volume.velocity if el.volume.velocity is not None else 80
            if isinstance(el, (note.Unpitched, percussion.PercussionChord)) or drum_part:
                drums.append(NoteEvent(onset, duration, _drum_keys(el), int(vel)))
            elif isinstance(el, (note.Note, chord.Chord)):
                pitches = tuple(sorted({p.midi for p in el.pitches}))
                if pitches:
                    notes.append(NoteEvent(onset, duration, pitches, int(vel)))
    if not notes:
        raise UnusableMidi("no pitched notes")

    try:
        pitched = score.__class__()
        for part in pitched_parts:
            pitched.insert(0, part)
        key = pitched.analyze("key")
        tonic_pc, mode = key.tonic.pitchClass, (MINOR if key.mode == "minor" else MAJOR)
    except Exception:
        tonic_pc, mode = 0, MAJOR
    shift = transposition_to_reference(tonic_pc, mode)
    notes = [NoteEvent(n.onset, n.duration, tuple(min(127, max(0, p + shift)) for p in n.pitches),
                       n.velocity) for n in notes]
    notes.sort(key=lambda n: (n.onset, n.pitches))
    drums.sort(key=lambda n: (n.onset, n.pitches))
    bpm, ts = _tempo_and_meter(score.flatten())
    return Piece(sha256=sha256, name=name, grid=grid, tonic=PITCH_NAMES[tonic_pc], mode=mode,
                 transpose=shift, tempo_bpm=round(bpm, 3), time_signature=ts,
                 notes=notes, drums=drums)


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
    version = EXTRACT_VERSION
    help = "parse MIDI with music21: notes, chords, tempo, key; transpose to C major / A minor"

    def params(self, cfg):
        return {"grid_per_beat": cfg.extract.grid_per_beat, "max_beats": cfg.extract.max_beats}

    def run(self, ctx: StageContext) -> dict:
        cfg = ctx.cfg.extract
        listing = json.loads((ctx.inputs["intake"] / "files.json").read_text())["files"]
        salt = hash_json([EXTRACT_VERSION, cfg.grid_per_beat, cfg.max_beats])[:8]
        results: dict[str, dict] = {}
        jobs = []
        for item in listing:
            cache_path = ctx.cache_dir / f"{item['sha256'][:32]}-{salt}.json"
            try:
                results[item["sha256"]] = json.loads(cache_path.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                jobs.append((str(ctx.inputs["intake"] / item["file"]), item["name"], item["sha256"],
                             cfg.grid_per_beat, cfg.max_beats, cache_path))
        ctx.log(f"{len(listing)} files: {len(listing) - len(jobs)} from the per-file cache, "
                f"{len(jobs)} to parse")
        if jobs:
            workers = max(1, min(cfg.workers, len(jobs)))
            bar = tqdm(total=len(jobs), desc="extract", unit="file", disable=None)
            if workers == 1:
                for job in jobs:
                    results[job[2]] = _parse_job(job)
                    bar.update()
            else:
                with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                    for job, res in zip(jobs, pool.map(_parse_job, jobs, chunksize=4)):
                        results[job[2]] = res
                        bar.update()
            bar.close()
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
