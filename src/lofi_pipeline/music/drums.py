"""The drums: a swung boom-bap bar on a GM kit (channel 10), with variations and a fill."""
from __future__ import annotations

import numpy as np

from .midi_io import Part

KICK, SNARE, SIDE_STICK, CLOSED_HAT, OPEN_HAT, LOW_TOM, MID_TOM = 36, 38, 37, 42, 46, 45, 47
KICK_PATTERNS = [[0, 2.5], [0, 1.75, 2.5], [0, 2, 2.75], [0, 0.75, 2.5]]  # beats of the bar


def drum_bar(part: Part, bar_start: float, variant: int, fill: bool, rng: np.random.Generator,
             level: float) -> None:
    """Kick on 1 and a syncopated second kick (`variant` picks the pattern), snare on 2 and 4,
    8th-note hats, now and then a ghost note; a fill (snare and toms) ends the bar if `fill`."""
    for k in KICK_PATTERNS[variant]:
        part.add(bar_start + k, 0.25, KICK, (88 if k == 0 else 76) * level)
    for s in (1, 3):
        if not (fill and s == 3):
            part.add(bar_start + s, 0.25, SNARE, 74 * level)
    if rng.random() < 0.35:
        part.add(bar_start + 3.75, 0.2, SIDE_STICK, 30 * level)  # ghost note
    for h in np.arange(0, 4, 0.5):
        if fill and h >= 3:
            break
        pitch = OPEN_HAT if (h == 3.5 and variant == 2) else CLOSED_HAT
        part.add(bar_start + h, 0.2, pitch, (52 if h % 1 == 0 else 38) * level)
    if fill:
        for t, p in zip([3, 3.25, 3.5, 3.75], [SNARE, MID_TOM, LOW_TOM, SNARE]):
            part.add(bar_start + t, 0.25, p, (62 + 8 * rng.random()) * level)
