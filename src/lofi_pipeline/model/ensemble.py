"""The ensemble as one sampler: every member's trunk, then its field heads field by field,
for a batch of tracks in compiled TensorFlow functions, the members' distributions combined
per field (compose.py asks it for each event of each track)."""
from __future__ import annotations

import numpy as np

from ..core.errors import StageError
from ..music.token_format import TARGETS


class EnsembleSampler:
    """All members' forward passes for a batch of windows in compiled TensorFlow functions: each
    member's trunk once per event, then its field heads once per field, given the fields drawn
    so far; the members' distributions are combined per field."""

    def __init__(self, models: list, combine: str = "mean", weights: list[float] | None = None,
                 jit_compile: bool = False, batch: int = 0):
        import tensorflow as tf
        self.models = models
        w = np.array(weights if weights else [1.0] * len(models), np.float32)
        if len(w) != len(models) or w.sum() <= 0:
            raise StageError(f"generate.weights: need {len(models)} non-negative weights with a positive sum")
        w = w / w.sum()
        self.window = int(models[0].get_layer("trunk").input_shape[1])
        self.batch = batch  # 0: the first call's size
        trunks = [m.get_layer("trunk") for m in models]
        heads = [m.get_layer("heads") for m in models]

        @tf.function(jit_compile=jit_compile, reduce_retracing=True)
        def contexts(x):
            return [t(x, training=False) for t in trunks]

        @tf.function(jit_compile=jit_compile, reduce_retracing=True)
        def field_probs(ctxs, given):
            outs = [h([c, given], training=False) for h, c in zip(heads, ctxs)]
            combined = {}
            for f in TARGETS:
                if combine == "product":
                    logp = tf.add_n([wi * tf.math.log(o[f] + 1e-9) for wi, o in zip(w, outs)])
                    combined[f] = tf.nn.softmax(logp, axis=-1)
                else:
                    combined[f] = tf.add_n([wi * o[f] for wi, o in zip(w, outs)])
            return combined
        self._contexts, self._field_probs = contexts, field_probs

    def _padded(self, a: np.ndarray) -> np.ndarray:
        # A smaller batch (re-drawing some tracks, the last batch) is padded to the full size:
        # one compiled shape, and a track's numbers do not depend on the batch it is in.
        a = np.asarray(a, np.int32)
        self.batch = self.batch or len(a)
        if len(a) < self.batch:
            a = np.concatenate([a, np.zeros((self.batch - len(a), *a.shape[1:]), np.int32)])
        return a

    def contexts(self, windows: np.ndarray):
        """Each member's summary of each window (kept in TensorFlow for field_probs)."""
        return self._contexts(self._padded(windows))

    def field_probs(self, contexts, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Every field's combined distribution per window, given the fields already in `rows`
        (a field's head only reads the fields before it)."""
        out = self._field_probs(contexts, self._padded(rows))
        return {f: out[f].numpy()[:len(rows)] for f in TARGETS}
