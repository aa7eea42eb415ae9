"""The token format: events <-> tokens <-> ids, the vocabulary and the special tokens.

An event says what sounds from its onset (one pitch, or a chord as a pitch-class set in
ascending order), for how long, when the next event starts, and a coarse velocity. One event
is one token, so a model's next-token distribution is a distribution over whole events.
Every other module reads and writes tokens through this one.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from . import atomic
from .errors import StageError
from .hashing import hash_json

PAD, UNK = 0, 1
SPECIALS = ["<pad>", "<unk>"]
# Durations and time shifts snap to this ladder (in beats): straight and triplet values.
LADDER_BEATS = [Fraction(1, 12), Fraction(1, 6), Fraction(1, 4), Fraction(1, 3), Fraction(1, 2),
                Fraction(2, 3), Fraction(3, 4), Fraction(1), Fraction(4, 3), Fraction(3, 2),
                Fraction(2), Fraction(8, 3), Fraction(3), Fraction(4)]
VOCAB_VERSION = "1"


@dataclass(frozen=True)
class Event:
    onset: int
    duration: int
    shift: int
    sound: str  # "n60" for one pitch, "c0.4.7" for a chord's pitch classes
    velocity: int  # bin index

    @property
    def token(self) -> str:
        return f"{self.sound}_d{self.duration}_s{self.shift}_v{self.velocity}"

    @property
    def pitches(self) -> tuple[int, ...]:
        """Pitches to sound: the note itself, or the chord's classes above middle C."""
        if self.sound.startswith("n"):
            return (int(self.sound[1:]),)
        return tuple(60 + int(pc) for pc in self.sound[1:].split("."))

    @property
    def is_chord(self) -> bool:
        return self.sound.startswith("c")


def ladder(grid: int) -> np.ndarray:
    return np.array(sorted({max(1, round(b * grid)) for b in LADDER_BEATS}))


def snap(ticks: int, steps: np.ndarray) -> int:
    return int(steps[np.argmin(np.abs(steps - ticks))])


def token_to_event(token: str, onset: int) -> Event:
    sound, d, s, v = token.split("_")
    return Event(onset, int(d[1:]), int(s[1:]), sound, int(v[1:]))


def tokens_to_events(tokens: list[str]) -> list[Event]:
    events, onset = [], 0
    for tok in tokens:
        e = token_to_event(tok, onset)
        events.append(e)
        onset += e.shift
    return events


class Vocabulary:
    def __init__(self, tokens: list[str], counts: dict[str, int] | None = None, config: dict | None = None):
        self.tokens = SPECIALS + [t for t in tokens if t not in SPECIALS]
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.counts = counts or {}
        self.config = config or {}

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def build(cls, token_lists: list[list[str]], min_count: int, config: dict | None = None):
        counts = Counter(t for toks in token_lists for t in toks)
        kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        return cls(kept, {t: counts[t] for t in kept}, config)

    def encode(self, tokens: list[str]) -> np.ndarray:
        return np.array([self.index.get(t, UNK) for t in tokens], dtype=np.int32)

    def decode(self, ids) -> list[str]:
        return [self.tokens[i] for i in ids]

    def fingerprint(self) -> str:
        return hash_json(self.tokens)[:16]

    def to_json(self) -> dict:
        return {"class": type(self).__name__, "version": VOCAB_VERSION, "config": self.config,
                "fingerprint": self.fingerprint(), "tokens": self.tokens, "counts": self.counts}

    @classmethod
    def from_json(cls, d: dict) -> "Vocabulary":
        vocab = cls(d["tokens"], d.get("counts"), d.get("config"))
        if d.get("fingerprint") and d["fingerprint"] != vocab.fingerprint():
            raise StageError("vocabulary file is damaged: its fingerprint does not match its tokens")
        return vocab

    def save(self, path: Path) -> None:
        atomic.write_json(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> "Vocabulary":
        return cls.from_json(json.loads(Path(path).read_text()))
