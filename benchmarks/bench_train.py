"""Training windows per second for one member and for the ensemble, against what the CPU can do.

All rows run on the same encoded windows (outputs/encode, from `make encode`):
  peak        a float32 (and a bfloat16) 2048 x 2048 matrix multiply in a compiled loop: the
              machine's measured matmul rate, the roof the training rate is held against;
              and float32 at 384 x 384, the size of a member's own products (a batch of 256
              through a gate matrix of 96-112 units x 4), where the roof is lower
  member      each member as `train` built it before: batch and threads from lofi.toml, alone
              on the machine: the faster of two epochs, timed after a first epoch that traces
  in turn     the baseline: every member, one after another, each with every core
  side by side  the members at once, one process each (--workers), the cores shared out:
              the wall time until the last member finishes its epochs
  tried       member_0 with one change each: bf16 mixed precision, a 4x batch, an XLA-compiled
              train step (kept out of `train`: see the README for why)
Achieved FLOP/s counts the member's matrix work (Conv1D, both LSTM directions, attention, dense
layers and heads), 3x the forward pass for forward plus backward; the ratio to the float32
peak is the roofline ratio. Embedding lookups, softmax and the optimiser are left out of the count.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from lofi_pipeline.core.config import load_config  # noqa: E402
from lofi_pipeline.model.members import compile_member, configure_tensorflow, model_inputs  # noqa: E402
from lofi_pipeline.model.training import build_from_spec, member_specs  # noqa: E402
from lofi_pipeline.music.token_format import FIELDS  # noqa: E402
from lofi_pipeline.stages.catalog import read_encoded  # noqa: E402


def matmul_peak_flops(dtype: str = "float32", n: int = 2048, repeats: int = 20) -> float:
    import tensorflow as tf
    a = tf.cast(tf.random.normal((n, n)), dtype)
    b = tf.cast(tf.random.normal((n, n)), dtype)

    @tf.function
    def chain(x):
        for _ in range(repeats):
            x = tf.matmul(x, b) * tf.cast(1e-3, dtype)
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


def fitted_member(spec, field_sizes, window, x, y, batch_size: int, change: str = ""):
    """The member and its dataset, one epoch trained (tracing and warm-up out of the timing)."""
    import keras
    import tensorflow as tf
    keras.utils.set_random_seed(spec["seed"])
    if change == "bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_from_spec(spec, field_sizes, window, given=())
        compile_member(model, spec["learning_rate"], "all")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    if change == "xla":
        model.compile(optimizer=model.optimizer, loss=model.loss, jit_compile=True)
    ds = (tf.data.Dataset.from_tensor_slices((model_inputs(x, y), {f: y[:, j] for j, f in enumerate(FIELDS)}))
          .batch(batch_size).prefetch(tf.data.AUTOTUNE))
    model.fit(ds, epochs=1, verbose=0)
    return model, ds


def timed_epochs(model, ds, epochs: int) -> list[float]:
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        model.fit(ds, epochs=1, verbose=0)
        times.append(time.perf_counter() - t)
    return times


def epoch_rate(spec, field_sizes, window, x, y, batch_size: int, change: str = "") -> float:
    """Windows/s of the faster of two epochs: the first after tracing still warms caches up."""
    model, ds = fitted_member(spec, field_sizes, window, x, y, batch_size, change)
    return len(y) / min(timed_epochs(model, ds, 2))


_start_together = None


def side_by_side(members: int, workers: int, cores: int | None = None) -> tuple[int, int]:
    """(processes, TensorFlow threads each) for training `members` at once; 0 workers = one per member."""
    cores = cores or os.cpu_count() or 1
    processes = max(1, min(members, workers or members))
    return processes, max(1, cores // processes)


def _join(barrier) -> None:
    global _start_together
    _start_together = barrier


def _side_by_side_job(job) -> tuple[int, float]:
    """In a worker: warm the member up, wait for the others' first members, then time two epochs.
    Returns (worker pid, seconds)."""
    spec, encode_dir, n, batch_size, threads, first_round = job
    configure_tensorflow(threads)
    encoded = read_encoded(encode_dir)
    vocab, data = encoded.vocab, encoded.arrays
    x, y = data["x_train"][:n], data["y_train"][:n]
    model, ds = fitted_member(spec, dict(zip(FIELDS, vocab.sizes)), x.shape[1], x, y, batch_size)
    if first_round:
        _start_together.wait()
    t = time.perf_counter()
    timed_epochs(model, ds, 2)
    return os.getpid(), time.perf_counter() - t


def side_by_side_rate(specs, encode_dir: Path, n: int, batch_size: int, workers: int) -> tuple[float, int, int]:
    """Ensemble windows/s with the members trained at once, as `train` runs them: windows through
    every member per second of wall time until the slowest member is done."""
    processes, threads = side_by_side(len(specs), workers)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    jobs = [(spec, encode_dir, n, batch_size, threads, i < processes) for i, spec in enumerate(specs)]
    with ctx.Pool(processes, initializer=_join, initargs=(barrier,)) as pool:
        walls = pool.map(_side_by_side_job, jobs, chunksize=1)
    # With fewer processes than members a process trains several in turn: add their times up.
    per_process: dict[int, float] = {}
    for pid, seconds in walls:
        per_process[pid] = per_process.get(pid, 0.0) + seconds
    return 2 * n / max(per_process.values()), processes, threads


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encode-dir", default="outputs/encode")
    ap.add_argument("--windows", type=int, default=8192, help="training windows per timed epoch")
    ap.add_argument("--workers", type=int, default=0, help="processes side by side (0: one per member)")
    ap.add_argument("--skip-tried", action="store_true", help="leave out the rows of options tried")
    args = ap.parse_args()
    encode_dir = Path(args.encode_dir)
    if not (encode_dir / "data.npz").exists():
        print(f"no encoded data in {encode_dir}; run `make encode` first", file=sys.stderr)
        return 1
    cfg = load_config()
    configure_tensorflow(cfg.train.threads)
    encoded = read_encoded(encode_dir)
    vocab, data = encoded.vocab, encoded.arrays
    x, y = data["x_train"][:args.windows], data["y_train"][:args.windows]
    window, field_sizes = x.shape[1], dict(zip(FIELDS, vocab.sizes))
    specs = member_specs(cfg)
    batch = cfg.train.batch_size
    peak, peak_bf16 = matmul_peak_flops("float32"), matmul_peak_flops("bfloat16")
    peak_small = matmul_peak_flops("float32", 384, 400)
    print(f"{len(y)} windows of {window} events, batch {batch}, {os.cpu_count()} CPU cores")
    print(f"{'row':<52} {'windows/s':>10} {'GFLOP/s':>9} {'of peak':>8}")
    print(f"{'peak: float32 matmul 2048 x 2048':<52} {'':>10} {peak / 1e9:9.1f} {1:8.1%}")
    print(f"{'peak: bfloat16 matmul 2048 x 2048':<52} {'':>10} {peak_bf16 / 1e9:9.1f} {peak_bf16 / peak:8.1%}")
    print(f"{'float32 matmul 384 x 384 (a member-sized product)':<52} {'':>10} {peak_small / 1e9:9.1f} "
          f"{peak_small / peak:8.1%}")
    rates = []
    for spec in specs:
        rate = epoch_rate(spec, field_sizes, window, x, y, batch)
        flops = rate * member_train_flops(spec, window, field_sizes)
        rates.append(rate)
        label = f"{spec['name']} (kernel {spec['kernel_size']}, LSTM {spec['lstm_units']})"
        print(f"{label:<52} {rate:10.0f} {flops / 1e9:9.1f} {flops / peak:8.1%}")
    ensemble_flops = sum(member_train_flops(s, window, field_sizes) for s in specs)
    in_turn = 1 / sum(1 / r for r in rates)  # a window trained through every member
    print(f"{'ensemble: members in turn (baseline)':<52} {in_turn:10.0f} {in_turn * ensemble_flops / 1e9:9.1f} "
          f"{in_turn * ensemble_flops / peak:8.1%}")
    together, processes, threads = side_by_side_rate(specs, encode_dir, len(y), batch, args.workers)
    label = f"ensemble: side by side ({processes} processes x {threads} thread)"
    print(f"{label:<52} {together:10.0f} {together * ensemble_flops / 1e9:9.1f} {together * ensemble_flops / peak:8.1%}"
          f"   {together / in_turn:.2f}x the baseline")
    if not args.skip_tried:
        base = rates[0]
        for change, label, size in (("bf16", "member_0, bf16 mixed precision", batch),
                                    ("", f"member_0, batch {4 * batch}", 4 * batch),
                                    ("xla", "member_0, XLA-compiled train step", batch)):
            rate = epoch_rate(specs[0], field_sizes, window, x, y, size, change)
            print(f"{label:<52} {rate:10.0f} {'':>9} {'':>8}   {rate / base:.2f}x member_0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
