"""The drum format: performed drum hits -> bars of hits on a 16th grid <-> field tokens <-> ids.

A hit is where in its bar it falls (`step`, in 16ths, as REMI's position), which instrument
class it is (the GM drum map reduced to nine, as in the Groove MIDI Dataset's paper), a coarse
velocity `level` and a micro-timing `offset`: how far from its 16th the drummer played it, in
OFFSET_BINS bins across half a 16th either way, so a late snare or a swung hat is learned
rather than drawn at random. A bar is its hits in order (step, then class) and an `end`
event, so an empty bar is one event and the model always knows where the bar line is. Every
event also carries what a drummer follows and the models read but never predict: the metre,
the bar's `role` in the form (a groove bar or a fill) and the tempo, in bins.

This module is the one owner of the format: which MIDI notes are which class, what a class
plays as, the bins, and how hits meet the grid.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .midi_io import DEFAULT_BPM, RawScore
from .token_format import DEFAULT_METRE, METRES, bar_ticks, normalise_metre

DRUM_VOCAB_VERSION = "1"
STEP_TICKS = 3  # a 16th of the 12-tick grid (piece.GRID)
CLASSES = ("kick", "snare", "side_stick", "closed_hat", "open_hat", "ride", "crash", "tom", "other")
# The GM percussion map (GM2's 27-87), and three notes of the Roland TD-11 the Groove MIDI
# Dataset was recorded on that fall outside it (22 and 26: the hi-hat's edge; 58: a tom's rim).
_GM = {35: "kick", 36: "kick", 37: "side_stick", 38: "snare", 40: "snare", 39: "other",
       41: "tom", 43: "tom", 45: "tom", 47: "tom", 48: "tom", 50: "tom",
       42: "closed_hat", 44: "closed_hat", 46: "open_hat", 49: "crash", 52: "crash", 55: "crash", 57: "crash",
       51: "ride", 53: "ride", 59: "ride", 22: "closed_hat", 26: "open_hat", 58: "tom"}
GM_MAP_RANGE = (27, 87)
# What each class plays as on a GM kit; toms fall from high to low across the bar, as a fill runs.
PLAYS_AS = {"kick": 36, "snare": 38, "side_stick": 37, "closed_hat": 42, "open_hat": 46, "ride": 51,
            "crash": 49, "other": 39}
TOMS_HIGH_TO_LOW = (50, 48, 47, 45, 43, 41)
VELOCITY_EDGES = (40, 60, 80, 100, 115)  # MIDI velocity: level 0 below 40 ... level 5 at 115 and up
LEVEL_VELOCITY = (30, 50, 70, 90, 107, 122)  # what each level plays at
OFFSET_BINS = 7  # across [-1/2, +1/2) of a 16th
TEMPO_EDGES = (70, 85, 100, 115, 130)  # BPM bins: under 70, 70-84, ..., 130 and up
ROLES = ("groove", "fill")
NONE = "-"
END = "end"
DRUM_FIELDS = ("metre", "role", "tempo", "position", "instrument", "velocity", "offset")
DRUM_GIVEN = ("metre", "role", "tempo")  # read with every event, never predicted
DRUM_TARGETS = tuple(f for f in DRUM_FIELDS if f not in DRUM_GIVEN)
MAX_STEPS = max(bar_ticks(m) for m in METRES) // STEP_TICKS
DRUM_TRACK_NAME = re.compile(r"\b(drums?|drum ?kit|percussion|perc)\b", re.I)
PAD, UNK = 0, 1


class DrumHit(NamedTuple):
    step: int  # 16ths from the bar line
    instrument: int  # index into CLASSES
    level: int  # velocity level
    offset: int  # micro-timing bin, OFFSET_BINS // 2 on the grid


@dataclass(frozen=True)
class DrumBar:
    hits: tuple[DrumHit, ...]
    role: str = "groove"


def steps_per_bar(metre: str) -> int:
    return bar_ticks(metre) // STEP_TICKS


def drum_class(pitch: int) -> str | None:
    """A MIDI drum note's class: its GM map entry, "other" for the rest of the map, None outside it."""
    if pitch in _GM:
        return _GM[pitch]
    return "other" if GM_MAP_RANGE[0] <= pitch <= GM_MAP_RANGE[1] else None


