"""Drawing one value from a field's distribution (temperature, top-k, top-p, a repetition
penalty, a mask), and one field of an event under the token format's pairing rule."""
from __future__ import annotations

import numpy as np

from ..music.token_format import FIELDS, NONE, PAD, TARGETS, UNK, Vocabulary
from . import step_experts


def sample_value(probs: np.ndarray, rng: np.random.Generator, temperature: float, top_k: int, top_p: float,
                 allowed: np.ndarray | None = None, recent: tuple[np.ndarray, float] | None = None) -> int:
    """Draw one value id from a field's distribution; padding and <unk> are never drawn, nor
    anything `allowed` (a boolean mask) rules out. `top_k` 0 and `top_p` 1 keep every value;
    `recent`: the ids played recently and the penalty that divides their probability."""
    p = np.asarray(probs, np.float64).copy()
    p[[PAD, UNK]] = 0.0
    if allowed is not None:
        p[~allowed] = 0.0
    if recent is not None and len(recent[0]):
        p[np.unique(recent[0])] /= recent[1]
    p = np.power(np.clip(p, 0, None), 1.0 / temperature)
    if p.sum() <= 0:
        p = np.ones_like(p) if allowed is None else allowed.astype(np.float64)
        p[[PAD, UNK]] = 0.0
    order = np.argsort(-p, kind="stable")
    keep = len(order) if top_k <= 0 else min(top_k, len(order))
    sorted_p = p[order[:keep]] / p[order[:keep]].sum()
    if top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(sorted_p), top_p) + 1)
    chosen = order[:keep]
    chosen = chosen[p[chosen] > 0]
    weights = p[chosen] / p[chosen].sum()
    return int(chosen[rng.choice(len(chosen), p=weights)])


class FieldSampler:
    """Draws an event's fields one value at a time: the second field of each pair (quality after
    root, duration after pitch) among the values the token format's pairing rule allows, and
    within whatever mask the caller gives (where in the bar, the harmony clock); the step experts
    apply to melody pitches and chord roots, the repetition penalty to melody pitches."""

    def __init__(self, vocab: Vocabulary, settings: dict):
        self.vocab = vocab
        self.settings = {f: {k: settings[k] for k in ("temperature", "top_k", "top_p")} for f in TARGETS}
        for f, extra in settings.get("fields", {}).items():
            self.settings[f].update(extra)
        self.penalty, self.window = settings["repetition_penalty"], settings["repetition_window"]
        self.no_pitch = vocab.index["pitch"][NONE]
        self.experts = settings.get("step_experts") or {}  # {field: {"steps", "weight"}}
        self.numbers = {f: step_experts.numbers(vocab, f) for f in self.experts}

    def draw_field(self, field: str, probs: np.ndarray, rng: np.random.Generator, row: np.ndarray,
                   history: np.ndarray, allowed: np.ndarray | None = None, following: int | None = None) -> int:
        """One value of `field` for an event whose earlier fields are in `row`; `following`: the id
        of the value the drawn one leads to, where it is known (a kept note after a redrawn one)."""
        pair = self.vocab.pair_mask(field, row)
        if pair is not None:
            allowed = pair if allowed is None else allowed & pair
            if not allowed.any():
                allowed = pair
        expert = self.experts.get(field)
        if expert and len(history):
            table = self.numbers[field]
            previous = step_experts.previous_values(np.asarray(history)[None], table, field)
            probs = step_experts.reweigh(np.asarray(probs)[None], previous, expert["steps"], expert["weight"], table,
                                         field)[0]
        if expert and following is not None:
            probs = step_experts.reweigh_towards(probs, int(self.numbers[field][following]), expert["steps"],
                                                 expert["weight"], self.numbers[field], field)
        recent = None
        if field == "pitch" and self.window and len(history) and self.penalty != 1.0:
            played = history[-self.window:, FIELDS.index("pitch")]
            recent = (played[played != self.no_pitch], self.penalty)
        return sample_value(probs, rng, allowed=allowed, recent=recent, **self.settings[field])
