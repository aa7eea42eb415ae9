"""A melody written over a take's harmony, by another model (the base ensemble, which learned
melodies from the base corpus): where the archive has none (chord loops, the typical lo-fi
pack), the track still gets a melody of a model's, not a line through the chord tones.

The harmony stays as it was drawn: every chord keeps its bar, position, root and quality. The
melody model draws the events between them: where the next event falls (never past the next
chord), a melody note there (never a chord), and at a chord's own onset whether a note starts
with it. The take's own melody notes, if any, are replaced.
"""
from __future__ import annotations

from typing import Generator

import numpy as np

from ..music.token_format import FIELDS, PAD, UNK
from .compose import COL, Composer, Request

BARS_WITH_MELODY_MIN = 0.5  # a take with a melody in fewer of its bars than this gets one written over it


def bars_with_melody(rows: np.ndarray, vocab, end_bar: int) -> float:
    """The share of a take's bars in which a melody note starts."""
    advance = vocab.value_table("bar")[rows[:, COL["bar"]]]
    bars = np.cumsum(advance)
    has_note = rows[:, COL["pitch"]] != vocab.index["pitch"]["-"]
    return len(set(bars[has_note].tolist())) / max(1, end_bar)


def wants_melody(setting: str, data_has_melody: bool, rows: np.ndarray, vocab, end_bar: int) -> bool:
    """Whether a take's melody is written over its harmony: always with "base", never with
    "ensemble"; with "auto" where the data has no melody or the take has one in fewer than
    half its bars."""
    if setting != "auto":
        return setting == "base"
    return not data_has_melody or bars_with_melody(rows, vocab, end_bar) < BARS_WITH_MELODY_MIN


class MelodyOver(Composer):
    """One track's melody over `harmony` (a take's rows, its bars from the track's bar 0) up to
    `end_bar`; the other arguments are a Composer's (its plan is not used)."""

    def __init__(self, harmony: np.ndarray, end_bar: int, **composer_args):
        self.harmony, self.end_bar = np.asarray(harmony, np.int32), end_bar
        super().__init__(plan=[], loop_bars=1, variation=0.0, melody_variation=0.0, **composer_args)

    def _chords(self) -> list[tuple[int, int, np.ndarray]]:
        out, bar = [], 0
        for row in self.harmony:
            bar += int(self.advance_of[row[COL["bar"]]])
            if row[COL["root"]] != self.none["root"]:
                out.append((bar, int(self.position_of[row[COL["position"]]]), row))
        return out

    def _program(self) -> Generator:
        self._begin()
        for bar, position, chord in [*self._chords(), (self.end_bar, 0, None)]:
            while True:
                row = yield Request({COL["metre"]: self.metre_id}, self._mask(bar, position, chord))
                at = self._onset(row)
                if chord is None and at >= (bar, position):
                    return  # the end of the track
                self._place(at[0], row)
                if at == (bar, position):
                    break

    def _onset(self, row: np.ndarray) -> tuple[int, int]:
        """(bar, position) of an event drawn after the last placed one."""
        return self.last_bar + int(self.advance_of[row[COL["bar"]]]), int(self.position_of[row[COL["position"]]])

    def _mask(self, target_bar: int, target_position: int, chord: np.ndarray | None):
        def mask(column: int, row: np.ndarray) -> np.ndarray | None:
            field = FIELDS[column]
            if field == "bar":
                lowest = 0 if self._room_after(self.last_position) and self.last_bar >= 0 else 1
                allowed = (self.advance_of >= lowest) & (self.last_bar + self.advance_of <= target_bar)
                allowed[[PAD, UNK]] = False
                return allowed if allowed.any() else None
            if field == "position":
                bar = self.last_bar + int(self.advance_of[row[COL["bar"]]])
                later = self.position_of < self.bar_len
                later[[PAD, UNK]] = False
                if bar == self.last_bar and self.last_position is not None:
                    later &= self.position_of > self.last_position
                allowed = later & self.on_grid
                if bar == target_bar:  # up to the chord, whose onset stays open wherever it lies
                    allowed &= self.position_of <= target_position
                    allowed |= later & (self.position_of == target_position)
                return allowed if allowed.any() else later
            at_chord = self._onset(row) == (target_bar, target_position) and chord is not None
            if field in ("root", "quality"):
                only = np.zeros(len(self.vocab.fields[field]), bool)
                only[chord[column] if at_chord else self.none[field]] = True
                return only
            if field == "pitch" and not at_chord:
                allowed = np.ones(len(self.vocab.fields["pitch"]), bool)
                allowed[[PAD, UNK, self.none["pitch"]]] = False
                return allowed  # between chords, an event is a melody note
            return self.vocab.pair_mask(field, row)
        return mask
