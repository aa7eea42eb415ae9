
import numpy as np
import pytest

from helpers import performed_song
from lofi_pipeline.core.errors import StageError
from lofi_pipeline.model.training import make_windows
from lofi_pipeline.music.midi_io import key_profiles, read_midi
from lofi_pipeline.music.performance import analyse
from lofi_pipeline.music.piece import ChordChange, NoteEvent, Piece
from lofi_pipeline.music.token_format import FIELDS, MAX_STEPS, PAD, piece_to_events
from lofi_pipeline.stages.catalog import read_encoded, read_pieces
from lofi_pipeline.stages.encode import grouped_split, name_key, near_duplicate_groups

BINS = 4  # velocity levels these tests encode with


def performed_piece(name="p.mid", **options):
    return analyse(read_midi(performed_song(**options).data), name, name, key_profiles())


def test_events_are_where_the_melody_moves_or_the_chord_changes():
    events = piece_to_events(performed_piece(), BINS)
    song = performed_song()
    melody_onsets = {round(b * 12) for b, _, _ in song.melody}
    chord_onsets = {round(b * 12) for b, _, _ in song.chords}
    assert [e.onset for e in events] == sorted(melody_onsets | chord_onsets)
    assert [e.onset for e in events if e.is_chord] == sorted(chord_onsets)
    assert all(e.onset == sum(x.shift for x in events[:i]) for i, e in enumerate(events))
    assert events[0].label.startswith("Cmaj7 n")


def test_events_sit_in_bars_and_a_gap_of_many_bars_gets_rests_on_the_way():
    piece = Piece("s", "gap", melody=[NoteEvent(12, 12, 72), NoteEvent(30, 6, 71), NoteEvent(48 * 7 + 24, 12, 74)],
                  chords=[ChordChange(12, 0, "maj")], metre=[[0, "4/4"]])
    events = piece_to_events(piece, BINS)
    assert [(e.bar, e.position, e.advance, e.label) for e in events] == [
        (0, 12, 0, "C n72/12"), (0, 30, 0, "n71/6"), (4, 0, 4, "rest"), (7, 24, 3, "n74/12")]
    assert [e.onset for e in events] == [12, 30, 48 * 4, 48 * 7 + 24]
    assert [e.shift for e in events] == [18, 48 * 4 - 30, 48 * 3 + 24, 24]  # the last runs to its bar's end
    waltz = Piece("s", "waltz", melody=[NoteEvent(t, 12, 72) for t in range(0, 36 * 3, 12)], metre=[[0, "3/4"]])
    placed = [(e.bar, e.position) for e in piece_to_events(waltz, BINS)]
    assert placed == [(b, p) for b in range(3) for p in (0, 12, 24)]


def test_windows_are_left_padded_so_every_event_is_a_target():
    n = len(FIELDS)
    seq = np.arange(2, 2 + 3 * n, dtype=np.int32).reshape(3, n)
    x, y = make_windows([seq], window=4, stride=1)
    assert x.shape == (3, 4, n) and y.tolist() == seq.tolist()
    assert (x[0] == PAD).all() and x[2, -1].tolist() == seq[1].tolist() and (x[2, :2] == PAD).all()
    _, y2 = make_windows([np.repeat(np.arange(10, dtype=np.int32)[:, None], n, axis=1)], window=3, stride=4)
    assert y2[:, 0].tolist() == [0, 4, 8]


def test_file_names_lose_versions_not_numbers():
    assert name_key("songs/Tune v2.mid") == name_key("Tune.MID") == name_key("tune (3).mid") == "tune"
    assert name_key("bach__bwv269__analysis.mid") == "bach__bwv269"
    assert name_key("bach__bwv250.mid") != name_key("bach__bwv251.mid")


