"""`lofi base` (`make base`): pre-train the base ensemble that every archive fine-tunes.

It builds the base corpus (base_corpus.py) once, runs the pipeline through `train` on it with
the "base" profile (from scratch, a budget to match the corpus), and writes the members'
weights and a manifest of how they were built to the base folder (the shipped one by default).
The same corpus, code, settings and seed give the same weights, byte for byte; the manifest
also records when, which is not part of any key.
"""
from __future__ import annotations

import time
from pathlib import Path

from .core.hashing import hash_json, path_digest
from .core.runner import Runner
from .model import base
from .stages import catalog


def pretrain_base(runner: Runner, corpus_zip: Path, folder: Path, log=print) -> dict:
    """Train on `corpus_zip` in the runner's outputs, then write the base to `folder`."""
    from .base_corpus import build_base_corpus
    if not corpus_zip.exists():
        log(f"building the base corpus: {corpus_zip}")
        made = build_base_corpus(corpus_zip)
        log(f"base corpus: {made['pieces']} pieces ({made['failed']} corpus items could not be converted) "
            f"in {made['seconds']} s")
    runner.run(["train"])
    return write_from_run(runner, corpus_zip, folder)


def write_from_run(runner: Runner, corpus_zip: Path, folder: Path) -> dict:
    """Write the base from a run whose train stage is done, with the record of how it was built
    (the code digest is that of the code that trained it, from train's manifest)."""
    train_dir = runner.artifact_dir("train")
    encoded = catalog.read_encoded(runner.artifact_dir("encode"))
    models, vocab, info = catalog.read_ensemble(train_dir, encoded.vocab)
    metrics = catalog.read_metrics(train_dir)
    manifest = runner.manifest("train")
    stats = manifest.get("stats", {})
    built = {
        "built_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "corpus": {"file": corpus_zip.name, "digest": path_digest(corpus_zip),
                   "pieces": (runner.manifest("extract") or {}).get("stats", {}).get("pieces"),
                   "events": (runner.manifest("encode") or {}).get("stats", {}).get("events")},
        "code": hash_json(manifest.get("parts", {}).get("code", {}))[:16],
        "settings": {"train": runner.params("train").hashed(), "encode": runner.params("encode").hashed()},
        "train_seconds": round(manifest.get("timings", {}).get("seconds", 0.0), 1),
        "steps": stats.get("steps"),
        "test_nll": {name: m["nll"] for name, m in metrics["test"].items()},
        "test_events": metrics["test_events"],
    }
    base.write_base(folder, models, info["members"], vocab, encoded.window, built)
    return built
