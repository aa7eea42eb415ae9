"""generate: sample event sequences from the ensemble, in batches of tracks (generate.batch_tracks),
each batch in this process or, with run.executor = "ray", a Ray task of its own."""
from __future__ import annotations

import functools
import hashlib
import tempfile
from pathlib import Path

import numpy as np

from ..core.errors import StageError
from ..core.hashing import path_digest
from ..core.runner import Stage, StageContext
from ..model import base
from ..model.calibration import combination_settings, sampling_settings
from ..model.compose import Composer, compose
from ..model.ensemble import compiled_sampler
from ..model.form import loop_length, parse_form, plan_form, variation_share
from ..model.melody import MelodyOver, wants_melody
from ..model.members import configure_tensorflow
from ..model.redraws import draw_takes, take_report
from ..model.sampling import FieldSampler
from ..model.takes import dev_primer, primer_from_midi, primer_wants, track_seed
from ..music.statistics import self_repetition
from ..music.token_format import FIELDS, TARGETS
from . import catalog

MELODY_BY = {"ensemble": "melody by the ensemble", "base": "melody by the base ensemble, over the harmony"}
SESSION_SETTINGS = ("temperature", "top_k", "top_p", "repetition_penalty", "repetition_window", "fields", "combine",
                    "weights", "step_experts")  # what a sampling session is built with (model/calibration.py)


class _Session:
    """What a process needs to sample batches: the members loaded and compiled once, however
    many batches it runs (a kit is told apart by its "digest", made once by the driver)."""

    def __init__(self, kit: dict, log):
        configure_tensorflow(kit["threads"])
        cfg = kit["settings"]
        with tempfile.TemporaryDirectory(prefix="lofi-generate-") as tmp:
            for rel, data in kit["train"].items():
                (Path(tmp) / rel).parent.mkdir(parents=True, exist_ok=True)
                (Path(tmp) / rel).write_bytes(data)
            models, self.vocab, info = catalog.read_ensemble(Path(tmp), kit["vocab"])
        calibration = info.get("calibration")
        combine, weights = combination_settings(cfg, calibration)
        self.sampler = compiled_sampler(models, combine, weights, kit["batch"], log)
        self.field_sampler = FieldSampler(self.vocab, sampling_settings(cfg, calibration))
        self.melody_sampler = self.melody_field_sampler = None
        if kit["base"]:  # the base ensemble, to write melodies over harmonies (model/melody.py)
            with tempfile.TemporaryDirectory(prefix="lofi-base-") as tmp:
                for name, data in kit["base"].items():
                    (Path(tmp) / name).write_bytes(data)
                melody_models = base.load_base(Path(tmp), self.vocab)
            self.melody_sampler = compiled_sampler(melody_models, "mean", None, kit["batch"], log)
            self.melody_field_sampler = FieldSampler(self.vocab, sampling_settings(cfg, None, overrides=False))


# The sessions a process keeps, the most recent last: two, so that a run's and a one-track
# preview's (a batch of one) do not rebuild each other's.
_SESSIONS: dict[str, _Session] = {}
_SESSIONS_KEPT = 2


