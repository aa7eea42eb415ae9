"""The arrangement: a generated take as a lo-fi band (electric piano, a lead, bass and
drums), in a key and tempo drawn from the take's seed, swung and humanised, as MIDI."""
from __future__ import annotations

import io

import numpy as np

from ..core.errors import StageError
from .drums import drum_bar
from .harmonise import Segment, chords_from_events, voice_chord
from .harmony import BEATS_PER_BAR, MAX_HOLD_BARS
from .humanise import humanise
from .midi_io import Part, write_parts
from .piece import PITCH_NAMES
from .token_format import Event, tokens_to_events


def detect_minor(events: list[Event]) -> bool:
    """Material is in C major or A minor after extraction: which tonic does it lean on?"""
    weight = np.zeros(12)
    for e in events:
        if e.is_chord:
            weight[e.root] += e.shift
        if e.pitch is not None:
            weight[e.pitch % 12] += e.duration * 0.5
    return weight[9] > weight[0]


def choose_transposition(key: str, minor: bool, rng: np.random.Generator) -> tuple[int, str]:
    """(semitones from the reference key, key name): drawn when `key` is "auto", else the tonic asked for."""
    if key == "auto":
        shift = int(rng.integers(-5, 7))
    else:
        name = key.removesuffix("m")
        if name not in PITCH_NAMES:
            raise StageError(f"config key arrange.key: {key!r} is not 'auto' or a tonic "
                             f"({', '.join(PITCH_NAMES)})")
        shift = (PITCH_NAMES.index(name) - (9 if minor else 0) + 6) % 12 - 6
    tonic = PITCH_NAMES[((9 if minor else 0) + shift) % 12]
    return shift, tonic + ("m" if minor else "")


def lead_from_chords(chords: list[Segment], shift: int, grid: int, rng: np.random.Generator,
                     centre: int = 74) -> list:
    """For all-chord material: a line through the chord tones, moving to the nearest tone
    at most chord changes and drifting back towards `centre`, so it sings rather than jumps.
    Notes as (start, duration) in beats and pitch."""
    melody, prev = [], centre
    for chord in chords:
        if rng.random() > 0.75:
            continue
        tones = [p for p in range(62, 87) if (p - shift) % 12 in chord.pitch_classes]
        moving = [p for p in tones if p != prev] or tones
        pitch = min(moving, key=lambda p: abs(p - prev) + 0.15 * abs(p - centre) + rng.random())
        melody.append((chord.start / grid, min((chord.end - chord.start) / grid, 2.0), pitch))
        prev = pitch
    return melody


