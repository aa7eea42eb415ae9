"""Music checks: a few figures that catch a bad take (a chord held for two minutes, a stuck
note, a flurry of tiny gaps), measured the same way on a generated track and on every
training piece, and the range the training pieces span for each.

The figures are rates or per-window values, so a 2-minute track and an 8-second loop can be
compared; only the longest unchanged harmony grows with length, and the sampler caps it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .harmony import BEATS_PER_BAR, MAX_HOLD_BARS, harmony_changes, hold_limit_ticks
from .token_format import Event

SHORT_GAP_BEATS = 0.25  # a gap between onsets shorter than a 16th note is "very short"
MELODY_WINDOW_BARS = 4  # melody variety and range are measured per this many bars
MELODY_SHARE_MIN = 0.05  # a corpus with fewer melody events than this has no melody to follow

CHECKS = {
    "longest_harmony_bars": "longest unchanged harmony (bars)",
    "harmony_changes_per_bar": "harmony changes per bar",
    "onsets_per_beat": "onsets per beat",
    "short_gap_share": "share of gaps under a 16th",
    "melody_pitch_variety": f"distinct melody pitches per {MELODY_WINDOW_BARS} bars",
    "melody_range": f"melody range per {MELODY_WINDOW_BARS} bars (semitones)",
}


def _melody_windows(events: list[Event], end: int, window: int) -> list[list[int]]:
    """Melody pitches per window; a last window shorter than half a window is left out
    unless it is the only one."""
    count = max(1, int(np.ceil(end / window)))
    if count > 1 and end - (count - 1) * window < window / 2:
        count -= 1
    out: list[list[int]] = [[] for _ in range(count)]
    for e in events:
        if e.pitch is not None and e.onset // window < count:
            out[e.onset // window].append(e.pitch)
    return out


def figures(events: list[Event], grid: int) -> dict[str, float]:
    """Each check's figure for one event sequence (onsets and shifts in grid ticks)."""
    if not events:
        return {name: 0.0 for name in CHECKS}
    bar = grid * BEATS_PER_BAR
    end = max(events[-1].onset + events[-1].shift, 1)
    changes = [e.onset for e in harmony_changes(events)]
    bounds = [0, *changes, end]
    struck = [e.onset for e in events if e.is_chord or e.pitch is not None]
    gaps = np.diff(struck)
    windows = _melody_windows(events, end, MELODY_WINDOW_BARS * bar)
    return {
        "longest_harmony_bars": float(max(b - a for a, b in zip(bounds, bounds[1:])) / bar),
        "harmony_changes_per_bar": float(len(changes) / (end / bar)),
        "onsets_per_beat": float(len(struck) / (end / grid)),
        "short_gap_share": float(np.mean(gaps < SHORT_GAP_BEATS * grid)) if len(gaps) else 0.0,
        "melody_pitch_variety": float(np.mean([len(set(w)) for w in windows])),
        "melody_range": float(np.mean([max(w) - min(w) if w else 0 for w in windows])),
    }


def data_ranges(piece_figures: list[dict[str, float]], quantile: float) -> dict[str, list[float]]:
    """Per check, the [quantile, 1 - quantile] range of the pieces' figures."""
    if not piece_figures:
        return {}
    return {name: [round(float(np.quantile([f[name] for f in piece_figures], q)), 4)
                   for q in (quantile, 1 - quantile)] for name in CHECKS}


@dataclass(frozen=True)
class Failure:
    check: str
    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{CHECKS[self.check]} {self.value:.2f} (data {self.low:.2f}-{self.high:.2f})"


def failures(track_figures: dict[str, float], ranges: dict[str, list[float]]) -> list[Failure]:
    """The checks whose figure lies outside the data's range (and a harmony held past MAX_HOLD_BARS)."""
    out = []
    for name, (low, high) in ranges.items():
        if name == "longest_harmony_bars":
            high = min(high, MAX_HOLD_BARS)
        value = track_figures[name]
        if not low - 1e-9 <= value <= high + 1e-9:
            out.append(Failure(name, round(value, 4), low, high))
    return out


@dataclass(frozen=True)
class DataProfile:
    """What the training pieces look like to the checks and to the sampler: each check's range,
    how strict that is, how long a harmony may stand, and whether there is a melody and chords."""
    pieces: int
    quantile: float
    ranges: dict
    pieces_inside: float
    context_events: int | None
    melody_share: float
    has_chords: bool
    hold_limit_ticks: int | None

    @property
    def has_melody(self) -> bool:
        return self.melody_share >= MELODY_SHARE_MIN

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "DataProfile":
        return cls(**d)


def data_profile(pieces: list[list[Event]], grid: int, quantile: float) -> DataProfile:
    """The profile of the training pieces (as events)."""
    pieces = [p for p in pieces if p]
    events = [e for p in pieces for e in p]
    piece_figures = [figures(p, grid) for p in pieces]
    ranges = data_ranges(piece_figures, quantile)
    # How strict the ranges are: the share of the training pieces themselves that pass every check.
    inside = float(np.mean([not failures(f, ranges) for f in piece_figures])) if pieces else 0.0
    has_chords = any(e.is_chord for e in events)
    # A model trained on short pieces (8-second loops) never saw a long context; past the
    # pieces' usual length it drifts (measured on the lo-fi loops: 5-7 chord changes a bar
    # against the data's 0.3-4.1), so generation shows it no more than that.
    context = int(np.median([len(p) for p in pieces])) if pieces else None
    hold = hold_limit_ticks(ranges["longest_harmony_bars"][1], grid) if has_chords and ranges else None
    return DataProfile(pieces=len(pieces), quantile=quantile, ranges=ranges, pieces_inside=round(inside, 4),
                       context_events=context,
                       melody_share=round(sum(e.pitch is not None for e in events) / max(1, len(events)), 4),
                       has_chords=has_chords, hold_limit_ticks=hold)
