"""What a drum part is, in numbers: where each class falls in the bar, the checks a drum part
must pass (not empty, varies somewhere, repeats somewhere), and the features of two-bar drum
segments for the classifier two-sample test (music/realism.py)."""
from __future__ import annotations

import numpy as np

from .drum_format import CLASSES, LEVEL_VELOCITY, DrumBar, offset_fraction

SEGMENT_BARS = 2
STEPS = 16  # where in the bar, in 16ths of a 4/4 bar (other metres scaled to it)
FEATURES = ([f"{c} at {k}/16" for c in CLASSES for k in range(STEPS)]
            + [f"{c} per bar" for c in CLASSES] + [f"{c} velocity" for c in CLASSES]
            + [f"{c} offset" for c in CLASSES] + ["hits per bar", "distinct 16ths struck"])


def onset_shares(bars: list[DrumBar], steps_per_bar: int = 16) -> dict[str, list[float]]:
    """Per class, the share of its hits on each 16th of the bar (4/4's sixteen)."""
    counts = np.zeros((len(CLASSES), STEPS))
    for bar in bars:
        for h in bar.hits:
            counts[h.instrument, h.step * STEPS // steps_per_bar] += 1
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    return {c: [round(float(x), 3) for x in shares[i]] for i, c in enumerate(CLASSES) if totals[i, 0] > 0}


def backbeat(bars: list[DrumBar], steps_per_bar: int = 16) -> dict[str, float]:
    """The figures a listener hears first: the share of kicks on beat 1, of snares on 2 and 4."""
    shares = onset_shares(bars, steps_per_bar)
    kick, snare = shares.get("kick"), shares.get("snare")
    return {"kick on 1": round(kick[0], 3) if kick else 0.0,
            "snare on 2 and 4": round(snare[4] + snare[12], 3) if snare else 0.0}


def drum_checks(bars: list[DrumBar], loop_bars: int) -> list[str]:
    """What is wrong with a drum part: empty, never varies, or never repeats a loop earlier."""
    playing = [b.hits for b in bars if b.hits]
    if not playing:
        return ["empty: no drum hits"]
    failed = []
    if len(set(playing)) == 1 and len(playing) > 1:
        failed.append("never varies: every bar the same")
    if len(bars) > loop_bars and not any(bars[i].hits and bars[i].hits == bars[i - loop_bars].hits
                                         for i in range(loop_bars, len(bars))):
        failed.append(f"never repeats: no bar plays the bar {loop_bars} before it")
    return failed


def features(segment: list[DrumBar], steps_per_bar: int = 16) -> np.ndarray:
    """The FEATURES of one segment: per class where in the bar (shares), hits per bar, mean
    velocity and micro-timing; the segment's density."""
    bars = len(segment)
    grid = np.zeros((len(CLASSES), STEPS))
    vel = [[] for _ in CLASSES]
    off = [[] for _ in CLASSES]
    struck = set()
    for b, bar in enumerate(segment):
        for h in bar.hits:
            grid[h.instrument, h.step * STEPS // steps_per_bar] += 1
            vel[h.instrument].append(LEVEL_VELOCITY[h.level])
            off[h.instrument].append(offset_fraction(h.offset))
            struck.add((b, h.step))
    per_class = grid.sum(axis=1)
    shares = np.divide(grid, per_class[:, None], out=np.zeros_like(grid), where=per_class[:, None] > 0)
    return np.concatenate([shares.ravel(), per_class / bars, [np.mean(v) if v else 0.0 for v in vel],
                           [np.mean(o) if o else 0.0 for o in off],
                           [per_class.sum() / bars, len(struck) / bars]])


def segments(bars: list[DrumBar], bars_each: int = SEGMENT_BARS) -> list[list[DrumBar]]:
    """Consecutive two-bar stretches with at least two hits."""
    out = []
    for first in range(0, len(bars) - bars_each + 1, bars_each):
        seg = bars[first:first + bars_each]
        if sum(len(b.hits) for b in seg) >= 2:
            out.append(seg)
    return out
