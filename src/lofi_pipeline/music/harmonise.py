"""The keys' harmony for a take: the generated chord changes over time, with stretches the
take leaves unharmonised (or holds past the data's limit) harmonised from the melody, and
each chord voiced for an electric piano."""
from __future__ import annotations

import numpy as np

from .harmony import BEATS_PER_BAR, harmony_changes

# The diatonic triads of the reference key (C major, which A minor shares): what a melody-only
# stretch is harmonised with, as (root, pitch classes).
DIATONIC_TRIADS = [(0, [0, 4, 7]), (2, [2, 5, 9]), (4, [4, 7, 11]), (5, [5, 9, 0]), (7, [7, 11, 2]), (9, [9, 0, 4])]


def chord_root(pcs: list[int]) -> int:
    """The pitch class that best explains the set as a stack of thirds (ties: lowest pc)."""
    pcs_set = set(pcs)

    def score(r: int) -> float:
        return (2 * ((r + 7) % 12 in pcs_set) + 1.5 * (((r + 4) % 12 in pcs_set) or ((r + 3) % 12 in pcs_set))
                + 0.5 * (((r + 10) % 12 in pcs_set) or ((r + 11) % 12 in pcs_set)))
    return max(sorted(pcs_set), key=score)


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


def harmonise_from_melody(events, start: float, end: float, first: list[int] | None,
                          hold_limit: float) -> list[tuple[float, float, list[int]]]:
    """A stretch where the harmony does not move, bar by bar: the diatonic triad that fits the
    melody notes of the bar best (staying put on a tie), and a different one once a chord has
    stood for `hold_limit` beats, so the keys and the bass never freeze."""
    segs, current, since = [], first, start
    for bar_start in np.arange(start, end, BEATS_PER_BAR):
        bar_end = min(end, bar_start + BEATS_PER_BAR)
        weight = np.zeros(12)
        for e in events:
            if e.pitch is not None and bar_start <= e.onset < bar_end:
                weight[e.pitch % 12] += max(e.duration, 0.25)
        if bar_start == start and first is not None:
            segs.append([bar_start, bar_end, first])
            continue

        def fit(pcs: list[int]) -> float:
            inside = weight[pcs].sum()
            return inside - 0.5 * (weight.sum() - inside) + (0.1 if pcs == current else 0.0)
        must_move = current is not None and bar_start - since >= hold_limit
        options = [pcs for _, pcs in DIATONIC_TRIADS if not (must_move and pcs == current)]
        chosen = max(options, key=fit)
        if segs and chosen == current:
            segs[-1][1] = bar_end
        else:
            segs.append([bar_start, bar_end, chosen])
            current, since = chosen, bar_start
    return [(float(a), float(b), pcs) for a, b, pcs in segs]


def chords_from_events(events, length: float,
                       hold_limit: float = 4.0 * BEATS_PER_BAR) -> tuple[list[tuple[float, float, list[int]]], float]:
    """(start, end, pitch classes) segments, and how many beats of them were harmonised here:
    a harmony that stands longer than `hold_limit` beats, and a chordless stretch with a melody,
    get chords from the melody (harmonise_from_melody)."""
    changes = [(e.onset, e.chord_pcs) for e in harmony_changes(events) if e.onset < length]
    stretches = [] if changes and changes[0][0] <= 0 else [(0.0, changes[0][0] if changes else length, None)]
    stretches += [(s, min(nxt, length), pcs) for (s, pcs), (nxt, _) in zip(changes, changes[1:] + [(length, None)])]
    out, filled = [], 0.0
    for start, end, pcs in stretches:
        if end <= start:
            continue
        if pcs is not None and end - start <= hold_limit:
            out.append((start, end, pcs))
            continue
        if pcs is None and not any(e.pitch is not None and start <= e.onset < end for e in events):
            continue  # nothing sounds before the first chord: the keys wait too
        out += harmonise_from_melody(events, start, end, pcs, hold_limit)
        filled += end - start - (min(BEATS_PER_BAR, end - start) if pcs is not None else 0)
    merged = out[:1]
    for seg in out[1:]:  # a restated chord is held, not struck again
        if sorted(seg[2]) == sorted(merged[-1][2]) and seg[0] <= merged[-1][1]:
            merged[-1] = (merged[-1][0], seg[1], merged[-1][2])
        else:
            merged.append(seg)
    return merged or [(0.0, length, [0, 4, 7])], filled