def _batch_job(kit: dict, indices: list[int]) -> dict:
    """Takes for one batch of tracks: {"takes": [...], "log": [lines]} (a Ray worker's log
    lines go back to the driver with its result)."""
    log: list[str] = []
    session = _SESSIONS.pop(kit["digest"], None) or _Session(kit, log.append)
    _SESSIONS[kit["digest"]] = session
    for stale in list(_SESSIONS)[:-_SESSIONS_KEPT]:
        del _SESSIONS[stale]
    cfg, profile, vocab = kit["settings"], kit["profile"], kit["vocab"]
    want = primer_wants(vocab, profile)
    loop_bars = kit["loop_bars"]
    variation = variation_share(cfg.variation, profile.loop_repeat_target)
    plan = plan_form(cfg.form, cfg.bars, loop_bars)
    seen = max(cfg.primer_events, profile.context_events or 0) or None

    def primer(rng):
        if cfg.primer == "none":
            return np.zeros((0, len(FIELDS)), np.int32)
        if kit["midi_primer"] is not None:
            return kit["midi_primer"]
        return dev_primer(kit["dev_pieces"], rng, cfg.primer_events, want)

    def sample(tracks: list[int], draws: list[int]) -> list[dict]:
        # A re-draw round may ask for more takes than the sampler's batch holds: in turn, a batch each.
        size = kit["batch"]
        return [take for k in range(0, len(tracks), size)
                for take in sample_batch(tracks[k:k + size], draws[k:k + size])]

    def sample_batch(tracks: list[int], draws: list[int]) -> list[dict]:
        seeds = [track_seed(kit["run_seed"], i, draw, kit["seed_stream"], cfg.retakes.count(i + 1))
                 for i, draw in zip(tracks, draws)]
        composers = []
        for seed in seeds:
            rng = np.random.default_rng(seed)
            context = primer(rng)
            metre = vocab.fields["metre"][context[-1, 0]] if len(context) else profile.metre
            composers.append(Composer(plan, loop_bars, metre, vocab, context, rng, variation,
                                      cfg.melody_variation, set(profile.grid_ticks), profile.hold_limit_ticks,
                                      cfg.events or None, seen, profile.advances))
        compose(session.sampler, session.field_sampler, composers)
        takes = [{"seq": c.take(), "seed": seed, "primer_events": len(c.primer), "metre": c.metre,
                  "melody_by": "ensemble"} for c, seed in zip(composers, seeds)]
        if session.melody_sampler is not None and not cfg.events:
            over = [k for k, t in enumerate(takes)
                    if wants_melody(cfg.melody, profile.has_melody, t["seq"], vocab, plan[-1].end)]
            writers = [MelodyOver(takes[k]["seq"], plan[-1].end, metre=composers[k].metre, vocab=vocab,
                                  primer=composers[k].primer, rng=composers[k].rng,
                                  grid_ticks=set(profile.grid_ticks), hold_limit=None, advances=profile.advances)
                       for k in over]
            compose(session.melody_sampler, session.melody_field_sampler, writers)
            for k, writer in zip(over, writers):
                takes[k].update(seq=writer.take(), melody_by="base")
        return takes
    sections = None if cfg.events else [(s.start, s.end) for s in plan]
    check = functools.partial(take_report, vocab=vocab, profile=profile, sections=sections)
    takes = draw_takes(sample, indices, cfg.redraws, check, log.append, cfg.candidates)
    for take in takes:
        take["sections"] = [] if cfg.events else [[s.label, s.start, s.bars] for s in plan]
    return {"takes": takes, "log": log}


