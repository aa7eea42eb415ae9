"""Training windows per second for one member and for the ensemble, against what the CPU can do.

All rows run in one process on the same encoded windows (outputs/encode, from `make encode`):
  peak       a float32 matrix multiply (2048 x 2048) in a compiled loop: the machine's measured
             matmul rate, the roof the training rate is held against
  member     each member as `train` builds it (batch and threads from lofi.toml): the faster of two
             epochs, timed after a first epoch that traces and warms up
  ensemble   every member, one after another, as `train` runs them
Achieved FLOP/s counts the member's matrix work (Conv1D, both LSTM directions, attention, dense
layers and heads), 3x the forward pass for forward plus backward; the ratio to the peak is the
roofline ratio. Embedding lookups, softmax and the optimiser are left out of the count.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from lofi_pipeline.config import load_config  # noqa: E402
from lofi_pipeline.encode import load_encoded  # noqa: E402
from lofi_pipeline.model import build_member, configure_tensorflow, model_inputs  # noqa: E402
from lofi_pipeline.token_format import FIELDS  # noqa: E402
from lofi_pipeline.train import member_specs  # noqa: E402


def matmul_peak_flops(n: int = 2048, repeats: int = 20) -> float:
    import tensorflow as tf
    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))

    @tf.function
    def chain(x):
        for _ in range(repeats):
            x = tf.matmul(x, b) * 1e-3
        return x
    chain(a).numpy()
    t = time.perf_counter()
    chain(a).numpy()
    return 2 * n**3 * repeats / (time.perf_counter() - t)


def member_train_flops(spec: dict, window: int, field_sizes: dict[str, int]) -> float:
    """Matrix FLOPs of one training window: 3 x (2 x multiply-adds of the forward pass)."""
    e, f, k, u, h = (spec["embed_dim"], spec["conv_filters"], spec["kernel_size"], spec["lstm_units"],
                     spec["attention_heads"])
    key_dim = max(8, u // h)
    macs = window * k * e * f  # causal Conv1D
    macs += 2 * window * 4 * u * (f + u)  # BiLSTM: four gates, input and recurrent weights
    macs += 2 * window * (2 * u) * (h * key_dim) + 2 * (2 * u) * (h * key_dim)  # keys, values; query
    macs += window * h * key_dim * 2 + (h * key_dim) * (2 * u)  # scores, weighted sum; output
    macs += (2 * u) * (2 * e)  # dense
    given = 0
    for size in field_sizes.values():  # chained heads: context plus the earlier fields' embeddings
        macs += (2 * e + given) * (2 * e) + (2 * e) * size
        given += e // 2
    return 3 * 2 * macs


def epoch_rate(spec, field_sizes, window, x, y, batch_size: int) -> float:
    import keras
    import tensorflow as tf
    keras.utils.set_random_seed(spec["seed"])
    model = build_member(field_sizes, window, **{k: spec[k] for k in (
        "embed_dim", "conv_filters", "kernel_size", "lstm_units", "attention_heads", "dropout", "learning_rate")})
    ds = (tf.data.Dataset.from_tensor_slices((model_inputs(x, y), {f: y[:, j] for j, f in enumerate(FIELDS)}))
          .batch(batch_size).prefetch(tf.data.AUTOTUNE))
    model.fit(ds, epochs=1, verbose=0)  # trace, compile, warm up
    times = []
    for _ in range(2):  # the faster of two epochs: the first after tracing still warms caches up
        t = time.perf_counter()
        model.fit(ds, epochs=1, verbose=0)
        times.append(time.perf_counter() - t)
    return len(y) / min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encode-dir", default="outputs/encode")
    ap.add_argument("--windows", type=int, default=8192, help="training windows per timed epoch")
    args = ap.parse_args()
    if not (Path(args.encode_dir) / "data.npz").exists():
        print(f"no encoded data in {args.encode_dir}; run `make encode` first", file=sys.stderr)
        return 1
    cfg = load_config("lofi.toml")
    configure_tensorflow(cfg.train.threads)
    vocab, data, _ = load_encoded(Path(args.encode_dir))
    x, y = data["x_train"][:args.windows], data["y_train"][:args.windows]
    window, field_sizes = x.shape[1], dict(zip(FIELDS, vocab.sizes))
    specs = member_specs(cfg)
    peak = matmul_peak_flops()
    print(f"{len(y)} windows of {window} events, batch {cfg.train.batch_size}, {os.cpu_count()} CPU cores")
    print(f"{'row':<44} {'windows/s':>10} {'GFLOP/s':>9} {'of peak':>8}")
    print(f"{'peak: float32 matmul 2048 x 2048':<44} {'':>10} {peak / 1e9:9.1f} {1:8.1%}")
    rates = []
    for spec in specs:
        rate = epoch_rate(spec, field_sizes, window, x, y, cfg.train.batch_size)
        flops = rate * member_train_flops(spec, window, field_sizes)
        rates.append(rate)
        label = f"{spec['name']} (kernel {spec['kernel_size']}, LSTM {spec['lstm_units']})"
        print(f"{label:<44} {rate:10.0f} {flops / 1e9:9.1f} {flops / peak:8.1%}")
    ensemble = 1 / sum(1 / r for r in rates)  # a window trained through every member
    print(f"{'ensemble: every member, one after another':<44} {ensemble:10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
