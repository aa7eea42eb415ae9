"""generate: sample event sequences from the ensemble, all tracks in one batch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import atomic
from .encode import load_encoded, piece_to_events
from .errors import StageError
from .hashing import path_digest
from .midi_io import UnusableMidi, midi_bytes_to_piece, midi_header_reason
from .runner import Stage, StageContext
from .token_format import PAD, UNK, Vocabulary


def sample_event(probs: np.ndarray, rng: np.random.Generator, temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0, recent: np.ndarray | None = None,
                 repetition_penalty: float = 1.0) -> int:
    """Draw one event id from a next-event distribution; padding and <unk> are never drawn."""
    p = np.asarray(probs, np.float64).copy()
    p[[PAD, UNK]] = 0.0
    if recent is not None and len(recent) and repetition_penalty != 1.0:
        p[np.unique(recent)] /= repetition_penalty
    p = np.power(np.clip(p, 0, None), 1.0 / temperature)
    if p.sum() <= 0:
        p = np.ones_like(p)
        p[[PAD, UNK]] = 0.0
    order = np.argsort(-p, kind="stable")
    keep = len(order) if top_k <= 0 else min(top_k, len(order))
    sorted_p = p[order[:keep]] / p[order[:keep]].sum()
    if top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(sorted_p), top_p) + 1)
    chosen = order[:keep]
    weights = p[chosen] / p[chosen].sum()
    return int(chosen[rng.choice(len(chosen), p=weights)])


class EnsembleSampler:
    """All members' forward passes for a batch of windows in one compiled TensorFlow function,
    combined into one distribution per window."""

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
            if combine == "product":
                logp = tf.add_n([wi * tf.math.log(o + 1e-9) for wi, o in zip(w, outs)])
                return tf.nn.softmax(logp, axis=-1)
            return tf.add_n([wi * o for wi, o in zip(w, outs)])
        self._step = step

    def next_probs(self, windows: np.ndarray) -> np.ndarray:
        return self._step(np.asarray(windows, np.int32)).numpy()


def track_seed(run_seed: int, index: int) -> int:
    return int(np.random.SeedSequence([run_seed, index]).generate_state(1)[0])


def self_repetition(ids: list[int], size: int = 16) -> float:
    """Mean share of each `size`-event block that equals the block before it, position by position."""
    blocks = [ids[i:i + size] for i in range(0, len(ids) - size + 1, size)]
    if len(blocks) < 2:
        return 0.0
    return float(np.mean([np.mean(np.array(a) == np.array(b)) for a, b in zip(blocks, blocks[1:])]))


def primer_from_midi(path: Path, vocab: Vocabulary, window: int) -> np.ndarray:
    if not path.is_file():
        raise StageError(f"primer {path}: file not found (generate.primer)")
    data = path.read_bytes()
    reason = midi_header_reason(data)
    if reason:
        raise StageError(f"primer {path}: {reason}")
    grid = int(vocab.config.get("grid", 12))
    try:
        piece = midi_bytes_to_piece(data, path.name, "primer", grid)
    except UnusableMidi as exc:
        raise StageError(f"primer {path}: {exc}") from None
    ids = vocab.encode([e.token for e in piece_to_events(piece, int(vocab.config.get("velocity_bins", 4)))])
    if len(ids) > window:
        raise StageError(f"primer {path}: {len(ids)} events, longer than the models' window of "
                         f"{window}; use a shorter primer")
    return ids


def validation_primer(arrays: dict, rng: np.random.Generator, n: int) -> np.ndarray:
    starts = np.concatenate([[0], np.cumsum(arrays["lengths"])[:-1]])
    val = np.flatnonzero(arrays["is_val"])
    i = val[rng.integers(len(val))]
    return arrays["tokens"][starts[i]:starts[i] + min(n, arrays["lengths"][i])]


def generate_tracks(sampler: EnsembleSampler, primers: list[np.ndarray], rngs: list,
                    target_ticks: int, max_events: int, shifts: np.ndarray, params: dict,
                    progress: bool = True) -> list[list[int]]:
    """Sample every track to `target_ticks` of music (or `max_events` events) in one batch."""
    n, window = len(primers), sampler.window
    seqs = [list(map(int, p)) for p in primers]
    ticks = [int(shifts[s].sum()) for s in seqs]
    done = [False] * n
    bar = tqdm(total=max_events, desc="generate", unit="step", disable=None if progress else True)
    for _ in range(max_events):
        windows = np.full((n, window), PAD, np.int32)
        for i, s in enumerate(seqs):
            ctx = s[-window:]
            if ctx:
                windows[i, window - len(ctx):] = ctx
        probs = sampler.next_probs(windows)
        for i in range(n):
            if done[i]:
                continue
            recent = np.array(seqs[i][-params["repetition_window"]:], np.int64) \
                if params["repetition_window"] else None
            tok = sample_event(probs[i], rngs[i], params["temperature"], params["top_k"],
                               params["top_p"], recent, params["repetition_penalty"])
            seqs[i].append(tok)
            ticks[i] += int(shifts[tok])
            done[i] = ticks[i] >= target_ticks or len(seqs[i]) >= max_events
        bar.update()
        if all(done):
            break
    bar.close()
    return seqs


def shift_table(vocab: Vocabulary) -> np.ndarray:
    """Time shift in ticks of every vocabulary entry (0 for the specials)."""
    out = np.zeros(len(vocab), np.int64)
    for i, tok in enumerate(vocab.tokens):
        if "_s" in tok:
            out[i] = int(tok.split("_s")[1].split("_")[0])
    return out


class GenerateStage(Stage):
    name = "generate"
    requires = ("train", "encode")
    reads = ("generate", "run.seed", "train.threads")
    help = "sample event sequences from the ensemble (temperature, top-k, top-p, primer, seed)"

    def external_inputs(self, params, root):
        # The primer is a mode or a MIDI file; a file counts by its bytes, never its path.
        primer = params.generate.primer
        if primer in ("validation", "none"):
            return {"primer": primer}
        return {"primer": path_digest(root / primer)}

    def check(self, params, root):
        primer = params.generate.primer
        if primer not in ("validation", "none") and not (root / primer).is_file():
            raise StageError(f"primer {primer}: file not found (generate.primer is "
                             "'validation', 'none' or a MIDI file)")

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
            primers = [np.zeros(0, np.int32) for _ in seeds]
        elif cfg.primer == "validation":
            primers = [validation_primer(arrays, rng, cfg.primer_events) for rng in rngs]
        else:
            primer = primer_from_midi(ctx.path(cfg.primer), vocab, info["window"])
            primers = [primer for _ in seeds]
        sampler = EnsembleSampler(models, cfg.combine, list(cfg.weights) or None, jit_compile=True)
        try:  # XLA about doubles the rate here (benchmarks/bench_generate.py)
            sampler.next_probs(np.zeros((cfg.tracks, sampler.window), np.int32))
        except Exception as exc:  # an op XLA cannot compile on this build: plain graph mode
            ctx.log(f"XLA unavailable ({type(exc).__name__}); using graph mode")
            sampler = EnsembleSampler(models, cfg.combine, list(cfg.weights) or None)
        grid = int(vocab.config.get("grid", 12))
        target_ticks = cfg.bars * 4 * grid
        max_events = cfg.events if cfg.events else target_ticks
        if cfg.events:
            target_ticks = 10**12
        params = {k: getattr(cfg, k) for k in ("temperature", "top_k", "top_p",
                                               "repetition_penalty", "repetition_window")}
        seqs = generate_tracks(sampler, primers, rngs, target_ticks, max_events + max(map(len, primers)),
                               shift_table(vocab), params)
        tracks = []
        for i, (seq, seed, primer) in enumerate(zip(seqs, seeds, primers)):
            tracks.append({"index": i + 1, "seed": seed, "primer_events": len(primer),
                           "ids": seq, "tokens": vocab.decode(seq),
                           "self_repetition": round(self_repetition(seq), 4),
                           "distinct_events": len(set(seq))})
        atomic.write_json(ctx.out_dir / "tracks.json", {
            "grid": grid, "bars": None if cfg.events else cfg.bars,
            "vocab_fingerprint": vocab.fingerprint(), "tracks": tracks})
        for t in tracks:
            ctx.log(f"track {t['index']}: {len(t['ids'])} events, {t['distinct_events']} distinct, "
                    f"self-repetition {t['self_repetition']:.2f}")
        return {"tracks": len(tracks), "events": [len(t["ids"]) for t in tracks],
                "self_repetition": [t["self_repetition"] for t in tracks],
                "distinct_events": [t["distinct_events"] for t in tracks], "seeds": seeds}
