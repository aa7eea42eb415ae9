"""The token format: closed fields, encode-then-decode and save-then-load give back what went in."""
import numpy as np
import pytest

from helpers import performed_song
from lofi_pipeline.core.errors import StageError
from lofi_pipeline.music.bars import metre_segments
from lofi_pipeline.music.midi_io import key_profiles, read_midi
from lofi_pipeline.music.performance import analyse
from lofi_pipeline.music.piece import ChordChange, NoteEvent, Piece
from lofi_pipeline.music.token_format import (
    FIELDS,
    MAX_ADVANCE,
    NONE,
    UNK,
    Event,
    Vocabulary,
    bar_ticks,
    normalise_metre,
    piece_to_events,
    tokens_to_events,
)

BINS = 4  # velocity levels these tests encode with


@pytest.fixture(scope="module")
def pieces_events():
    pieces = [analyse(read_midi(performed_song(seed=s, one_track=s == 1, triplets=s == 2).data), "p", "sha",
                      key_profiles()) for s in range(3)]
    return [piece_to_events(p, BINS) for p in pieces]


@pytest.fixture(scope="module")
def events(pieces_events):
    return [e for ev in pieces_events for e in ev]


def test_every_real_event_is_representable(events):
    ids = Vocabulary.closed(4).encode_events(events)
    assert ids.shape == (len(events), len(FIELDS)) and not (ids == UNK).any()


def test_encode_then_decode_gives_back_the_events(pieces_events):
    vocab = Vocabulary.closed(4)
    for events in pieces_events:
        assert vocab.decode_events(vocab.encode_events(events)) == (events, 0)


def test_save_then_load_gives_the_same_vocabulary(tmp_path):
    vocab = Vocabulary.closed(6, {"window": 16})
    vocab.save(tmp_path / "v.json")
    loaded = Vocabulary.load(tmp_path / "v.json")
    assert loaded.fields == vocab.fields and loaded.config == vocab.config
    assert loaded.fingerprint() == vocab.fingerprint() and loaded.sizes == vocab.sizes


def test_a_vocabulary_of_another_format_or_damaged_is_refused(tmp_path):
    import json
    data = Vocabulary.closed(4).to_json()
    for change, message in (({"version": "1"}, "version 1"), ({"fingerprint": "0" * 16}, "damaged")):
        (tmp_path / "v.json").write_text(json.dumps({**data, **change}))
        with pytest.raises(StageError, match=message):
            Vocabulary.load(tmp_path / "v.json")


def test_values_outside_a_field_fold_to_that_fields_unknown_and_are_dropped_on_decode():
    vocab = Vocabulary.closed(4)
    ids = vocab.encode([("4/4", "0", "0", "0", "maj", "60", "12", "2"),
                        ("4/4", str(MAX_ADVANCE + 1), "12", NONE, NONE, "61", "6", "9")])
    assert ids[0].tolist().count(UNK) == 0 and ids[1, 1] == UNK and ids[1, 7] == UNK
    events, dropped = vocab.decode_events(ids)
    assert dropped == 1 and events[0].pitches == (60, 64, 67, 60)


def test_rows_whose_fields_do_not_fit_together_are_dropped():
    events, dropped = tokens_to_events([
        ("4/4", "0", "0", "0", NONE, NONE, NONE, "1"),    # a root without a quality
        ("4/4", "0", "6", NONE, NONE, "60", NONE, "1"),   # a pitch without a duration
        ("3/4", "0", "40", NONE, NONE, "60", "6", "1"),  # past the end of a 3/4 bar
        ("4/4", "0", "18", NONE, NONE, NONE, NONE, "1"),
        ("4/4", "0", "12", NONE, NONE, "62", "6", "1"),  # not after the event before it
        ("4/4", "1", "12", NONE, NONE, "64", "6", "1")])
    assert dropped == 4 and [(e.onset, e.bar, e.label) for e in events] == [(18, 0, "rest"), (60, 1, "n64/6")]


def test_metres_normalise_and_bars_follow_them():
    assert normalise_metre(4, 4) == ("4/4", 1) and normalise_metre(2, 4) == ("4/4", 2)
    assert normalise_metre(1, 4) == ("4/4", 4) and normalise_metre(3, 8) == ("6/8", 2)
    assert normalise_metre(2, 2) == ("4/4", 1) and normalise_metre(6, 8) == ("6/8", 1)
    assert normalise_metre(12, 16) == ("6/8", 1) and normalise_metre(0, 4) == ("4/4", 1)
    assert [bar_ticks(m) for m in ("4/4", "3/4", "6/8", "7/8", "12/8")] == [48, 36, 36, 42, 72]
    rows = [("3/4", "0", "0", NONE, NONE, "60", "12", "1"), ("3/4", "1", "24", NONE, NONE, "62", "12", "1"),
            ("4/4", "2", "6", NONE, NONE, "64", "12", "1")]  # a meter change: the skipped bar is still 3/4
    events, _ = tokens_to_events(rows)
    assert [e.onset for e in events] == [0, 36 + 24, 36 * 3 + 6]


