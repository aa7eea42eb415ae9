"""The rates a listener hears, on sequences whose rates are known."""
import pytest

from helpers import timed_events
from lofi_pipeline.music.checks import data_ranges
from lofi_pipeline.music.rates import RATES, outside, rates, rest_share


def melody_over_chords():
    """Two 4/4 bars: a C chord with a note on each beat (C C E G), then an Am7 with two half notes."""
    return timed_events([(12, 0, "maj", 60, 12), (12, None, None, 60, 12), (12, None, None, 64, 12),
                         (12, None, None, 67, 12), (24, 9, "m7", 69, 24), (24, None, None, 67, 24)])


def test_rates_count_notes_pitches_chords_steps_and_rests():
    r = rates(melody_over_chords(), velocity_bins=4)
    assert set(r) == set(RATES)
    assert r["melody_notes_per_bar"] == 3.0 and r["melody_pitches_per_bar"] == 2.5  # {60, 64, 67}, {69, 67}
    assert r["chord_changes_per_bar"] == 1.0 and r["extended_chord_share"] == 0.5
    assert r["melody_repeat_share"] == pytest.approx(1 / 5)
    assert r["melody_mean_interval"] == pytest.approx((0 + 4 + 3 + 2 + 2) / 5)
    assert r["melody_top_pitch_class_share"] == pytest.approx(2 / 6)  # C twice, G twice: the first counted
    assert r["melody_rest_share"] == 0.0
    assert r["top_velocity_share"] == 0.0 and r["mean_velocity_level"] == 2.0  # timed_events plays level 2


def test_a_rate_the_music_lacks_is_none_and_not_judged():
    chords = timed_events([(48, 0, "maj", None, 0), (48, 7, "7", None, 0)])
    r = rates(chords, 4)
    assert r["melody_notes_per_bar"] == 0.0 and r["melody_mean_interval"] is None and r["melody_rest_share"] is None
    ranges = data_ranges([rates(p, 4) for p in [melody_over_chords()] * 3], 0.0)
    assert ranges["melody_notes_per_bar"] == [3.0, 3.0]
    # the chords alone change and extend as the data does; only the melody's absence is outside
    assert outside(r, ranges) == ["melody_notes_per_bar", "melody_pitches_per_bar"]



def test_rests_are_the_beats_of_a_stretch_where_no_note_sounds():
    """A note struck before the stretch counts for the beats it sounds in it; a part of a beat, for the beat."""
    notes = [e for e in timed_events([(24, None, None, 60, 6), (36, None, None, 62, 36), (12, None, None, 64, 30)])
             if e.pitch is not None]  # beat 0 (half of it), beats 2-4, beats 5-7 (two and a half)
    assert [(e.onset, e.duration) for e in notes] == [(0, 6), (24, 36), (60, 30)]
    assert rest_share(notes, 0, 48) == pytest.approx(1 / 4)  # beat 1
    assert rest_share(notes, 48, 96) == pytest.approx(0.0)  # beat 4 from the note before, 5-7 its own
    assert rest_share(notes, 96, 144) == 1.0
