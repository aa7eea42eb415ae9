"""The ensemble as one sampler: every member's trunk, then its field heads field by field,
for a batch of tracks in compiled TensorFlow functions, the members' distributions combined
per field; and the loop that samples a batch of tracks to a length."""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from ..core.errors import StageError
from ..music.token_format import FIELDS, PAD
from .sampling import FieldSampler, HarmonyClock


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
            for f in FIELDS:
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
        return {f: out[f].numpy()[:len(rows)] for f in FIELDS}


def generate_tracks(sampler: EnsembleSampler, field_sampler: FieldSampler, primers: list[np.ndarray],
                    rngs: list, target_ticks: int, max_events: int, hold_limit: int | None = None,
                    context: int | None = None, progress: bool = True) -> list[np.ndarray]:
    """Sample every track to `target_ticks` of music (or `max_events` events) in one batch; with
    `hold_limit`, no harmony stands longer than that many ticks; with `context`, the models see
    at most that many past events (the rest of the window is padding, as at a piece's start)."""
    n, window, n_fields = len(primers), sampler.window, len(FIELDS)
    seen = min(window, context or window)
    shifts = field_sampler.shift_ticks
    seqs = [np.asarray(p, np.int32).reshape(-1, n_fields) for p in primers]
    ticks = [int(shifts[s[:, 0]].sum()) for s in seqs]
    clocks = [None] * n
    if hold_limit is not None:
        clocks = [HarmonyClock(hold_limit, field_sampler.none["root"], shifts) for _ in seqs]
        for clock, s in zip(clocks, seqs):
            for row in s:
                clock.advance(row)
    done = [False] * n
    bar = tqdm(total=max_events, desc="generate", unit="step", disable=None if progress else True)
    for _ in range(max_events):
        windows = np.full((n, window, n_fields), PAD, np.int32)
        for i, s in enumerate(seqs):
            ctx = s[-seen:]
            if len(ctx):
                windows[i, window - len(ctx):] = ctx
        contexts = sampler.contexts(windows)
        rows = np.zeros((n, n_fields), np.int32)
        for j, f in enumerate(FIELDS):
            probs = sampler.field_probs(contexts, rows)[f]
            for i in range(n):
                if not done[i]:
                    rows[i, j] = field_sampler.draw_field(j, probs[i], rngs[i], rows[i], seqs[i], clocks[i])
        for i in range(n):
            if done[i]:
                continue
            if clocks[i] is not None:
                clocks[i].advance(rows[i])
            seqs[i] = np.vstack([seqs[i], rows[i][None, :]])
            ticks[i] += int(shifts[rows[i, 0]])
            done[i] = ticks[i] >= target_ticks or len(seqs[i]) >= max_events
        bar.update()
        if all(done):
            break
    bar.close()
    return seqs
