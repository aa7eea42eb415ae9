import numpy as np
import pytest

from lofi_pipeline.music.statistics import (
    copied_share,
    empty_beat_rate,
    groove_consistency,
    histogram_distance,
    longest_copied_run,
    ngrams,
    pitch_class_entropy,
    polyphony,
    scale_consistency,
)
from lofi_pipeline.music.token_format import Event


def at(onset, shift, root=None, quality=None, pitch=None, duration=0):
    """An event at `onset` in 4/4 bars, `shift` ticks before the next."""
    return Event(onset, onset // 48, onset % 48, root=root, quality=quality, pitch=pitch, duration=duration,
                 velocity=2, shift=shift)


def notes(pitches, step=12, dur=12):
    return [at(i * step, step, pitch=p, duration=dur) for i, p in enumerate(pitches)]


def test_pitch_statistics_follow_their_definitions():
    assert pitch_class_entropy(notes(range(60, 72))) == pytest.approx(np.log2(12))
    assert pitch_class_entropy(notes([60] * 8)) == 0.0
    assert scale_consistency(notes([60, 62, 64, 65, 67, 69, 71])) == 1.0
    assert scale_consistency(notes([60, 61, 62, 63])) == pytest.approx(0.75)
    assert polyphony([at(0, 12, 0, "maj")]) == 3.0
    assert polyphony([at(0, 12, 0, "maj", 72, 12)]) == 4.0  # a melody note over the chord


def test_rhythm_statistics_follow_their_definitions():
    bar = [0, 12, 24, 36]
    two_same_bars = [at(t, 6, pitch=60, duration=6) for t in bar + [48 + t for t in bar]]
    assert groove_consistency(two_same_bars, 12) == 1.0
    shifted = [at(t, 6, pitch=60, duration=6) for t in bar + [48 + 6 + t for t in bar]]
    assert groove_consistency(shifted, 12) == pytest.approx(1 - 8 / 48)
    assert empty_beat_rate(notes([60, 62], step=24), 12) == pytest.approx(1 / 3)


def test_originality_measures_copied_runs():
    training = [[5, 6, 7, 8, 9, 10], [1, 2, 3]]
    assert longest_copied_run([[0, 6, 7, 8, 0]], training) == 3
    assert longest_copied_run([[4, 4], [1, 2, 3, 4]], training) == 3
    assert longest_copied_run([[11, 12]], training) == 0
    assert copied_share([5, 6, 7, 9], ngrams(training, 2), n=2) == pytest.approx(2 / 3)
    assert histogram_distance([0.5, 0.5], [1.0, 0.0]) == 0.5
