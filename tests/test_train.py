
import numpy as np
import pytest

from lofi_pipeline.model.baselines import NGramModel, UnigramModel
from lofi_pipeline.model.members import build_member, model_inputs
from lofi_pipeline.model.scoring import apply_pairing, dev_weight, evaluate, event_metrics, field_metrics, pairing_masks
from lofi_pipeline.model.training import dev_sample, member_specs, read_history, reproducible_keras, train_member
from lofi_pipeline.music.token_format import FIELDS, GIVEN, TARGETS, Vocabulary
from lofi_pipeline.stages.catalog import read_encoded, read_ensemble, read_metrics


def member(**options):
    sizes = dict(zip(FIELDS, Vocabulary.closed(4).sizes))
    tiny = {"embed_dim": 8, "conv_filters": 8, "kernel_size": 3, "lstm_units": 8, "attention_heads": 2,
            "dropout": 0.2, "name": "member"}
    return sizes, build_member(sizes, 8, given_fields=GIVEN, **{**tiny, **options})


def test_builder_has_the_named_layers_in_order_and_one_head_per_predicted_field():
    sizes, model = member()
    trunk = [layer.name for layer in model.get_layer("trunk").layers]
    for expected in ("embed_pitch", "embed_metre", "event_embedding", "conv", "bilstm", "attention",
                     "attention_norm", "dense"):
        assert expected in trunk
    assert trunk.index("conv") < trunk.index("bilstm") < trunk.index("attention") < trunk.index("dense")
    heads = {layer.name for layer in model.get_layer("heads").layers}
    assert set(TARGETS) <= heads and "metre" not in heads  # the metre is read, never predicted
    rng = np.random.default_rng(0)
    x, y = np.zeros((2, 8, len(FIELDS)), np.int32), rng.integers(2, 6, (2, len(FIELDS))).astype(np.int32)
    out = model.predict(model_inputs(x, y), verbose=0)
    assert {f: out[f].shape for f in out} == {f: (2, sizes[f]) for f in TARGETS}
    assert np.allclose(out["root"].sum(axis=1), 1.0, atol=1e-5)


def test_each_head_reads_the_metre_and_the_fields_before_its_own_and_none_after():
    """The heads chain p(bar | metre) p(position | metre, bar) ...: changing one field of the next
    event changes the heads after it and leaves its own head and those before it alone; the
    next event's metre reaches every head."""
    _, model = member()
    rng = np.random.default_rng(1)
    x = rng.integers(2, 6, (4, 8, len(FIELDS))).astype(np.int32)
    y = rng.integers(2, 6, (4, len(FIELDS))).astype(np.int32)
    base = model.predict(model_inputs(x, y), verbose=0)
    for j, field in enumerate(FIELDS):
        y2 = y.copy()
        y2[:, j] += 1
        moved = model.predict(model_inputs(x, y2), verbose=0)
        for k, other in enumerate(FIELDS[1:], 1):
            same = np.allclose(moved[other], base[other], atol=1e-7)
            assert same == (k <= j), (field, other)


def test_members_differ_by_seed_and_hyperparameters(trained):
    cfg, _ = trained
    specs = member_specs(cfg)
    assert len({s["seed"] for s in specs}) == len(specs)
    assert len({(s["kernel_size"], s["lstm_units"]) for s in specs}) == len(specs)


def test_baselines_give_proper_distributions():
    rng = np.random.default_rng(0)
    x = rng.integers(1, 20, (300, 6)).astype(np.int32)
    y = rng.integers(2, 20, 300).astype(np.int32)
    for model in (UnigramModel(20).fit(y), NGramModel(20, 3).fit(x, y)):
        p = model.predict(x[:50])
        assert np.allclose(p.sum(axis=1), 1.0, atol=1e-5) and (p[:, 2:] > 0).all() and (p[:, 0] == 0).all()
    # Deterministic successor: the n-gram must learn it, the unigram cannot.
    x2 = np.tile(np.arange(2, 8, dtype=np.int32), (60, 1))
    y2 = np.full(60, 9, np.int32)
    ngram, uni = NGramModel(12, 3).fit(x2, y2), UnigramModel(12).fit(y2)
    assert field_metrics(ngram.predict(x2), y2)["nll"] < 0.2
    assert field_metrics(ngram.predict(x2), y2)["nll"] <= field_metrics(uni.predict(x2), y2)["nll"]


def test_the_ngram_backs_off_to_the_unigram_as_far_as_the_dev_split_says():
    rng = np.random.default_rng(1)
    unigram = np.full((200, 10), 0.1)
    targets = rng.integers(0, 10, 200)
    sure = np.full((200, 10), 0.001)
    sure[np.arange(200), targets] = 0.991  # an n-gram that knows every dev event
    wrong = np.roll(sure, 1, axis=1)  # one that is confidently wrong about every one
    assert dev_weight(sure, unigram, targets, None) == 1.0
    assert dev_weight(wrong, unigram, targets, None) == 0.0
    half_right = np.where((np.arange(200) % 2 == 0)[:, None], sure, wrong)
    assert 0.0 < dev_weight(half_right, unigram, targets, None) < 1.0


def test_a_dev_check_reads_at_most_its_windows_spread_over_the_whole_dev_split():
    x, y = np.arange(10000).reshape(-1, 1, 1), np.arange(10000)
    xs, ys = dev_sample(x, y, 2048)
    assert len(ys) == 2048 and ys[0] == 0 and ys[-1] == 9999 and (np.diff(ys) > 0).all()
    assert dev_sample(x, y, 0)[1] is y
    assert len(dev_sample(x[:100], y[:100], 2048)[1]) == 100