def is_drum_track(is_drum: bool, name: str) -> bool:
    """Channel 10, or a track named as drums on another channel."""
    return is_drum or bool(DRUM_TRACK_NAME.search(name or ""))


def velocity_level(velocity: int) -> int:
    return int(np.searchsorted(VELOCITY_EDGES, velocity, side="right"))


def offset_bin(fraction: float) -> int:
    """The bin of an offset from the 16th in 16ths, in [-1/2, 1/2)."""
    return int(np.clip(np.floor((fraction + 0.5) * OFFSET_BINS), 0, OFFSET_BINS - 1))


def offset_fraction(bin_: int) -> float:
    return (bin_ + 0.5) / OFFSET_BINS - 0.5


def tempo_bin(bpm: float) -> int:
    return int(np.searchsorted(TEMPO_EDGES, bpm, side="right"))


def bars_from_hits(beats: np.ndarray, pitches: np.ndarray, velocities: np.ndarray, metre: str,
                   role: str = "groove", counts: Counter | None = None) -> list[DrumBar]:
    """Performed hits (onsets in quarter notes from the first bar line) as bars of `metre`. A
    note outside the GM drum map is dropped, and so is a hit before the first bar line; several
    hits of one class on one 16th (a roll, a flam) are one hit, the loudest; each is counted in
    `counts` with its reason."""
    counts = Counter() if counts is None else counts
    steps = steps_per_bar(metre)
    per_bar: dict[int, dict[tuple[int, int], DrumHit]] = {}
    for beat, pitch, velocity in zip(np.asarray(beats, float), np.asarray(pitches), np.asarray(velocities)):
        cls = drum_class(int(pitch))
        if cls is None:
            counts["drum notes outside the GM drum map"] += 1
            continue
        sixteenths = beat * 4
        at = int(np.floor(sixteenths + 0.5))
        if at < 0:
            counts["drum hits before the first bar line"] += 1
            continue
        bar, step = divmod(at, steps)
        hit = DrumHit(step, CLASSES.index(cls), velocity_level(int(velocity)), offset_bin(sixteenths - at))
        slot = per_bar.setdefault(bar, {})
        key = (step, hit.instrument)
        if key in slot:
            counts["drum hits merged (rolls, flams)"] += 1
            if hit.level <= slot[key].level:
                continue
        slot[key] = hit
    if not per_bar:
        return []
    return [DrumBar(tuple(sorted(per_bar.get(b, {}).values())), role) for b in range(max(per_bar) + 1)]


def piece_drum_bars(drum_hits: list, metre: str, counts: Counter | None = None) -> list[DrumBar]:
    """A piece's drums as played (Piece.drum_hits: [beats from its first bar line, note, velocity]) as bars."""
    hits = np.array(drum_hits, float).reshape(-1, 3)
    return bars_from_hits(hits[:, 0], hits[:, 1].astype(int), hits[:, 2].astype(int), metre, "groove", counts)


