"""The ensemble as one sampler: every member's trunk, then its field heads field by field,
for a batch of tracks in compiled TensorFlow functions, the members' distributions combined
per field (compose.py asks it for each event of each track)."""
from __future__ import annotations

import numpy as np

from ..core.errors import StageError
from ..music.token_format import FIELDS, TARGETS

EPSILON = 1e-9  # added to each member's probability before a product takes its log


def combine(member_probs: list[dict[str, np.ndarray]], method: str, weights) -> dict[str, np.ndarray]:
    """The members' distributions per field combined: "mean" (a weighted mixture) or "product"
    (a weighted geometric mean, renormalised); the sampler's EnsembleSampler does the same."""
    w = np.asarray(weights, np.float64)
    w = w / w.sum()
    out = {}
    for f in member_probs[0]:
        if method == "product":
            logp = sum(wi * np.log(p[f] + EPSILON) for wi, p in zip(w, member_probs))
            logp -= logp.max(axis=1, keepdims=True)
            p = np.exp(logp)
            out[f] = p / p.sum(axis=1, keepdims=True)
        else:
            out[f] = sum(wi * p[f] for wi, p in zip(w, member_probs))
    return out


class EnsembleSampler:
    """All members' forward passes for a batch of windows in compiled TensorFlow functions: each
    member's trunk once per event, then its field heads once per field, given the fields drawn
    so far; the members' distributions are combined per field."""

    def __init__(self, models: list, combine: str = "mean", weights: list[float] | None = None,
                 jit_compile: bool = False, batch: int = 0, targets: tuple = TARGETS):
        import tensorflow as tf
        self.models = models
        w = np.array(weights if weights else [1.0] * len(models), np.float32)
        if len(w) != len(models) or w.sum() <= 0:
            raise StageError(f"generate.weights: need {len(models)} non-negative weights with a positive sum")
        w = w / w.sum()
        self.window = int(models[0].get_layer("trunk").input_shape[1])
        self.batch = batch  # 0: the first call's size
        self.targets = targets
        trunks = [m.get_layer("trunk") for m in models]
        heads = [m.get_layer("heads") for m in models]

        @tf.function(jit_compile=jit_compile, reduce_retracing=True)
        def contexts(x):
            return [t(x, training=False) for t in trunks]

        @tf.function(jit_compile=jit_compile, reduce_retracing=True)
        def field_probs(ctxs, given):
            outs = [h([c, given], training=False) for h, c in zip(heads, ctxs)]
            combined = {}
            for f in targets:
                if combine == "product":
                    logp = tf.add_n([wi * tf.math.log(o[f] + EPSILON) for wi, o in zip(w, outs)])
                    combined[f] = tf.nn.softmax(logp, axis=-1)
                else:
                    combined[f] = tf.add_n([wi * o[f] for wi, o in zip(w, outs)])
            return combined
        self._contexts, self._field_probs = contexts, field_probs
        # Calls come in one shape or few (a padded batch): the traced function for a shape is
        # looked up once and called directly, which skips tf.function's per-call matching of
        # the inputs (a quarter of a millisecond a call, thousands of calls a track).
        self._traced: dict[tuple, object] = {}

    def _padded(self, a: np.ndarray):
        # A smaller batch (re-drawing some tracks, the last batch) is padded to the full size:
        # one compiled shape, and a track's numbers do not depend on the batch it is in.
        import tensorflow as tf
        a = np.asarray(a, np.int32)
        self.batch = self.batch or len(a)
        if len(a) < self.batch:
            a = np.concatenate([a, np.zeros((self.batch - len(a), *a.shape[1:]), np.int32)])
        return tf.constant(a)

    def contexts(self, windows: np.ndarray):
        """Each member's summary of each window (kept in TensorFlow for field_probs)."""
        x = self._padded(windows)
        key = ("contexts", tuple(x.shape))
        if key not in self._traced:
            self._traced[key] = self._contexts.get_concrete_function(x)
        return self._traced[key](x)

    def field_probs(self, contexts, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Every field's combined distribution per window, given the fields already in `rows`
        (a field's head only reads the fields before it)."""
        given = self._padded(rows)
        key = ("field_probs", tuple(given.shape), tuple(tuple(c.shape) for c in contexts))
        if key not in self._traced:
            self._traced[key] = self._field_probs.get_concrete_function(contexts, given)
        out = self._traced[key](contexts, given)
        return {f: out[f].numpy()[:len(rows)] for f in self.targets}


def compiled_sampler(models: list, combine: str, weights, batch: int, log=print,
                     fields: tuple = FIELDS, targets: tuple = TARGETS) -> EnsembleSampler:
    """An EnsembleSampler compiled with XLA (about twice the rate here: benchmarks/bench_generate.py),
    or in plain graph mode where XLA cannot compile an op on this build. `fields` and `targets`:
    the format's (the melody's by default)."""
    sampler = EnsembleSampler(models, combine, weights, jit_compile=True, batch=batch, targets=targets)
    try:
        zeros = np.zeros((batch, len(fields)), np.int32)
        sampler.field_probs(sampler.contexts(np.zeros((batch, sampler.window, len(fields)))), zeros)
        return sampler
    except Exception as exc:
        log(f"XLA unavailable ({type(exc).__name__}); using graph mode")
        return EnsembleSampler(models, combine, weights, batch=batch, targets=targets)
