"""train: fit the ensemble members, evaluate them and the baselines on validation pieces."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np

from . import atomic
from .baselines import NGramModel, UnigramModel, next_event_metrics
from .encode import load_encoded
from .errors import StageError
from .model import build_member, configure_tensorflow
from .runner import Stage, StageContext
from .token_format import Vocabulary


def member_specs(cfg) -> list[dict]:
    """Members differ by seed, kernel size and LSTM width, so they are not copies."""
    t = cfg.train
    return [{"name": f"member_{i}", "seed": cfg.run.seed + 101 * i,
             "kernel_size": t.kernel_sizes[i % len(t.kernel_sizes)],
             "lstm_units": t.lstm_units[i % len(t.lstm_units)],
             "embed_dim": t.embed_dim, "conv_filters": t.conv_filters,
             "attention_heads": t.attention_heads, "dropout": t.dropout,
             "learning_rate": t.learning_rate} for i in range(t.members)]


def _persistent_best_callback(work: Path, patience: int):
    """Keeps the best weights and the early-stopping count on disk, so a resumed run
    remembers its best epoch instead of starting the count again."""
    import keras

    class PersistentBest(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.state_path = work / "best.json"
            try:
                self.state = json.loads(self.state_path.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                self.state = {"val_loss": None, "epoch": -1}

        def on_epoch_end(self, epoch, logs=None):
            loss = float(logs["val_loss"])
            if self.state["val_loss"] is None or loss < self.state["val_loss"]:
                partial = work / "best.partial.keras"
                self.model.save(partial)
                partial.replace(work / "best.keras")
                self.state = {"val_loss": loss, "epoch": epoch}
                atomic.write_json(self.state_path, self.state)
            elif epoch - self.state["epoch"] >= patience:
                self.model.stop_training = True

    return PersistentBest()


def read_history(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path) as f:
        rows = {int(r["epoch"]): r for r in csv.DictReader(f)}  # a resumed epoch overwrites
    return [{k: float(v) for k, v in rows[e].items()} for e in sorted(rows)]


def train_member(spec: dict, vocab_size: int, window: int, data: dict, work: Path,
                 epochs: int, batch_size: int, patience: int, log=print):
    """Train one member in `work`, resuming from its last epoch if a run was interrupted.
    Returns the best model (by validation loss)."""
    import keras
    import tensorflow as tf

    work.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(spec["seed"])
    model = build_member(vocab_size, window, name=spec["name"],
                         **{k: spec[k] for k in ("embed_dim", "conv_filters", "kernel_size", "lstm_units",
                                                 "attention_heads", "dropout", "learning_rate")})
    done = read_history(work / "history.csv")
    if done:
        log(f"{spec['name']}: resuming after epoch {len(done)}")
    train_ds = (tf.data.Dataset.from_tensor_slices((data["x_train"], data["y_train"]))
                .shuffle(len(data["y_train"]), seed=spec["seed"], reshuffle_each_iteration=True)
                .batch(batch_size).prefetch(tf.data.AUTOTUNE))
    val_ds = (tf.data.Dataset.from_tensor_slices((data["x_val"], data["y_val"]))
              .batch(1024).prefetch(tf.data.AUTOTUNE))
    best = _persistent_best_callback(work, patience)
    stopped_early = best.state["epoch"] >= 0 and len(done) - 1 - best.state["epoch"] >= patience
    if not (work / "best.keras").exists() or not (len(done) >= epochs or stopped_early):
        class Started(keras.callbacks.Callback):
            ok = False

            def on_epoch_begin(self, epoch, logs=None):
                self.ok = True
        started = Started()
        try:
            model.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=2, shuffle=False, callbacks=[
                # Keras writes its checkpoint in place; with two kept, a kill mid-write leaves the other.
                keras.callbacks.BackupAndRestore(str(work / "backup"), double_checkpoint=True,
                                                 delete_checkpoint=False),
                keras.callbacks.CSVLogger(str(work / "history.csv"), append=True),
                best, started])
        except (OSError, ValueError) as exc:
            if not done or started.ok:
                raise
            # Both checkpoints unreadable (a kill while the metadata was written): start over.
            log(f"{spec['name']}: its checkpoint was damaged by the interruption "
                f"({type(exc).__name__}); training it from the start")
            shutil.rmtree(work)
            return train_member(spec, vocab_size, window, data, work, epochs, batch_size, patience, log)
    return keras.saving.load_model(work / "best.keras")


def plot_curves(histories: dict[str, list[dict]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for i, (name, rows) in enumerate(histories.items()):
        epochs = [r["epoch"] + 1 for r in rows]
        color = f"C{i}"
        ax.plot(epochs, [r["loss"] for r in rows], "--", color=color, label=f"{name} train")
        ax.plot(epochs, [r["val_loss"] for r in rows], "-", color=color, label=f"{name} validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (NLL per event, nats)")
    ax.set_title("Learning curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def format_table(metrics: dict) -> str:
    lines = [f"{'model':<12} {'NLL':>7} {'ppl':>8} {'top1':>6} {'top5':>6}"]
    for name, m in metrics.items():
        lines.append(f"{name:<12} {m['nll']:>7.3f} {m['perplexity']:>8.1f} {m['top1']:>6.3f} {m['top5']:>6.3f}")
    return "\n".join(lines)


def evaluate(models: dict, vocab_size: int, data: dict, ngram_order: int) -> dict:
    """Metrics on the validation windows for members, their average, and both baselines."""
    x, y = data["x_val"], data["y_val"]
    probs = {name: m.predict(x, batch_size=1024, verbose=0) for name, m in models.items()}
    metrics = {name: next_event_metrics(p, y) for name, p in probs.items()}
    metrics["ensemble"] = next_event_metrics(np.mean(list(probs.values()), axis=0), y)
    unigram = UnigramModel(vocab_size).fit(data["y_train"])
    metrics["unigram"] = next_event_metrics(unigram.predict(x), y)
    ngram = NGramModel(vocab_size, ngram_order).fit(data["x_train"], data["y_train"])
    metrics[f"{ngram_order}-gram"] = next_event_metrics(ngram.predict(x), y)
    return metrics


class TrainStage(Stage):
    name = "train"
    requires = ("encode",)
    reads = ("train", "run.seed")
    help = "train the ensemble (Conv1D -> BiLSTM -> attention) and score it against baselines"

    def run(self, ctx: StageContext) -> dict:
        cfg = ctx.params.train
        configure_tensorflow(cfg.threads)
        vocab, data, _ = load_encoded(ctx.inputs["encode"])
        if len(data["y_train"]) == 0 or len(data["y_val"]) == 0:
            raise StageError("encode produced no training or no validation windows; "
                             "give the archive more (or longer) pieces")
        window = data["x_train"].shape[1]
        work_root = ctx.cache_dir / ctx.key
        specs = member_specs(ctx.params)
        models, histories = {}, {}
        (ctx.out_dir / "members").mkdir()
        for spec in specs:
            work = work_root / spec["name"]
            ctx.log(f"{spec['name']}: kernel {spec['kernel_size']}, LSTM {spec['lstm_units']}, "
                    f"seed {spec['seed']}")
            model = train_member(spec, len(vocab), window, data, work, cfg.epochs, cfg.batch_size,
                                 cfg.patience, ctx.log)
            shutil.copyfile(work / "best.keras", ctx.out_dir / "members" / f"{spec['name']}.keras")
            models[spec["name"]] = model
            histories[spec["name"]] = read_history(work / "history.csv")
        metrics = evaluate(models, len(vocab), data, cfg.ngram_order)
        table = format_table(metrics)
        ctx.log("validation next-event metrics:\n" + table)
        vocab.save(ctx.out_dir / "vocab.json")
        atomic.write_json(ctx.out_dir / "members.json", {
            "window": window, "vocab_fingerprint": vocab.fingerprint(), "vocab_size": len(vocab),
            "members": specs})
        atomic.write_json(ctx.out_dir / "metrics.json", {"validation": metrics,
                                                          "histories": histories})
        atomic.write_text(ctx.out_dir / "metrics.txt", table + "\n")
        plot_curves(histories, ctx.out_dir / "curves.png")
        shutil.rmtree(work_root, ignore_errors=True)
        best_member = min(metrics[s["name"]]["nll"] for s in specs)
        return {"validation": metrics, "epochs": {n: len(h) for n, h in histories.items()},
                "ensemble_beats_members": metrics["ensemble"]["nll"] < best_member,
                "ensemble_beats_ngram": metrics["ensemble"]["nll"] < metrics[f"{cfg.ngram_order}-gram"]["nll"]}


def load_ensemble(train_dir: Path, vocab: Vocabulary | None = None):
    """The members and their vocabulary; a vocabulary that does not belong to them is an error."""
    import keras
    train_dir = Path(train_dir)
    info = json.loads((train_dir / "members.json").read_text())
    saved = Vocabulary.load(train_dir / "vocab.json")
    if vocab is not None and vocab.fingerprint() != info["vocab_fingerprint"]:
        raise StageError(f"{train_dir}: the models were trained on vocabulary {info['vocab_fingerprint']}, "
                         f"not on the given one ({vocab.fingerprint()}); re-run `lofi train`")
    if saved.fingerprint() != info["vocab_fingerprint"]:
        raise StageError(f"{train_dir}/vocab.json does not belong to the models saved beside it; "
                         "re-run `lofi train --force`")
    models = [keras.saving.load_model(train_dir / "members" / f"{m['name']}.keras")
              for m in info["members"]]
    for m in models:
        if m.output_shape[-1] != len(saved):
            raise StageError(f"{train_dir}: model {m.name} predicts {m.output_shape[-1]} events but "
                             f"the vocabulary has {len(saved)}; re-run `lofi train --force`")
    return models, saved, info
