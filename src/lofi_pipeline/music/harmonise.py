"""The keys' harmony for a take: the generated chord changes over time, as generated (root and
quality, never re-guessed from their notes), with stretches the take leaves unharmonised, or
holds past the data's limit, harmonised from the melody; and each chord voiced for an
electric piano. Times are grid ticks, as in the take."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .chords import chord_pitch_classes
from .harmony import harmony_changes, same_harmony

# The diatonic triads of the reference key (C major, which A minor shares): what a melody-only
# stretch is harmonised with.
DIATONIC_TRIADS = [(0, "maj"), (2, "m"), (4, "m"), (5, "maj"), (7, "maj"), (9, "m")]


class Segment(NamedTuple):
    """A chord the keys hold from `start` to `end` (grid ticks)."""
    start: int
    end: int
    root: int
    quality: str

    @property
    def pitch_classes(self) -> list[int]:
        return chord_pitch_classes(self.root, self.quality)


def voice_chord(pcs: list[int], root: int, extensions: bool, low: int = 52) -> list[int]:
    """Close voicing from the root up, above `low`; with `extensions`, a 7th (major over a major
    third, minor over a minor one) and a 9th are added."""
    tones = set(pcs)
    if extensions:
        if (root + 4) % 12 in tones and (root + 10) % 12 not in tones:
            tones.add((root + 11) % 12)
        elif (root + 3) % 12 in tones:
            tones.add((root + 10) % 12)
        tones.add((root + 2) % 12)
    voiced, floor = [], low
    for step in range(12):
        pc = (root + step) % 12
        if pc in tones:
            pitch = floor + (pc - floor) % 12
            voiced.append(pitch)
            floor = pitch + 1
    return sorted(voiced)


def harmonise_from_melody(events, start: int, end: int, first: tuple[int, str] | None, hold_limit: int,
                          bar: int) -> list[Segment]:
    """A stretch where the harmony does not move, bar by bar: the diatonic triad that fits the
    melody notes of the bar best (staying put on a tie), and a different one once a chord has
    stood for `hold_limit` ticks, so the keys and the bass never freeze."""
    segs, current, since = [], first, start
    for bar_start in range(start, end, bar):
        bar_end = min(end, bar_start + bar)
        weight = np.zeros(12)
        for e in events:
            if e.pitch is not None and bar_start <= e.onset < bar_end:
                weight[e.pitch % 12] += max(e.duration, bar / 16)
        if bar_start == start and first is not None:
            segs.append([bar_start, bar_end, first])
            continue

        def fit(chord: tuple[int, str]) -> float:
            pcs = chord_pitch_classes(*chord)
            inside = weight[pcs].sum()
            return inside - 0.5 * (weight.sum() - inside) + (0.1 if same_harmony(chord, current) else 0.0)
        must_move = current is not None and bar_start - since >= hold_limit
        options = [c for c in DIATONIC_TRIADS if not (must_move and same_harmony(c, current))]
        chosen = max(options, key=fit)
        if segs and same_harmony(chosen, current):
            segs[-1][1] = bar_end
        else:
            segs.append([bar_start, bar_end, chosen])
            current, since = chosen, bar_start
    return [Segment(a, b, *chord) for a, b, chord in segs]


def chords_from_events(events, length: int, hold_limit: int, bar: int) -> tuple[list[Segment], int]:
    """The keys' chords over a take of `length` ticks, and how many ticks of them were
    harmonised here: a harmony that stands longer than `hold_limit` ticks, and a chordless
    stretch with a melody, get chords from the melody (harmonise_from_melody), `bar` ticks at a time."""
    changes = [(e.onset, (e.root, e.quality)) for e in harmony_changes(events) if e.onset < length]
    stretches = [] if changes and changes[0][0] <= 0 else [(0, changes[0][0] if changes else length, None)]
    stretches += [(s, min(nxt, length), chord) for (s, chord), (nxt, _) in zip(changes, changes[1:] + [(length, None)])]
    out, filled = [], 0
    for start, end, chord in stretches:
        if end <= start:
            continue
        if chord is not None and end - start <= hold_limit:
            out.append(Segment(start, end, *chord))
            continue
        if chord is None and not any(e.pitch is not None and start <= e.onset < end for e in events):
            continue  # nothing sounds before the first chord: the keys wait too
        out += harmonise_from_melody(events, start, end, chord, hold_limit, bar)
        filled += end - start - (min(bar, end - start) if chord is not None else 0)
    merged = out[:1]
    for seg in out[1:]:  # a restated chord is held, not struck again
        last = merged[-1]
        if same_harmony((seg.root, seg.quality), (last.root, last.quality)) and seg.start <= last.end:
            merged[-1] = last._replace(end=seg.end)
        else:
            merged.append(seg)
    return merged or [Segment(0, length, 0, "maj")], filled
