from dataclasses import replace

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from helpers import timed_events
from lofi_pipeline.music.realism import FEATURES, features, permutation_importance, realism, segments

PROGRESSIONS = ((0, "maj7"), (9, "m7"), (2, "m7"), (7, "7"), (5, "maj7"), (4, "m7"))


def sequences(count: int, seed: int, step_ticks=(12, 24), bars: int = 8) -> list:
    """`count` random piano parts of `bars` 4/4 bars: melody notes `step_ticks` apart, a new
    chord with the note now and then when it falls on a bar line or the bar's middle."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        rows, onset = [], 0
        while onset < bars * 48:
            root, quality = None, None
            if onset % 24 == 0 and rng.random() < 0.5:
                root, quality = PROGRESSIONS[rng.integers(len(PROGRESSIONS))]
            step = int(rng.choice(step_ticks))
            rows.append((step, root, quality, int(rng.integers(60, 76)), min(step, 12)))
            onset += step
        out.append(timed_events(rows))
    return out


def test_two_samples_of_the_same_music_cannot_be_told_apart():
    result = realism(sequences(20, seed=1), sequences(20, seed=2), seeds=(0, 1))
    assert result["per_class"] >= 40
    assert 0.3 <= result["accuracy"] <= 0.7
    # the spread is over every fold of every seed; each seed draws its own sample and folds
    assert len(result["per_seed"]) == 2 and result["per_seed"][0] != result["per_seed"][1]
    assert min(result["per_seed"]) - 1e-9 <= result["accuracy"] <= max(result["per_seed"]) + 1e-9


def test_music_off_the_beat_gives_itself_away_by_where_its_onsets_fall():
    off_beat = sequences(20, seed=3, step_ticks=(11, 13, 23, 25))  # as dense, drifting off the beat
    result = realism(off_beat, sequences(20, seed=4), seeds=(0,))
    assert result["accuracy"] >= 0.95
    assert all(name.startswith("onsets") for name, _ in result["separating"]), result["separating"]


def test_a_loop_played_again_unvaried_counts_once():
    loop = sequences(1, seed=5, bars=2)[0]
    played = [replace(e, bar=e.bar + 2 * copy, onset=e.onset + 96 * copy) for copy in range(6) for e in loop]
    assert len(segments(played)) == 6  # the same two bars, six times over
    result = realism([played], sequences(20, seed=6), seeds=(0,))
    assert result["generated_segments"] == 1
    assert result["accuracy"] is None  # too few distinct segments to fold: no figure, not a made-up one


def test_every_feature_is_named_and_a_segment_is_two_bars_of_sound():
    events = sequences(1, seed=7, bars=5)[0]
    assert [len({e.bar // 2 for e in s}) for s in segments(events)] == [1, 1, 1]
    assert all(len(features(s)) == len(FEATURES) for s in segments(events))


def test_a_tracks_varied_repeats_are_not_told_apart_by_recognising_the_track():
    """Generated tracks that each loop two bars of the real music's kind, one melody note varied
    on every pass: the segments are distinct, but a fold that saw one pass of a loop would know
    the others. The folds keep a track whole, so the figure stays near chance."""
    def looped(loop, passes):
        out = []
        for k in range(passes):
            moved = [replace(e, bar=e.bar + 2 * k, onset=e.onset + 96 * k) for e in loop]
            i = next(j for j, e in enumerate(moved) if e.pitch is not None)
            moved[i] = replace(moved[i], pitch=moved[i].pitch + k % 5 - 2)  # the varied note
            out += moved
        return out
    loops = [[e for e in s if e.bar < 2] for s in sequences(16, seed=8)]
    result = realism([looped(loop, 6) for loop in loops], sequences(24, seed=9), seeds=(0, 1))
    assert result["generated_segments"] >= 40 and result["folds"] == 5
    assert result["accuracy"] <= 0.7, result


def test_the_batched_permutation_importance_agrees_with_sklearns():
    """One feature that separates the classes, one that half does, one of noise: the importances
    (and the accuracy) are sklearn's, within the shuffles' noise."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.inspection import permutation_importance as sklearns
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 120)
    x = np.column_stack([y + rng.normal(0, 0.3, len(y)), y * rng.integers(0, 2, len(y)) + rng.normal(0, 0.3, len(y)),
                         rng.normal(0, 1, len(y))])
    train = rng.permutation(len(y))[:160]
    test = np.setdiff1d(np.arange(len(y)), train)
    forest = RandomForestClassifier(50, min_samples_leaf=2, random_state=0).fit(x[train], y[train])
    accuracy, drops = permutation_importance(forest, x[test], y[test], 40, np.random.default_rng(1))
    theirs = sklearns(forest, x[test], y[test], n_repeats=40, random_state=1, scoring="balanced_accuracy")
    assert abs(accuracy - balanced_accuracy_score(y[test], forest.predict(x[test]))) < 1e-12
    assert np.allclose(drops, theirs.importances_mean, atol=0.03), (drops, theirs.importances_mean)
    assert drops[0] > drops[1] > abs(drops[2])
