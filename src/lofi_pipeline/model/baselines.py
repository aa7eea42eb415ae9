"""Baselines the ensemble must beat: unigram frequencies and an interpolated n-gram, per field.

Each gives a full distribution over a field's values for every test window (the n-gram from
the same field's recent values), so scoring.py scores them with exactly the metrics of the
neural models: NLL per field, summed over the fields for the NLL of the event.
"""
from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from ..music.token_format import PAD


class UnigramModel:
    """Add-one smoothed event frequencies; the padding token gets no mass."""

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size
        self.dist = np.zeros(vocab_size)

    def fit(self, targets: np.ndarray) -> "UnigramModel":
        counts = np.bincount(targets, minlength=self.vocab_size).astype(float) + 1.0
        counts[PAD] = 0.0
        self.dist = counts / counts.sum()
        return self

    def predict(self, contexts: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.dist, (len(contexts), self.vocab_size)).astype(np.float32)


class NGramModel:
    """Witten-Bell interpolated n-gram: each order backs off to the one below, down to the
    add-one unigram, so every event keeps some probability."""

    def __init__(self, vocab_size: int, order: int):
        self.vocab_size, self.order = vocab_size, order
        self.unigram = UnigramModel(vocab_size)
        self.counts: dict[tuple, Counter] = defaultdict(Counter)
        self._cache: dict[tuple, np.ndarray] = {}

    def fit(self, contexts: np.ndarray, targets: np.ndarray) -> "NGramModel":
        self.unigram.fit(targets)
        for ctx, y in zip(contexts[:, -(self.order - 1):].tolist(), targets.tolist()):
            for n in range(1, self.order):
                self.counts[tuple(ctx[-n:])][y] += 1
        self._cache.clear()
        return self

    def _dist(self, history: tuple) -> np.ndarray:
        if not history:
            return self.unigram.dist
        if history in self._cache:
            return self._cache[history]
        lower = self._dist(history[1:])
        seen = self.counts.get(history)
        if not seen:
            dist = lower
        else:
            total, types = sum(seen.values()), len(seen)
            dist = lower * types
            for w, c in seen.items():
                dist[w] += c
            dist = dist / (total + types)
        self._cache[history] = dist
        return dist

    def predict(self, contexts: np.ndarray) -> np.ndarray:
        hist = contexts[:, -(self.order - 1):].tolist()
        out = np.empty((len(hist), self.vocab_size), np.float32)
        for i, h in enumerate(hist):
            out[i] = self._dist(tuple(h))
        return out
