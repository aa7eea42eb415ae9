"""The music between stages: pieces of note events on an integer grid (ticks per beat)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

MAJOR, MINOR = "major", "minor"
PITCH_NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]


@dataclass(frozen=True)
class NoteEvent:
    """A note or chord: when it starts and how long it lasts, in grid ticks."""
    onset: int
    duration: int
    pitches: tuple[int, ...]
    velocity: int = 80


@dataclass
class Piece:
    sha256: str
    name: str
    grid: int
    tonic: str = "C"
    mode: str = MAJOR
    transpose: int = 0
    tempo_bpm: float = 120.0
    time_signature: str = "4/4"
    notes: list[NoteEvent] = field(default_factory=list)
    drums: list[NoteEvent] = field(default_factory=list)

    def to_json(self) -> dict:
        d = asdict(self)
        d["notes"] = [[n.onset, n.duration, list(n.pitches), n.velocity] for n in self.notes]
        d["drums"] = [[n.onset, n.duration, list(n.pitches), n.velocity] for n in self.drums]
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Piece":
        d = dict(d)
        d["notes"] = [NoteEvent(o, du, tuple(p), v) for o, du, p, v in d["notes"]]
        d["drums"] = [NoteEvent(o, du, tuple(p), v) for o, du, p, v in d["drums"]]
        return cls(**d)


def transposition_to_reference(tonic_pc: int, mode: str) -> int:
    """Semitones that move a key to C major / A minor, the smaller way round (-6..+5)."""
    target = 0 if mode == MAJOR else 9
    return (target - tonic_pc + 6) % 12 - 6
