"""The token format: pieces -> events <-> field tokens <-> ids, the vocabulary and the special tokens.

An event is one moment of a piece where something starts, split into fields so that every
real event can be written: how long until the next event (`shift`, in grid ticks), the chord
struck there (`root` relative to the key's tonic, and `quality`; "-" when the harmony goes on),
the melody note struck there (`pitch`, its `duration`; "-" when none) and a coarse `velocity`.
Each field has a closed set of values, so nothing a file can hold falls outside it; a gap
longer than the largest shift is written as rest events (both chord and melody "-").
Every other module reads and writes events through this one, and the pairing rule (a chord is
a root with a quality, a melody note a pitch with a duration) is stated here once.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
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
FIELDS = ("shift", "root", "quality", "pitch", "duration", "velocity")
MAX_STEPS = 4 * GRID  # the longest shift and melody duration: a 4/4 bar
VOCAB_VERSION = "2"
# Each pair's second field is "-" exactly when its first is: no quality without a root, no
# duration without a pitch.
PAIRED = {"quality": "root", "duration": "pitch"}


@dataclass(frozen=True)
class Event:
    onset: int  # grid ticks from the start; not a field: the sum of the shifts before it
    shift: int
    root: int | None = None
    quality: str | None = None
    pitch: int | None = None
    duration: int = 0  # of the melody note; 0 when there is none
    velocity: int = 0  # bin index

    @property
    def tokens(self) -> tuple[str, ...]:
        return (str(self.shift), NONE if self.root is None else str(self.root), self.quality or NONE,
                NONE if self.pitch is None else str(self.pitch), str(self.duration) if self.pitch is not None
                else NONE, str(self.velocity))

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


def event_from_tokens(tokens, onset: int) -> Event:
    """The event a row of field tokens writes; ValueError if a token is a special or malformed."""
    shift, root, quality, pitch, duration, velocity = tokens
    if any(t.startswith("<") for t in tokens):
        raise ValueError(f"special token in {tokens}")
    values = dict(zip(FIELDS, tokens))
    if any((values[second] == NONE) != (values[first] == NONE) for second, first in PAIRED.items()):
        raise ValueError(f"inconsistent fields {tokens}")
    struck = root != NONE
    return Event(onset, int(shift), int(root) if struck else None, quality if struck else None,
                 int(pitch) if pitch != NONE else None, int(duration) if pitch != NONE else 0, int(velocity))


def tokens_to_events(rows) -> tuple[list[Event], int]:
    """Events from rows of field tokens; rows that write no event are dropped and counted
    (their shift still moves time on when it can be read)."""
    events, onset, dropped = [], 0, 0
    for row in rows:
        try:
            e = event_from_tokens(row, onset)
        except ValueError:
            dropped += 1
            onset += int(row[0]) if row[0].isdigit() else 0
            continue
        events.append(e)
        onset += e.shift
    return events, dropped


def field_values(velocity_bins: int) -> dict[str, list[str]]:
    """Every value each field can take: the vocabulary is closed, not learned from counts."""
    steps = [str(i) for i in range(1, MAX_STEPS + 1)]
    return {"shift": steps, "root": [NONE] + [str(pc) for pc in range(12)], "quality": [NONE] + QUALITY_NAMES,
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


def piece_to_events(piece: Piece, velocity_bins: int = 4) -> list[Event]:
    """One event wherever a melody note starts or the chord changes; gaps longer than a bar
    become rest events. Onsets count from the first event."""
    melody = {n.onset: n for n in piece.melody}
    chords = {c.onset: c for c in piece.chords}
    times = sorted(set(melody) | set(chords))
    events: list[Event] = []
    for k, t in enumerate(times):
        note, chord = melody.get(t), chords.get(t)
        gap = times[k + 1] - t if k + 1 < len(times) else max(note.duration if note else 0, piece.grid)
        vel = velocity_bin(note.velocity if note else chord.velocity, velocity_bins)
        onset = t - times[0]
        shift = min(gap, MAX_STEPS)
        events.append(Event(onset, shift, chord.root if chord else None, chord.quality if chord else None,
                            note.pitch if note else None, min(note.duration, MAX_STEPS) if note else 0, vel))
        while gap > shift:
            onset, gap = onset + shift, gap - shift
            shift = min(gap, MAX_STEPS)
            events.append(Event(onset, shift, velocity=vel))
    return events
