"""train: fit the ensemble members (from the base ensemble or from scratch, early stopping on the
dev pieces), calibrate how they are sampled on the dev pieces (the members' combination and
weights, each field's temperature), then score them, their ensemble, the base alone and the
baselines on the test pieces, which nothing else looks at."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ..core import atomic
from ..core.errors import StageError
from ..core.runner import Stage, StageContext
from ..model import base, rate_matching
from ..model.calibration import calibrate
from ..model.ensemble import compiled_sampler
from ..model.members import configure_tensorflow
from ..model.scoring import evaluate, format_table
from ..model.training import dev_sample, member_specs, read_history, reproducible_keras, train_member
from ..music.token_format import FIELDS
from . import catalog

CALIBRATION_WINDOWS = 8192  # dev windows the calibration reads at most, evenly spaced


def _member_job(shared: dict, spec: dict) -> dict:
    """Train one member where the executor put it; hand back its best model's bytes and its
    learning curve. Its checkpoints stay in `work_root` on the machine that trains it."""
    configure_tensorflow(shared["threads"], gpus=shared["gpus"] > 0)
    work = Path(shared["work_root"]) / spec["name"]
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError:  # a cluster node without the driver's folders: checkpoints in its temp folder
        work = Path(tempfile.gettempdir()) / "lofi-train" / Path(shared["work_root"]).name / spec["name"]
        work.mkdir(parents=True, exist_ok=True)
    budget = dict(shared["budget"])
    if shared["init"]:
        # The base member's bytes travel with the job (a cluster node has no repository), into a
        # file beside the member's work folder: a restart after a damaged checkpoint clears that.
        budget["init"] = str(work.with_name(f"{spec['name']}.init.weights.h5"))
        atomic.write_bytes(budget["init"], shared["init"][spec["name"]])
    train_member(spec, shared["field_sizes"], shared["window"], shared["data"], work, budget,
                 lambda msg: print(f"[train] {msg}", flush=True))
    return {"name": spec["name"], "keras": reproducible_keras(work / "best.keras"),
            "history": read_history(work / "history.csv")}


class TrainStage(Stage):
    name = "train"
    takes = (catalog.VOCABULARY, catalog.SEQUENCES, catalog.PROFILE)
    gives = (catalog.MEMBERS, catalog.ENSEMBLE, catalog.MODEL_VOCABULARY, catalog.METRICS, catalog.METRICS_TABLE)
    reads = ("train", "run.seed")
    help = "fine-tune the base ensemble (Conv1D -> BiLSTM -> attention, a head per field) or train it from scratch"

    def external_inputs(self, params, root):
        if params.train.init != "base":
            return {}
        return {"base": base.base_digest(base.base_folder(params.train.base, root))}

    def check(self, params, root):
        if params.train.init == "base":
            base.base_digest(base.base_folder(params.train.base, root))  # there, complete and readable

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
        field_sizes = dict(zip(FIELDS, vocab.sizes))
        init, base_models = {}, {}
        if cfg.init == "base":
            folder = base.base_folder(cfg.base, ctx.root)
            manifest = base.check_fits(folder, vocab, encoded.window, specs)
            starts = base.starting_points(folder, manifest, specs)
            init = {name: path.read_bytes() for name, path in starts.items()}
            ctx.log(f"fine-tuning the base ensemble in {folder} ({base.base_digest(folder)[:12]}), adapting "
                    f"{cfg.adapt} layers at learning rate {cfg.finetune_learning_rate:g}"
                    + ("; some members start from the same base member (the base has "
                       f"{len(manifest['members'])})" if len(set(starts.values())) < len(starts) else ""))
        for spec in specs:
            ctx.log(f"{spec['name']}: kernel {spec['kernel_size']}, LSTM {spec['lstm_units']}, seed {spec['seed']}")
        # Whole stretches of `check_every` steps between dev checks, so at most max_steps.
        check_every = min(cfg.check_every, cfg.max_steps)
        budget = {"checks": cfg.max_steps // check_every, "check_every": check_every,
                  "batch_size": cfg.batch_size, "patience": cfg.patience, "adapt": cfg.adapt,
                  "dev_windows": cfg.dev_check_windows}
        ctx.log(f"budget per member: at most {budget['checks'] * check_every} optimiser steps of {cfg.batch_size} "
                f"windows, the dev loss checked every {check_every}, stopping after {cfg.patience} checks "
                "without a better one")
        # Locally the members train here, one after another (side by side measured no faster on
        # two cores: benchmarks/bench_train.py); on Ray, one task each, asking for its threads.
        shared = {"field_sizes": field_sizes, "window": encoded.window, "data": data,
                  "work_root": str(work_root), "budget": budget, "init": init,
                  "threads": cfg.threads, "gpus": cfg.member_gpus}
        models, histories = {}, {}
        for result in ctx.fan_out(_member_job, specs, total=len(specs), unit="member", shared=shared,
                                  cpus=cfg.threads, gpus=cfg.member_gpus):
            path = catalog.write_member(ctx.out_dir, result["name"], result["keras"])
            models[result["name"]] = keras.saving.load_model(path)
            histories[result["name"]] = result["history"]
        x_dev, y_dev = dev_sample(data["x_dev"], data["y_dev"], CALIBRATION_WINDOWS)
        profile = catalog.read_profile(ctx.source(catalog.PROFILE))
        dev_pieces, train_pieces = encoded.sequences("dev"), encoded.sequences("train")

        def play(combination: dict, temperatures: dict, experts: dict) -> dict:
            sampler = compiled_sampler(list(models.values()), combination["combine"], combination["weights"],
                                       cfg.rate_matching_tracks, ctx.log)
            return rate_matching.match_rates(sampler, vocab, profile, dev_pieces, temperatures, ctx.params.run.seed,
                                             cfg.rate_matching_tracks, ctx.log, experts, train_pieces)
        calibration = calibrate(list(models.values()), vocab, x_dev, y_dev, play if cfg.rate_matching_tracks else None,
                                train_pieces)
        ctx.log(f"calibrated on {calibration['dev_events']} dev events: {calibration['chosen']} "
                f"({calibration['combine']}, weights {', '.join(f'{w:g}' for w in calibration['weights'])}; "
                "step experts " + ", ".join(f"{f} {e['fitted_weight']:g} (drawn at {e['weight']:g})"
                                            for f, e in calibration["step_experts"].items()) + "; dev NLL "
                + ", ".join(f"{n} {c['dev_nll']:.3f}" for n, c in calibration["candidates"].items())
                + "); temperatures " + ", ".join(f"{f} {v['temperature']:g}"
                                                 for f, v in calibration["sampling"].items()))
        if init:  # the weights the members started at, scored alone
            base_models = {"base": base.load_starting_points(folder, manifest, specs, vocab, encoded.window)}
        metrics = evaluate(models, vocab, data, cfg.ngram_order, "test", other_ensembles=base_models,
                           combination=(calibration["combine"], calibration["weights"]),
                           experts=calibration["step_experts"])
        table = format_table(metrics)
        test_events = int(len(data["y_test"]))
        ngram = metrics[f"{cfg.ngram_order}-gram"]["dev_weights"]
        ctx.log(f"test split ({test_events} events, used for nothing else), NLL in nats:\n" + table
                + f"\nthe {cfg.ngram_order}-gram's weight against the unigram, chosen on the dev split: "
                + ", ".join(f"{f} {w:g}" for f, w in ngram.items()))
        catalog.write_ensemble(ctx.out_dir, vocab, encoded.window, specs, metrics, test_events, histories, table,
                               calibration)
        shutil.rmtree(work_root, ignore_errors=True)
        nll = {name: m["nll"] for name, m in metrics.items()}
        best_member = min(nll[s["name"]] for s in specs)
        dev = calibration["candidates"]
        best_dev = min(v["dev_nll"] for k, v in dev.items() if k.endswith(" alone"))
        return {"test": metrics, "test_events": test_events, "init": cfg.init,
                "calibration": {k: calibration[k] for k in ("chosen", "combine", "weights", "dev_nll", "dev_events",
                                                            "step_experts", "sampling", "teacher_forced")},
                "dev_nll": {k: v["dev_nll"] for k, v in dev.items()},
                "ensemble_within_best_member_on_dev": calibration["dev_nll"] <= best_dev,
                "ensemble_within_best_member_on_test": nll["ensemble"] <= best_member,
                "checks": {n: len(h) for n, h in histories.items()},
                "steps": {n: len(h) * budget["check_every"] for n, h in histories.items()},
                "ordering_holds": nll["ensemble"] <= best_member < nll[f"{cfg.ngram_order}-gram"] < nll["unigram"],
                "ensemble_beats_members": nll["ensemble"] < best_member,
                "ensemble_beats_ngram": nll["ensemble"] < nll[f"{cfg.ngram_order}-gram"]}
