import pytest

from lofi_pipeline.music.checks import CHECKS, data_ranges, failures, figures
from lofi_pipeline.music.harmony import MAX_HOLD_BARS, harmony_changes, hold_limit_ticks
from lofi_pipeline.music.token_format import Event

GRID = 12
BAR = 4 * GRID


def stream(rows):
    """Events from (shift, root, quality, pitch, duration) rows, onsets summed from the shifts."""
    events, onset = [], 0
    for shift, root, quality, pitch, duration in rows:
        events.append(Event(onset, shift, root, quality, pitch, duration, 2))
        onset += shift
    return events


def test_figures_of_a_known_stream():
    # Bar 1: C under four quarter notes. Bar 2: G under six 8ths, then a note 2 ticks long
    # (under a 16th) and one of 10.
    rows = [(12, 0, "maj", 60, 12), (12, None, None, 62, 12), (12, None, None, 64, 12), (12, None, None, 65, 12),
            (6, 7, "maj", 67, 6)] + [(6, None, None, 68 + i, 6) for i in range(5)] + [
            (2, None, None, 79, 2), (10, None, None, 72, 10)]
    f = figures(stream(rows), GRID)
    assert f["longest_harmony_bars"] == pytest.approx(1.0)
    assert f["harmony_changes_per_bar"] == pytest.approx(1.0)
    assert f["onsets_per_beat"] == pytest.approx(12 / 8)
    assert f["short_gap_share"] == pytest.approx(1 / 11)
    assert f["melody_pitch_variety"] == 11 and f["melody_range"] == 79 - 60


def test_a_restated_chord_is_not_a_change_and_a_held_chord_is_measured_to_the_end():
    rows = [(BAR, 0, "maj", None, 0), (BAR, 0, "maj", None, 0), (BAR, 5, "maj", None, 0)] + \
        [(BAR, None, None, 72, 12)] * 5
    events = stream(rows)
    assert [e.onset for e in harmony_changes(events)] == [0, 2 * BAR]
    assert figures(events, GRID)["longest_harmony_bars"] == 6.0


def test_one_event_repeated_fails_against_moving_music():
    moving = [stream([(6, (i * 5) % 12, "maj", 60 + (i * 7) % 12, 6) if i % 4 == 0 else
                      (6, None, None, 60 + (i * 7) % 12, 6) for i in range(64)]) for _ in range(3)]
    ranges = data_ranges([figures(p, GRID) for p in moving], 0.05)
    assert set(ranges) == set(CHECKS)
    stuck = stream([(1, None, None, 60, 1)] * 400)
    failed = {f.check for f in failures(figures(stuck, GRID), ranges)}
    assert {"short_gap_share", "melody_pitch_variety", "harmony_changes_per_bar"} <= failed
    assert failures(figures(moving[0], GRID), ranges) == []


def test_no_take_may_hold_a_harmony_past_the_cap_even_if_the_data_does():
    ranges = {"longest_harmony_bars": [1.0, 40.0]}
    held = stream([(BAR, 0, "maj", None, 0)] + [(BAR, None, None, 72, 12)] * 11)
    (failure,) = failures(figures(held, GRID), ranges)
    assert failure.check == "longest_harmony_bars" and failure.high == MAX_HOLD_BARS
    assert "longest unchanged harmony (bars) 12.00" in str(failure)
    assert hold_limit_ticks(ranges["longest_harmony_bars"][1], GRID) == MAX_HOLD_BARS * BAR
    assert hold_limit_ticks(0.3, GRID) == BAR  # at least a bar
    assert hold_limit_ticks(None, GRID) == MAX_HOLD_BARS * BAR  # the data says nothing
