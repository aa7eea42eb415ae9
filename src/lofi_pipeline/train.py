"""train: fit the ensemble members (early stopping on the dev pieces), then score them, their
ensemble and the baselines on the test pieces, which nothing else looks at."""
from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from . import atomic
from .baselines import NGramModel, UnigramModel, event_metrics
from .encode import load_encoded
from .errors import StageError
from .model import build_member, configure_tensorflow, model_inputs
from .parallel import Executor
from .runner import Stage, StageContext
from .token_format import FIELDS, Vocabulary


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


def _targets(y: np.ndarray) -> dict:
    return {f: y[:, j] for j, f in enumerate(FIELDS)}


def train_member(spec: dict, field_sizes: dict[str, int], window: int, data: dict, work: Path,
                 epochs: int, batch_size: int, patience: int, log=print) -> None:
    """Train one member in `work`, resuming from its last epoch if a run was interrupted; the
    best model (by dev loss) is left in work/best.keras."""
    import keras
    import tensorflow as tf

    work.mkdir(parents=True, exist_ok=True)
    # Keras numbers unnamed ops and optimizers per process: start each member from a clean
    # slate, so it gets the same names (and bytes) whether or not another member came before.
    keras.backend.clear_session()
    keras.utils.set_random_seed(spec["seed"])
    model = build_member(field_sizes, window, name=spec["name"],
                         **{k: spec[k] for k in ("embed_dim", "conv_filters", "kernel_size", "lstm_units",
                                                 "attention_heads", "dropout", "learning_rate")})
    done = read_history(work / "history.csv")
    if done:
        log(f"{spec['name']}: resuming after epoch {len(done)}")
    train_ds = (tf.data.Dataset.from_tensor_slices((model_inputs(data["x_train"], data["y_train"]),
                                                    _targets(data["y_train"])))
                .shuffle(len(data["y_train"]), seed=spec["seed"], reshuffle_each_iteration=True)
                .batch(batch_size).prefetch(tf.data.AUTOTUNE))
    val_ds = (tf.data.Dataset.from_tensor_slices((model_inputs(data["x_dev"], data["y_dev"]), _targets(data["y_dev"])))
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
            train_member(spec, field_sizes, window, data, work, epochs, batch_size, patience, log)


def _renumber_shared_objects(node, numbers: dict) -> None:
    """Keras names shared config objects by their memory address; number them in order instead."""
    if isinstance(node, dict):
        if "shared_object_id" in node:
            node["shared_object_id"] = numbers.setdefault(node["shared_object_id"], len(numbers) + 1)
        children = node.values()
    else:
        children = node if isinstance(node, list) else ()
    for child in children:
        _renumber_shared_objects(child, numbers)


def reproducible_keras(path: Path) -> bytes:
    """A saved .keras file's bytes without what changes from one save or process to the next
    (the date in its metadata, the zip entries' times, memory addresses in its config): the
    same weights give the same bytes, so the stages after train stay fresh when a member is
    trained again, wherever it was trained."""
    out = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "metadata.json":
                meta = json.loads(data)
                meta.pop("date_saved", None)
                data = json.dumps(meta, sort_keys=True).encode()
            elif item.filename == "config.json":
                config = json.loads(data)
                _renumber_shared_objects(config, {})
                data = json.dumps(config).encode()
            entry = zipfile.ZipInfo(item.filename, date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = item.compress_type
            dst.writestr(entry, data)
    return out.getvalue()


def _member_job(shared: dict, spec: dict) -> dict:
    """Train one member where the executor put it; hand back its best model's bytes and its
    learning curve. Its checkpoints stay in `work_root` on the machine that trains it."""
    configure_tensorflow(shared["threads"], gpus=shared["gpus"] > 0)
    work = Path(shared["work_root"]) / spec["name"]
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError:  # a cluster node without the driver's folders: checkpoints in its temp folder
        work = Path(tempfile.gettempdir()) / "lofi-train" / Path(shared["work_root"]).name / spec["name"]
    train_member(spec, shared["field_sizes"], shared["window"], shared["data"], work, shared["epochs"],
                 shared["batch_size"], shared["patience"], lambda msg: print(f"[train] {msg}", flush=True))
    return {"name": spec["name"], "keras": reproducible_keras(work / "best.keras"),
            "history": read_history(work / "history.csv")}


def plot_curves(histories: dict[str, list[dict]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for i, (name, rows) in enumerate(histories.items()):
        epochs = [r["epoch"] + 1 for r in rows]
        color = f"C{i}"
        ax.plot(epochs, [r["loss"] for r in rows], "--", color=color, label=f"{name} train")
        ax.plot(epochs, [r["val_loss"] for r in rows], "-", color=color, label=f"{name} dev")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (NLL per event, all fields, nats)")
    ax.set_title("Learning curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def format_table(metrics: dict) -> str:
    """NLL per event, then NLL and top-1 per field, one row per model."""
    head = f"{'model':<12} {'NLL':>7} " + " ".join(f"{f[:8]:>14}" for f in FIELDS)
    lines = [head, f"{'':<12} {'event':>7} " + " ".join(f"{'nll   top1':>14}" for _ in FIELDS)]
    for name, m in metrics.items():
        cells = " ".join(f"{m['fields'][f]['nll']:>7.3f}{m['fields'][f]['top1']:>7.3f}" for f in FIELDS)
        lines.append(f"{name:<12} {m['nll']:>7.3f} {cells}")
    return "\n".join(lines)


def predict_fields(model, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Each field's distribution for the events `y` after the windows `x` (given y's earlier fields)."""
    out = model.predict(model_inputs(x, y), batch_size=1024, verbose=0)
    return {f: np.asarray(out[f], np.float64) for f in FIELDS}


def evaluate(models: dict, vocab: Vocabulary, data: dict, ngram_order: int, split: str = "test") -> dict:
    """Metrics on one split's windows for members, their average, and both baselines."""
    x, y = data[f"x_{split}"], data[f"y_{split}"]
    probs = {name: predict_fields(m, x, y) for name, m in models.items()}
    metrics = {name: event_metrics(p, y, FIELDS) for name, p in probs.items()}
    mean = {f: np.mean([p[f] for p in probs.values()], axis=0) for f in FIELDS}
    metrics["ensemble"] = event_metrics(mean, y, FIELDS)
    uni, ngram = {}, {}
    for j, (f, size) in enumerate(zip(FIELDS, vocab.sizes)):
        uni[f] = UnigramModel(size).fit(data["y_train"][:, j]).predict(x[:, :, j])
        ngram_model = NGramModel(size, ngram_order).fit(data["x_train"][:, :, j], data["y_train"][:, j])
        ngram[f] = ngram_model.predict(x[:, :, j])
    metrics[f"{ngram_order}-gram"] = event_metrics(ngram, y, FIELDS)
    metrics["unigram"] = event_metrics(uni, y, FIELDS)
    return metrics


class TrainStage(Stage):
    name = "train"
    requires = ("encode",)
    reads = ("train", "run.seed", "run.executor", "run.ray_address")
    help = "train the ensemble (Conv1D -> BiLSTM -> attention, a head per field); score it on the test split"

    def run(self, ctx: StageContext) -> dict:
        import keras
        cfg = ctx.params.train
        configure_tensorflow(cfg.threads, gpus=cfg.member_gpus > 0)
        vocab, data, _ = load_encoded(ctx.inputs["encode"])
        for split in ("train", "dev", "test"):
            if len(data[f"y_{split}"]) == 0:
                raise StageError(f"encode produced no {split} windows; give the archive more (or longer) pieces")
        window = data["x_train"].shape[1]
        field_sizes = dict(zip(FIELDS, vocab.sizes))
        work_root = ctx.cache_dir / ctx.key
        specs = member_specs(ctx.params)
        models, histories = {}, {}
        (ctx.out_dir / "members").mkdir()
        for spec in specs:
            ctx.log(f"{spec['name']}: kernel {spec['kernel_size']}, LSTM {spec['lstm_units']}, "
                    f"seed {spec['seed']}")
        # Locally the members train here, one after another (side by side measured no faster on
        # two cores: benchmarks/bench_train.py); on Ray, one task each, asking for its threads.
        shared = {"field_sizes": field_sizes, "window": window, "data": data, "work_root": str(work_root),
                  "epochs": cfg.epochs, "batch_size": cfg.batch_size, "patience": cfg.patience,
                  "threads": cfg.threads, "gpus": cfg.member_gpus}
        executor = Executor.for_stage(ctx.params, workers=1)
        for result in executor.map(_member_job, specs, shared=shared, cpus=cfg.threads, gpus=cfg.member_gpus):
            path = ctx.out_dir / "members" / f"{result['name']}.keras"
            atomic.write_bytes(path, result["keras"])
            models[result["name"]] = keras.saving.load_model(path)
            histories[result["name"]] = result["history"]
        metrics = evaluate(models, vocab, data, cfg.ngram_order, "test")
        table = format_table(metrics)
        ctx.log(f"test split ({len(data['y_test'])} events, used for nothing else), NLL in nats:\n" + table)
        vocab.save(ctx.out_dir / "vocab.json")
        atomic.write_json(ctx.out_dir / "members.json", {
            "window": window, "vocab_fingerprint": vocab.fingerprint(), "field_sizes": field_sizes,
            "members": specs})
        atomic.write_json(ctx.out_dir / "metrics.json", {"test": metrics, "test_events": int(len(data["y_test"])),
                                                          "histories": histories})
        atomic.write_text(ctx.out_dir / "metrics.txt", table + "\n")
        plot_curves(histories, ctx.out_dir / "curves.png")
        shutil.rmtree(work_root, ignore_errors=True)
        nll = {name: m["nll"] for name, m in metrics.items()}
        best_member = min(nll[s["name"]] for s in specs)
        return {"test": metrics, "test_events": int(len(data["y_test"])),
                "epochs": {n: len(h) for n, h in histories.items()},
                "ordering_holds": nll["ensemble"] < best_member < nll[f"{cfg.ngram_order}-gram"] < nll["unigram"],
                "ensemble_beats_members": nll["ensemble"] < best_member,
                "ensemble_beats_ngram": nll["ensemble"] < nll[f"{cfg.ngram_order}-gram"]}


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
        sizes = {name: int(t.shape[-1]) for name, t in zip(m.output_names, m.outputs)}
        if sizes != dict(zip(FIELDS, saved.sizes)):
            raise StageError(f"{train_dir}: model {m.name} predicts fields {sizes} but the vocabulary "
                             f"has {dict(zip(FIELDS, saved.sizes))}; re-run `lofi train --force`")
    return models, saved, info
