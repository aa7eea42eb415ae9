"""Swing and human timing: off-beat 8ths pushed late, onsets and velocities jittered."""
from __future__ import annotations

import numpy as np

from .parts import Part


def swing_beats(b: float, swing: float) -> float:
    """Move off-beat 8ths to `swing` of the beat, stretching the rest of the beat to fit."""
    whole, frac = divmod(b, 1.0)
    frac = frac / 0.5 * swing if frac < 0.5 else swing + (frac - 0.5) / 0.5 * (1 - swing)
    return whole + frac


OFF_BEAT = (0.375, 0.75)  # onsets this far into a beat are its off-beat 8th, played early or late


def played_swing(starts: list[float]) -> float | None:
    """Where a performance's off-beat 8ths land within the beat on average (0.5 = straight),
    or None when it plays none."""
    fracs = [b % 1.0 for b in starts if OFF_BEAT[0] <= b % 1.0 < OFF_BEAT[1]]
    return float(np.mean(fracs)) if fracs else None


def swing_for(played: float | None, swing: float) -> float:
    """The warp (swing_beats' `swing`) that moves off-beat 8ths played at `played` to `swing`:
    a drummer who already swings is not swung twice."""
    if played is None or played >= 1.0:
        return swing
    late = 2 * (played - 0.5)  # how far past the straight 8th, in halves of the beat
    return float(np.clip((swing - late) / (1 - late), 0.25, OFF_BEAT[1]))


def humanise(parts: list[Part], tempo_bpm: float, swing: float, humanize_ms: float,
             velocity_jitter: int, rng: np.random.Generator) -> None:
    """Swing every part's notes, then jitter onsets (ms, normal) and velocities, in place; a
    part played by a model with its own micro-timing (`performed`) is not jittered, and is swung
    only as far as takes its off-beat 8ths, on average, to `swing`."""
    beats_per_ms = tempo_bpm / 60000.0
    for part in parts:
        out = []
        warp = swing_for(played_swing([n[0] for n in part.notes]), swing) if part.performed else swing
        for start, dur, pitch, vel in part.notes:
            s = swing_beats(start, warp)
            e = swing_beats(start + dur, warp)
            if part.performed:
                out.append((s, max(0.05, e - s), pitch, vel))
                continue
            s = max(0.0, s + rng.normal(0, humanize_ms) * beats_per_ms) if start > 0 else 0.0
            v = vel + rng.normal(0, velocity_jitter)
            out.append((s, max(0.05, e - s), pitch, int(np.clip(round(v), 1, 127))))
        part.notes = out
