import pytest

from helpers import timed_events
from lofi_pipeline.music.checks import CHECKS, data_profile, data_ranges, failures, figures, loop_repeat_share
from lofi_pipeline.music.harmony import MAX_HOLD_BARS, bar_harmonies, harmony_changes, hold_limit_ticks
from lofi_pipeline.music.rates import RATES

GRID = 12
BAR = 4 * GRID


def test_figures_of_a_known_stream():
    # Bar 1: C under four quarter notes. Bar 2: G under six 8ths, then a note 2 ticks long
    # (under a 16th) and one of 10.
    rows = [(12, 0, "maj", 60, 12), (12, None, None, 62, 12), (12, None, None, 64, 12), (12, None, None, 65, 12),
            (6, 7, "maj", 67, 6)] + [(6, None, None, 68 + i, 6) for i in range(5)] + [
            (2, None, None, 79, 2), (10, None, None, 72, 10)]
    f = figures(timed_events(rows))
    assert f["longest_harmony_bars"] == pytest.approx(1.0)
    assert f["harmony_changes_per_bar"] == pytest.approx(1.0)
    assert f["onsets_per_beat"] == pytest.approx(12 / 8)
    assert f["short_gap_share"] == pytest.approx(1 / 11)
    assert f["melody_pitch_variety"] == 11 and f["melody_range"] == 79 - 60
    # on the beat or its 8th: all but the note 2 ticks after the last 8th (at tick 38 of bar 2: 2 into a beat)
    assert f["on_grid_share"] == pytest.approx(11 / 12)
    assert f["loop_repeat_share"] is None  # two bars: none a loop after another


def test_a_restated_chord_is_not_a_change_and_a_held_chord_is_measured_to_the_end():
    rows = [(BAR, 0, "maj", None, 0), (BAR, 0, "maj", None, 0), (BAR, 5, "maj", None, 0)] + \
        [(BAR, None, None, 72, 12)] * 5
    events = timed_events(rows)
    assert [e.onset for e in harmony_changes(events)] == [0, 2 * BAR]
    assert figures(events)["longest_harmony_bars"] == 6.0


def test_bars_repeat_a_loop_later_inside_sections():
    """I vi ii V four times, then a bar that differs: at a loop of 4 bars every bar from the
    fifth repeats the one a loop before (a passing extension or a missing beat does not break
    it, another chord does); a section line in between leaves those pairs out."""
    loop = [(BAR, 0, "maj7", None, 0), (BAR, 9, "m7", None, 0), (BAR, 2, "m7", None, 0), (BAR, 7, "7", None, 0)]
    varied = [(BAR, 0, "maj", None, 0), (BAR, 9, "m", None, 0), (24, 2, "m7", None, 0), (24, 5, "maj", None, 0),
              (BAR, 4, "m", None, 0)]  # C for Cmaj7, Am for Am7, Dm7 then F (2 of 4 beats), Em for G7
    events = timed_events(loop * 3 + varied)
    assert [h[0] for h in bar_harmonies(events)][:5] == [(0, "maj"), (9, "min"), (2, "min"), (7, "dom"), (0, "maj")]
    assert loop_repeat_share(events, 4) == pytest.approx(10 / 12)  # bars 5-14; bar 15 (Dm7-F) and 16 (Em) differ
    assert loop_repeat_share(events, 2) == pytest.approx(0.0)
    assert loop_repeat_share(events, 4, [(0, 4), (4, 8), (8, 16)]) == pytest.approx(2 / 4)
    assert loop_repeat_share(events, 4, [(0, 4), (4, 8)]) is None


def test_the_profile_finds_the_grid_the_loop_and_the_ranges_of_the_pieces():
    swung = [(8, 0, "maj", 72, 8), (4, None, None, 74, 4), (8, None, None, 76, 8), (4, None, None, 74, 4)]
    loop = [(BAR, 0, "maj", None, 0), (BAR, 5, "maj", None, 0), (BAR, 7, "maj", None, 0)]
    pieces = [timed_events((swung * 2 + loop) * 4) for _ in range(6)]  # a 4-bar loop, four times
    profile = data_profile(pieces, 0.025, 4)
    assert profile.main_ticks == (0, 8) and profile.grid_ticks == (0, 8)  # swung 8ths
    assert profile.metre == "4/4" and profile.loop_bars == 4 and profile.loop_repeat_target == 1.0
    assert set(profile.ranges) == set(CHECKS) and profile.pieces_inside == 1.0
    assert set(profile.rate_ranges) == set(RATES) and profile.rate_ranges["mean_velocity_level"] == [2.0, 2.0]
    on_its_grid = timed_events([(8, 0, "maj", 72, 8), (4, None, None, 74, 4)] * 32)
    assert profile.figures(on_its_grid)["on_grid_share"] == 1.0
    straight = timed_events([(6, 0, "maj", 72, 6), (6, None, None, 74, 6)] * 32)  # straight 8ths: off a swung grid
    assert "on_grid_share" in {f.check for f in failures(profile.figures(straight), profile.ranges)}


def test_one_event_repeated_fails_against_moving_music():
    moving = [timed_events([(6, (i * 5) % 12, "maj", 60 + (i * 7) % 12, 6) if i % 4 == 0 else
                            (6, None, None, 60 + (i * 7) % 12, 6) for i in range(64)]) for _ in range(3)]
    ranges = data_ranges([figures(p) for p in moving], 0.05)
    assert set(ranges) == set(CHECKS)
    stuck = timed_events([(1, None, None, 60, 1)] * 400)
    failed = {f.check for f in failures(figures(stuck), ranges)}
    assert {"short_gap_share", "melody_pitch_variety", "harmony_changes_per_bar", "on_grid_share"} <= failed
    assert failures(figures(moving[0]), ranges) == []


def test_no_take_may_hold_a_harmony_past_the_cap_even_if_the_data_does():
    ranges = {"longest_harmony_bars": [1.0, 40.0]}
    held = timed_events([(BAR, 0, "maj", None, 0)] + [(BAR, None, None, 72, 12)] * 11)
    (failure,) = failures(figures(held), ranges)
    assert failure.check == "longest_harmony_bars" and failure.high == MAX_HOLD_BARS
    assert "longest unchanged harmony (bars) 12.00" in str(failure)
    assert hold_limit_ticks(ranges["longest_harmony_bars"][1], BAR) == MAX_HOLD_BARS * BAR
    assert hold_limit_ticks(0.3, BAR) == BAR  # at least a bar
    assert hold_limit_ticks(None, 36) == MAX_HOLD_BARS * 36  # the data says nothing: in the metre's bars
