"""train: fit the ensemble members (early stopping on the dev pieces), then score them, their
ensemble and the baselines on the test pieces, which nothing else looks at."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ..core.errors import StageError
from ..core.runner import Stage, StageContext
from ..model.members import configure_tensorflow
from ..model.scoring import evaluate, format_table
from ..model.training import member_specs, read_history, reproducible_keras, train_member
from ..music.token_format import FIELDS
from . import catalog


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


class TrainStage(Stage):
    name = "train"
    takes = (catalog.VOCABULARY, catalog.SEQUENCES)
    gives = (catalog.MEMBERS, catalog.ENSEMBLE, catalog.MODEL_VOCABULARY, catalog.METRICS, catalog.METRICS_TABLE)
    reads = ("train", "run.seed")
    help = "train the ensemble (Conv1D -> BiLSTM -> attention, a head per field); score it on the test split"

    def run(self, ctx: StageContext) -> dict:
        import keras
        cfg = ctx.params.train
        configure_tensorflow(cfg.threads, gpus=cfg.member_gpus > 0)
        encoded = catalog.read_encoded(ctx.source(catalog.SEQUENCES))
        vocab, data = encoded.vocab, encoded.arrays
        for split in ("train", "dev", "test"):
            if len(data[f"y_{split}"]) == 0:
                raise StageError(f"encode produced no {split} windows; give the archive more (or longer) pieces")
        work_root = ctx.cache_dir / ctx.key
        specs = member_specs(ctx.params)
        for spec in specs:
            ctx.log(f"{spec['name']}: kernel {spec['kernel_size']}, LSTM {spec['lstm_units']}, seed {spec['seed']}")
        # Locally the members train here, one after another (side by side measured no faster on
        # two cores: benchmarks/bench_train.py); on Ray, one task each, asking for its threads.
        shared = {"field_sizes": dict(zip(FIELDS, vocab.sizes)), "window": encoded.window, "data": data,
                  "work_root": str(work_root), "epochs": cfg.epochs, "batch_size": cfg.batch_size,
                  "patience": cfg.patience, "threads": cfg.threads, "gpus": cfg.member_gpus}
        models, histories = {}, {}
        for result in ctx.fan_out(_member_job, specs, total=len(specs), unit="member", shared=shared,
                                  cpus=cfg.threads, gpus=cfg.member_gpus):
            path = catalog.write_member(ctx.out_dir, result["name"], result["keras"])
            models[result["name"]] = keras.saving.load_model(path)
            histories[result["name"]] = result["history"]
        metrics = evaluate(models, vocab, data, cfg.ngram_order, "test")
        table = format_table(metrics)
        test_events = int(len(data["y_test"]))
        ctx.log(f"test split ({test_events} events, used for nothing else), NLL in nats:\n" + table)
        catalog.write_ensemble(ctx.out_dir, vocab, encoded.window, specs, metrics, test_events, histories, table)
        shutil.rmtree(work_root, ignore_errors=True)
        nll = {name: m["nll"] for name, m in metrics.items()}
        best_member = min(nll[s["name"]] for s in specs)
        return {"test": metrics, "test_events": test_events,
                "epochs": {n: len(h) for n, h in histories.items()},
                "ordering_holds": nll["ensemble"] < best_member < nll[f"{cfg.ngram_order}-gram"] < nll["unigram"],
                "ensemble_beats_members": nll["ensemble"] < best_member,
                "ensemble_beats_ngram": nll["ensemble"] < nll[f"{cfg.ngram_order}-gram"]}
