"""The rules of harmony over time, stated once for the sampler, the music checks and the
arranger: a harmony is a root and a quality; it changes when either changes (a restated
chord is no change, and C6 is not Am7 even though they share their notes); how long one may
stand is counted in grid ticks; and a bar's harmony, beat by beat, is the same as another
bar's when at least three beats in four hold the same root and chord family.
"""
from __future__ import annotations

import math
from typing import Hashable

import numpy as np

from .chords import FAMILIES
from .piece import GRID
from .token_format import bar_starts, bar_ticks

MAX_HOLD_BARS = 8.0  # no harmony stands longer than this, whatever the data does
SAME_BAR_SHARE = 0.75  # of a bar's beats that must agree for two bars to hold the same harmony


def same_harmony(a: Hashable | None, b: Hashable | None) -> bool:
    """Whether two chords, as (root, quality) in any one spelling (names or token ids), are
    one harmony."""
    return a is not None and a == b


def harmony_changes(events) -> list:
    """The chord events (anything with `root`, `quality` and `is_chord`) that change the harmony."""
    changes, current = [], None
    for e in events:
        if e.is_chord and not same_harmony((e.root, e.quality), current):
            changes.append(e)
            current = (e.root, e.quality)
    return changes


def hold_limit_bars(usual_longest_bars: float | None) -> float:
    """How long a generated harmony may stand, in bars: the data's longest usual hold, at least
    a bar and at most MAX_HOLD_BARS (MAX_HOLD_BARS when the data says nothing)."""
    return MAX_HOLD_BARS if usual_longest_bars is None else min(max(usual_longest_bars, 1.0), MAX_HOLD_BARS)


def hold_limit_ticks(usual_longest_bars: float | None, bar_ticks: int) -> int:
    """hold_limit_bars in grid ticks of a bar of `bar_ticks`."""
    return int(np.floor(hold_limit_bars(usual_longest_bars) * bar_ticks))


def bar_harmonies(events: list) -> list[tuple | None]:
    """Per bar of a sequence of events, the harmony sounding on each of its quarter-note beats as
    (root, chord family); None for a bar before the first chord."""
    out, current, k = [], None, 0
    for start, metre in bar_starts(events):
        beats = []
        for beat in range(max(1, bar_ticks(metre) // GRID)):
            while k < len(events) and events[k].onset <= start + beat * GRID:
                if events[k].is_chord:
                    current = (events[k].root, FAMILIES[events[k].quality])
                k += 1
            beats.append(current)
        out.append(tuple(beats) if current is not None else None)
    return out


def same_bar_harmony(a: tuple | None, b: tuple | None) -> bool:
    """Two bars hold the same harmony: at least SAME_BAR_SHARE of their beats agree."""
    if a is None or b is None or len(a) != len(b):
        return False
    return sum(x == y and x is not None for x, y in zip(a, b)) >= math.ceil(SAME_BAR_SHARE * len(a))