def test_event_views():
    e = Event(0, 0, 6, root=9, quality="m7", pitch=76, duration=6, velocity=2)
    assert e.chord_pcs == [0, 4, 7, 9] and e.label == "Am7 n76/6" and e.is_chord and e.beat_tick == 6
    assert np.array_equal(Vocabulary.closed(4).value_table("position")[2:5], [0, 1, 2])


def metred_events(**options):
    from helpers import metred_song
    piece = analyse(read_midi(metred_song(**options)), "m", "sha", key_profiles())
    return piece, piece_to_events(piece, BINS)


@pytest.mark.parametrize("options, bar, melody_positions", [
    ({}, 48, {0, 6, 12, 18, 24, 30, 36, 42}),                          # 4/4, straight 8ths
    ({"swing": True}, 48, {0, 8, 12, 20, 24, 32, 36, 44}),            # 4/4, swung 8ths on the triplet grid
    ({"numerator": 3}, 36, {0, 6, 12, 18, 24, 30}),                    # 3/4
    ({"numerator": 6, "denominator": 8}, 36, {0, 6, 12, 18, 24, 30}),  # 6/8: six 8ths a bar
    ({"pickup_beats": 1}, 48, {0, 6, 12, 18, 24, 30, 36, 42}),        # a pickup: the bar lines move to the music
])
def test_a_performed_metre_round_trips_to_its_positions(options, bar, melody_positions):
    piece, events = metred_events(**options)
    vocab = Vocabulary.closed(4)
    assert vocab.decode_events(vocab.encode_events(events)) == (events, 0)
    assert {bar_ticks(e.metre) for e in events} == {bar}
    chords = [e for e in events if e.is_chord]
    assert len(chords) >= 6 and all(e.position == 0 for e in chords)  # each chord on its bar line
    assert [e.bar for e in chords] == sorted({e.bar for e in chords})
    in_bars = {e.position for e in events if e.pitch is not None and e.bar >= chords[0].bar}
    assert in_bars == melody_positions


def test_a_meter_change_keeps_every_bar_in_its_own_metre():
    piece, events = metred_events(bars=6, changes_to=(3, 4))
    assert [m for _, m in piece.metre] == ["4/4", "3/4"]
    chords = [e for e in events if e.is_chord]
    assert [e.metre for e in chords] == ["4/4"] * 3 + ["3/4"] * 3 and all(e.position == 0 for e in chords)
    assert [e.onset for e in chords] == [0, 48, 96, 144, 180, 216]


def test_a_meter_change_in_a_bar_without_events_round_trips_through_a_rest_there():
    piece = Piece("x", "x", metre=[[0, "4/4"], [240, "3/4"]],
                  melody=[NoteEvent(t, 6, 60) for t in (0, 192, 240 + 36 + 6)])
    events = piece_to_events(piece, BINS)
    assert [(e.onset, e.metre, e.label) for e in events if e.label == "rest"] == [(240, "3/4", "rest")]
    vocab = Vocabulary.closed(4)
    assert vocab.decode_events(vocab.encode_events(events)) == (events, 0)


def test_an_odd_short_bar_keeps_the_bar_lines_after_it_true():
    # 4/4 with one 2/4 bar (read as 4/4): the bar lines after it are the file's, not half a bar off
    segments = metre_segments([(0, 4, 4), (192, 2, 4), (216, 4, 4)], [], [], 0)
    assert segments == [[0, "4/4"], [216, "4/4"]]
    onsets = (0, 144, 216, 264)
    chords = [ChordChange(t, r, "maj") for t, r in zip(onsets, (0, 5, 7, 0))]
    melody = [NoteEvent(t, 6, 60) for t in onsets]
    events = piece_to_events(Piece("x", "x", metre=segments, chords=chords, melody=melody), BINS)
    assert [(e.bar, e.position) for e in events] == [(0, 0), (3, 0), (5, 0), (6, 0)]
    back, dropped = tokens_to_events([e.tokens for e in events])
    assert dropped == 0 and [e.onset for e in back] == [0, 144, 240, 288]  # the short bar is read whole
