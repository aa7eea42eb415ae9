import numpy as np
import pytest

from helpers import midi_bytes, progression_notes
from lofi_pipeline.encode import make_windows, piece_to_events, split_by_piece
from lofi_pipeline.errors import StageError
from lofi_pipeline.midi_io import midi_bytes_to_piece
from lofi_pipeline.token_format import PAD, UNK, Vocabulary, tokens_to_events


@pytest.fixture
def piece():
    return midi_bytes_to_piece(midi_bytes(progression_notes(62, bars=4)), "p", "sha")


def test_events_say_what_sounds_how_long_and_when_next(piece):
    events = piece_to_events(piece)
    first = events[0]
    assert first.is_chord and first.sound == "c0.4.7" and first.shift == 6 and first.duration == 12
    assert events[1].sound.startswith("c")  # the bass chord still sounds under the melody's 8th
    assert all(e.onset == sum(x.shift for x in events[:i]) for i, e in enumerate(events))


def test_encode_then_decode_gives_back_the_events(piece):
    events = piece_to_events(piece)
    vocab = Vocabulary.build([[e.token for e in events]], min_count=1)
    ids = vocab.encode([e.token for e in events])
    assert tokens_to_events(vocab.decode(ids)) == events


def test_rare_events_fold_into_unknown_and_vocab_round_trips(tmp_path, piece):
    tokens = [e.token for e in piece_to_events(piece)]
    vocab = Vocabulary.build([tokens], min_count=2)
    ids = vocab.encode(tokens + ["n61_d3_s3_v2"])
    assert ids[-1] == UNK and (ids == UNK).sum() >= 1
    vocab.save(tmp_path / "v.json")
    loaded = Vocabulary.load(tmp_path / "v.json")
    assert loaded.tokens == vocab.tokens and loaded.fingerprint() == vocab.fingerprint()


def test_windows_are_left_padded_so_every_event_is_a_target():
    x, y = make_windows([np.array([5, 6, 7], np.int32)], window=4)
    assert y.tolist() == [5, 6, 7]
    assert x.tolist() == [[PAD] * 4, [PAD, PAD, PAD, 5], [PAD, PAD, 5, 6]]
    x2, y2 = make_windows([np.arange(2, 12, dtype=np.int32)], window=3, stride=4)
    assert y2.tolist() == [2, 6, 10]


def test_split_is_by_piece_seeded_and_never_empty():
    keys = [f"piece{i}" for i in range(20)]
    val = split_by_piece(keys, 0.25, seed=7)
    assert len(val) == 5 and val == split_by_piece(keys, 0.25, seed=7)
    assert val != split_by_piece(keys, 0.25, seed=8)
    with pytest.raises(StageError, match="at least 2"):
        split_by_piece(["only"], 0.2, 1)


def test_no_piece_lands_in_both_splits(trained):
    import json
    cfg, runner = trained
    meta = json.loads((runner.artifact_dir("encode") / "pieces.json").read_text())["pieces"]
    splits = {}
    for m in meta:
        splits.setdefault(m["sha256"], set()).add(m["split"])
    assert all(len(s) == 1 for s in splits.values())
    assert {"train", "val"} == {s for v in splits.values() for s in v}
