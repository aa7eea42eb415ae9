"""generate: sample event sequences from the ensemble, all tracks in one batch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import atomic
from .encode import load_encoded, piece_sequences, piece_to_events
from .errors import StageError
from .hashing import path_digest
from .midi_io import UnusableMidi, key_profiles, midi_header_reason, read_midi
from .performance import analyse
from .runner import Stage, StageContext
from .token_format import FIELDS, NONE, PAD, UNK, Vocabulary


def sample_value(probs: np.ndarray, rng: np.random.Generator, temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0, allowed: np.ndarray | None = None,
                 recent: np.ndarray | None = None, repetition_penalty: float = 1.0) -> int:
    """Draw one value id from a field's distribution; padding and <unk> are never drawn, nor
    anything `allowed` (a boolean mask) rules out."""
    p = np.asarray(probs, np.float64).copy()
    p[[PAD, UNK]] = 0.0
    if allowed is not None:
        p[~allowed] = 0.0
    if recent is not None and len(recent) and repetition_penalty != 1.0:
        p[np.unique(recent)] /= repetition_penalty
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
    """Draws an event field by field. A chord has both a root and a quality or neither, and a
    melody note both a pitch and a duration or neither: the second field of each pair is drawn
    among the values the first allows. The repetition penalty applies to melody pitches."""

    def __init__(self, vocab: Vocabulary, settings: dict):
        self.settings = {f: {k: settings[k] for k in ("temperature", "top_k", "top_p")} for f in FIELDS}
        for f, extra in settings.get("fields", {}).items():
            self.settings[f].update(extra)
        self.penalty, self.window = settings["repetition_penalty"], settings["repetition_window"]
        self.none = {f: vocab.index[f].get(NONE, -1) for f in FIELDS}
        self.sizes = dict(zip(FIELDS, vocab.sizes))

    def _pair_mask(self, field: str, first_is_none: bool) -> np.ndarray:
        mask = np.zeros(self.sizes[field], bool)
        if first_is_none:
            mask[self.none[field]] = True
        else:
            mask[2:] = True
            mask[self.none[field]] = False
        return mask

    def draw(self, probs: dict[str, np.ndarray], rng: np.random.Generator, history: np.ndarray) -> np.ndarray:
        row = np.zeros(len(FIELDS), np.int32)
        for j, f in enumerate(FIELDS):
            allowed, recent = None, None
            if f == "quality":
                allowed = self._pair_mask(f, row[FIELDS.index("root")] == self.none["root"])
            elif f == "duration":
                allowed = self._pair_mask(f, row[FIELDS.index("pitch")] == self.none["pitch"])
            elif f == "pitch" and self.window:
                recent = history[-self.window:, j]
                recent = recent[recent != self.none["pitch"]]
            row[j] = sample_value(probs[f], rng, allowed=allowed, recent=recent,
                                  repetition_penalty=self.penalty if f == "pitch" else 1.0, **self.settings[f])
        return row


class EnsembleSampler:
    """All members' forward passes for a batch of windows in one compiled TensorFlow function,
    combined into one distribution per field and window."""

    def __init__(self, models: list, combine: str = "mean", weights: list[float] | None = None,
                 jit_compile: bool = False):
        import tensorflow as tf
        self.models = models
        w = np.array(weights if weights else [1.0] * len(models), np.float32)
        if len(w) != len(models) or w.sum() <= 0:
            raise StageError(f"generate.weights: need {len(models)} non-negative weights with a positive sum")
        w = w / w.sum()
        self.window = int(models[0].input_shape[1])

        @tf.function(jit_compile=jit_compile, reduce_retracing=True)
        def step(x):
            outs = [m(x, training=False) for m in models]
            combined = {}
            for f in FIELDS:
                if combine == "product":
                    logp = tf.add_n([wi * tf.math.log(o[f] + 1e-9) for wi, o in zip(w, outs)])
                    combined[f] = tf.nn.softmax(logp, axis=-1)
                else:
                    combined[f] = tf.add_n([wi * o[f] for wi, o in zip(w, outs)])
            return combined
        self._step = step

    def next_probs(self, windows: np.ndarray) -> dict[str, np.ndarray]:
        out = self._step(np.asarray(windows, np.int32))
        return {f: out[f].numpy() for f in FIELDS}


def track_seed(run_seed: int, index: int) -> int:
    return int(np.random.SeedSequence([run_seed, index]).generate_state(1)[0])


def self_repetition(rows, size: int = 16) -> float:
    """Mean share of each `size`-event block that equals the block before it, event by event."""
    rows = [tuple(r) for r in np.asarray(rows).reshape(len(rows), -1).tolist()]
    blocks = [rows[i:i + size] for i in range(0, len(rows) - size + 1, size)]
    if len(blocks) < 2:
        return 0.0
    return float(np.mean([np.mean([x == y for x, y in zip(a, b)]) for a, b in zip(blocks, blocks[1:])]))


def primer_from_midi(path: Path, vocab: Vocabulary, window: int) -> np.ndarray:
    if not path.is_file():
        raise StageError(f"primer {path}: file not found (generate.primer)")
    data = path.read_bytes()
    reason = midi_header_reason(data)
    if reason:
        raise StageError(f"primer {path}: {reason}")
    try:
        piece = analyse(read_midi(data), path.name, "primer", key_profiles())
    except UnusableMidi as exc:
        raise StageError(f"primer {path}: {exc}") from None
    ids = vocab.encode_events(piece_to_events(piece, int(vocab.config.get("velocity_bins", 4))))
    if len(ids) > window:
        raise StageError(f"primer {path}: {len(ids)} events, longer than the models' window of "
                         f"{window}; use a shorter primer")
    return ids


def dev_primer(arrays: dict, rng: np.random.Generator, n: int) -> np.ndarray:
    """The opening of a dev piece (never a test piece: those are only for scoring)."""
    dev = [ids for split, ids in piece_sequences(arrays) if split == "dev"]
    return dev[rng.integers(len(dev))][:n]


def generate_tracks(sampler: EnsembleSampler, field_sampler: FieldSampler, primers: list[np.ndarray],
                    rngs: list, target_ticks: int, max_events: int, shifts: np.ndarray,
                    progress: bool = True) -> list[np.ndarray]:
    """Sample every track to `target_ticks` of music (or `max_events` events) in one batch."""
    n, window, n_fields = len(primers), sampler.window, len(FIELDS)
    seqs = [np.asarray(p, np.int32).reshape(-1, n_fields) for p in primers]
    ticks = [int(shifts[s[:, 0]].sum()) for s in seqs]
    done = [False] * n
    bar = tqdm(total=max_events, desc="generate", unit="step", disable=None if progress else True)
    for _ in range(max_events):
        windows = np.full((n, window, n_fields), PAD, np.int32)
        for i, s in enumerate(seqs):
            ctx = s[-window:]
            if len(ctx):
                windows[i, window - len(ctx):] = ctx
        probs = sampler.next_probs(windows)
        for i in range(n):
            if done[i]:
                continue
            row = field_sampler.draw({f: p[i] for f, p in probs.items()}, rngs[i], seqs[i])
            seqs[i] = np.vstack([seqs[i], row[None, :]])
            ticks[i] += int(shifts[row[0]])
            done[i] = ticks[i] >= target_ticks or len(seqs[i]) >= max_events
        bar.update()
        if all(done):
            break
    bar.close()
    return seqs


class GenerateStage(Stage):
    name = "generate"
    requires = ("train", "encode")
    reads = ("generate", "run.seed", "train.threads")
    help = "sample event sequences from the ensemble (temperature, top-k, top-p, primer, seed)"

    def external_inputs(self, params, root):
        # The primer is a mode or a MIDI file; a file counts by its bytes, never its path.
        primer = params.generate.primer
        if primer in ("dev", "none"):
            return {"primer": primer}
        return {"primer": path_digest(root / primer)}

    def check(self, params, root):
        unknown = sorted(set(params.generate.fields) - set(FIELDS))
        if unknown:
            raise StageError(f"config key generate.fields: {', '.join(unknown)} is not a field "
                             f"(fields: {', '.join(FIELDS)})")
        primer = params.generate.primer
        if primer not in ("dev", "none") and not (root / primer).is_file():
            raise StageError(f"primer {primer}: file not found (generate.primer is "
                             "'dev', 'none' or a MIDI file)")

    def run(self, ctx: StageContext) -> dict:
        import tensorflow as tf

        from .model import configure_tensorflow
        from .train import load_ensemble
        cfg, run_seed = ctx.params.generate, ctx.params.run.seed
        configure_tensorflow(ctx.params.train.threads)
        tf.config.experimental.enable_op_determinism()
        vocab_enc, arrays, _ = load_encoded(ctx.inputs["encode"])
        models, vocab, info = load_ensemble(ctx.inputs["train"], vocab_enc)
        seeds = [track_seed(run_seed, i) for i in range(cfg.tracks)]
        rngs = [np.random.default_rng(s) for s in seeds]
        if cfg.primer == "none":
            primers = [np.zeros((0, len(FIELDS)), np.int32) for _ in seeds]
        elif cfg.primer == "dev":
            primers = [dev_primer(arrays, rng, cfg.primer_events) for rng in rngs]
        else:
            primer = primer_from_midi(ctx.path(cfg.primer), vocab, info["window"])
            primers = [primer for _ in seeds]
        sampler = EnsembleSampler(models, cfg.combine, list(cfg.weights) or None, jit_compile=True)
        try:  # XLA about doubles the rate here (benchmarks/bench_generate.py)
            sampler.next_probs(np.zeros((cfg.tracks, sampler.window, len(FIELDS)), np.int32))
        except Exception as exc:  # an op XLA cannot compile on this build: plain graph mode
            ctx.log(f"XLA unavailable ({type(exc).__name__}); using graph mode")
            sampler = EnsembleSampler(models, cfg.combine, list(cfg.weights) or None)
        grid = int(vocab.config.get("grid", 12))
        target_ticks = cfg.bars * 4 * grid
        max_events = cfg.events if cfg.events else target_ticks
        if cfg.events:
            target_ticks = 10**12
        settings = {k: getattr(cfg, k) for k in ("temperature", "top_k", "top_p", "repetition_penalty",
                                                 "repetition_window", "fields")}
        seqs = generate_tracks(sampler, FieldSampler(vocab, settings), primers, rngs, target_ticks,
                               max_events + max(map(len, primers)), vocab.value_table("shift"))
        tracks = []
        for i, (seq, seed, primer) in enumerate(zip(seqs, seeds, primers)):
            events, _ = vocab.decode_events(seq)
            tracks.append({"index": i + 1, "seed": seed, "primer_events": len(primer),
                           "ids": seq.tolist(), "tokens": [list(t) for t in vocab.decode(seq)],
                           "self_repetition": round(self_repetition(seq), 4),
                           "distinct_events": len({tuple(r) for r in seq.tolist()}),
                           "chords": sum(e.is_chord for e in events),
                           "melody_notes": sum(e.pitch is not None for e in events)})
        atomic.write_json(ctx.out_dir / "tracks.json", {
            "grid": grid, "bars": None if cfg.events else cfg.bars, "fields": list(FIELDS),
            "vocab_fingerprint": vocab.fingerprint(), "tracks": tracks})
        for t in tracks:
            ctx.log(f"track {t['index']}: {len(t['ids'])} events ({t['chords']} chords, "
                    f"{t['melody_notes']} melody notes), {t['distinct_events']} distinct, "
                    f"self-repetition {t['self_repetition']:.2f}")
        return {"tracks": len(tracks), "events": [len(t["ids"]) for t in tracks],
                "self_repetition": [t["self_repetition"] for t in tracks],
                "distinct_events": [t["distinct_events"] for t in tracks], "seeds": seeds}
