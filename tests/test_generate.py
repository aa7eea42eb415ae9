import json

import numpy as np
import pytest

from helpers import ROOT, midi_bytes, progression_notes
from lofi_pipeline.encode import load_encoded
from lofi_pipeline.errors import StageError
from lofi_pipeline.generate import (
    EnsembleSampler,
    generate_tracks,
    primer_from_midi,
    sample_event,
    self_repetition,
    shift_table,
    track_seed,
)
from lofi_pipeline.pipeline import build_stages
from lofi_pipeline.runner import Runner
from lofi_pipeline.token_format import PAD, UNK, Vocabulary
from lofi_pipeline.train import load_ensemble


def test_sampling_never_draws_specials_and_honours_top_k_and_top_p():
    probs = np.array([0.5, 0.3, 0.1, 0.06, 0.04])
    rng = np.random.default_rng(0)
    draws = [sample_event(probs, rng) for _ in range(300)]
    assert PAD not in draws and UNK not in draws and set(draws) == {2, 3, 4}
    assert {sample_event(probs, rng, top_k=1) for _ in range(50)} == {2}
    assert {sample_event(probs, rng, top_p=0.5) for _ in range(50)} == {2}
    assert {sample_event(probs, rng, temperature=0.05) for _ in range(50)} == {2}


def test_repetition_penalty_moves_mass_away_from_recent_events():
    probs = np.array([0, 0, 0.6, 0.4])
    rng = np.random.default_rng(1)
    plain = np.mean([sample_event(probs, rng) == 2 for _ in range(400)])
    penalised = np.mean([sample_event(probs, rng, recent=np.array([2]), repetition_penalty=4.0) == 2
                         for _ in range(400)])
    assert penalised < plain - 0.2


def test_sampling_is_a_pure_function_of_the_seed():
    probs = np.random.default_rng(3).dirichlet(np.ones(40))
    a = [sample_event(probs, np.random.default_rng(9), 0.9, 10, 0.9) for _ in range(5)]
    b = [sample_event(probs, np.random.default_rng(9), 0.9, 10, 0.9) for _ in range(5)]
    assert a == b
    assert track_seed(1, 0) != track_seed(1, 1) and track_seed(1, 0) == track_seed(1, 0)


def test_self_repetition_sees_loops():
    assert self_repetition([1, 2, 3, 4] * 8, size=4) == 1.0
    assert self_repetition(list(range(64)), size=16) == 0.0


def test_ensemble_combines_members_probabilities(trained):
    _, runner = trained
    vocab, data, _ = load_encoded(runner.artifact_dir("encode"))
    models, _, _ = load_ensemble(runner.artifact_dir("train"), vocab)
    x = data["x_val"][:4]
    mean = EnsembleSampler(models).next_probs(x)
    expected = np.mean([m.predict(x, verbose=0) for m in models], axis=0)
    assert np.allclose(mean, expected, atol=1e-5)
    product = EnsembleSampler(models, "product").next_probs(x)
    assert np.allclose(product.sum(axis=1), 1, atol=1e-4)
    weighted = EnsembleSampler(models, "weighted", [1, 0]).next_probs(x)
    assert np.allclose(weighted, models[0].predict(x, verbose=0), atol=1e-5)


def test_models_and_a_foreign_vocabulary_do_not_mix(trained):
    _, runner = trained
    with pytest.raises(StageError, match="trained on vocabulary"):
        load_ensemble(runner.artifact_dir("train"), Vocabulary(["n60_d12_s12_v2"]))


def test_bad_primers_get_clear_errors(trained, tmp_path):
    _, runner = trained
    vocab = Vocabulary.load(runner.artifact_dir("train") / "vocab.json")
    with pytest.raises(StageError, match="file not found"):
        primer_from_midi(tmp_path / "missing.mid", vocab, 12)
    text = tmp_path / "notes.mid"
    text.write_text("not midi")
    with pytest.raises(StageError, match="not a MIDI file"):
        primer_from_midi(text, vocab, 12)
    long = tmp_path / "long.mid"
    long.write_bytes(midi_bytes(progression_notes(60, bars=8)))
    with pytest.raises(StageError, match=r"longer than the models' window of 12"):
        primer_from_midi(long, vocab, 12)
    short = tmp_path / "short.mid"
    short.write_bytes(midi_bytes([(0, 1, 60, 80), (1, 1, 64, 80), (2, 1, 67, 80)]))
    assert len(primer_from_midi(short, vocab, 12)) == 3


def generate(trained, tmp_path, *overrides):
    """Run `generate` on a copy of the trained outputs; returns (tracks, log lines)."""
    cfg, runner = trained
    import shutil

    from lofi_pipeline.config import load_config
    out = tmp_path / "outputs"
    shutil.copytree(runner.outputs, out, ignore=shutil.ignore_patterns(".lock"))
    cfg2 = load_config(ROOT / "lofi.toml", "quick", [f'run.outputs="{out}"', f'run.archive="{cfg.run.archive}"',
                                                     "encode.validation_share=0.2", "train.epochs=12",
                                                     "train.patience=3", *overrides])
    logs = []
    r = Runner(cfg2, build_stages(), root=ROOT, log=logs.append)
    r.run(["generate"])
    return json.loads((r.artifact_dir("generate") / "tracks.json").read_text())["tracks"], logs


def test_generating_twice_gives_the_same_events_and_never_retrains(trained, tmp_path):
    a, logs_a = generate(trained, tmp_path / "a")
    b, logs_b = generate(trained, tmp_path / "b", "generate.temperature=0.9")  # the default, said aloud
    for logs in (logs_a, logs_b):
        ran = [line.split("]")[0][1:] for line in logs if " running (" in line]
        assert ran == ["generate"], logs
    assert [t["ids"] for t in a] == [t["ids"] for t in b]
    assert len(a) == 2 and all(len(t["ids"]) > 4 for t in a)
    assert a[0]["ids"] != a[1]["ids"]


def test_different_seeds_sample_different_music_from_the_same_models(trained):
    _, runner = trained
    vocab, data, _ = load_encoded(runner.artifact_dir("encode"))
    models, _, _ = load_ensemble(runner.artifact_dir("train"), vocab)
    sampler = EnsembleSampler(models)
    params = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "repetition_penalty": 1.0, "repetition_window": 0}

    def sample(seed):
        rngs = [np.random.default_rng(track_seed(seed, i)) for i in range(2)]
        return generate_tracks(sampler, [np.zeros(0, np.int32)] * 2, rngs, 10**9, 24,
                               shift_table(vocab), params, progress=False)
    assert sample(1) == sample(1)
    assert sample(1) != sample(2)


def test_a_missing_primer_stops_before_any_work(trained, tmp_path):
    with pytest.raises(StageError, match="primer nope.mid: file not found"):
        generate(trained, tmp_path, 'generate.primer="nope.mid"')
    assert not (tmp_path / "outputs" / ".tmp").exists()
