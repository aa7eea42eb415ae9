"""How real generated music looks, as the field measures it: a classifier two-sample test
(after Lopez-Paz & Oquab 2017; features in the spirit of Yang & Lerch's MGEval). Generated
tracks and held-out real pieces are cut into two-bar segments; each segment is described by a
few simple features (where its onsets fall in the bar and in the beat, how many chords and
onsets it has, its chord families and root motion, its melody's intervals and range); a random
forest is trained to tell the two apart, and its cross-validated accuracy on balanced classes
is the figure: 50 % means it cannot, 100 % that every segment gives itself away. Segments that
are exact copies of one before them (a loop played again, unvaried) count once, on either side:
a copy tells the classifier nothing new; and the folds keep each track or piece whole. The
features that separate them most are named
(permutation importance on the held-out folds, ties broken by the forest's impurity decrease).
"""
from __future__ import annotations

import numpy as np

from .chords import FAMILIES
from .token_format import Event, bar_ticks

SEGMENT_BARS = 2
FOLDS = 5
PERMUTATIONS = 5  # shuffles of each feature for its permutation importance
POSITION_BINS = 16  # 16ths of a bar
BEAT_TICKS = (0, 3, 4, 6, 8, 9)  # the usual places in a beat; the rest count together
FAMILY_NAMES = sorted(set(FAMILIES.values()))
MOTIONS = {"repeat": {0}, "fourth/fifth": {5, 7}, "step": {1, 2, 10, 11}, "third": {3, 4, 8, 9}, "tritone": {6}}
INTERVALS = ((0, 0), (1, 2), (3, 4), (5, 7), (8, 127))
FEATURES = ([f"onsets at {k}/16 of the bar" for k in range(POSITION_BINS)]
            + [f"onsets {t} ticks into a beat" for t in BEAT_TICKS] + ["onsets elsewhere in a beat"]
            + ["chords per bar", "onsets per beat"] + [f"{f} chords" for f in FAMILY_NAMES]
            + [f"root motion: {m}" for m in MOTIONS]
            + [f"melody steps of {lo}-{hi} semitones" for lo, hi in INTERVALS]
            + ["melody notes per beat", "melody range (semitones)"])


def segments(events: list[Event], bars: int = SEGMENT_BARS) -> list[list[Event]]:
    """Consecutive `bars`-bar stretches of a sequence that hold at least two onsets."""
    if not events:
        return []
    out = []
    for first in range(0, events[-1].bar + 1, bars):
        segment = [e for e in events if first <= e.bar < first + bars and (e.is_chord or e.pitch is not None)]
        if len(segment) >= 2:
            out.append(segment)
    return out


def _shares(values: list, bins: int) -> np.ndarray:
    counts = np.bincount(np.asarray(values, np.int64), minlength=bins)[:bins].astype(float)
    return counts / counts.sum() if counts.sum() else counts


