"""Telling a tune again when it comes back in another collection, key, rhythm or harmonisation,
so that the base corpus leaves out every tune the default set holds (a chorale's melody is also
an Essen folk song and a hymn in a tune book).

A tune is its melody's contour: the top line of its first part with notes (a score's soprano, a
tune's only line), repeated notes merged, as intervals. Two pieces share a tune when the best
local alignment of their contours (Smith-Waterman: +1 a matching interval, -1 another or a gap)
scores at least half the shorter one and at least `MIN_SCORE`: rhythm, key, repeats, the other
voices and a passing note here and there do not count. Candidates are found first by shared
runs of four intervals, so a piece is aligned with a handful of tunes, not all of them.
Leaving out a folk song too many costs the base little; keeping a chorale would make the default
set's scores not held out (what it finds and drops: docs/model.md, "The base corpus").
"""
from __future__ import annotations

import numpy as np

from ..music.midi_io import read_with_symusic

SHARE = 0.5  # of the shorter contour, aligned: the same tune
MIN_SCORE = 8  # aligned intervals at the least: a short tune's few must still be a phrase
RUN = 4  # intervals in a candidate run
CANDIDATES = 10  # tunes aligned per piece, those sharing the most runs (at least three)


def melody(data: bytes) -> list[int]:
    """The pitches of the top line of the first track with notes (the highest note per onset)."""
    for track in read_with_symusic(data).tracks:
        notes = track.notes
        if len(notes) and not track.is_drum:
            order = np.lexsort((-notes[:, 2], notes[:, 0]))
            onsets, pitches = notes[order, 0], notes[order, 2]
            first = np.concatenate([[True], onsets[1:] != onsets[:-1]])
            return [int(p) for p in pitches[first]]
    return []


def contour(pitches: list[int]) -> list[int]:
    """Intervals between successive different pitches, folded into an octave either way."""
    merged = [p for i, p in enumerate(pitches) if i == 0 or p != pitches[i - 1]]
    return [max(-12, min(12, b - a)) for a, b in zip(merged, merged[1:])]


def alignment(a: list[int], b: list[int]) -> int:
    """The best local alignment score of two contours (+1 a match, -1 a mismatch or a gap)."""
    best, previous = 0, [0] * (len(b) + 1)
    for x in a:
        row = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            row[j] = max(0, previous[j - 1] + (1 if x == y else -1), previous[j] - 1, row[j - 1] - 1)
        best = max(best, max(row))
        previous = row
    return best


def _runs(intervals: list[int]) -> set[tuple[int, ...]]:
    return {tuple(intervals[i:i + RUN]) for i in range(len(intervals) - RUN + 1)}


class TuneIndex:
    """The tunes of a set of pieces, to ask whether another piece is one of them."""

    def __init__(self, tunes: dict[str, bytes]):
        self.contours: dict[str, list[int]] = {}
        self.owners: dict[tuple[int, ...], list[str]] = {}
        for name in sorted(tunes):
            intervals = contour(melody(tunes[name]))
            if len(intervals) >= MIN_SCORE:
                self.contours[name] = intervals
                for run in _runs(intervals):
                    self.owners.setdefault(run, []).append(name)

    def __len__(self) -> int:
        return len(self.contours)

    def match(self, data: bytes) -> tuple[str, float] | None:
        """(the tune it is, the aligned share of the shorter contour) when the piece is one of
        the tunes, else None."""
        intervals = contour(melody(data))
        if len(intervals) < MIN_SCORE:
            return None
        shared: dict[str, int] = {}
        for run in _runs(intervals):
            for name in self.owners.get(run, ()):
                shared[name] = shared.get(name, 0) + 1
        candidates = sorted((n for n, k in shared.items() if k >= 3), key=lambda n: (-shared[n], n))[:CANDIDATES]
        best = None
        for name in candidates:
            tune = self.contours[name]
            score = alignment(intervals, tune)
            share = score / min(len(intervals), len(tune))
            if score >= MIN_SCORE and share >= SHARE and (best is None or share > best[1]):
                best = (name, round(share, 3))
        return best
