"""Scoring on a split: NLL per event (the sum over fields) and per field NLL and top-1, for
each member, the ensemble (combined as calibration.py chose on dev), other ensembles
(the base alone) and the baselines, all on the same events.

Every model is scored with the factorisation the sampler draws with: a field paired with an
earlier one (no chord quality without a root, no duration without a pitch) has its distribution
restricted to what the pairing rule allows after the true earlier fields, and renormalised. The
networks learn the rule from data; the baselines cannot, and scoring them without it would
charge them for bookkeeping rather than for music.
"""
from __future__ import annotations

import numpy as np

from ..music.token_format import FIELDS, NONE, PAIRED, TARGETS, UNK, Vocabulary
from . import step_experts
from .baselines import NGramModel, UnigramModel
from .ensemble import combine
from .members import model_inputs


def field_metrics(probs: np.ndarray, targets: np.ndarray) -> dict:
    """Mean NLL (nats) and top-1 accuracy of one field's distributions."""
    p = np.clip(probs[np.arange(len(targets)), targets], 1e-12, None)
    return {"nll": round(float(-np.mean(np.log(p))), 4),
            "top1": round(float(np.mean(np.argmax(probs, axis=1) == targets)), 4)}


def event_metrics(probs: dict[str, np.ndarray], targets: np.ndarray, fields) -> dict:
    """Per-field metrics and the NLL of whole events (the fields' sum) with its perplexity."""
    per_field = {f: field_metrics(probs[f], targets[:, j]) for j, f in enumerate(fields)}
    nll = sum(m["nll"] for m in per_field.values())
    return {"nll": round(nll, 4), "perplexity": round(float(np.exp(nll)), 2), "fields": per_field}


def format_table(metrics: dict) -> str:
    """NLL per event, then NLL and top-1 per field, one row per model."""
    head = f"{'model':<12} {'NLL':>7} " + " ".join(f"{f[:8]:>14}" for f in TARGETS)
    lines = [head, f"{'':<12} {'event':>7} " + " ".join(f"{'nll   top1':>14}" for _ in TARGETS)]
    for name, m in metrics.items():
        cells = " ".join(f"{m['fields'][f]['nll']:>7.3f}{m['fields'][f]['top1']:>7.3f}" for f in TARGETS)
        lines.append(f"{name:<12} {m['nll']:>7.3f} {cells}")
    return "\n".join(lines)


def predict_fields(model, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Each field's distribution for the events `y` after the windows `x` (given y's earlier fields)."""
    out = model.predict(model_inputs(x, y), batch_size=1024, verbose=0)
    return {f: np.asarray(out[f], np.float64) for f in TARGETS}


def pairing_masks(vocab: Vocabulary, y: np.ndarray) -> dict[str, np.ndarray]:
    """Per paired field, (events, ids): what the pairing rule allows after each true event's
    earlier fields. The sampler never draws <unk>, but a test event may hold one (a value the
    closed vocabulary lacks): it stays allowed, so such an event is scored, not ruled out."""
    masks = {}
    for field in (f for f in PAIRED if f in TARGETS):
        mask = np.stack([vocab.pair_mask(field, row) for row in y])
        mask[:, UNK] |= mask[:, vocab.index[field][NONE]] == 0
        masks[field] = mask
    return masks


def apply_pairing(probs: dict[str, np.ndarray], masks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each paired field's distributions restricted to what its mask allows and renormalised."""
    out = dict(probs)
    for field, mask in masks.items():
        kept = np.where(mask, probs[field], 0.0)
        total = kept.sum(axis=1, keepdims=True)
        # A model with no mass on any allowed id spreads it evenly there (it is charged log(allowed)).
        out[field] = np.where(total > 0, kept / np.where(total > 0, total, 1.0), mask / mask.sum(1, keepdims=True))
    return out


def evaluate(models: dict, vocab: Vocabulary, data: dict, ngram_order: int, split: str = "test",
             other_ensembles: dict | None = None, combination: tuple[str, list[float]] | None = None,
             experts: dict | None = None) -> dict:
    """Metrics on one split's windows for members, their ensemble (combined as `combination`,
    (method, weights), chosen on dev, with the step experts at the weights fitted to the dev NLL
    there, not those the rate matching draws with; the
    equal mean beside it), other ensembles (name -> list
    of models, their equal mean) and both baselines; the given fields (the metre) are inputs,
    not scored."""
    x, y = data[f"x_{split}"], data[f"y_{split}"]
    scored = y[:, [FIELDS.index(f) for f in TARGETS]]
    masks = pairing_masks(vocab, y)

    def score(probs: dict) -> dict:
        return event_metrics(apply_pairing(probs, masks), scored, TARGETS)

    probs = {name: predict_fields(m, x, y) for name, m in models.items()}
    metrics = {name: score(p) for name, p in probs.items()}
    method, weights = combination or ("mean", [1.0] * len(probs))
    ensemble = combine(list(probs.values()), method, weights)
    ensemble = step_experts.apply_experts(ensemble, x, experts, vocab, "fitted_weight")
    metrics["ensemble"] = {**score(ensemble), "combine": method, "weights": list(weights),
                           "step_experts": {f: e["fitted_weight"] for f, e in (experts or {}).items()}}
    if combination:
        metrics["equal mean"] = score({f: np.mean([p[f] for p in probs.values()], axis=0) for f in TARGETS})
    for name, members in (other_ensembles or {}).items():
        theirs = [predict_fields(m, x, y) for m in members]
        metrics[name] = score({f: np.mean([p[f] for p in theirs], axis=0) for f in TARGETS})
    uni, ngram, weights = {}, {}, {}
    dev_masks = pairing_masks(vocab, data["y_dev"])
    for f in TARGETS:
        j, size = FIELDS.index(f), vocab.sizes[FIELDS.index(f)]
        unigram = UnigramModel(size).fit(data["y_train"][:, j])
        ngram_model = NGramModel(size, ngram_order).fit(data["x_train"][:, :, j], data["y_train"][:, j])
        weights[f] = dev_weight(ngram_model.predict(data["x_dev"][:, :, j]), unigram.predict(data["x_dev"][:, :, j]),
                                data["y_dev"][:, j], dev_masks.get(f))
        uni[f] = unigram.predict(x[:, :, j])
        ngram[f] = weights[f] * ngram_model.predict(x[:, :, j]) + (1 - weights[f]) * uni[f]
    metrics[f"{ngram_order}-gram"] = {**score(ngram), "dev_weights": weights}
    metrics["unigram"] = score(uni)
    return metrics


WEIGHTS = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


def dev_weight(ngram: np.ndarray, unigram: np.ndarray, targets: np.ndarray, mask: np.ndarray | None) -> float:
    """The n-gram's weight against the unigram, for one field, that scores the dev events best.
    The networks stop early on the dev split; the n-gram gets it for its one setting, so that on
    a small archive, where its longer contexts are seen once or twice, it backs off as far as
    the dev pieces say it should, and is never worse there than the unigram it contains."""
    def nll(weight: float) -> float:
        p = weight * ngram + (1 - weight) * unigram
        if mask is not None:
            p = apply_pairing({"f": p}, {"f": mask})["f"]
        return float(-np.mean(np.log(np.clip(p[np.arange(len(targets)), targets], 1e-12, None))))
    return min(WEIGHTS, key=nll)
