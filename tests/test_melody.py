"""A melody written over a take's harmony by another model (the shipped base ensemble)."""
import numpy as np

from lofi_pipeline.model import base
from lofi_pipeline.model.compose import COL, Composer, compose
from lofi_pipeline.model.ensemble import EnsembleSampler
from lofi_pipeline.model.form import Section
from lofi_pipeline.model.melody import MelodyOver, bars_with_melody, wants_melody
from lofi_pipeline.model.sampling import FieldSampler
from lofi_pipeline.music.token_format import FIELDS
from lofi_pipeline.stages.catalog import read_encoded, read_ensemble, read_profile

SETTINGS = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "repetition_penalty": 1.0, "repetition_window": 0,
            "fields": {}}


def chords_only(rows: np.ndarray, vocab) -> np.ndarray:
    """A take's rows with every melody note taken out (chord-only events kept)."""
    none = {f: vocab.index[f]["-"] for f in ("pitch", "duration")}
    out = rows[rows[:, COL["root"]] != vocab.index["root"]["-"]].copy()
    out[:, COL["pitch"]], out[:, COL["duration"]] = none["pitch"], none["duration"]
    # bar steps re-counted from the kept events' bars
    bars = np.cumsum(vocab.value_table("bar")[rows[:, COL["bar"]]])[rows[:, COL["root"]] != vocab.index["root"]["-"]]
    steps = np.diff(np.concatenate([[0], bars]))
    out[:, COL["bar"]] = [vocab.index["bar"][str(s)] for s in steps]
    return out


def onsets(rows: np.ndarray, vocab) -> list[tuple[int, int]]:
    bars = np.cumsum(vocab.value_table("bar")[rows[:, COL["bar"]]])
    return list(zip(bars.tolist(), vocab.value_table("position")[rows[:, COL["position"]]].tolist()))


def test_the_base_writes_a_melody_between_the_chords_and_leaves_the_harmony_as_it_was(trained):
    _, runner = trained
    encoded = read_encoded(runner.artifact_dir("encode"))
    vocab, profile = encoded.vocab, read_profile(runner.artifact_dir("encode"))
    models, _, _ = read_ensemble(runner.artifact_dir("train"), vocab)
    bars = 6
    drafts = [Composer([Section("A", 0, bars)], bars, "4/4", vocab, np.zeros((0, len(FIELDS)), np.int32),
                       np.random.default_rng(seed), 1.0, 0.0, set(profile.grid_ticks), profile.hold_limit_ticks,
                       None, None, profile.advances) for seed in (1, 2)]
    compose(EnsembleSampler(models), FieldSampler(vocab, SETTINGS), drafts, progress=False)
    harmonies = [chords_only(d.take(), vocab) for d in drafts]
    assert all(len(h) and bars_with_melody(h, vocab, bars) == 0.0 for h in harmonies)
    files, why = base.melody_files(base.SHIPPED, vocab)
    assert files and not why
    melody_models = base.load_base(base.SHIPPED, vocab)
    writers = [MelodyOver(h, bars, metre="4/4", vocab=vocab, primer=np.zeros((0, len(FIELDS)), np.int32),
                          rng=np.random.default_rng(10 + k), grid_ticks=set(profile.grid_ticks), hold_limit=None,
                          advances=profile.advances) for k, h in enumerate(harmonies)]
    compose(EnsembleSampler(melody_models), FieldSampler(vocab, SETTINGS), writers, progress=False)
    none_root, none_pitch = vocab.index["root"]["-"], vocab.index["pitch"]["-"]
    for harmony, writer in zip(harmonies, writers):
        take = writer.take()
        is_chord = take[:, COL["root"]] != none_root
        # every chord where it was, as it was
        assert [o for o, c in zip(onsets(take, vocab), is_chord) if c] == onsets(harmony, vocab)
        assert (take[is_chord][:, [COL["root"], COL["quality"]]] == harmony[:, [COL["root"], COL["quality"]]]).all()
        # between them, melody notes only, and none past the track's end
        assert (take[~is_chord][:, COL["pitch"]] != none_pitch).all()
        assert max(b for b, _ in onsets(take, vocab)) < bars
        assert bars_with_melody(take, vocab, bars) >= 0.5
        events, dropped = vocab.decode_events(take)
        assert dropped == 0 and sum(e.pitch is not None for e in events) >= bars


def test_who_writes_the_melody():
    from lofi_pipeline.music.token_format import Vocabulary
    vocab = Vocabulary.closed(4)
    chord = [vocab.index[f][v] for f, v in zip(FIELDS, ("4/4", "1", "0", "0", "maj", "-", "-", "2"))]
    note = [vocab.index[f][v] for f, v in zip(FIELDS, ("4/4", "0", "12", "-", "-", "60", "12", "2"))]
    sparse = np.array([chord, note, chord, chord, chord])  # a melody in one bar of four (bars 1..4)
    assert wants_melody("auto", True, sparse, vocab, 4) and not wants_melody("ensemble", False, sparse, vocab, 4)
    full = np.array([chord, note, chord, note, chord, note, chord, note])
    assert not wants_melody("auto", True, full, vocab, 4)
    assert wants_melody("auto", False, full, vocab, 4) and wants_melody("base", True, full, vocab, 4)
