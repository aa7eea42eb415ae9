import json

import numpy as np
import pytest

from helpers import midi_bytes, progression_notes
from lofi_pipeline.encode import load_encoded
from lofi_pipeline.token_format import PAD, UNK, Vocabulary
from lofi_pipeline.generate import (EnsembleSampler, primer_from_midi, sample_event, self_repetition,
                                    track_seed)
from lofi_pipeline.errors import StageError
from lofi_pipeline.runner import Runner
from lofi_pipeline.pipeline import build_stages
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
    cfg, runner = trained
    from lofi_pipeline.config import load_config
    import shutil
    out = tmp_path / "outputs"
    shutil.copytree(runner.outputs, out, ignore=shutil.ignore_patterns(".lock"))
    from helpers import ROOT
    cfg2 = load_config(ROOT / "lofi.toml", "quick", [f'run.outputs="{out}"', f'run.archive="{cfg.run.archive}"',
                                                     "encode.validation_share=0.2", "train.epochs=12",
                                                     "train.patience=3", *overrides])
    r = Runner(cfg2, build_stages(), root=ROOT, log=lambda m: None)
    r.run(["generate"])
    assert r.plan(["train"]) == []  # generating never retrains
    return json.loads((r.artifact_dir("generate") / "tracks.json").read_text())["tracks"]


def test_same_seed_same_events_and_different_seed_different_music(trained, tmp_path):
    a = generate(trained, tmp_path / "a")
    b = generate(trained, tmp_path / "b")
    c = generate(trained, tmp_path / "c", "run.seed=99")
    assert [t["ids"] for t in a] == [t["ids"] for t in b]
    assert [t["ids"] for t in a] != [t["ids"] for t in c]
    assert len(a) == 2 and all(len(t["ids"]) > 4 for t in a)
    assert a[0]["ids"] != a[1]["ids"]


def test_a_missing_primer_stops_before_any_work(trained, tmp_path):
    with pytest.raises(StageError, match="primer nope.mid: file not found"):
        generate(trained, tmp_path, 'generate.primer="nope.mid"')
