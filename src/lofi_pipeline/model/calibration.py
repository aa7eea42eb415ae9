"""Sampling calibrated on the dev split, when the models are trained.

Two choices are made on the dev pieces, never on the test pieces:
- how the members combine: a linear mixture (p = sum w_i p_i) or a log-linear product (p
  proportional to prod p_i ** w_i), the weights (summing to 1) fitted to the dev NLL, against
  each member alone and the equal-weight mean. The lowest dev NLL wins, so on dev the ensemble
  is never worse than its best member; a member that does not help gets a weight near 0.
- the weights of the step experts (step_experts.py) in the pitch and root fields, fitted to the
  dev NLL of the chosen combination (0 where one does not help); the rate matching may draw
  with heavier ones (rate_matching.py), the scores keep the fitted ones;
- each field's temperature, fitted to the dev NLL of the chosen combination (temperature
  scaling, Guo et al. 2017), drawn without top-k or top-p truncation. A calibrated distribution
  sampled whole reproduces the data's rates (velocity levels, density, pitches) in expectation;
  the truncation it replaces sampled only the likeliest values.

Both are scored under the token format's pairing rule, as the sampler draws.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from ..music.token_format import FIELDS, NONE, PAD, TARGETS, UNK, Vocabulary
from . import step_experts
from .ensemble import combine
from .scoring import apply_pairing, pairing_masks, predict_fields

COMBINATIONS = ("mean", "product")
TEMPERATURE_RANGE = (0.3, 3.0)
SHRINK_EVENTS = 200  # a temperature fitted on n dev events keeps n / (n + this) of its distance from 1


def _nll(probs: dict[str, np.ndarray], masks: dict, targets: np.ndarray) -> float:
    """The dev NLL of whole events (the fields' sum) under the pairing rule."""
    paired = apply_pairing(probs, masks)
    rows = np.arange(len(targets))
    return float(sum(-np.mean(np.log(np.clip(paired[f][rows, targets[:, j]], 1e-12, None)))
                     for j, f in enumerate(TARGETS)))


def _softmax(theta: np.ndarray) -> np.ndarray:
    e = np.exp(theta - theta.max())
    return e / e.sum()


def fit_combination(member_probs: list[dict[str, np.ndarray]], masks: dict, targets: np.ndarray) -> dict:
    """The combination with the lowest dev NLL among each member alone, the equal mean, and the
    mixture and product with fitted weights: {"combine", "weights", "dev_nll", "candidates"}."""
    k = len(member_probs)
    candidates: dict[str, tuple[str, list[float], float]] = {}
    for i in range(k):
        one = [float(i == j) for j in range(k)]
        candidates[f"member_{i} alone"] = ("mean", one, _nll(member_probs[i], masks, targets))
    candidates["equal mean"] = ("mean", [1.0 / k] * k, _nll(combine(member_probs, "mean", [1] * k), masks, targets))
    if k > 1:
        for method in COMBINATIONS:
            def loss(theta, method=method):
                return _nll(combine(member_probs, method, _softmax(theta)), masks, targets)
            fitted = minimize(loss, np.zeros(k), method="Powell", options={"xtol": 1e-3, "ftol": 1e-5, "maxfev": 400})
            w = _softmax(fitted.x)
            candidates[f"fitted {method}"] = (method, [round(float(x), 4) for x in w], float(fitted.fun))
    name = min(candidates, key=lambda n: (round(candidates[n][2], 6), n))
    method, weights, nll = candidates[name]
    return {"chosen": name, "combine": method, "weights": weights, "dev_nll": round(nll, 4),
            "candidates": {n: {"combine": m, "weights": [round(x, 4) for x in w], "dev_nll": round(v, 4)}
                           for n, (m, w, v) in candidates.items()}}


def _tempered_nll(p: np.ndarray, allowed: np.ndarray, targets: np.ndarray, temperature: float) -> float:
    logp = np.where(allowed, np.log(np.clip(p, 1e-12, None)) / temperature, -np.inf)
    top = logp.max(axis=1, keepdims=True)
    norm = top[:, 0] + np.log(np.exp(logp - top).sum(axis=1))
    return float(-np.mean(logp[np.arange(len(targets)), targets] - norm))


def fit_temperatures(probs: dict[str, np.ndarray], y: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, dict]:
    """Each field's temperature that gives the dev events the lowest NLL, over what the sampler may
    draw (never padding or <unk>, within the pairing rule's `masks`: scoring.pairing_masks), with
    the NLL at 1 and at the fit. Events whose true value is <unk> are left out: the sampler can
    never draw them."""
    out = {}
    for j, f in ((FIELDS.index(f), f) for f in TARGETS):
        targets = y[:, j]
        allowed = masks[f].copy() if f in masks else np.ones_like(probs[f], bool)
        allowed[:, [PAD, UNK]] = False
        keep = (targets != UNK) & allowed[np.arange(len(targets)), targets]
        if not keep.any():
            out[f] = {"temperature": 1.0, "dev_nll_at_1": None, "dev_nll": None}
            continue
        p, a, t = probs[f][keep], allowed[keep], targets[keep]
        fit = minimize_scalar(lambda temp: _tempered_nll(p, a, t, temp), bounds=TEMPERATURE_RANGE, method="bounded",
                              options={"xatol": 1e-3})
        # A fit on a few dozen dev events is mostly noise: shrink it towards 1 (in log space) by
        # how many events it rests on.
        shrunk = float(np.exp(np.log(fit.x) * len(t) / (len(t) + SHRINK_EVENTS)))
        out[f] = {"temperature": round(shrunk, 3), "fitted": round(float(fit.x), 3), "events": int(len(t)),
                  "dev_nll_at_1": round(_tempered_nll(p, a, t, 1.0), 4),
                  "dev_nll": round(_tempered_nll(p, a, t, shrunk), 4)}
    return out


def teacher_forced_rates(probs: dict[str, np.ndarray], temperatures: dict[str, float], vocab: Vocabulary,
                         y: np.ndarray) -> dict[str, dict]:
    """What the calibrated sampler would play on the dev events, given their true earlier fields,
    against what they hold: per field, the share of the likeliest value of the data (the top
    velocity level, the commonest pitch...) and the share of "-" (no chord, no note)."""
    out = {}
    for f in ("velocity", "pitch", "root", "quality"):
        j = FIELDS.index(f)
        p = np.clip(probs[f], 0, None).copy()
        p[:, [PAD, UNK]] = 0.0
        p = p ** (1.0 / temperatures[f])
        p /= p.sum(axis=1, keepdims=True)
        expected = p.mean(axis=0)
        counts = np.bincount(y[:, j], minlength=len(expected)) / len(y)
        none = vocab.index[f].get(NONE)
        sounding = [i for i in range(len(expected)) if i not in (PAD, UNK, none)]
        top = max(sounding, key=lambda i: counts[i])
        out[f] = {"value": vocab.fields[f][top], "data_share": round(float(counts[top]), 4),
                  "model_share": round(float(expected[top]), 4)}
        if none is not None:
            out[f].update(data_none=round(float(counts[none]), 4), model_none=round(float(expected[none]), 4))
    return out


def calibrate(models: list, vocab: Vocabulary, x_dev: np.ndarray, y_dev: np.ndarray, play=None,
              train_sequences: list[np.ndarray] | None = None) -> dict:
    """The combination, the step experts' weights (their steps counted on `train_sequences`, the
    training pieces) and the per-field temperatures, chosen on the dev windows given; with `play`
    ((combination, temperatures, experts) -> rate_matching.match_rates' result), the temperatures
    and the experts' weights are then matched to the dev pieces' rates by playing."""
    member_probs = [predict_fields(m, x_dev, y_dev) for m in models]
    masks = pairing_masks(vocab, y_dev)
    targets = y_dev[:, [FIELDS.index(f) for f in TARGETS]]
    combination = fit_combination(member_probs, masks, targets)
    combined = combine(member_probs, combination["combine"], combination["weights"])
    experts = step_experts.fit_experts(combined, x_dev, y_dev, train_sequences or [], vocab)
    combined = step_experts.apply_experts(combined, x_dev, experts, vocab)
    fields = fit_temperatures(combined, y_dev, masks)
    temperatures = {f: v["temperature"] for f, v in fields.items()}
    matched = play(combination, temperatures, experts) if play else None
    if matched:
        temperatures = matched["temperatures"]
        experts = {f: {**e, "weight": matched["step_weights"].get(f, e["weight"])} for f, e in experts.items()}
    return {"dev_events": int(len(y_dev)), **combination, "step_experts": experts, "fields": fields,
            "rate_matching": matched,
            "sampling": {f: {"temperature": temperatures[f], "top_k": 0, "top_p": 1.0} for f in TARGETS},
            "teacher_forced": teacher_forced_rates(combined, temperatures, vocab, y_dev)}


def sampling_settings(generate, calibration: dict | None, overrides: bool = True) -> dict:
    """The sampler's settings per field from the [generate] section: a field's own
    `generate.fields` entry first, then a number given for `generate.temperature`, `top_k` or
    `top_p`, then the calibration ("auto"); without one (models from before calibration), 1.0
    and no truncation. The step experts as calibrated, or each at the weight
    `generate.step_experts` gives (0: off). `overrides` False: the calibration alone (the
    base's melody sampler), only the repetition penalty taken from `generate`."""
    plain = {"temperature": 1.0, "top_k": 0, "top_p": 1.0}
    fields = {}
    for f in TARGETS:
        calibrated = (calibration or {}).get("sampling", {}).get(f, plain)
        given = {k: getattr(generate, k) for k in plain} if overrides else {}
        chosen = {k: calibrated.get(k, plain[k]) if given.get(k, "auto") == "auto" else given[k] for k in plain}
        chosen.update(generate.fields.get(f, {}) if overrides else {})
        chosen["top_k"] = int(chosen["top_k"])
        fields[f] = chosen
    experts = (calibration or {}).get("step_experts") or {}
    if overrides and generate.step_experts != "auto":
        experts = {f: {**e, "weight": float(generate.step_experts)} for f, e in experts.items()}
    return {**plain, "repetition_penalty": generate.repetition_penalty,
            "repetition_window": generate.repetition_window, "fields": fields,
            "step_experts": step_experts.drawn(experts)}


def combination_settings(generate, calibration: dict | None) -> tuple[str, list[float] | None]:
    """(combine, weights) for the sampler: the calibration's with combine = "auto", else the key's."""
    if generate.combine == "auto":
        if not calibration:
            return "mean", None
        return calibration["combine"], list(calibration["weights"])
    if generate.combine == "weighted":
        return "mean", list(generate.weights)
    return generate.combine, None
