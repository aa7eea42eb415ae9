"""Swing and human timing: off-beat 8ths pushed late, onsets and velocities jittered."""
from __future__ import annotations

import numpy as np

from .parts import Part


def swing_beats(b: float, swing: float) -> float:
    """Move off-beat 8ths to `swing` of the beat, stretching the rest of the beat to fit."""
    whole, frac = divmod(b, 1.0)
    frac = frac / 0.5 * swing if frac < 0.5 else swing + (frac - 0.5) / 0.5 * (1 - swing)
    return whole + frac


def humanise(parts: list[Part], tempo_bpm: float, swing: float, humanize_ms: float,
             velocity_jitter: int, rng: np.random.Generator) -> None:
    """Swing every part's notes, then jitter onsets (ms, normal) and velocities, in place; a
    part played by a model with its own micro-timing (`performed`) is swung, not jittered."""
    beats_per_ms = tempo_bpm / 60000.0
    for part in parts:
        out = []
        for start, dur, pitch, vel in part.notes:
            s = swing_beats(start, swing)
            e = swing_beats(start + dur, swing)
            if part.performed:
                out.append((s, max(0.05, e - s), pitch, vel))
                continue
            s = max(0.0, s + rng.normal(0, humanize_ms) * beats_per_ms) if start > 0 else 0.0
            v = vel + rng.normal(0, velocity_jitter)
            out.append((s, max(0.05, e - s), pitch, int(np.clip(round(v), 1, 127))))
        part.notes = out