class GenerateStage(Stage):
    name = "generate"
    takes = (catalog.VOCABULARY, catalog.SEQUENCES, catalog.PROFILE, catalog.MEMBERS, catalog.ENSEMBLE,
             catalog.MODEL_VOCABULARY)
    gives = (catalog.TAKES,)
    reads = ("generate", "run.seed", "train.threads", "train.base")
    help = "sample event sequences from the ensemble (temperature, top-k, top-p, primer, seed)"

    def external_inputs(self, params, root):
        # The primer is a mode or a MIDI file; a file counts by its bytes, never its path.
        primer = params.generate.primer
        inputs = {"primer": primer if primer in ("dev", "none") else path_digest(root / primer)}
        if params.generate.melody != "ensemble":  # the base ensemble may write melodies
            folder = base.base_folder(params.train.base, root)
            inputs["base"] = base.base_digest(folder) if (folder / base.MANIFEST).exists() else "none"
        return inputs

    def check(self, params, root):
        unknown = sorted(set(params.generate.fields) - set(TARGETS))
        if unknown:
            raise StageError(f"config key generate.fields: {', '.join(unknown)} is not a field the models draw "
                             f"(fields: {', '.join(TARGETS)})")
        if params.generate.form != "auto":
            parse_form(params.generate.form, params.generate.loop_bars or 4)
        primer = params.generate.primer
        if primer not in ("dev", "none") and not (root / primer).is_file():
            raise StageError(f"primer {primer}: file not found (generate.primer is "
                             "'dev', 'none' or a MIDI file)")

    @staticmethod
    def _melody_base(ctx: StageContext, vocab) -> dict[str, bytes]:
        """The base ensemble's files, for melodies over harmonies (none: no melody is written)."""
        if ctx.params.generate.melody == "ensemble":
            return {}
        folder = base.base_folder(ctx.params.train.base, ctx.root)
        files, why = base.melody_files(folder, vocab)
        if why:
            ctx.log(f"no melody can be written over the harmony: {why}")
        return files

    def run(self, ctx: StageContext) -> dict:
        cfg = ctx.params.generate
        encoded = catalog.read_encoded(ctx.source(catalog.SEQUENCES))
        vocab = encoded.vocab
        profile = catalog.read_profile(ctx.source(catalog.PROFILE))
        train_dir = ctx.source(catalog.ENSEMBLE)
        models_window = encoded.window
        midi_primer = None
        if cfg.primer not in ("dev", "none"):
            midi_primer = primer_from_midi(ctx.path(cfg.primer), vocab, models_window)
        grid = vocab.grid
        loop_bars = cfg.loop_bars or loop_length(profile.loop_bars, profile.loop_repeat_target)
        if loop_bars > profile.longest_bars:
            ctx.log(f"a loop of {loop_bars} bars (generate.loop_bars) is longer than any training piece "
                    f"({profile.longest_bars} bars): the loops go past what the models saw")
        plan_form(cfg.form, cfg.bars, loop_bars)  # a bad form stops here, before any sampling
        kit = {"train": catalog.ensemble_files(train_dir), "vocab": vocab, "profile": profile,
               "base": self._melody_base(ctx, vocab),
               "midi_primer": midi_primer, "grid": grid, "dev_pieces": encoded.sequences("dev"),
               "settings": cfg,
               "batch": min(cfg.batch_tracks, cfg.tracks), "run_seed": ctx.params.run.seed, "loop_bars": loop_bars,
               "seed_stream": cfg.seed_stream,
               "threads": ctx.params.train.threads}
        # A worker keeps a kit's models loaded between batches and runs: the digest tells sessions
        # apart by what a session is built from (the base's bytes too: a rebuilt base is another
        # kit), not by the form, length or seeds of what it samples.
        models = b"".join(files[k] for files in (kit["train"], kit["base"]) for k in sorted(files))
        session = {k: getattr(cfg, k) for k in SESSION_SETTINGS}
        settings = repr((session, vocab.fingerprint(), kit["batch"], kit["threads"])).encode()
        kit["digest"] = hashlib.sha256(models + settings).hexdigest()
        del encoded
        # Batches of tracks, in turn here or one Ray task each; a track's seed and numbers do not
        # depend on the batch it is in, so every executor gives the same takes.
        size = cfg.batch_tracks
        first, last = cfg.first_track - 1, cfg.first_track - 1 + cfg.tracks  # 0-based track numbers
        batches = [list(range(i, min(i + size, last))) for i in range(first, last, size)]
        chosen = []
        for result in ctx.fan_out(_batch_job, batches, total=len(batches), unit="batch", shared=kit,
                                  cpus=kit["threads"]):
            for line in result["log"]:
                ctx.log(line)
            chosen += result["takes"]
        takes = catalog.Takes(grid, None if cfg.events else cfg.bars, vocab.fingerprint())
        for i, take in enumerate(chosen):
            seq = take["seq"]
            events, _ = vocab.decode_events(seq)
            takes.tracks.append(catalog.Take(
                index=cfg.first_track + i, seed=take["seed"], primer_events=take["primer_events"], draws=take["draws"],
                checks=take["checks"], flagged=bool(take["checks"]["failed"]), ids=seq.tolist(),
                tokens=[list(t) for t in vocab.decode(seq)], self_repetition=round(self_repetition(seq), 4),
                distinct_events=len({tuple(r) for r in seq.tolist()}), chords=sum(e.is_chord for e in events),
                melody_notes=sum(e.pitch is not None for e in events), metre=take["metre"],
                loop_bars=loop_bars, sections=take["sections"], melody_by=take["melody_by"]))
        catalog.write_takes(ctx.out_dir, takes)
        for t in takes.tracks:
            ctx.log(f"track {t.index}: {t.form or 'free'} ({t.metre}), {len(t.ids)} events ({t.chords} chords, "
                    f"{t.melody_notes} melody notes, {MELODY_BY[t.melody_by]}), "
                    f"{t.draws} take{'s' if t.draws > 1 else ''} drawn")
        tracks = takes.tracks
        return {"tracks": len(tracks), "events": [len(t.ids) for t in tracks],
                "self_repetition": [t.self_repetition for t in tracks],
                "distinct_events": [t.distinct_events for t in tracks], "seeds": [t.seed for t in tracks],
                "takes": [t.draws for t in tracks], "redraws": sum(t.draws - 1 for t in tracks),
                "melody_by": [t.melody_by for t in tracks],
                "flagged": [t.index for t in tracks if t.flagged],
                "checks_failed": {t.index: t.checks["failed"] for t in tracks if t.flagged}}
