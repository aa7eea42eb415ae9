"""Events per second: the classic per-event `model.predict` loop against EnsembleSampler.

Both run on the same trained ensemble (outputs/train, from `make train`) in one process:
  baseline  one track, every event a `model.predict` call per member, probabilities averaged
  batched   `--tracks` tracks in one batch, all members in one compiled tf.function
The ratio compares events produced per second.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from lofi_pipeline.encode import PAD  # noqa: E402
from lofi_pipeline.generate import EnsembleSampler, sample_event  # noqa: E402
from lofi_pipeline.model import configure_tensorflow  # noqa: E402
from lofi_pipeline.train import load_ensemble  # noqa: E402


def predict_loop(models, window: int, events: int, rng) -> list[int]:
    seq: list[int] = []
    for _ in range(events):
        ctx = np.full((1, window), PAD, np.int32)
        tail = seq[-window:]
        if tail:
            ctx[0, window - len(tail):] = tail
        probs = np.mean([m.predict(ctx, verbose=0)[0] for m in models], axis=0)
        seq.append(sample_event(probs, rng, 0.9, 30, 0.95))
    return seq


def batched(sampler: EnsembleSampler, tracks: int, events: int, rngs) -> list[list[int]]:
    seqs = [[] for _ in range(tracks)]
    w = sampler.window
    for _ in range(events):
        ctx = np.full((tracks, w), PAD, np.int32)
        for i, s in enumerate(seqs):
            if s:
                ctx[i, w - len(s[-w:]):] = s[-w:]
        probs = sampler.next_probs(ctx)
        for i in range(tracks):
            seqs[i].append(sample_event(probs[i], rngs[i], 0.9, 30, 0.95))
    return seqs


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
    models, vocab, info = load_ensemble(Path(args.train_dir))
    window = info["window"]
    print(f"ensemble: {len(models)} members, window {window}, vocabulary {len(vocab)}; "
          f"{args.events} events per track, {os.cpu_count()} CPU cores")

    predict_loop(models, window, 2, np.random.default_rng(0))  # warm-up
    t = time.perf_counter()
    predict_loop(models, window, args.events, np.random.default_rng(1))
    base_rate = args.events / (time.perf_counter() - t)
    print(f"baseline  model.predict per event, 1 track:        {base_rate:8.1f} events/s")

    results = {}
    for label, jit in (("batched   EnsembleSampler", False), ("batched   EnsembleSampler + XLA", True)):
        try:
            sampler = EnsembleSampler(models, jit_compile=jit)
            batched(sampler, args.tracks, 2, [np.random.default_rng(0)] * args.tracks)  # trace, compile
        except Exception as exc:  # XLA may be unavailable for some op on this build
            print(f"{label}: unavailable ({type(exc).__name__})")
            continue
        rngs = [np.random.default_rng(i) for i in range(args.tracks)]
        t = time.perf_counter()
        batched(sampler, args.tracks, args.events, rngs)
        rate = args.tracks * args.events / (time.perf_counter() - t)
        results[label] = rate
        print(f"{label}, {args.tracks} tracks: {rate:8.1f} events/s  ({rate / base_rate:5.1f}x the baseline)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
