"""The token format: pieces -> events <-> field tokens <-> ids, bars and positions, the vocabulary.

An event is one moment of a piece where something starts, split into fields so that every
real event can be written. Time is metrical, as in REMI: `bar` is how many bar lines lie
between the previous event and this one (0: the same bar) and `position` is where in its bar
the event starts, in grid ticks (12 to a quarter note), so the model always knows where the
bar line and the beat are, and a wrong step moves one event, not every event after it.
`metre` is the bar's time signature: given with every event (the models read it and never
predict it; the sampler sets it). Then the chord struck there (`root` relative to the key's
tonic, and `quality`; "-" when the harmony goes on), the melody note struck there (`pitch`,
its `duration`; "-" when none) and a coarse `velocity`. Each field has a closed set of values,
so nothing a file can hold falls outside it; a gap of more bars than `bar` can say is written
as rest events (no chord, no note) on the first beat of the bars between.

This module is the one owner of the format: bar lines, positions, the pairing rule (a chord is
a root with a quality, a melody note a pitch with a duration) and what a time signature is to
the grid are stated here and asked of it everywhere else. It is long for that reason.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..core import atomic
from ..core.errors import StageError
from ..core.hashing import hash_json
from .chords import QUALITY_NAMES, chord_pitch_classes, chord_symbol
from .piece import GRID, Piece

PAD, UNK = 0, 1
SPECIALS = ["<pad>", "<unk>"]
NONE = "-"
FIELDS = ("metre", "bar", "position", "root", "quality", "pitch", "duration", "velocity")
GIVEN = ("metre",)  # read by the models with every event, never predicted
TARGETS = tuple(f for f in FIELDS if f not in GIVEN)
MAX_STEPS = 4 * GRID  # the longest melody duration: a 4/4 bar
MAX_ADVANCE = 4  # the most bar lines one event may step over; a longer gap is written as rests
VOCAB_VERSION = "3"
# Each pair's second field is "-" exactly when its first is: no quality without a root, no
# duration without a pitch.
PAIRED = {"quality": "root", "duration": "pitch"}

# Time signatures, normalised so that a bar holds 3 to 8 quarter notes: 2/4 and 1/4 bars are
# read two or four at a time as 4/4, 3/8 as 6/8, n/2 as 2n/4, n/16 as (n/2)/8.
METRES = ("4/4", "3/4", "5/4", "6/4", "7/4", "8/4", "6/8", "9/8", "12/8", "5/8", "7/8", "10/8", "11/8", "13/8",
          "14/8", "15/8", "16/8")
DEFAULT_METRE = "4/4"


def normalise_metre(numerator: int, denominator: int) -> tuple[str, int]:
    """(metre, how many of the file's bars make one of its bars) for a time signature."""
    if numerator <= 0 or denominator <= 0:
        return DEFAULT_METRE, 1
    for merged in (1, 2, 4):
        n, d = numerator * merged, denominator
        while d > 8 and n % 2 == 0:
            n, d = n // 2, d // 2
        while d < 4:
            n, d = n * 2, d * 2
        if f"{n}/{d}" in METRES:
            return f"{n}/{d}", merged
    return DEFAULT_METRE, 1


def bar_ticks(metre: str) -> int:
    """The length of a bar of `metre`, in grid ticks."""
    numerator, denominator = (int(x) for x in metre.split("/"))
    return numerator * 4 * GRID // denominator


MAX_POSITIONS = max(bar_ticks(m) for m in METRES)


@dataclass(frozen=True)
class Event:
    """One moment of a piece. `onset` (grid ticks from the first bar line), `bar` (which bar,
    from 0) and `shift` (ticks to the next event, or to the end of the last event's bar) are
    derived, not fields; `advance` is the `bar` field."""
    onset: int
    bar: int
    position: int
    metre: str = DEFAULT_METRE
    advance: int = 0
    root: int | None = None
    quality: str | None = None
    pitch: int | None = None
    duration: int = 0  # of the melody note; 0 when there is none
    velocity: int = 0  # bin index
    shift: int = 0

    @property
    def tokens(self) -> tuple[str, ...]:
        return (self.metre, str(self.advance), str(self.position), NONE if self.root is None else str(self.root),
                self.quality or NONE, NONE if self.pitch is None else str(self.pitch),
                str(self.duration) if self.pitch is not None else NONE, str(self.velocity))

    @property
    def is_chord(self) -> bool:
        return self.root is not None

    @property
    def chord_pcs(self) -> list[int]:
        return chord_pitch_classes(self.root, self.quality) if self.root is not None else []

    @property
    def pitches(self) -> tuple[int, ...]:
        """What starts here: the chord's pitch classes above middle C, then the melody note."""
        return tuple(60 + pc for pc in self.chord_pcs) + ((self.pitch,) if self.pitch is not None else ())

    @property
    def label(self) -> str:
        parts = [chord_symbol(self.root, self.quality)] if self.root is not None else []
        if self.pitch is not None:
            parts.append(f"n{self.pitch}/{self.duration}")
        return " ".join(parts) or "rest"

    @property
    def beat_tick(self) -> int:
        """Where in its quarter-note beat the event starts (0: on the beat, 6: the 8th after it)."""
        return self.position % GRID


def bar_starts(events: list[Event]) -> list[tuple[int, str]]:
    """(start tick, metre) of every bar from 0 to the last event's, each bar in the metre of the
    event after the bar line that opens it (empty bars in the one before)."""
    starts, metre, at, bar = [], events[0].metre if events else DEFAULT_METRE, 0, 0
    for e in events:
        while bar < e.bar:
            starts.append((at, metre))
            at, bar = at + bar_ticks(metre), bar + 1
        metre = e.metre
    if events:
        starts.append((at, metre))
    return starts


def timeline_end(events: list[Event]) -> int:
    """Where a sequence of events ends: the end of its last bar (or of its last note, if later)."""
    if not events:
        return 0
    last = events[-1]
    return max(last.onset - last.position + bar_ticks(last.metre), last.onset + last.duration)


def with_shifts(events: list[Event]) -> list[Event]:
    """The events with `shift` set: ticks to the next event, or to the end of the timeline."""
    ends = [e.onset for e in events[1:]] + [timeline_end(events)]
    return [replace(e, shift=end - e.onset) for e, end in zip(events, ends)]


def event_from_tokens(tokens, bar: int, bar_start: int) -> Event:
    """The event a row of field tokens writes in bar `bar` (starting at tick `bar_start`);
    ValueError if a token is a special or the fields do not fit together."""
    metre, advance, position, root, quality, pitch, duration, velocity = tokens
    if any(t.startswith("<") for t in tokens):
        raise ValueError(f"special token in {tokens}")
    values = dict(zip(FIELDS, tokens))
    if any((values[second] == NONE) != (values[first] == NONE) for second, first in PAIRED.items()):
        raise ValueError(f"inconsistent fields {tokens}")
    if int(position) >= bar_ticks(metre):
        raise ValueError(f"position {position} is past the end of a {metre} bar")
    struck = root != NONE
    return Event(bar_start + int(position), bar, int(position), metre, int(advance),
                 int(root) if struck else None, quality if struck else None,
                 int(pitch) if pitch != NONE else None, int(duration) if pitch != NONE else 0, int(velocity))


def tokens_to_events(rows) -> tuple[list[Event], int]:
    """Events from rows of field tokens; rows that write no event, or one no later than the
    event before it, are dropped and counted (their bar lines still move time on)."""
    events, dropped = [], 0
    bar, bar_start, metre, last = 0, 0, None, None
    for row in rows:
        advance = int(row[1]) if row[1].isdigit() else 0
        for _ in range(advance):  # each bar stepped over has the metre of the bar before it
            bar_start, bar = bar_start + bar_ticks(metre or (row[0] if row[0] in METRES else DEFAULT_METRE)), bar + 1
        try:
            e = event_from_tokens(row, bar, bar_start)
            if last is not None and e.onset <= last.onset:
                raise ValueError("not after the event before it")
        except ValueError:
            dropped += 1
            continue
        events.append(e)
        metre, last = e.metre, e
    return with_shifts(events), dropped


def field_values(velocity_bins: int) -> dict[str, list[str]]:
    """Every value each field can take: the vocabulary is closed, not learned from counts."""
    steps = [str(i) for i in range(1, MAX_STEPS + 1)]
    return {"metre": list(METRES), "bar": [str(i) for i in range(MAX_ADVANCE + 1)],
            "position": [str(i) for i in range(MAX_POSITIONS)],
            "root": [NONE] + [str(pc) for pc in range(12)], "quality": [NONE] + QUALITY_NAMES,
            "pitch": [NONE] + [str(p) for p in range(128)], "duration": [NONE] + steps,
            "velocity": [str(b) for b in range(velocity_bins)]}


class Vocabulary:
    """Per field: the specials, then the field's values; ids index that list."""

    def __init__(self, fields: dict[str, list[str]], config: dict | None = None):
        if tuple(fields) != FIELDS:
            raise StageError(f"vocabulary fields {list(fields)} are not {list(FIELDS)}")
        self.fields = {f: SPECIALS + [t for t in values if t not in SPECIALS] for f, values in fields.items()}
        self.index = {f: {t: i for i, t in enumerate(values)} for f, values in self.fields.items()}
        self.config = config or {}

    @classmethod
    def closed(cls, velocity_bins: int, config: dict | None = None) -> "Vocabulary":
        return cls(field_values(velocity_bins), {"velocity_bins": velocity_bins, "grid": GRID, **(config or {})})

    @property
    def velocity_bins(self) -> int:
        """The velocity levels this vocabulary was closed with (encode.velocity_bins)."""
        return int(self.config["velocity_bins"])

    @property
    def grid(self) -> int:
        """Ticks per beat of the position field."""
        return int(self.config["grid"])

    @property
    def sizes(self) -> list[int]:
        return [len(self.fields[f]) for f in FIELDS]

    def encode(self, rows) -> np.ndarray:
        """(events, fields) ids; a value outside a field's set becomes that field's <unk>."""
        out = np.full((len(rows), len(FIELDS)), UNK, np.int32)
        for i, row in enumerate(rows):
            for j, (f, tok) in enumerate(zip(FIELDS, row)):
                out[i, j] = self.index[f].get(tok, UNK)
        return out

    def decode(self, ids) -> list[tuple[str, ...]]:
        return [tuple(self.fields[f][int(i)] for f, i in zip(FIELDS, row)) for row in np.asarray(ids)]

    def encode_events(self, events: list[Event]) -> np.ndarray:
        return self.encode([e.tokens for e in events])

    def decode_events(self, ids) -> tuple[list[Event], int]:
        return tokens_to_events(self.decode(ids))

    def pair_mask(self, field: str, row: np.ndarray) -> np.ndarray | None:
        """The ids of `field` the pairing rule allows after the earlier fields of `row` (None:
        the field is the first of its pair, or of none)."""
        first = PAIRED.get(field)
        if first is None:
            return None
        mask = np.zeros(len(self.fields[field]), bool)
        if row[FIELDS.index(first)] == self.index[first][NONE]:
            mask[self.index[field][NONE]] = True
        else:
            mask[len(SPECIALS):] = True
            mask[self.index[field][NONE]] = False
        return mask

    def value_table(self, field: str) -> np.ndarray:
        """The integer each id of a numeric field stands for (0 for specials and "-")."""
        return np.array([int(t) if t.isdigit() else 0 for t in self.fields[field]], np.int64)

    def bar_ticks_table(self) -> np.ndarray:
        """The bar length, in ticks, each id of the metre field stands for (0 for specials)."""
        return np.array([bar_ticks(t) if t in METRES else 0 for t in self.fields["metre"]], np.int64)

    def fingerprint(self) -> str:
        return hash_json(self.fields)[:16]

    def to_json(self) -> dict:
        return {"class": type(self).__name__, "version": VOCAB_VERSION, "config": self.config,
                "fingerprint": self.fingerprint(), "fields": self.fields}

    @classmethod
    def from_json(cls, d: dict) -> "Vocabulary":
        if d.get("class") != cls.__name__ or d.get("version") != VOCAB_VERSION:
            raise StageError(f"vocabulary file is {d.get('class')} version {d.get('version')}, not "
                             f"{cls.__name__} version {VOCAB_VERSION}; re-run `lofi encode`")
        if set(d.get("fields", {})) != set(FIELDS):
            raise StageError(f"vocabulary file has fields {sorted(d.get('fields', {}))}, not {list(FIELDS)}")
        vocab = cls({f: d["fields"][f] for f in FIELDS}, d.get("config"))
        if d.get("fingerprint") != vocab.fingerprint():
            raise StageError("vocabulary file is damaged: its fingerprint does not match its fields")
        return vocab

    def save(self, path: Path) -> None:
        atomic.write_json(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> "Vocabulary":
        return cls.from_json(json.loads(Path(path).read_text()))


def velocity_bin(velocity: int, bins: int) -> int:
    return min(bins - 1, max(0, int(velocity)) * bins // 128)


def piece_bars(piece: Piece, first: int) -> list[tuple[int, str]]:
    """(start tick, metre) of the piece's bars, from the one holding tick `first` on, as far
    as its notes go."""
    end = max([n.onset + n.duration for n in (*piece.melody, *piece.harmony, *piece.bass)], default=first) + 1
    segments = [(int(s), m) for s, m in piece.metre] or [(0, DEFAULT_METRE)]
    bars = []
    for k, (start, metre) in enumerate(segments):
        stop = segments[k + 1][0] if k + 1 < len(segments) else end
        bars += [(t, metre) for t in range(start, max(stop, start + 1), bar_ticks(metre))]
    while len(bars) > 1 and bars[1][0] <= first:
        bars.pop(0)
    return bars


def piece_to_events(piece: Piece, velocity_bins: int) -> list[Event]:
    """One event wherever a melody note starts or the chord changes, placed in the piece's bars
    (bar 0 holds the first event); a gap of more than MAX_ADVANCE bar lines, or one over a
    change of metre, gets rest events on the first beat of the bars between. A short bar (a
    change of metre inside a bar) is decoded as a whole one: what follows keeps its place in
    its bars and comes that much later."""
    melody = {n.onset: n for n in piece.melody}
    chords = {c.onset: c for c in piece.chords}
    times = sorted(set(melody) | set(chords))
    if not times:
        return []
    bars = piece_bars(piece, times[0])
    origin = bars[0][0]
    events: list[Event] = []
    b, last_bar = 0, 0
    for t in times:
        while b + 1 < len(bars) and bars[b + 1][0] <= t:
            b += 1
        note, chord = melody.get(t), chords.get(t)
        vel = velocity_bin(note.velocity if note else chord.velocity, velocity_bins)
        # Rests on the way: every MAX_ADVANCE bars, and on the first bar of a new metre (a bar
        # stepped over is read as having the metre of the event before it).
        while (rest := next((k for k in range(last_bar + 1, b)
                             if k - last_bar == MAX_ADVANCE or bars[k][1] != bars[k - 1][1]), None)) is not None:
            start, metre = bars[rest]
            events.append(Event(start - origin, rest, 0, metre, rest - last_bar, velocity=vel))
            last_bar = rest
        start, metre = bars[b]
        events.append(Event(t - origin, b, t - start, metre, b - last_bar, chord.root if chord else None,
                            chord.quality if chord else None, note.pitch if note else None,
                            min(note.duration, MAX_STEPS) if note else 0, vel))
        last_bar = b
    return with_shifts(events)
