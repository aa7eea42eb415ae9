"""Music statistics of event sequences, after MusPy and Yang & Lerch (2018).

Generated tracks are judged by how close their values come to held-out (dev) pieces',
not by size. Originality compares generated runs of events with the training pieces.
"""
from __future__ import annotations

import numpy as np

from .token_format import Event

MAJOR_SCALE = [0, 2, 4, 5, 7, 9, 11]
MINOR_SCALE = [0, 2, 3, 5, 7, 8, 10]
# Melody-note durations are counted in these bins (beats): up to a 16th, an 8th triplet, ...
DURATION_BINS_BEATS = [0.25, 1 / 3, 0.5, 2 / 3, 0.75, 1, 1.5, 2, 3, 4]


def pitch_classes(events: list[Event]) -> list[int]:
    return [p % 12 for e in events for p in e.pitches]


def pitch_class_histogram(events: list[Event]) -> np.ndarray:
    h = np.bincount(pitch_classes(events), minlength=12).astype(float)
    return h / h.sum() if h.sum() else h


def pitch_class_entropy(events: list[Event]) -> float:
    h = pitch_class_histogram(events)
    h = h[h > 0]
    return float(-(h * np.log2(h)).sum())


def scale_consistency(events: list[Event]) -> float:
    """Share of notes in the best-fitting of the 24 major and minor scales."""
    pcs = np.array(pitch_classes(events))
    if not len(pcs):
        return 0.0
    best = 0.0
    for tonic in range(12):
        for scale in (MAJOR_SCALE, MINOR_SCALE):
            best = max(best, float(np.isin(pcs, [(tonic + s) % 12 for s in scale]).mean()))
    return best


def _roll(events: list[Event]) -> np.ndarray:
    """Sounding pitches per tick: a chord holds until the next chord, a melody note for its duration."""
    end = max((e.onset + max(e.duration, e.shift) for e in events), default=0)
    roll = np.zeros(end, np.int32)
    chords = [e for e in events if e.is_chord]
    for a, b in zip(chords, chords[1:] + [None]):
        roll[a.onset:b.onset if b else a.onset + a.shift] += len(a.chord_pcs)
    for e in events:
        if e.pitch is not None:
            roll[e.onset:e.onset + e.duration] += 1
    return roll


def polyphony(events: list[Event]) -> float:
    """Mean number of sounding pitches over the time steps where anything sounds."""
    roll = _roll(events)
    active = roll[roll > 0]
    return float(active.mean()) if len(active) else 0.0


