"""drums: each take's drum part, played by the drum model with the take's form.

The model is the shipped base drum model (pre-trained on the Groove MIDI Dataset: `make
base-drums`), fine-tuned on the archive's own drum tracks when they hold drums.finetune_min_bars
bars or more (the fine-tuned weights are kept in the stage's cache, keyed by what they were
trained from). Each track is played at the tempo arrange will give it.
"""
from __future__ import annotations

import copy
import hashlib
import math
from pathlib import Path

import numpy as np

from ..core.hashing import file_digest, hash_json
from ..core.runner import Stage, StageContext
from ..model import drum_model
from ..model.drum_part import BarPlayer, drum_part
from ..model.ensemble import compiled_sampler
from ..model.members import configure_tensorflow
from ..music.arrangement import draw_tempo
from ..music.drum_format import DRUM_FIELDS, DRUM_TARGETS, DrumVocabulary, piece_drum_bars
from ..music.drum_stats import backbeat, drum_checks, onset_shares
from ..music.token_format import tokens_to_events
from . import catalog

FINETUNE_LEARNING_RATE = 1e-3


def archive_drums(pieces) -> tuple[dict[str, list[np.ndarray]], dict, list]:
    """The archive's drum tracks as drum-format ids, split by content hash into train, dev (a
    tenth: early stopping, the n-gram's weight) and test (a tenth: the scores alone) where there
    are three pieces or more (with fewer, dev is the last training piece and nothing is scored),
    what was dropped, by reason, and the primers it offers ((tempo, bars): the dev pieces' first)."""
    from collections import Counter
    vocab, counts = DrumVocabulary(), Counter()
    sequences: dict[str, list[np.ndarray]] = {"train": [], "dev": [], "test": []}
    bars, every, primers = 0, [], {"train": [], "dev": [], "test": []}
    with_drums = [p for p in pieces if p.drum_hits]
    for p in with_drums:
        metre = p.metre[0][1] if p.metre else "4/4"
        piece_bars = piece_drum_bars(p.drum_hits, metre, counts)
        if not any(b.hits for b in piece_bars):
            continue
        bars += len(piece_bars)
        every += piece_bars
        split = {0: "dev", 1: "test"}.get(int(p.sha256[:8], 16) % 10, "train") if len(with_drums) >= 3 else "train"
        sequences[split].append(vocab.encode(piece_bars, metre, p.tempo_bpm))
        primers[split] += [(p.tempo_bpm, stretch) for stretch in drum_model.primer_stretches(piece_bars, 4)]
    if not sequences["train"]:  # every piece fell to dev or test: too few to hold any out
        sequences = {"train": sequences["dev"] + sequences["test"], "dev": [], "test": []}
    if not sequences["dev"]:
        sequences["dev"] = sequences["train"][-1:]
    data = {"label": "the archive's drums", "shares": onset_shares(every), "backbeat": backbeat(every)}
    return (sequences, {"pieces_with_drums": len(with_drums), "bars": bars, "dropped": dict(counts), "data": data},
            primers["dev"] + primers["train"])


# The archive's drums by the pieces' bytes: a worker playing radio track after radio track reads
# and sorts the pieces once (reading them took about a tenth of a radio track's time).
_ARCHIVE_DRUMS: dict[str, tuple] = {}


def archive_drums_in(folder: Path) -> tuple[dict[str, list[np.ndarray]], dict, list]:
    """archive_drums of the extract artifact in `folder`, a copy the caller may change."""
    digest = file_digest(Path(folder) / catalog.PIECES.pattern)
    if digest not in _ARCHIVE_DRUMS:
        _ARCHIVE_DRUMS.clear()
        _ARCHIVE_DRUMS[digest] = archive_drums(catalog.read_pieces(folder)[0])
    return copy.deepcopy(_ARCHIVE_DRUMS[digest])


def _sampler(models: list, log):
    return compiled_sampler(models, "mean", None, 1, log, fields=DRUM_FIELDS, targets=DRUM_TARGETS)


# One process that runs the stage again and again (the web app's worker) keeps the last drum
# sampler it built, by the base's digest or the fine-tuning's key: Keras models and their
# compiled functions built anew for every radio track are never all given back (about 20 MiB
# a track).
_SAMPLERS: dict[str, tuple] = {}


def _base_sampler(base: Path, log):
    digest = f"base-{drum_model.base_digest(base)}"
    if digest not in _SAMPLERS:
        _SAMPLERS.clear()
        _SAMPLERS[digest] = (_sampler(drum_model.load(drum_model.base_files(base)), log), {})
    return _SAMPLERS[digest][0]


def base_drummers(manifest: dict) -> dict:
    """Where the drummers the base drum model learned from last put each class in the bar: the
    styles it specialised on, else (a base from before) the whole corpus."""
    styles = manifest.get("specialised", {})
    if styles.get("onset_shares"):
        return {"label": f"Groove MIDI Dataset, train beats in {', '.join(styles['styles'])}",
                "shares": styles["onset_shares"], "backbeat": styles["backbeat"]}
    corpus = manifest.get("corpus", {})
    return {"label": "Groove MIDI Dataset, train beats", "shares": corpus.get("onset_shares", {}),
            "backbeat": corpus.get("backbeat", {})}