def test_near_duplicates_share_a_group_and_strangers_do_not():
    pieces = [performed_piece("a.mid", seed=0, bars=8), performed_piece("b.mid", seed=0, bars=8, transpose=5),
              performed_piece("c.mid", seed=1, bars=8), performed_piece("c v2.mid", seed=2, bars=8),
              performed_piece("d.mid", seed=2, bars=8, one_track=True, tempo_bpm=70.0)]
    groups = near_duplicate_groups(pieces)
    assert groups[0] == groups[1]  # one tune, transposed and played again
    assert groups[2] == groups[3]  # one name, two versions
    assert groups[3] == groups[4]  # the same melody over the same chords
    assert groups[0] != groups[2]


def tune(name: str, seed: int, variant: int = 0, transpose: int = 0) -> Piece:
    """A 48-note fiddle tune (seeded), one of its settings (`variant` changes two notes), transposed."""
    rng = np.random.default_rng(seed)
    pitches = 60 + np.cumsum(rng.integers(-3, 4, 48)) % 24
    durations = rng.choice([6, 12, 24], 48)
    if variant:
        pitches[(variant * 7) % 48] += 2
        pitches[(variant * 11 + 3) % 48] -= 1
    onsets = np.concatenate([[0], np.cumsum(durations)[:-1]])
    return Piece(sha256=f"{name}-{seed}-{variant}", name=name,
                 melody=[NoteEvent(int(o), int(d), int(p) + transpose) for o, d, p in zip(onsets, durations, pitches)])


def test_a_tune_with_twelve_settings_stays_on_one_side_of_the_split():
    settings = [tune(f"collection_{k}/no_{k * 31}.mid", seed=99, variant=k, transpose=k % 5) for k in range(12)]
    others = [tune(f"other_{k}.mid", seed=k) for k in range(30)]
    groups = near_duplicate_groups(settings + others)
    assert len(set(groups[:12])) == 1 and len(set(groups[12:])) == 30
    assert groups[0] not in groups[12:]
    for seed in range(5):
        assert len(set(grouped_split(groups, 0.1, 0.15, seed)[:12])) == 1
    # Ignoring the n-grams that more than three pieces share (the rule before) loses the tune.
    assert len(set(near_duplicate_groups(settings + others, max_holders=3)[:12])) > 1


def test_split_keeps_groups_whole_is_seeded_and_fills_all_three_sides():
    groups = [i // 3 for i in range(60)]  # twenty groups of three
    split = grouped_split(groups, 0.1, 0.15, seed=7)
    assert split == grouped_split(groups, 0.1, 0.15, seed=7) != grouped_split(groups, 0.1, 0.15, seed=8)
    assert {s for s in split} == {"train", "dev", "test"}
    for g in set(groups):
        assert len({s for s, gg in zip(split, groups) if gg == g}) == 1
    assert split.count("test") == 9 and split.count("dev") == 6
    assert grouped_split([0, 1, 2], 0.1, 0.1, 1).count("train") == 1
    with pytest.raises(StageError, match="at least 3 distinct pieces"):
        grouped_split([0, 0, 1], 0.1, 0.1, 1)


def test_the_encode_manifest_counts_what_was_approximated(trained):
    """Nothing is unknown by construction (the fields are closed); what was approximated is
    counted instead, and the counts agree with the pieces and events themselves."""
    _, runner = trained
    stats = runner.manifest("encode")["stats"]
    pieces, _ = read_pieces(runner.artifact_dir("extract"))
    chords = [c for p in pieces for c in p.chords]
    assert stats["chord_changes"] == len(chords) > 0
    assert stats["approximated"]["chords_not_exact"] == sum(not c.exact for c in chords)
    assert stats["approximated"]["melody_durations_cut_to_a_bar"] == sum(
        n.duration > MAX_STEPS for p in pieces for n in p.melody)
    events = [e for p in pieces for e in piece_to_events(p, BINS)]
    assert stats["events"] == len(events)
    assert stats["approximated"]["rest_events"] == sum(e.root is None and e.pitch is None for e in events)
    assert all(stats["pieces"][s] >= 1 for s in ("train", "dev", "test"))
    meta = read_encoded(runner.artifact_dir("encode")).pieces
    by_group = {}
    for m in meta:
        by_group.setdefault(m["group"], set()).add(m["split"])
    assert all(len(s) == 1 for s in by_group.values())