def test_an_events_nll_is_the_sum_of_its_fields():
    probs = {"a": np.array([[0.0, 0.0, 0.5, 0.5]]), "b": np.array([[0.0, 0.0, 0.25, 0.75]])}
    m = event_metrics(probs, np.array([[2, 3]]), ("a", "b"))
    assert m["nll"] == pytest.approx(np.log(2) - np.log(0.75), abs=1e-4)
    assert m["fields"]["b"]["top1"] == 1.0 and m["fields"]["a"]["nll"] == pytest.approx(np.log(2), abs=1e-4)


def test_every_model_is_scored_with_the_pairing_rule_the_sampler_draws_with():
    vocab = Vocabulary.closed(4)
    rows = vocab.encode([("4/4", "1", "0", "-", "-", "64", "6", "2"), ("4/4", "0", "6", "7", "maj", "-", "-", "2")])
    quality, duration = FIELDS.index("quality"), FIELDS.index("duration")
    masks = pairing_masks(vocab, rows)
    flat = {f: np.full((2, vocab.sizes[FIELDS.index(f)]), 1.0 / vocab.sizes[FIELDS.index(f)]) for f in TARGETS}
    paired = apply_pairing(flat, masks)
    for field in ("quality", "duration"):
        assert np.allclose(paired[field].sum(axis=1), 1.0) and (paired[field][~masks[field]] == 0).all()
    # No chord at the first event: its "no quality" is certain and costs nothing; a chord's
    # quality is one of the qualities, never "no quality".
    assert paired["quality"][0, rows[0, quality]] == 1.0 and paired["duration"][1, rows[1, duration]] == 1.0
    # (the qualities, and <unk>: a test event may hold a value the vocabulary lacks)
    assert paired["quality"][1, rows[1, quality]] == pytest.approx(1.0 / (vocab.sizes[quality] - 2))
    # Probability outside what the rule allows is not lost: it is renormalised away.
    lopsided = dict(flat, quality=np.where(masks["quality"], 1e-3, 10.0))
    chord_quality = (1, rows[1, quality])
    assert apply_pairing(lopsided, masks)["quality"][chord_quality] == pytest.approx(paired["quality"][chord_quality])


def test_tiny_ensemble_beats_the_unigram_on_the_test_split_and_writes_its_artifacts(trained):
    _, runner = trained
    out = runner.artifact_dir("train")
    metrics = read_metrics(out)["test"]
    assert set(metrics["ensemble"]["fields"]) == set(TARGETS)
    assert np.isfinite(metrics["ensemble"]["nll"])
    assert metrics["ensemble"]["nll"] < metrics["unigram"]["nll"]
    assert set(metrics) >= {"member_0", "member_1", "ensemble", "unigram", "3-gram"}
    histories = read_metrics(out)["histories"]
    assert set(histories) == {"member_0", "member_1"} and all(len(h) >= 1 for h in histories.values())
    assert sorted(p.name for p in (out / "members").iterdir()) == ["member_0.keras", "member_1.keras"]


def test_metrics_recompute_from_the_saved_weights(trained):
    cfg, runner = trained
    encoded = read_encoded(runner.artifact_dir("encode"))
    vocab, data = encoded.vocab, encoded.arrays
    models, _, info = read_ensemble(runner.artifact_dir("train"), vocab)
    calibration = info["calibration"]
    recomputed = evaluate({m["name"]: model for m, model in zip(info["members"], models)},
                          vocab, data, cfg.train.ngram_order,
                          combination=(calibration["combine"], calibration["weights"]),
                          experts=calibration["step_experts"])
    saved = read_metrics(runner.artifact_dir("train"))["test"]
    for name in saved:
        assert recomputed[name]["nll"] == pytest.approx(saved[name]["nll"], abs=2e-3)


@pytest.fixture
def member_training(trained, tmp_path):
    """train(checks, log) trains member_0 of the quick ensemble in one work folder, resuming."""
    cfg, runner = trained
    encoded = read_encoded(runner.artifact_dir("encode"))
    vocab, data = encoded.vocab, encoded.arrays
    spec, work = member_specs(cfg)[0], tmp_path / "member"

    def train(checks: int, log=print):
        budget = {"checks": checks, "check_every": 4, "batch_size": 64, "patience": 5}
        train_member(spec, dict(zip(FIELDS, vocab.sizes)), data["x_train"].shape[1], data, work, budget, log=log)
        return read_history(work / "history.csv")
    return train, work


def test_training_resumes_from_its_last_checkpoint(member_training):
    train, work = member_training
    first = train(1)
    assert len(first) == 1 and (work / "backup").exists()
    logs = []
    history = train(3, logs.append)
    assert logs == ["member_0: resuming after check 1"]
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert history[0] == first[0]  # the first stretch of steps was not trained again


def test_a_member_killed_after_its_last_check_writes_the_same_model(member_training):
    train, work = member_training
    train(2)
    finished = reproducible_keras(work / "best.keras")
    (work / "best.keras").unlink()  # killed before the .keras was written from the best weights
    logs = []
    train(2, logs.append)
    assert logs == ["member_0: resuming after check 2"]
    assert reproducible_keras(work / "best.keras") == finished


def test_a_checkpoint_damaged_by_a_kill_restarts_the_member_instead_of_failing(member_training):
    train, work = member_training
    train(1)
    damaged = [p for p in (work / "backup").iterdir() if p.suffix in (".h5", ".json")]
    assert damaged
    for path in damaged:  # what SIGKILL in the middle of Keras' in-place writes leaves behind
        path.write_bytes(path.read_bytes()[:7])
    logs = []
    history = train(2, logs.append)
    assert logs[0] == "member_0: resuming after check 1"
    assert logs[1].startswith("member_0: its checkpoint was damaged by the interruption")
    assert [h["epoch"] for h in history] == [0, 1]
