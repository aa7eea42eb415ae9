"""The token format: closed fields, encode-then-decode and save-then-load give back what went in."""
import numpy as np
import pytest

from helpers import performed_song
from lofi_pipeline.core.errors import StageError
from lofi_pipeline.music.midi_io import key_profiles, read_midi
from lofi_pipeline.music.performance import analyse
from lofi_pipeline.music.token_format import (
    FIELDS,
    MAX_STEPS,
    NONE,
    UNK,
    Event,
    Vocabulary,
    piece_to_events,
    tokens_to_events,
)


@pytest.fixture(scope="module")
def pieces_events():
    pieces = [analyse(read_midi(performed_song(seed=s, one_track=s == 1, triplets=s == 2).data), "p", "sha",
                      key_profiles()) for s in range(3)]
    return [piece_to_events(p) for p in pieces]


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
    ids = vocab.encode([("12", "0", "maj", "60", "12", "2"), (str(MAX_STEPS + 1), NONE, NONE, "61", "6", "9")])
    assert ids[0].tolist().count(UNK) == 0 and ids[1, 0] == UNK and ids[1, 5] == UNK
    events, dropped = vocab.decode_events(ids)
    assert dropped == 1 and events[0].pitches == (60, 64, 67, 60)


def test_rows_with_inconsistent_fields_are_dropped():
    events, dropped = tokens_to_events([("12", "0", NONE, NONE, NONE, "1"), ("6", NONE, NONE, "60", NONE, "1"),
                                        ("6", NONE, NONE, NONE, NONE, "1")])
    assert dropped == 2 and len(events) == 1 and events[0].onset == 18 and events[0].label == "rest"


def test_event_views():
    e = Event(0, 12, 9, "m7", 76, 6, 2)
    assert e.chord_pcs == [0, 4, 7, 9] and e.label == "Am7 n76/6" and e.is_chord
    assert np.array_equal(Vocabulary.closed(4).value_table("shift")[2:5], [1, 2, 3])
