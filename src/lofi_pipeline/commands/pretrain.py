"""`lofi base` (`make base`): pre-train the base ensemble that every archive fine-tunes.

It builds the base corpus (corpora/base_corpus.py) once, runs the pipeline through `train` on it with
the "base" profile (from scratch, a budget to match the corpus), and writes the members'
weights and a manifest of how they were built to the base folder (the shipped one by default).
The same corpus, code, settings and seed give the same weights, byte for byte; the manifest
also records when, which is not part of any key.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..core.errors import StageError
from ..core.hashing import hash_json, path_digest
from ..core.runner import Runner
from ..model import base
from ..stages import catalog


def pretrain_base(runner: Runner, corpus_zip: Path, folder: Path, default_set: Path, log=print) -> dict:
    """Train on `corpus_zip` in the runner's outputs (built first, without `default_set`'s
    tunes, when it is not there), then write the base to `folder`."""
    from ..corpora.base_corpus import build_base_corpus
    from ..corpora.dataset import tunes
    if not corpus_zip.exists():
        log(f"building the base corpus: {corpus_zip}, without the tunes of {default_set}")
        made = build_base_corpus(corpus_zip, tunes(default_set), runner.cfg.extract.workers)
        log(f"base corpus: {made['pieces']} pieces ({made['failed']} corpus items could not be converted, "
            f"{made['dropped_as_held_out_tunes']} carry a tune of the default set) in {made['seconds']} s")
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
        "corpus": {"file": corpus_zip.name, "digest": path_digest(corpus_zip), **_left_out(corpus_zip),
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


def _left_out(corpus_zip: Path) -> dict:
    """What the corpus's build left out of the default set's tunes (its manifest beside it)."""
    try:
        made = json.loads(corpus_zip.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: made.get(k) for k in ("held_out_tunes", "dropped_as_held_out_tunes", "left_out")}


# The drums' base: the Groove MIDI Dataset's beats and fills in 4/4 at these tempos (lo-fi's and
# the neighbours it borrows from), GMD's own train/validation split for training and early
# stopping, its test split for the scores alone.
DRUM_TEMPO_BPM = (60, 130)
DRUM_BUDGET = {"batch_size": 64, "check_every": 200, "checks": 24, "patience": 3, "dev_windows": 4096}
DRUM_LEARNING_RATE = 3e-3
# Then the members specialise on the styles lo-fi draws on (groove.LOFI_STYLES, a quarter of the
# corpus): trained on every style, they drum as GMD's drummers do on average, rock and Latin
# included (snares on 2 and 4 in 21 % of the bars' snares; 52 % in these styles' test beats).
SPECIALISE_BUDGET = {"batch_size": 64, "check_every": 100, "checks": 20, "patience": 2, "dev_windows": 4096}
SPECIALISE_LEARNING_RATE = 1e-3
# The grooves a track's drums start from (context only, never played): two-bar stretches of GMD's
# validation beats in those styles (never its test beats, which score the drums).
PRIMERS_PER_FILE = 4


def _drum_data(pieces, vocab) -> dict:
    from ..model import drum_model
    return drum_model.split_data({s: [p.ids(vocab) for p in pieces if p.split == s] for s in ("train", "dev", "test")})


def _nll(scores: dict) -> dict:
    return {k: v["nll"] for k, v in scores.items() if isinstance(v, dict)}


def pretrain_drums(corpus_zip: Path, folder: Path, work: Path, ngram_order: int, budget: dict | None = None,
                   log=print) -> dict:
    """Train the drum members on the Groove MIDI Dataset in `work`, then specialise them on its
    lo-fi styles, and write them to `folder`, with a manifest of what they were built from and
    their test scores before and after specialising, on GMD's whole test split and on its lo-fi
    styles' (against an n-gram of `ngram_order` fit on the same training pieces). `budget`
    replaces both phases' budget keys (a test's tiny run)."""
    from ..corpora.groove import LOFI_STYLES, read_groove
    from ..model import drum_model
    from ..model.members import configure_tensorflow
    from ..music.drum_format import DrumVocabulary
    from ..music.drum_stats import backbeat, onset_shares
    configure_tensorflow()
    started = time.time()
    pieces, dropped = read_groove(corpus_zip, *DRUM_TEMPO_BPM)
    vocab = DrumVocabulary()
    data = _drum_data(pieces, vocab)
    styled = [p for p in pieces if p.lofi_style]
    style_data = _drum_data(styled, vocab)
    log(f"drum corpus: {len(pieces)} files, {len(data['y_train'])} training events ({len(style_data['y_train'])} "
        f"in {', '.join(LOFI_STYLES)}); left out: {dict(dropped)}")
    if not len(style_data["y_train"]) or not len(style_data["y_dev"]) or not len(style_data["y_test"]):
        raise StageError(f"{corpus_zip}: no train, validation or test pieces in the styles "
                         f"{', '.join(LOFI_STYLES)}; the base drum model specialises on them")
    general = drum_model.train(data, work / "all styles", {**DRUM_BUDGET, **(budget or {})}, DRUM_LEARNING_RATE, log)
    before = {"all": _nll(drum_model.score(general, data, "test", ngram_order)),
              "lofi": _nll(drum_model.score(general, style_data, "test", ngram_order))}
    trained = time.time()
    log(f"specialising on {', '.join(LOFI_STYLES)}: {len(style_data['y_train'])} training events")
    inits = [work / "all styles" / spec["name"] / "best.weights.h5" for spec in drum_model.member_specs(0.0)]
    models = drum_model.train(style_data, work / "lofi styles",
                              {**SPECIALISE_BUDGET, **(budget or {}), "inits": inits}, SPECIALISE_LEARNING_RATE, log)
    scores = drum_model.score(models, data, "test", ngram_order)
    train_bars = [b for p in pieces if p.split == "train" and p.beat_type == "beat" for b in p.bars]
    styled_bars = [b for p in styled if p.split == "train" and p.beat_type == "beat" for b in p.bars]

    def bars(of) -> dict:
        return {s: sum(len(p.bars) for p in of if p.split == s) for s in ("train", "dev", "test")}
    built = {
        "built_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "corpus": {"name": "Groove MIDI Dataset (Gillick et al. 2019), CC BY 4.0", "file": str(corpus_zip.name),
                   "digest": path_digest(corpus_zip), "tempo_bpm": list(DRUM_TEMPO_BPM), "metres": ["4/4"],
                   "files": {s: sum(p.split == s for p in pieces) for s in ("train", "dev", "test")},
                   "bars": bars(pieces),
                   "events": {s: int(len(data[f"y_{s}"])) for s in ("train", "dev", "test")},
                   "left_out": dict(dropped),
                   # Where the corpus's drummers put each class in the bar.
                   "onset_shares": onset_shares(train_bars), "backbeat": backbeat(train_bars)},
        "budget": {**DRUM_BUDGET, **(budget or {})}, "learning_rate": DRUM_LEARNING_RATE,
        "specialised": {
            "styles": list(LOFI_STYLES), "bars": bars(styled),
            "events": {s: int(len(style_data[f"y_{s}"])) for s in ("train", "dev", "test")},
            "budget": {**SPECIALISE_BUDGET, **(budget or {})}, "learning_rate": SPECIALISE_LEARNING_RATE,
            "seconds": round(time.time() - trained, 1),
            "test_nll": _nll(drum_model.score(models, style_data, "test", ngram_order)),
            "test_nll_before": before["lofi"], "test_events": int(len(style_data["y_test"])),
            # The drummers the members specialised on: the report's "data" column.
            "onset_shares": onset_shares(styled_bars), "backbeat": backbeat(styled_bars)},
        "train_seconds": round(time.time() - started, 1),
        "test_nll": _nll(scores), "test_nll_before_specialising": before["all"],
        "test_events": scores["events"],
    }
    primers = [[p.bpm, stretch] for p in styled if p.split == "dev" and p.beat_type == "beat"
               for stretch in drum_model.primer_stretches(p.bars, PRIMERS_PER_FILE)]
    built["primers"] = {"from": f"GMD validation beats, styles {', '.join(LOFI_STYLES)}", "count": len(primers)}
    drum_model.write_base(folder, models, built, primers)
    return built
