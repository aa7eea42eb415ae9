"""The rates a listener hears, measured the same way on a generated track and on every piece of
the data: how loud (velocity levels), how busy (melody notes and distinct pitches a bar, chord
changes a bar), what chords (the share of seventh and extended qualities), how the melody moves
(its intervals, how often it repeats a note or leans on one pitch class) and how much it rests.
The calibrated sampler is steered by these, a take outside the data's range on any of them is
drawn again (music/checks.py), and `lofi evaluate` puts each track's beside the data's range.
"""
from __future__ import annotations

import numpy as np

from .harmony import harmony_changes
from .piece import GRID
from .token_format import Event, bar_ticks, timeline_end

# Triads and their like; every other quality adds a 7th, 6th or 9th.
PLAIN_QUALITIES = {"maj", "m", "5", "1", "dim", "aug", "sus4", "sus2"}

RATES = {
    "top_velocity_share": "events at the loudest velocity level",
    "mean_velocity_level": "mean velocity level (0 = softest)",
    "melody_notes_per_bar": "melody notes per bar",
    "melody_pitches_per_bar": "distinct melody pitches per bar",
    "chord_changes_per_bar": "chord changes per bar",
    "extended_chord_share": "chords with a 7th, 6th or 9th",
    "melody_mean_interval": "melody interval (semitones, mean)",
    "melody_repeat_share": "melody notes repeating the last one",
    "melody_top_pitch_class_share": "melody notes on its commonest pitch class",
    "melody_rest_share": "beats with no melody note sounding",
}


def rates(events: list[Event], velocity_bins: int) -> dict[str, float | None]:
    """Each rate of one sequence; a melody rate is None where there is no melody, a chord rate
    where there are no chords."""
    if not events:
        return {name: None for name in RATES}
    bar = bar_ticks(events[0].metre)
    end = max(timeline_end(events), 1)
    bars = end / bar
    struck = [e for e in events if e.is_chord or e.pitch is not None]
    melody = [e for e in events if e.pitch is not None]
    chords = [e for e in events if e.is_chord]
    pitches = [e.pitch for e in melody]
    steps = np.abs(np.diff(pitches)) if len(pitches) > 1 else np.array([])
    per_bar: dict[int, set] = {}
    for e in melody:
        per_bar.setdefault(e.bar, set()).add(e.pitch)
    classes = np.bincount(np.asarray(pitches, np.int64) % 12, minlength=12) if pitches else None
    velocities = np.array([e.velocity for e in struck])
    return {
        "top_velocity_share": float(np.mean(velocities == velocity_bins - 1)) if len(velocities) else None,
        "mean_velocity_level": float(velocities.mean()) if len(velocities) else None,
        "melody_notes_per_bar": float(len(melody) / bars),
        "melody_pitches_per_bar": float(sum(len(v) for v in per_bar.values()) / bars),
        "chord_changes_per_bar": float(len(harmony_changes(events)) / bars),
        "extended_chord_share": float(np.mean([c.quality not in PLAIN_QUALITIES for c in chords])) if chords else None,
        "melody_mean_interval": float(steps.mean()) if len(steps) else None,
        "melody_repeat_share": float(np.mean(steps == 0)) if len(steps) else None,
        "melody_top_pitch_class_share": float(classes.max() / classes.sum()) if pitches else None,
        "melody_rest_share": rest_share(melody, 0, end) if melody else None,
    }


def rest_share(melody: list[Event], start: int, end: int) -> float:
    """The share of the beats from tick `start` to `end` in which no note of `melody` sounds."""
    beats = max(1, -(-(end - start) // GRID))
    sounding = np.zeros(beats, bool)
    for e in melody:
        first, last = (e.onset - start) // GRID, -(-(e.onset + max(e.duration, 1) - start) // GRID)
        sounding[max(0, first):max(0, min(beats, last))] = True
    return float(1.0 - sounding.mean())


def outside(track_rates: dict[str, float | None], ranges: dict[str, list[float]]) -> list[str]:
    """The rates of a track outside the data's range (a rate the track or the data lacks is not judged)."""
    return [name for name, (low, high) in ranges.items()
            if track_rates.get(name) is not None and not low - 1e-9 <= track_rates[name] <= high + 1e-9]
