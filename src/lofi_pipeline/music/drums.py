"""The drums: a swung boom-bap bar on a GM kit (channel 10), in the track's metre, with
variations and a fill."""
from __future__ import annotations

import numpy as np

from .parts import Part

KICK, SNARE, SIDE_STICK, CLOSED_HAT, OPEN_HAT, LOW_TOM, MID_TOM = 36, 38, 37, 42, 46, 45, 47
KICK_PATTERNS = [[0, 2.5], [0, 1.75, 2.5], [0, 2, 2.75], [0, 0.75, 2.5]]  # beats of a 4/4 bar


def backbeat(beats: float, compound: bool) -> tuple[list[float], list[float]]:
    """(kicks, snares) of a plain bar of `beats` quarter notes: in 4/4 the boom-bap's first pattern;
    in compound metres (6/8, 12/8) a kick on each dotted-quarter pulse that opens a half and
    the snare on the others; otherwise a kick on 1 and the snare on every other beat of the
    bar."""
    if compound:
        pulses = np.arange(0, beats - 1e-9, 1.5)
        return [float(p) for p in pulses[::2]], [float(p) for p in pulses[1::2]]
    if beats == 4:
        return KICK_PATTERNS[0], [1.0, 3.0]
    return [0.0], [float(b) for b in np.arange(1, beats - 1e-9, 1.0)]


def drum_bar(part: Part, bar_start: float, variant: int, fill: bool, rng: np.random.Generator,
             level: float, beats: float = 4.0, compound: bool = False) -> None:
    """One bar: kick and snare (in 4/4, `variant` picks the kick pattern), 8th-note hats, now and
    then a ghost note; a fill (snare and toms) ends the bar if `fill`."""
    kicks, snares = backbeat(beats, compound)
    if beats == 4 and not compound:
        kicks = KICK_PATTERNS[variant]
    fill_from = beats - 1
    for k in kicks:
        part.add(bar_start + k, 0.25, KICK, (88 if k == 0 else 76) * level)
    for s in snares:
        if not (fill and s >= fill_from):
            part.add(bar_start + s, 0.25, SNARE, 74 * level)
    if rng.random() < 0.35:
        part.add(bar_start + beats - 0.25, 0.2, SIDE_STICK, 30 * level)  # ghost note
    for h in np.arange(0, beats - 1e-9, 0.5):
        if fill and h >= fill_from:
            break
        pitch = OPEN_HAT if (h == beats - 0.5 and variant == 2) else CLOSED_HAT
        part.add(bar_start + h, 0.2, pitch, (52 if h % 1 == 0 else 38) * level)
    if fill:
        for k, p in enumerate([SNARE, MID_TOM, LOW_TOM, SNARE]):
            part.add(bar_start + fill_from + 0.25 * k, 0.25, p, (62 + 8 * rng.random()) * level)