class DrumVocabulary:
    """The closed set of each field's values, and ids for them (0: padding, 1: unknown)."""

    def __init__(self):
        self.fields = {
            "metre": list(METRES), "role": list(ROLES),
            "tempo": [str(i) for i in range(len(TEMPO_EDGES) + 1)],
            "position": [str(i) for i in range(MAX_STEPS)] + [END],
            "instrument": list(CLASSES) + [NONE],
            "velocity": [str(i) for i in range(len(VELOCITY_EDGES) + 1)] + [NONE],
            "offset": [str(i) for i in range(OFFSET_BINS)] + [NONE]}
        self.index = {f: {v: i + 2 for i, v in enumerate(vals)} for f, vals in self.fields.items()}

    @property
    def sizes(self) -> dict[str, int]:
        return {f: len(v) + 2 for f, v in self.fields.items()}

    def config(self) -> dict:
        return {"class": type(self).__name__, "version": DRUM_VOCAB_VERSION, "fields": self.fields}

    def value(self, field: str, id_: int) -> str:
        return self.fields[field][id_ - 2] if id_ >= 2 else ("<pad>" if id_ == PAD else "<unk>")

    def given(self, metre: str, role: str, tempo_bpm: float) -> list[int]:
        return [self.index["metre"].get(metre, UNK), self.index["role"][role],
                self.index["tempo"][str(tempo_bin(tempo_bpm))]]

    def end_row(self, given: list[int]) -> list[int]:
        i = self.index
        return [*given, i["position"][END], i["instrument"][NONE], i["velocity"][NONE], i["offset"][NONE]]

    def hit_row(self, given: list[int], hit: DrumHit) -> list[int]:
        i = self.index
        return [*given, i["position"][str(hit.step)], i["instrument"][CLASSES[hit.instrument]],
                i["velocity"][str(hit.level)], i["offset"][str(hit.offset)]]

    def encode(self, bars: list[DrumBar], metre: str, tempo_bpm: float) -> np.ndarray:
        """Rows of DRUM_FIELDS ids: each bar's hits, then its end event."""
        rows = []
        for bar in bars:
            given = self.given(metre, bar.role, tempo_bpm)
            rows += [self.hit_row(given, h) for h in bar.hits] + [self.end_row(given)]
        return np.array(rows, np.int32).reshape(-1, len(DRUM_FIELDS))

    def hit_of(self, row) -> DrumHit | None:
        """The hit a row writes; None for an end event or one with a field it cannot read."""
        vals = [self.value(f, int(v)) for f, v in zip(DRUM_FIELDS[3:], row[3:])]
        if not all(v.isdigit() for v in (vals[0], vals[2], vals[3])) or vals[1] not in CLASSES:
            return None
        return DrumHit(int(vals[0]), CLASSES.index(vals[1]), int(vals[2]), int(vals[3]))

    def decode(self, ids: np.ndarray) -> list[DrumBar]:
        """Bars from rows of ids (the inverse of encode): a bar closes at each end event."""
        bars, hits = [], []
        for row in np.asarray(ids).reshape(-1, len(DRUM_FIELDS)):
            if self.value("position", int(row[3])) == END:
                bars.append(DrumBar(tuple(hits), self.value("role", int(row[1]))))
                hits = []
                continue
            hit = self.hit_of(row)
            if hit is not None:
                hits.append(hit)
        return bars


def bar_notes(bar: DrumBar, start_beats: float, metre: str = DEFAULT_METRE, level: float = 1.0) -> list[tuple]:
    """(start beats, duration beats, GM note, velocity) of a bar's hits, micro-timing included."""
    steps = steps_per_bar(metre)
    notes = []
    for h in bar.hits:
        cls = CLASSES[h.instrument]
        pitch = PLAYS_AS.get(cls) or TOMS_HIGH_TO_LOW[min(len(TOMS_HIGH_TO_LOW) - 1,
                                                          h.step * len(TOMS_HIGH_TO_LOW) // steps)]
        at = start_beats + (h.step + offset_fraction(h.offset)) / 4
        notes.append((max(0.0, at), 0.2, pitch, LEVEL_VELOCITY[h.level] * level))
    return notes


def drums_from_raw(raw: RawScore, role: str = "groove",
                   counts: Counter | None = None) -> tuple[list[DrumBar], str, float]:
    """(bars, metre, tempo) of a drum file as read (a drum-only file needs no pitched notes): its
    drum tracks' hits from its first time signature's bar line, at its first tempo."""
    tick, numerator, denominator = raw.time_signatures[0] if raw.time_signatures else (0, 4, 4)
    metre, _ = normalise_metre(numerator, denominator)
    bpm = float(raw.tempos[0][1]) if len(raw.tempos) else DEFAULT_BPM
    notes = [t.notes for t in raw.tracks if is_drum_track(t.is_drum, t.name) and len(t.notes)]
    if not notes:
        return [], metre, bpm
    rows = np.concatenate(notes)
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    beats = (rows[:, 0] - tick) / max(1, raw.ticks_per_beat)
    return bars_from_hits(beats, rows[:, 2], rows[:, 3], metre, role, counts), metre, bpm
