"""The one music type that flows from extract to the model: a piece as melody, harmony, bass,
drums and chord changes, on an integer grid of GRID ticks per beat, transposed to C major /
A minor."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import NamedTuple

MAJOR, MINOR = "major", "minor"
PITCH_NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
GRID = 12  # ticks per beat: holds straight 16ths and 8th triplets alike


class NoteEvent(NamedTuple):
    """A note: when it starts and how long it lasts, in grid ticks. A tuple, because a long
    song holds thousands and building them is part of reading every file."""
    onset: int
    duration: int
    pitch: int
    velocity: int = 80


@dataclass(frozen=True)
class ChordChange:
    """From `onset` the harmony is `quality` on `root` (a pitch class), struck at `velocity`."""
    onset: int
    root: int
    quality: str
    velocity: int = 80
    exact: bool = True  # the sounding pitch classes are exactly the chord's


_NOTE_LISTS = ("melody", "harmony", "bass", "drums")


@dataclass
class Piece:
    sha256: str
    name: str
    grid: int = GRID
    subdivision: int = 4  # the grid the onsets were quantised to: 4 = straight 16ths, 3 = 8th triplets
    tonic: str = "C"
    mode: str = MAJOR
    transpose: int = 0
    tempo_bpm: float = 120.0
    time_signature: str = "4/4"  # the file's first, as written
    metre: list = field(default_factory=list)  # [start tick, normalised metre] of each stretch of bars
    melody: list[NoteEvent] = field(default_factory=list)
    harmony: list[NoteEvent] = field(default_factory=list)
    bass: list[NoteEvent] = field(default_factory=list)
    drums: list[NoteEvent] = field(default_factory=list)
    chords: list[ChordChange] = field(default_factory=list)
    stats: dict = field(default_factory=dict)  # what reading and quantising did, for the manifest
    # The drums as played: [beats from the first bar line (not snapped to the grid), note, velocity].
    drum_hits: list = field(default_factory=list)

    def to_json(self) -> dict:
        # Field by field: dataclasses.asdict deep-copies every note and cost more than reading the file.
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _NOTE_LISTS + ("chords",)}
        d["stats"] = dict(self.stats)
        for key in _NOTE_LISTS:
            d[key] = list(map(list, getattr(self, key)))
        d["chords"] = [[c.onset, c.root, c.quality, c.velocity, c.exact] for c in self.chords]
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Piece":
        d = dict(d)
        for key in _NOTE_LISTS:
            d[key] = list(map(NoteEvent._make, d[key]))
        d["chords"] = [ChordChange(*c) for c in d["chords"]]
        return cls(**d)


def transposition_to_reference(tonic_pc: int, mode: str) -> int:
    """Semitones that move a key to C major / A minor, the smaller way round (-6..+5)."""
    target = 0 if mode == MAJOR else 9
    return (target - tonic_pc + 6) % 12 - 6
