"""Sampling calibrated on dev: the members' combination and weights, each field's temperature,
the settings' precedence, and the rates matched by playing."""
from dataclasses import replace

import numpy as np
import pytest

from helpers import timed_events
from lofi_pipeline.core.config import GenerateConfig
from lofi_pipeline.model.calibration import (
    calibrate,
    combination_settings,
    fit_combination,
    fit_temperatures,
    sampling_settings,
)
from lofi_pipeline.model.ensemble import EnsembleSampler, combine
from lofi_pipeline.model.members import model_inputs
from lofi_pipeline.model.rate_matching import GROUPS, TARGET_SEGMENTS, figures, match_rates, target_figures
from lofi_pipeline.music.checks import DataProfile
from lofi_pipeline.music.token_format import FIELDS, PAD, TARGETS, UNK, Vocabulary
from lofi_pipeline.stages.catalog import read_encoded, read_ensemble, read_profile

VOCAB = Vocabulary.closed(4)
GENERATE = GenerateConfig(repetition_window=0)  # every sampling key "auto", as shipped


def true_distributions(n: int, rng) -> dict[str, np.ndarray]:
    """A random distribution per event and field, never on padding or <unk>."""
    out = {}
    for f in TARGETS:
        size = len(VOCAB.fields[f])
        p = rng.dirichlet(np.full(size, 0.3), size=n)
        p[:, [PAD, UNK]] = 0.0
        out[f] = p / p.sum(axis=1, keepdims=True)
    return out


def drawn(truth: dict[str, np.ndarray], rng) -> np.ndarray:
    """Events whose fields are drawn from `truth` (chords and notes paired as the format wants
    is not needed here: no field is paired in these tests' masks)."""
    y = np.zeros((len(truth["bar"]), len(FIELDS)), np.int64)
    for f in TARGETS:
        y[:, FIELDS.index(f)] = [rng.choice(len(p), p=p) for p in truth[f]]
    return y


def sharpened(truth, power):
    out = {}
    for f, p in truth.items():
        q = p ** power
        out[f] = q / q.sum(axis=1, keepdims=True)
    return out


def test_the_combination_is_never_worse_on_dev_than_the_best_member_and_drops_a_useless_one():
    rng = np.random.default_rng(0)
    truth = true_distributions(3000, rng)
    y = drawn(truth, rng)
    targets = y[:, [FIELDS.index(f) for f in TARGETS]]
    noise = true_distributions(3000, np.random.default_rng(1))  # knows nothing of the events
    members = [sharpened(truth, 1.3), sharpened(truth, 0.8), noise]
    chosen = fit_combination(members, {}, targets)
    alone = min(v["dev_nll"] for k, v in chosen["candidates"].items() if k.endswith(" alone"))
    assert chosen["dev_nll"] <= alone
    assert chosen["dev_nll"] < chosen["candidates"]["equal mean"]["dev_nll"]
    assert chosen["weights"][2] < 0.15, chosen  # the noise member earns (almost) nothing
    assert sum(chosen["weights"]) == pytest.approx(1.0, abs=1e-3)


def test_combining_by_weights_matches_the_sampler():
    rng = np.random.default_rng(2)
    members = [true_distributions(5, rng) for _ in range(3)]
    for method in ("mean", "product"):
        one_hot = combine(members, method, [0, 1, 0])
        for f in TARGETS:
            assert np.allclose(one_hot[f], members[1][f], atol=1e-6)
    mean = combine(members, "mean", [1, 1, 1])
    assert np.allclose(mean["pitch"], np.mean([m["pitch"] for m in members], axis=0))


@pytest.mark.parametrize("power, low, high", [(3.0, 2.2, 3.4), (0.5, 0.4, 0.65)])
def test_a_temperature_fitted_on_dev_undoes_an_over_or_under_confident_model(power, low, high):
    """A model whose distributions are the truth to the power 3 (over-confident) needs a
    temperature of about 3 to draw as the data does; one at the power 0.5, about 0.5."""
    rng = np.random.default_rng(3)
    truth = true_distributions(4000, rng)
    y = drawn(truth, rng)
    fitted = fit_temperatures(sharpened(truth, power), y, {})
    for f in ("pitch", "velocity", "position"):
        assert low <= fitted[f]["temperature"] <= high, (f, fitted[f])
        assert fitted[f]["dev_nll"] < fitted[f]["dev_nll_at_1"]


def test_a_temperature_fitted_on_a_few_events_stays_near_one():
    rng = np.random.default_rng(4)
    truth = true_distributions(30, rng)
    fitted = fit_temperatures(sharpened(truth, 3.0), drawn(truth, rng), {})
    assert all(abs(np.log(v["temperature"])) < abs(np.log(v["fitted"])) for v in fitted.values())
    assert all(0.8 <= v["temperature"] <= 1.25 for v in fitted.values()), fitted


def test_a_key_given_wins_over_the_calibration_and_a_field_entry_over_both():
    calibration = {"combine": "product", "weights": [0.2, 0.8],
                   "sampling": {f: {"temperature": 1.3, "top_k": 0, "top_p": 1.0} for f in TARGETS}}
    auto = sampling_settings(GENERATE, calibration)["fields"]
    assert auto["pitch"] == {"temperature": 1.3, "top_k": 0, "top_p": 1.0}
    given = sampling_settings(replace(GENERATE, temperature=0.8, fields={"pitch": {"top_k": 5}}), calibration)
    assert given["fields"]["root"]["temperature"] == 0.8
    assert given["fields"]["pitch"] == {"temperature": 0.8, "top_k": 5, "top_p": 1.0}
    assert sampling_settings(GENERATE, None)["fields"]["bar"] == {"temperature": 1.0, "top_k": 0, "top_p": 1.0}
    assert combination_settings(GENERATE, calibration) == ("product", [0.2, 0.8])
    assert combination_settings(replace(GENERATE, combine="weighted", weights=[1, 3]), calibration) == ("mean", [1, 3])
    assert combination_settings(replace(GENERATE, combine="mean"), calibration) == ("mean", None)