class DrumsStage(Stage):
    name = "drums"
    takes = (catalog.TAKES, catalog.PIECES)
    gives = (catalog.DRUM_PARTS,)
    reads = ("drums", "arrange.drums", "arrange.tempo_min_bpm", "arrange.tempo_max_bpm", "train.threads",
             "train.ngram_order")
    help = "play each track's drums with the drum model (fine-tuned on the archive's drums when it has them)"

    def external_inputs(self, params, root):
        if params.arrange.drums != "learned":
            return {"base_drums": "unused"}
        return {"base_drums": drum_model.base_digest(self._base(params, root))}

    @staticmethod
    def _base(params, root):
        return drum_model.base_folder(params.drums.base, root)

    def check(self, params, root):
        if params.arrange.drums == "learned":
            drum_model.base_files(self._base(params, root))

    def _models(self, ctx: StageContext) -> tuple[object, str, dict, list]:
        """The drum members' sampler, where they come from, what the archive's drums hold, and the primers."""
        cfg = ctx.params.drums
        base = self._base(ctx.params, ctx.root)
        base_files = drum_model.base_files(base)
        sequences, found, primers = archive_drums_in(ctx.source(catalog.PIECES))
        if found["bars"] < cfg.finetune_min_bars:
            why = "no drums" if not found["bars"] else f"{found['bars']} drum bars, fewer than {cfg.finetune_min_bars}"
            found["data"] = base_drummers(drum_model.read_manifest(base))
            return (_base_sampler(base, ctx.log), f"base drum model (Groove MIDI Dataset); the archive has {why}",
                    found, drum_model.read_primers(base))
        test = sequences.pop("test")
        data = drum_model.split_data(sequences)
        check_every = min(50, cfg.finetune_steps)
        budget = {"batch_size": 64, "check_every": check_every, "checks": math.ceil(cfg.finetune_steps / check_every),
                  "patience": 3, "dev_windows": 2048, "inits": base_files}
        data_digest = hashlib.sha256(b"".join(s.tobytes() for split in ("train", "dev") for s in sequences[split]))
        key = hash_json({"data": data_digest.hexdigest(), "code": ctx.code_key, "steps": budget["checks"] * check_every,
                         "base": drum_model.base_digest(base)})[:16]
        if key not in _SAMPLERS:
            ctx.log(f"fine-tuning the drum model on the archive's {found['bars']} drum bars "
                    f"({found['pieces_with_drums']} files, {len(data['y_train'])} events)")
            models = drum_model.train(data, ctx.cache_dir / f"finetune-{key}", budget, FINETUNE_LEARNING_RATE, ctx.log)
            tested = {}
            if test:  # like for like with a drum n-gram and unigram, on pieces nothing else read
                data["x_test"], data["y_test"] = drum_model.windows(test)
                scores = drum_model.score(models, data, "test", ctx.params.train.ngram_order)
                tested = {"test_nll": {k: v["nll"] for k, v in scores.items() if isinstance(v, dict)},
                          "test_events": scores["events"]}
            _SAMPLERS.clear()
            _SAMPLERS[key] = (_sampler(models, ctx.log), tested)
        sampler, tested = _SAMPLERS[key]
        found.update(tested)
        if tested:
            ctx.log("the archive's held-out drums, NLL per event: " + ", ".join(
                f"{k} {v:.3f}" for k, v in tested["test_nll"].items()) + f" ({tested['test_events']} events)")
        return sampler, f"fine-tuned on the archive's {found['bars']} drum bars", found, primers

    def run(self, ctx: StageContext) -> dict:
        takes = catalog.read_takes(ctx.source(catalog.TAKES))
        parts: list[catalog.DrumPart] = []
        if ctx.params.arrange.drums != "learned":
            catalog.drum_parts.write(ctx.out_dir, parts)
            return {"tracks": 0, "source": "pattern (arrange.drums)"}
        configure_tensorflow(ctx.params.train.threads)
        sampler, source, found, primers = self._models(ctx)
        vocab, cfg = DrumVocabulary(), ctx.params.drums
        for take in takes.tracks:
            tempo = draw_tempo(np.random.default_rng(take.seed), ctx.params.arrange)
            sections = [tuple(s) for s in take.sections]
            if not sections:  # a take drawn as a number of events: one section
                events, _ = tokens_to_events([tuple(r) for r in take.tokens])
                sections = [("A", 0, max(1, events[-1].bar + 1) if events else 1)]
            rng = np.random.default_rng([take.seed, 10])
            player = BarPlayer(sampler, vocab, take.metre, tempo, rng, cfg.temperature)
            if primers:  # a groove to start from: context only, never played
                for bar in primers[rng.integers(len(primers))][1]:
                    player.remember(bar)
            bars, stats = drum_part(player, sections, take.loop_bars, cfg.variation)
            checks = drum_checks(bars, take.loop_bars)
            parts.append(catalog.DrumPart(take.index, source, tempo, take.metre,
                                          [[b.role, [list(h) for h in b.hits]] for b in bars], stats, checks))
            ctx.log(f"track {take.index}: {sum(len(b.hits) for b in bars)} hits in {len(bars)} bars at {tempo} BPM, "
                    f"{stats['fills']} fills, {stats['varied']} varied bars; {source}"
                    + (f"; check: {'; '.join(checks)}" if checks else ""))
        catalog.drum_parts.write(ctx.out_dir, parts)
        played = [b for p in parts for b in p.drum_bars()]
        data = found.pop("data")
        onsets = {"data_label": data["label"], "data": data["shares"], "data_backbeat": data["backbeat"],
                  "generated": onset_shares(played), "generated_backbeat": backbeat(played)}
        return {"tracks": len(parts), "source": source, "archive_drums": found, "onsets": onsets,
                "hits": [sum(len(h) for _, h in p.bars) for p in parts], "checks_failed": {
                    p.index: p.checks for p in parts if p.checks}}