def features(segment: list[Event], bars: int = SEGMENT_BARS) -> np.ndarray:
    """The FEATURES of one segment of `bars` bars, as a vector."""
    bar = bar_ticks(segment[0].metre)
    beats = bars * bar / 12
    positions = _shares([e.position * POSITION_BINS // bar for e in segment], POSITION_BINS)
    in_beat = [BEAT_TICKS.index(e.beat_tick) if e.beat_tick in BEAT_TICKS else len(BEAT_TICKS) for e in segment]
    chords = [e for e in segment if e.is_chord]
    families = _shares([FAMILY_NAMES.index(FAMILIES[c.quality]) for c in chords], len(FAMILY_NAMES))
    steps = [(b.root - a.root) % 12 for a, b in zip(chords, chords[1:])]
    motions = _shares([next(i for i, s in enumerate(MOTIONS.values()) if d in s) for d in steps], len(MOTIONS))
    melody = [e.pitch for e in segment if e.pitch is not None]
    leaps = [abs(b - a) for a, b in zip(melody, melody[1:])]
    intervals = _shares([next(i for i, (lo, hi) in enumerate(INTERVALS) if lo <= d <= hi) for d in leaps],
                        len(INTERVALS))
    return np.concatenate([positions, _shares(in_beat, len(BEAT_TICKS) + 1),
                           [len(chords) / bars, len(segment) / beats], families, motions, intervals,
                           [len(melody) / beats, (max(melody) - min(melody)) if melody else 0.0]])


def _distinct(side: list, cut=segments, describe=features, width: int = len(FEATURES)) -> tuple[np.ndarray,
                                                                                               np.ndarray]:
    """The segments' feature vectors of one side, each exact repeat of one before it left out,
    with the sequence each came from."""
    seen, out, groups = set(), [], []
    for g, sequence in enumerate(side):
        for segment in cut(sequence):
            v = describe(segment)
            if v.tobytes() not in seen:
                seen.add(v.tobytes())
                out.append(v)
                groups.append(g)
    return np.array(out).reshape(-1, width), np.array(groups, np.int64)


def drum_realism(generated: list[list], real: list[list], seeds: tuple[int, ...] = (0, 1, 2), top: int = 3) -> dict:
    """The same test on drum parts (lists of drum_format.DrumBar): two-bar drum segments, the
    features of music/drum_stats.py."""
    from . import drum_stats
    cut = drum_stats.segments
    fake = _distinct(generated, cut, drum_stats.features, len(drum_stats.FEATURES))
    true = _distinct(real, cut, drum_stats.features, len(drum_stats.FEATURES))
    return two_sample(fake, true, len(generated), drum_stats.FEATURES, seeds, top)


def realism(generated: list[list[Event]], real: list[list[Event]], seeds: tuple[int, ...] = (0, 1, 2),
            top: int = 3) -> dict:
    """The classifier two-sample test of generated against real sequences: cross-validated
    balanced accuracy on as many distinct segments of each, its mean and spread over every fold of
    every seed (each seed draws its own balanced sample, folds and forest), the sample sizes, and
    the `top` features that separate them most.

    The folds keep each sequence whole (grouped by track or piece): segments of one track share
    its loops, and a forest tested on a track it was trained on would recognise the track, not
    tell generated music from real."""
    return two_sample(_distinct(generated), _distinct(real), len(generated), FEATURES, seeds, top)


def balanced_accuracy(y: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """The mean of the two classes' recalls, for each row of `predicted` (labels 0 and 1, both in
    `y`)."""
    return ((predicted[..., y == 1] == 1).mean(-1) + (predicted[..., y == 0] == 0).mean(-1)) / 2


def permutation_importance(forest, x: np.ndarray, y: np.ndarray, repeats: int,
                           rng: np.random.Generator) -> tuple[float, np.ndarray]:
    """The forest's balanced accuracy on (x, y), and how much it drops, per feature, with that
    feature's column shuffled (the mean over `repeats` shuffles): sklearn's
    permutation_importance, but with every shuffled copy predicted in one call. One call per
    feature and shuffle (about 26,000 on the quick test) was 98 % of `lofi evaluate`'s figures."""
    base = float(balanced_accuracy(y, forest.predict(x)))
    copies = np.repeat(x[None], x.shape[1] * repeats, axis=0)
    for k, feature in enumerate(np.repeat(np.arange(x.shape[1]), repeats)):
        copies[k, :, feature] = x[rng.permutation(len(x)), feature]
    predicted = forest.predict(copies.reshape(-1, x.shape[1])).reshape(x.shape[1], repeats, len(x))
    return base, base - balanced_accuracy(y, predicted).mean(axis=1)


def two_sample(fake_side: tuple, true_side: tuple, n_generated: int, names: list[str], seeds: tuple[int, ...],
               top: int) -> dict:
    """The test on feature vectors and groups of each side (the generated sequences numbered
    first, `n_generated` of them)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import StratifiedGroupKFold
    (fake, fake_groups), (true, true_groups) = fake_side, true_side
    n = min(len(fake), len(true))
    folds = min(FOLDS, len(set(fake_groups.tolist())), len(set(true_groups.tolist())))
    result = {"generated_segments": int(len(fake)), "real_segments": int(len(true)), "per_class": int(n),
              "folds": int(folds), "accuracy": None, "spread": None, "per_seed": [], "separating": []}
    if n < 2 * FOLDS or folds < 2:
        return result
    accuracies, importance, impurity = [], np.zeros(len(names)), np.zeros(len(names))
    for seed in seeds:
        rng = np.random.default_rng(seed)
        pick_fake, pick_true = rng.choice(len(fake), n, replace=False), rng.choice(len(true), n, replace=False)
        x = np.vstack([fake[pick_fake], true[pick_true]])
        y = np.array([1] * n + [0] * n)
        groups = np.concatenate([fake_groups[pick_fake], n_generated + true_groups[pick_true]])
        mine = []
        for train, test in StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(x, y, groups):
            if len(set(y[test].tolist())) < 2:  # a fold with one side only says nothing of telling them apart
                continue
            forest = RandomForestClassifier(200, min_samples_leaf=2, random_state=seed, n_jobs=1).fit(x[train],
                                                                                                     y[train])
            accuracy, drops = permutation_importance(forest, x[test], y[test], PERMUTATIONS, rng)
            mine.append(accuracy)
            importance += drops
            impurity += forest.feature_importances_
        accuracies += mine
        result["per_seed"].append(round(float(np.mean(mine)), 4) if mine else None)
    if not accuracies:
        return result
    # Where several features each separate the classes alone, shuffling one costs nothing and
    # their permutation importances tie (at 0 when the separation is perfect): the forest's own
    # use of them (impurity decrease) breaks the tie.
    order = np.lexsort((-impurity, -np.round(importance, 6)))[:top]
    result.update(accuracy=round(float(np.mean(accuracies)), 4), spread=round(float(np.std(accuracies)), 4),
                  separating=[(names[i], round(float(importance[i] / len(accuracies)), 4)) for i in order])
    return result
