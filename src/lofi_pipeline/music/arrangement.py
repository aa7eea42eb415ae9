"""The arrangement: a generated take as a lo-fi band (electric piano, a lead, bass and
drums), in a key and tempo drawn from the take's seed, swung and humanised, as MIDI."""
from __future__ import annotations

import io
from dataclasses import dataclass, replace

import numpy as np

from ..core.errors import StageError
from .chords import chord_symbol
from .drum_format import DrumBar, bar_notes
from .drums import drum_bar
from .harmonise import Segment, chords_from_events, voice_chord
from .harmony import hold_limit_ticks
from .humanise import humanise
from .parts import Part, write_parts
from .piece import PITCH_NAMES
from .token_format import Event, bar_ticks, tokens_to_events


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


def silent_bars(notes: list[Event], bars: int, beats_per_bar: float, at_least: int = 2) -> set[int]:
    """Bars in runs of `at_least` or more in which no melody note sounds (onsets in beats)."""
    sounding = np.zeros(bars, bool)
    for e in notes:
        first = int(e.onset // beats_per_bar)
        last = int((e.onset + max(e.duration, 1e-3) - 1e-6) // beats_per_bar)
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


def lead_source(notes: int, events: int, data, melody_by: str = "") -> str:
    """Where the lead comes from: the learned melody when the data has one (judged by the take
    itself when the data is unknown) or another model wrote one over the harmony (`melody_by`
    "base"), else a line through the chord tones."""
    if melody_by == "base" and notes:
        return "learned melody (the base ensemble's, over the harmony)"
    data_has_melody = data.has_melody if data else notes >= 0.25 * max(1, events)
    if not data_has_melody:
        return "chord tones (the data has no melody)"
    return "learned melody" if notes else "chord tones (this take has no melody)"


@dataclass(frozen=True)
class Band:
    """Who plays in each bar: the sections say (the intro: keys alone, the lead joining halfway;
    the first loop of a later letter's section: no bass, a breakdown; the outro: no bass or
    drums, fading), and the drums fill into each new section."""
    bars: int
    sections: tuple = ()  # (label, start bar, bars)

    def section(self, bar: int) -> tuple:
        return next((s for s in self.sections if s[1] <= bar < s[1] + s[2]), ("A", 0, self.bars))

    def lead_from(self, bar: float) -> bool:
        label, start, bars = self.section(int(bar))
        return label != "intro" or bar >= start + bars / 2

    def bass(self, bar: int, loop_bars: int) -> bool:
        label, start, _ = self.section(bar)
        first_letter = next((s[0] for s in self.sections if s[0] not in ("intro", "outro")), "A")
        breakdown = label[0] != first_letter[0] and label not in ("intro", "outro") and bar < start + loop_bars
        return label not in ("intro", "outro") and not breakdown

    def drums(self, bar: int) -> bool:
        return self.section(bar)[0] not in ("intro", "outro")

    def fill(self, bar: int) -> bool:
        """The bar before a new section, and every eighth bar of a section."""
        starts = {s[1] for s in self.sections[1:]}
        return bar + 1 in starts or (bar + 1 - self.section(bar)[1]) % 8 == 0

    def fade(self, bar: float) -> float:
        label, start, bars = self.section(int(bar))
        return 1.0 if label != "outro" else max(0.35, 1 - 0.65 * (bar - start) / max(bars, 1))


def draw_tempo(rng: np.random.Generator, cfg) -> int:
    """A track's tempo: the first draw from its seed's generator (the drums stage plays at it too)."""
    return int(rng.integers(cfg.tempo_min_bpm, cfg.tempo_max_bpm + 1))


def arrange_events(events: list[Event], grid: int, band: Band, rng: np.random.Generator, cfg, data=None,
                   loop_bars: int = 4, melody_by: str = "", drum_bars: list[DrumBar] | None = None) -> dict:
    """The whole arrangement as parts of (beats) notes, before swing and humanising. `cfg` is
    the [arrange] settings; `data` the training pieces' profile (melody share, hold limit);
    `melody_by` which model wrote the take's melody ("base": over the harmony); `drum_bars` the
    drum model's part, bar by bar (None: the pattern, with the band's form)."""
    metre = events[0].metre
    bar_len = bar_ticks(metre)
    beats = bar_len / grid  # quarter notes a bar
    compound = metre.endswith("/8") and int(metre.split("/")[0]) % 3 == 0
    length = band.bars * bar_len
    events = [e for e in events if e.onset < length]
    timeline = [replace(e, onset=e.onset / grid, shift=e.shift / grid, duration=e.duration / grid) for e in events]
    minor = detect_minor(timeline)
    shift, key = choose_transposition(cfg.key, minor, rng)

    def bar_of(t: float) -> int:
        return int(t // beats)

    keys = Part("Keys", 0, cfg.keys_program)
    lead = Part("Lead", 1, cfg.lead_program)
    bass = Part("Bass", 2, cfg.bass_program)
    drums = Part("Drums", 9, cfg.drum_kit, performed=drum_bars is not None)
    hold = data.hold_limit_ticks if data and data.hold_limit_ticks else hold_limit_ticks(None, bar_len)
    chords, filled_ticks = chords_from_events(events, length, hold, bar_len)
    for chord in chords:
        start, end = chord.start / grid, chord.end / grid
        root = (chord.root + shift) % 12
        for p in voice_chord([(pc + shift) % 12 for pc in chord.pitch_classes], root, cfg.extensions):
            keys.add(start, (end - start) * 0.95, p, (56 + 4 * rng.random()) * band.fade(start / beats))
        if band.bass(bar_of(start), loop_bars):
            bass_root = 36 + (root - 36) % 12
            dur = end - start
            bass.add(start, min(dur, 1.0) * 0.9, bass_root, 74)
            if dur >= 2:
                bass.add(start + 1.5, 0.45, bass_root + (12 if rng.random() < 0.5 else 7), 62)
            if dur >= 1.5 and rng.random() < 0.3:
                bass.add(end - 0.5, 0.4, bass_root - 1, 58)  # chromatic approach
    notes = [e for e in timeline if e.pitch is not None]
    lead_from = lead_source(len(notes), len(timeline), data, melody_by)
    if lead_from.startswith("learned melody"):
        melody = [(e.onset, e.duration, e.pitch + shift) for e in notes]
        silent = silent_bars(notes, band.bars, beats)
        if silent:  # the lead would rest for bars on end: a chord-tone line there
            resting = [c for c in chords if c.start // bar_len in silent]
            melody += lead_from_chords(resting, shift, grid, rng)
            lead_from += f", chord tones in {len(silent)} bars without it"
    else:
        melody = lead_from_chords(chords, shift, grid, rng)
    for start, dur, pitch in melody:
        if band.lead_from(start / beats):
            while pitch < 64:
                pitch += 12
            while pitch > 84:
                pitch -= 12
            lead.add(start, dur * 0.9, pitch, (60 + 6 * rng.random()) * band.fade(start / beats))
    for b in range(band.bars):
        if drum_bars is not None:
            for note in bar_notes(drum_bars[b], b * beats, metre, band.fade(b)) if b < len(drum_bars) else ():
                drums.add(*note)
        elif band.drums(b):
            variant = 0 if b % 4 < 2 else int(rng.integers(1, 4))
            drum_bar(drums, b * beats, variant, band.fill(b), rng, 1.0, beats, compound)
    symbols = [(c.start / grid, chord_symbol((c.root + shift) % 12, c.quality)) for c in chords]
    return {"parts": [keys, lead, bass, drums], "chord_symbols": symbols, "key": key, "transpose": shift,
            "length_beats": length / grid,
            "minor": minor, "lead": lead_from, "harmonised_bars": round(filled_ticks / bar_len, 2),
            "harmony_changes": len(chords), "metre": metre}


def arrange_track(tokens: list, grid: int, bars: int | None, seed: int, cfg, title: str, data=None,
                  sections: list | None = None, loop_bars: int = 4, melody_by: str = "",
                  drum_bars: list[DrumBar] | None = None):
    """(MIDI bytes, parts, info) for one generated take (rows of field tokens) and its sections
    ((label, first bar, bars)), with the drum model's part (`drum_bars`) or the pattern; pure
    apart from its seed. Rows that write no event are dropped and counted."""
    import mido
    events, dropped = tokens_to_events([tuple(r) for r in tokens])
    if not events:
        raise StageError(f"{title}: no decodable events to arrange")
    if sections:
        bars = sum(s[2] for s in sections)
    elif bars is None:
        bars = max(1, events[-1].bar + 1)
    rng = np.random.default_rng(seed)
    tempo = draw_tempo(rng, cfg)
    arr = arrange_events(events, grid, Band(bars, tuple(tuple(s) for s in sections or ())), rng, cfg, data,
                         loop_bars, melody_by, drum_bars)
    humanise(arr["parts"], tempo, cfg.swing, cfg.humanize_ms, cfg.velocity_jitter, rng)
    beats_per_bar = bar_ticks(arr["metre"]) / grid
    markers = [(start * beats_per_bar, label) for label, start, _ in sections or ()]
    midi = write_parts(arr["parts"], tempo, arr["key"], title, arr["length_beats"], arr["metre"],
                       arr["chord_symbols"], markers)
    info = {"key": arr["key"], "tempo_bpm": tempo, "bars": bars, "metre": arr["metre"],
            "seconds": round(float(mido.MidiFile(file=io.BytesIO(midi)).length), 3),
            "unknown_dropped": dropped, "events": len(events), "lead": arr["lead"],
            "harmonised_bars": arr["harmonised_bars"], "harmony_changes": arr["harmony_changes"],
            "notes_per_part": {p.name: len(p.notes) for p in arr["parts"]}}
    return midi, arr["parts"], info
