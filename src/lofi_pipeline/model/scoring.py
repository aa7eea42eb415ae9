"""Scoring on a split: NLL per event (the sum over fields) and per field NLL and top-1, for
each member, the ensemble (the mean of the members' probabilities per field) and the
baselines, all on the same events."""
from __future__ import annotations

import numpy as np

from ..music.token_format import FIELDS, TARGETS, Vocabulary
from .baselines import NGramModel, UnigramModel, event_metrics
from .members import model_inputs


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


def evaluate(models: dict, vocab: Vocabulary, data: dict, ngram_order: int, split: str = "test") -> dict:
    """Metrics on one split's windows for members, their average, and both baselines; the
    given fields (the metre) are inputs, not scored."""
    x, y = data[f"x_{split}"], data[f"y_{split}"]
    scored = y[:, [FIELDS.index(f) for f in TARGETS]]
    probs = {name: predict_fields(m, x, y) for name, m in models.items()}
    metrics = {name: event_metrics(p, scored, TARGETS) for name, p in probs.items()}
    mean = {f: np.mean([p[f] for p in probs.values()], axis=0) for f in TARGETS}
    metrics["ensemble"] = event_metrics(mean, scored, TARGETS)
    uni, ngram = {}, {}
    for f in TARGETS:
        j, size = FIELDS.index(f), vocab.sizes[FIELDS.index(f)]
        uni[f] = UnigramModel(size).fit(data["y_train"][:, j]).predict(x[:, :, j])
        ngram_model = NGramModel(size, ngram_order).fit(data["x_train"][:, :, j], data["y_train"][:, j])
        ngram[f] = ngram_model.predict(x[:, :, j])
    metrics[f"{ngram_order}-gram"] = event_metrics(ngram, scored, TARGETS)
    metrics["unigram"] = event_metrics(uni, scored, TARGETS)
    return metrics