def silent_bars(notes: list[Event], bars: int, at_least: int = 2) -> set[int]:
    """Bars in runs of `at_least` or more in which no melody note sounds."""
    sounding = np.zeros(bars, bool)
    for e in notes:
        first, last = int(e.onset // BEATS_PER_BAR), int((e.onset + max(e.duration, 1e-3) - 1e-6) // BEATS_PER_BAR)
        sounding[first:last + 1] = True
    silent, run = set(), []
    for b in range(bars + 1):
        if b < bars and not sounding[b]:
            run.append(b)
            continue
        if len(run) >= at_least:
            silent.update(run)
        run = []
    return silent


def lead_source(notes: int, events: int, data) -> str:
    """Where the lead comes from: the learned melody when the data has one (judged by the take
    itself when the data is unknown), else a line through the chord tones."""
    data_has_melody = data.has_melody if data else notes >= 0.25 * max(1, events)
    if not data_has_melody:
        return "chord tones (the data has no melody)"
    return "learned melody" if notes else "chord tones (this take has no melody)"


def arrange_events(events: list[Event], grid: int, bars: int, rng: np.random.Generator, cfg, data=None) -> dict:
    """The whole arrangement as parts of (beats) notes, before swing and humanising. `cfg` is
    the [arrange] settings; `data` the training pieces' profile (melody share, hold limit)."""
    length = bars * BEATS_PER_BAR * grid
    events = [e for e in events if e.onset < length]
    timeline = [Event(e.onset / grid, e.shift / grid, e.root, e.quality, e.pitch, e.duration / grid, e.velocity)
                for e in events]
    minor = detect_minor(timeline)
    shift, key = choose_transposition(cfg.key, minor, rng)
    intro, outro = min(cfg.intro_bars, bars // 3) * 4.0, min(cfg.outro_bars, bars // 3) * 4.0
    outro_start = length / grid - outro

    def fade(t: float) -> float:
        return 1.0 if t < outro_start else max(0.35, 1 - 0.65 * (t - outro_start) / max(outro, 1))

    keys = Part("Electric Piano", 0, cfg.keys_program)
    lead = Part("Lead", 1, cfg.lead_program)
    bass = Part("Bass", 2, cfg.bass_program)
    drums = Part("Drums", 9, cfg.drum_kit)
    hold = data.hold_limit_ticks if data and data.hold_limit_ticks else int(MAX_HOLD_BARS * BEATS_PER_BAR * grid)
    chords, filled_ticks = chords_from_events(events, length, hold, grid)
    for chord in chords:
        start, end = chord.start / grid, chord.end / grid
        root = (chord.root + shift) % 12
        for p in voice_chord([(pc + shift) % 12 for pc in chord.pitch_classes], root, cfg.extensions):
            keys.add(start, (end - start) * 0.95, p, (56 + 4 * rng.random()) * fade(start))
        if intro <= start < outro_start:
            bass_root = 36 + (root - 36) % 12
            dur = end - start
            bass.add(start, min(dur, 1.0) * 0.9, bass_root, 74)
            if dur >= 2:
                bass.add(start + 1.5, 0.45, bass_root + (12 if rng.random() < 0.5 else 7), 62)
            if dur >= 1.5 and rng.random() < 0.3:
                bass.add(end - 0.5, 0.4, bass_root - 1, 58)  # chromatic approach
    notes = [e for e in timeline if e.pitch is not None]
    lead_from = lead_source(len(notes), len(timeline), data)
    if lead_from == "learned melody":
        melody = [(e.onset, e.duration, e.pitch + shift) for e in notes]
        silent = silent_bars(notes, bars)
        if silent:  # the lead would rest for bars on end: a chord-tone line there
            resting = [c for c in chords if c.start // (BEATS_PER_BAR * grid) in silent]
            melody += lead_from_chords(resting, shift, grid, rng)
            lead_from += f", chord tones in {len(silent)} bars without it"
    else:
        melody = lead_from_chords(chords, shift, grid, rng)
    for start, dur, pitch in melody:
        if start >= intro / 2:
            while pitch < 64:
                pitch += 12
            while pitch > 84:
                pitch -= 12
            lead.add(start, dur * 0.9, pitch, (60 + 6 * rng.random()) * fade(start))
    for b in range(int(intro // 4), int(outro_start // 4)):
        phrase_end = (b + 1) % 8 == 0
        variant = 0 if b % 4 < 2 else int(rng.integers(1, 4))
        drum_bar(drums, b * 4.0, variant, phrase_end, rng, 1.0)
    return {"parts": [keys, lead, bass, drums], "key": key, "transpose": shift, "length_beats": length / grid,
            "minor": minor, "lead": lead_from, "harmonised_bars": round(filled_ticks / (BEATS_PER_BAR * grid), 2),
            "harmony_changes": len(chords)}


def arrange_track(tokens: list, grid: int, bars: int | None, seed: int, cfg, title: str, data=None):
    """(MIDI bytes, parts, info) for one generated take (rows of field tokens); pure apart from
    its seed. Rows that write no event are dropped and counted."""
    import mido
    events, dropped = tokens_to_events([tuple(r) for r in tokens])
    if not events:
        raise StageError(f"{title}: no decodable events to arrange")
    if bars is None:
        bars = max(1, int(np.ceil(sum(e.shift for e in events) / grid / BEATS_PER_BAR)))
    rng = np.random.default_rng(seed)
    tempo = int(rng.integers(cfg.tempo_min_bpm, cfg.tempo_max_bpm + 1))
    arr = arrange_events(events, grid, bars, rng, cfg, data)
    humanise(arr["parts"], tempo, cfg.swing, cfg.humanize_ms, cfg.velocity_jitter, rng)
    midi = write_parts(arr["parts"], tempo, arr["key"], title, arr["length_beats"])
    info = {"key": arr["key"], "tempo_bpm": tempo, "bars": bars,
            "seconds": round(float(mido.MidiFile(file=io.BytesIO(midi)).length), 3),
            "unknown_dropped": dropped, "events": len(events), "lead": arr["lead"],
            "harmonised_bars": arr["harmonised_bars"], "harmony_changes": arr["harmony_changes"],
            "notes_per_part": {p.name: len(p.notes) for p in arr["parts"]}}
    return midi, arr["parts"], info
