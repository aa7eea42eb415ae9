"""The rules of harmony over time, stated once for the sampler, the music checks and the
arranger: a harmony is a root and a quality; it changes when either changes (a restated
chord is no change, and C6 is not Am7 even though they share their notes); and how long one
may stand is counted in grid ticks."""
from __future__ import annotations

from typing import Hashable

import numpy as np

BEATS_PER_BAR = 4
MAX_HOLD_BARS = 8.0  # no harmony stands longer than this, whatever the data does


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


def hold_limit_ticks(usual_longest_bars: float | None, grid: int) -> int:
    """How long a generated harmony may stand, in grid ticks: the data's longest usual hold,
    at least a bar and at most MAX_HOLD_BARS (MAX_HOLD_BARS when the data says nothing)."""
    bars = MAX_HOLD_BARS if usual_longest_bars is None else min(max(usual_longest_bars, 1.0), MAX_HOLD_BARS)
    return int(np.floor(bars * BEATS_PER_BAR * grid))
