"""Events per second: the classic per-event `model.predict` loop against EnsembleSampler.

All rows run on the same trained ensemble (outputs/train, from `make train`) in one process,
and each ratio is against the first row, measured in the same run:
  loop       one track, every event a `predict` call per member for the trunk and one per field
             for the heads (each head reads the fields drawn before it), probabilities averaged
  compiled   one track, all members in one XLA-compiled tf.function (what `generate` uses):
             like for like with the loop, so its ratio is the compiled function alone
  batched    `--tracks` tracks in one batch through the same compiled function: its ratio adds
             what batching brings on top
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from lofi_pipeline.model.compose import Composer, compose  # noqa: E402
from lofi_pipeline.model.ensemble import EnsembleSampler  # noqa: E402
from lofi_pipeline.model.members import configure_tensorflow  # noqa: E402
from lofi_pipeline.model.sampling import FieldSampler  # noqa: E402
from lofi_pipeline.music.token_format import FIELDS, GIVEN, METRES, PAD  # noqa: E402
from lofi_pipeline.stages.catalog import read_ensemble  # noqa: E402

SETTINGS = {"temperature": 0.9, "top_k": 30, "top_p": 0.95, "repetition_penalty": 1.3, "repetition_window": 16,
            "fields": {}}


def predict_loop(models, field_sampler: FieldSampler, window: int, events: int, metre: int, rng) -> np.ndarray:
    seq = np.zeros((0, len(FIELDS)), np.int32)
    for _ in range(events):
        ctx = np.full((1, window, len(FIELDS)), PAD, np.int32)
        tail = seq[-window:]
        if len(tail):
            ctx[0, window - len(tail):] = tail
        contexts = [m.get_layer("trunk").predict(ctx, verbose=0) for m in models]
        row = np.zeros(len(FIELDS), np.int32)
        row[FIELDS.index("metre")] = metre
        for j, field in enumerate(FIELDS):
            if field in GIVEN:
                continue
            outs = [m.get_layer("heads").predict([c, row[None, :]], verbose=0)[field][0]
                    for m, c in zip(models, contexts)]
            row[j] = field_sampler.draw_field(field, np.mean(outs, axis=0), rng, row, seq)
        seq = np.vstack([seq, row[None, :]])
    return seq


def compiled_rate(sampler: EnsembleSampler, field_sampler: FieldSampler, tracks: int, events: int, metre: str) -> float:
    vocab = field_sampler.vocab

    def run(n, seed):
        # `n` events drawn freely (no form), as `generate --set generate.events=N` does
        composers = [Composer([], 4, metre, vocab, np.zeros((0, len(FIELDS)), np.int32),
                              np.random.default_rng(seed + i), 0.0, 0.0, set(range(12)), None, max_events=n)
                     for i in range(tracks)]
        compose(sampler, field_sampler, composers, progress=False)
    run(2, 0)  # trace and compile this shape
    t = time.perf_counter()
    run(events, 100)
    return tracks * events / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-dir", default="outputs/train")
    ap.add_argument("--events", type=int, default=48, help="events per track")
    ap.add_argument("--tracks", type=int, default=4)
    args = ap.parse_args()
    if not (Path(args.train_dir) / "members.json").exists():
        print(f"no trained ensemble in {args.train_dir}; run `make train` first", file=sys.stderr)
        return 1
    configure_tensorflow()
    models, vocab, info = read_ensemble(Path(args.train_dir))
    window = info["window"]
    field_sampler = FieldSampler(vocab, SETTINGS)
    print(f"ensemble: {len(models)} members, window {window}, fields {dict(zip(FIELDS, vocab.sizes))}; "
          f"{args.events} events per track, {os.cpu_count()} CPU cores")

    metre = next(m for m in METRES if m in vocab.index["metre"])  # 4/4 where the data has it
    metre_id = vocab.index["metre"][metre]
    predict_loop(models, field_sampler, window, 2, metre_id, np.random.default_rng(0))  # warm-up
    t = time.perf_counter()
    predict_loop(models, field_sampler, window, args.events, metre_id, np.random.default_rng(1))
    base_rate = args.events / (time.perf_counter() - t)
    print(f"{'sampler':<52} {'events/s':>9} {'ratio':>7}")
    print(f"{'loop      model.predict per event, member and head, 1 track':<52} {base_rate:9.1f} {1.0:6.1f}x")
    try:
        sampler = EnsembleSampler(models, jit_compile=True)
        sampler.field_probs(sampler.contexts(np.zeros((1, sampler.window, len(FIELDS)))),
                            np.zeros((1, len(FIELDS)), np.int32))
        label = "XLA"
    except Exception as exc:  # an op XLA cannot compile on this build: graph mode, as generate does
        print(f"(XLA unavailable: {type(exc).__name__}; graph mode)")
        sampler, label = EnsembleSampler(models), "graph"
    for tracks, name in ((1, f"compiled  EnsembleSampler ({label}), 1 track"),
                         (args.tracks, f"batched   EnsembleSampler ({label}), {args.tracks} tracks")):
        rate = compiled_rate(sampler, field_sampler, tracks, args.events, metre)
        print(f"{name:<52} {rate:9.1f} {rate / base_rate:6.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