def test_calibration_on_trained_members_scores_what_the_sampler_draws(trained):
    """The chosen combination's dev NLL is what the models give the dev events combined so, and
    the temperatures matched by playing are recorded with every trial."""
    cfg, runner = trained
    encoded = read_encoded(runner.artifact_dir("encode"))
    models, vocab, info = read_ensemble(runner.artifact_dir("train"), encoded.vocab)
    calibration = info["calibration"]
    assert calibration["dev_nll"] <= min(v["dev_nll"] for k, v in calibration["candidates"].items()
                                         if k.endswith(" alone"))
    x, y = encoded.arrays["x_dev"], encoded.arrays["y_dev"]
    again = calibrate(models, vocab, x, y)
    assert again["weights"] == calibration["weights"] and again["dev_nll"] == calibration["dev_nll"]
    sampler = EnsembleSampler(models, calibration["combine"], calibration["weights"])
    outs = [m.predict(model_inputs(x[:3], y[:3]), verbose=0) for m in models]
    mixed = combine([{f: np.asarray(o[f], np.float64) for f in TARGETS} for o in outs], calibration["combine"],
                    calibration["weights"])
    drawn_from = sampler.field_probs(sampler.contexts(x[:3]), y[:3])
    for f in TARGETS:
        assert np.allclose(drawn_from[f], mixed[f], atol=1e-5)
    matched = calibration["rate_matching"]
    experts = {f: e for f, e in calibration["step_experts"].items() if e["steps"] and e["fitted_weight"]}
    assert {t["group"] for t in matched["trials"]} == {"as fitted", *GROUPS, *(f"{f} steps" for f in experts)}
    for f, e in experts.items():
        assert e["weight"] == matched["step_weights"][f] >= e["fitted_weight"]
    assert matched["distance"] <= matched["distance_as_fitted"]
    assert {f: s["temperature"] for f, s in calibration["sampling"].items()} == matched["temperatures"]


def test_matching_rates_plays_the_same_continuations_for_the_same_seed(trained):
    _, runner = trained
    encoded = read_encoded(runner.artifact_dir("encode"))
    models, vocab, _ = read_ensemble(runner.artifact_dir("train"), encoded.vocab)
    profile = read_profile(runner.artifact_dir("encode"))
    start = {f: 1.0 for f in TARGETS}
    runs = [match_rates(EnsembleSampler(models), vocab, profile, encoded.sequences("dev"), start, 7, 2, lambda m: None)
            for _ in range(2)]
    assert runs[0] == runs[1]
    assert len(runs[0]["trials"]) == 1 + 2 * len(GROUPS)


def test_rate_matching_hears_rests_where_the_melody_stops_not_where_the_piece_does():
    """A 3-bar loop played legato rests nowhere, its last segment (one bar) included; the same
    loop with the melody silent in its third bar rests there, and a piece with no melody has no
    rest figure at all."""
    legato = timed_events([(12, None, None, 60 + k % 5, 12) for k in range(12)])
    assert legato[-1].bar == 2
    assert figures([legato], 4)[:, -1].tolist() == [0.0, 0.0]
    gap = timed_events([(12, None, None, 60 + k % 5, 12) for k in range(8)]
                       + [(24, 0, "maj", None, 0), (24, 5, "maj", None, 0)])
    assert figures([gap], 4)[:, -1].tolist() == [0.0, 1.0]
    chords = timed_events([(48, 0, "maj", None, 0), (48, 5, "maj", None, 0), (48, 7, "maj", None, 0)])
    assert np.isnan(figures([chords], 4)[:, -1]).all()


def test_rates_are_matched_to_pieces_holding_both_streams_and_to_training_pieces_where_dev_is_small():
    """A pack of chord loops, a few with a top line: the target is the pieces with a melody (the
    primers' pieces), and the training pieces join it where the dev pieces give too few segments."""
    profile = DataProfile(pieces=3, quantile=0.025, ranges={}, pieces_inside=1.0, context_events=None,
                          melody_share=0.5, has_chords=True, hold_limit_ticks=None)

    def loop(bars: int, melody: bool):
        rows = []
        for bar in range(bars):  # a chord on each bar line, with the top line's first note if any
            rows.append((12 if melody else 48, bar % 3 * 5, "maj", 64 if melody else None, 12))
            rows += [(12, None, None, 60 + k, 12) for k in range(3)] if melody else []
        return VOCAB.encode_events(timed_events(rows))

    chords, top_line, long_top_line = loop(8, False), loop(4, True), loop(2 * TARGET_SEGMENTS, True)
    data, target = target_figures(VOCAB, profile, [chords, top_line], [top_line, chords])
    assert len(data) == 2 * len(figures([VOCAB.decode_events(top_line)[0]], 4))  # the chords-only loops left out
    assert "training pieces" in target
    data, target = target_figures(VOCAB, profile, [chords, long_top_line], [top_line])
    assert len(data) == TARGET_SEGMENTS and target == "dev pieces holding chords and a melody"
    no_melody = replace(profile, melody_share=0.0)
    data, target = target_figures(VOCAB, no_melody, [chords, long_top_line], [])
    assert len(data) == TARGET_SEGMENTS + 4 and target == "dev pieces"