def empty_beat_rate(events: list[Event], grid: int) -> float:
    """Share of beats in which no event starts."""
    end = max((e.onset + (e.duration or e.shift) for e in events), default=0)
    beats = int(np.ceil(end / grid))
    if beats == 0:
        return 0.0
    filled = np.zeros(beats, bool)
    filled[[e.onset // grid for e in events]] = True
    return float(1 - filled.mean())


def groove_consistency(events: list[Event], grid: int, beats_per_bar: int = 4) -> float:
    """1 minus the mean Hamming distance between neighbouring bars' onset patterns."""
    bar = grid * beats_per_bar
    end = max((e.onset for e in events), default=-1) + 1
    bars = int(np.ceil(end / bar))
    if bars < 2:
        return 1.0
    patterns = np.zeros((bars, bar), bool)
    for e in events:
        patterns[e.onset // bar, e.onset % bar] = True
    return float(1 - np.mean(np.abs(patterns[1:] ^ patterns[:-1]).mean(axis=1)))


def duration_histogram(events: list[Event], grid: int) -> np.ndarray:
    """Share of melody notes per duration bin (DURATION_BINS_BEATS: each bin ends at its value)."""
    beats = np.array([e.duration / grid for e in events if e.pitch is not None])
    edges = np.concatenate([[0], np.array(DURATION_BINS_BEATS) + 1e-6])
    h = np.histogram(np.minimum(beats, DURATION_BINS_BEATS[-1]), edges)[0].astype(float)
    return h / h.sum() if h.sum() else h


def longest_copied_run(seqs: list[list[int]], training: list[list[int]]) -> int:
    """Longest run of any of `seqs` that occurs verbatim inside one training sequence."""
    def occurs(n: int) -> bool:
        grams = ngrams(training, n)
        return any(tuple(s[i:i + n]) in grams for s in seqs for i in range(len(s) - n + 1))
    lo, hi = 0, max((len(s) for s in seqs), default=0)
    while lo < hi:  # occurs(n) is monotone: a copied run of n holds copied runs of n - 1
        mid = (lo + hi + 1) // 2
        if occurs(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def copied_share(seq: list[int], training_grams: set, n: int = 16) -> float:
    runs = [tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)]
    return float(np.mean([r in training_grams for r in runs])) if runs else 0.0


def ngrams(seqs: list[list[int]], n: int) -> set:
    return {tuple(s[i:i + n]) for s in seqs for i in range(len(s) - n + 1)}


def self_repetition(rows, size: int = 16) -> float:
    """Mean share of each `size`-event block that equals the block before it, event by event."""
    rows = [tuple(r) for r in np.asarray(rows).reshape(len(rows), -1).tolist()]
    blocks = [rows[i:i + size] for i in range(0, len(rows) - size + 1, size)]
    if len(blocks) < 2:
        return 0.0
    return float(np.mean([np.mean([x == y for x, y in zip(a, b)]) for a, b in zip(blocks, blocks[1:])]))


def sequence_stats(events: list[Event], grid: int) -> dict:
    return {"pitch_class_entropy": pitch_class_entropy(events), "scale_consistency": scale_consistency(events),
            "polyphony": polyphony(events), "empty_beat_rate": empty_beat_rate(events, grid),
            "groove_consistency": groove_consistency(events, grid)}


def corpus_stats(event_lists: list[list[Event]], grid: int) -> dict:
    """Per-sequence statistics averaged, plus the pooled histograms."""
    per = [sequence_stats(ev, grid) for ev in event_lists if ev]
    out = {k: float(np.mean([p[k] for p in per])) for k in per[0]} if per else {}
    pooled = [e for ev in event_lists for e in ev]
    out["pitch_class_histogram"] = pitch_class_histogram(pooled).round(4).tolist()
    out["duration_histogram"] = duration_histogram(pooled, grid).round(4).tolist()
    return out


def histogram_distance(a: list[float], b: list[float]) -> float:
    """Total variation distance: 0 for equal histograms, 1 for disjoint ones."""
    return float(0.5 * np.abs(np.array(a) - np.array(b)).sum())


def compare(generated: list[list[tuple]], reference: list[list[tuple]], training: list[list[tuple]],
            decode, grid: int) -> dict:
    """Generated sequences (rows of ids) against reference ones, statistic by statistic, and how
    much of each was copied from the training sequences. `decode(rows)` gives events."""
    g = corpus_stats([decode(s) for s in generated], grid)
    d = corpus_stats([decode(s) for s in reference], grid)
    g["self_repetition"] = float(np.mean([self_repetition(s) for s in generated]))
    d["self_repetition"] = float(np.mean([self_repetition(s) for s in reference]))
    grams = ngrams(training, 16)
    g["longest_copied_run"] = longest_copied_run(generated, training)
    d["longest_copied_run"] = longest_copied_run(reference, training)
    g["copied_16_event_share"] = float(np.mean([copied_share(s, grams) for s in generated]))
    d["copied_16_event_share"] = float(np.mean([copied_share(s, grams) for s in reference]))
    return {"generated": g, "reference": d,
            "pitch_class_distance": histogram_distance(g["pitch_class_histogram"], d["pitch_class_histogram"]),
            "duration_distance": histogram_distance(g["duration_histogram"], d["duration_histogram"]),
            "tracks": len(generated), "reference_pieces": len(reference)}
