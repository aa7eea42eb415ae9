"""Training one ensemble member: resumable after a kill, early stopping on the dev split with
the count kept on disk, and .keras files whose bytes depend on the weights alone."""
from __future__ import annotations

import csv
import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np

from ..core import atomic
from ..music.token_format import FIELDS, GIVEN, PAD
from .members import build_member, compile_member, model_inputs


def make_windows(sequences: list[np.ndarray], window: int, stride: int):
    """Every `stride`-th event is a target; its context is the `window` events before it,
    left-padded, so a piece's first events are targets too (and generation can start cold).
    x: (n, window, fields), y: (n, fields)."""
    n_fields = sequences[0].shape[1] if len(sequences) else len(FIELDS)
    xs, ys = [], []
    for seq in sequences:
        padded = np.concatenate([np.full((window, n_fields), PAD, np.int32), seq])
        idx = np.arange(0, len(seq), stride)
        xs.append(padded[idx[:, None] + np.arange(window)[None, :]])
        ys.append(seq[idx])
    if not xs:
        return np.zeros((0, window, n_fields), np.int32), np.zeros((0, n_fields), np.int32)
    return np.concatenate(xs).astype(np.int32), np.concatenate(ys).astype(np.int32)


def member_specs(cfg) -> list[dict]:
    """Members differ by seed, kernel size and LSTM width, so they are not copies."""
    t = cfg.train
    return [{"name": f"member_{i}", "seed": cfg.run.seed + 101 * i,
             "kernel_size": t.kernel_sizes[i % len(t.kernel_sizes)],
             "lstm_units": t.lstm_units[i % len(t.lstm_units)],
             "embed_dim": t.embed_dim, "conv_filters": t.conv_filters,
             "attention_heads": t.attention_heads, "dropout": t.dropout,
             "learning_rate": t.finetune_learning_rate if t.init == "base" else t.learning_rate}
            for i in range(t.members)]


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
                # The weights only: a whole .keras file (zipped config and all) at every better
                # check cost seconds a member; the .keras is written once, from the best weights.
                partial = work / "best.partial.weights.h5"
                self.model.save_weights(partial)
                partial.replace(work / "best.weights.h5")
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


def _targets(y: np.ndarray, fields: tuple = FIELDS, given: tuple = GIVEN) -> dict:
    return {f: y[:, fields.index(f)] for f in fields if f not in given}


def dev_sample(x: np.ndarray, y: np.ndarray, at_most: int) -> tuple[np.ndarray, np.ndarray]:
    """At most `at_most` dev windows (0: all), evenly spaced through the dev pieces: a dev check
    on a large archive then costs what it costs on a small one, and still reads every piece."""
    if not at_most or len(y) <= at_most:
        return x, y
    idx = np.linspace(0, len(y) - 1, at_most).round().astype(int)
    return x[idx], y[idx]


# The keys of a member's spec that shape its weights: a base fits a run's members when these agree.
ARCHITECTURE = ("embed_dim", "conv_filters", "attention_heads", "kernel_size", "lstm_units")


def build_from_spec(spec: dict, field_sizes: dict[str, int], window: int, given: tuple, name: str | None = None):
    """A member as `spec` (a run's member spec or a base manifest's entry) says, not compiled."""
    return build_member(field_sizes, window, given_fields=given, name=name or spec["name"],
                        **{k: spec[k] for k in (*ARCHITECTURE, "dropout")})


def train_member(spec: dict, field_sizes: dict[str, int], window: int, data: dict, work: Path,
                 budget: dict, log=print, given: tuple = GIVEN) -> None:
    """Train one member in `work`, resuming from its last check if a run was interrupted; the
    best model (by dev loss) is left in work/best.keras.

    `budget`: `checks` stretches of `check_every` optimiser steps of `batch_size` windows, the
    dev loss (on at most `dev_windows` of the dev windows) checked after each, stopping after
    `patience` checks without a better one. Steps, not
    epochs: a hundred loops and a thousand songs both get enough updates and no more. With
    `init` (a base member's .weights.h5) the member starts from those weights and adapts the
    layers `adapt` names at `learning_rate`. `given`: the fields every head reads and none
    predicts (the melody format's by default; `field_sizes` lists the fields in order)."""
    import keras
    import tensorflow as tf

    work.mkdir(parents=True, exist_ok=True)
    # Keras numbers unnamed ops and optimizers per process: start each member from a clean
    # slate, so it gets the same names (and bytes) whether or not another member came before.
    keras.backend.clear_session()
    keras.utils.set_random_seed(spec["seed"])
    fields = tuple(field_sizes)
    model = build_from_spec(spec, field_sizes, window, given)
    if budget.get("init"):
        model.load_weights(budget["init"])
    # train.adapt is about a start from the base; from scratch every layer learns
    compile_member(model, spec["learning_rate"], budget["adapt"] if budget.get("init") else "all")
    done = read_history(work / "history.csv")
    if done:
        log(f"{spec['name']}: resuming after check {len(done)}")
    check_every, checks = budget["check_every"], budget["checks"]
    train_ds = (tf.data.Dataset.from_tensor_slices((model_inputs(data["x_train"], data["y_train"]),
                                                    _targets(data["y_train"], fields, given)))
                .shuffle(len(data["y_train"]), seed=spec["seed"], reshuffle_each_iteration=True)
                .repeat().batch(budget["batch_size"]).prefetch(tf.data.AUTOTUNE))
    x_dev, y_dev = dev_sample(data["x_dev"], data["y_dev"], budget.get("dev_windows", 0))
    val_ds = (tf.data.Dataset.from_tensor_slices((model_inputs(x_dev, y_dev), _targets(y_dev, fields, given)))
              .batch(1024).prefetch(tf.data.AUTOTUNE))
    best = _persistent_best_callback(work, budget["patience"])
    stopped_early = best.state["epoch"] >= 0 and len(done) - 1 - best.state["epoch"] >= budget["patience"]
    if not (work / "best.weights.h5").exists() or not (len(done) >= checks or stopped_early):
        (work / "best.keras").unlink(missing_ok=True)  # from a smaller budget: it will be written again
        class Started(keras.callbacks.Callback):
            ok = False

            def on_epoch_begin(self, epoch, logs=None):
                self.ok = True
        started = Started()
        try:
            # A Keras "epoch" here is one stretch of `check_every` steps between dev checks.
            model.fit(train_ds, validation_data=val_ds, epochs=checks, steps_per_epoch=check_every, verbose=2,
                      shuffle=False, callbacks=[
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
            return train_member(spec, field_sizes, window, data, work, budget, log, given)
    if not (work / "best.keras").exists():
        if not model.optimizer.built:  # resumed with nothing left to train: the file holds Adam's state too
            model.optimizer.build(model.trainable_variables)
        model.load_weights(work / "best.weights.h5")
        partial = work / "best.partial.keras"
        model.save(partial)
        partial.replace(work / "best.keras")


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
