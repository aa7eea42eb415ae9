"""generate: sample event sequences from the ensemble, in batches of tracks (generate.batch_tracks),
each batch in this process or, with run.executor = "ray", a Ray task of its own."""
from __future__ import annotations

import functools
import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import atomic, music_checks
from .encode import load_encoded, piece_sequences, piece_to_events
from .errors import StageError
from .hashing import path_digest
from .midi_io import UnusableMidi, key_profiles, midi_header_reason, read_midi
from .parallel import Executor
from .performance import analyse
from .runner import Stage, StageContext
from .token_format import FIELDS, NONE, PAD, UNK, Vocabulary


def sample_value(probs: np.ndarray, rng: np.random.Generator, temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0, allowed: np.ndarray | None = None,
                 recent: np.ndarray | None = None, repetition_penalty: float = 1.0) -> int:
    """Draw one value id from a field's distribution; padding and <unk> are never drawn, nor
    anything `allowed` (a boolean mask) rules out."""
    p = np.asarray(probs, np.float64).copy()
    p[[PAD, UNK]] = 0.0
    if allowed is not None:
        p[~allowed] = 0.0
    if recent is not None and len(recent) and repetition_penalty != 1.0:
        p[np.unique(recent)] /= repetition_penalty
    p = np.power(np.clip(p, 0, None), 1.0 / temperature)
    if p.sum() <= 0:
        p = np.ones_like(p) if allowed is None else allowed.astype(np.float64)
        p[[PAD, UNK]] = 0.0
    order = np.argsort(-p, kind="stable")
    keep = len(order) if top_k <= 0 else min(top_k, len(order))
    sorted_p = p[order[:keep]] / p[order[:keep]].sum()
    if top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(sorted_p), top_p) + 1)
    chosen = order[:keep]
    chosen = chosen[p[chosen] > 0]
    weights = p[chosen] / p[chosen].sum()
    return int(chosen[rng.choice(len(chosen), p=weights)])


class FieldSampler:
    """Draws an event field by field. A chord has both a root and a quality or neither, and a
    melody note both a pitch and a duration or neither: the second field of each pair is drawn
    among the values the first allows. The repetition penalty applies to melody pitches."""

    def __init__(self, vocab: Vocabulary, settings: dict):
        self.settings = {f: {k: settings[k] for k in ("temperature", "top_k", "top_p")} for f in FIELDS}
        for f, extra in settings.get("fields", {}).items():
            self.settings[f].update(extra)
        self.penalty, self.window = settings["repetition_penalty"], settings["repetition_window"]
        self.none = {f: vocab.index[f].get(NONE, -1) for f in FIELDS}
        self.sizes = dict(zip(FIELDS, vocab.sizes))
        self.shift_ticks = vocab.value_table("shift")

    def _pair_mask(self, field: str, first_is_none: bool) -> np.ndarray:
        mask = np.zeros(self.sizes[field], bool)
        if first_is_none:
            mask[self.none[field]] = True
        else:
            mask[2:] = True
            mask[self.none[field]] = False
        return mask

    def draw_field(self, j: int, probs: np.ndarray, rng: np.random.Generator, row: np.ndarray,
                   history: np.ndarray, harmony: "HarmonyClock | None" = None) -> int:
        """Field `j` of an event whose earlier fields are in `row`. `harmony`, when given, keeps
        the chord from being held past its limit: the shift may not carry the harmony past it,
        and once there the event must change chord."""
        f = FIELDS[j]
        force = harmony is not None and harmony.must_change
        allowed, recent = None, None
        if f == "shift" and harmony is not None and not force:
            allowed = (self.shift_ticks >= 1) & (self.shift_ticks <= harmony.ticks_left)
        elif f == "root" and force:
            allowed = self._pair_mask(f, False)
        elif f == "quality":
            allowed = self._pair_mask(f, row[FIELDS.index("root")] == self.none["root"])
            if force and row[FIELDS.index("root")] == harmony.chord[0]:
                allowed[harmony.chord[1]] = False  # the same chord again would be no change
        elif f == "duration":
            allowed = self._pair_mask(f, row[FIELDS.index("pitch")] == self.none["pitch"])
        elif f == "pitch" and self.window:
            recent = history[-self.window:, j]
            recent = recent[recent != self.none["pitch"]]
        return sample_value(probs, rng, allowed=allowed, recent=recent,
                            repetition_penalty=self.penalty if f == "pitch" else 1.0, **self.settings[f])

    def draw(self, field_probs, rng: np.random.Generator, history: np.ndarray,
             harmony: "HarmonyClock | None" = None) -> np.ndarray:
        """One event, field by field; `field_probs(row)` gives the distributions once the fields
        before each are in `row`."""
        row = np.zeros(len(FIELDS), np.int32)
        for j, f in enumerate(FIELDS):
            row[j] = self.draw_field(j, field_probs(row)[f], rng, row, history, harmony)
        return row


class HarmonyClock:
    """How long one track's harmony has stood, in grid ticks, against the data's hold limit."""

    def __init__(self, limit_ticks: int, none_root: int, shift_ticks: np.ndarray):
        self.limit, self.none_root, self.shift_ticks = limit_ticks, none_root, shift_ticks
        self.held, self.chord = 0, (-1, -1)

    @property
    def must_change(self) -> bool:
        return self.held >= self.limit

    @property
    def ticks_left(self) -> int:
        return self.limit - self.held

    def advance(self, row: np.ndarray) -> None:
        root, quality = int(row[FIELDS.index("root")]), int(row[FIELDS.index("quality")])
        if root != self.none_root and (root, quality) != self.chord:
            self.chord, self.held = (root, quality), 0
        self.held += int(self.shift_ticks[row[0]])


class EnsembleSampler:
    """All members' forward passes for a batch of windows in compiled TensorFlow functions: each
    member's trunk once per event, then its field heads once per field, given the fields drawn
    so far; the members' distributions are combined per field."""

    def __init__(self, models: list, combine: str = "mean", weights: list[float] | None = None,
                 jit_compile: bool = False, batch: int = 0):
        import tensorflow as tf
        self.models = models
        w = np.array(weights if weights else [1.0] * len(models), np.float32)
        if len(w) != len(models) or w.sum() <= 0:
            raise StageError(f"generate.weights: need {len(models)} non-negative weights with a positive sum")
        w = w / w.sum()
        self.window = int(models[0].get_layer("trunk").input_shape[1])
        self.batch = batch  # 0: the first call's size
        trunks = [m.get_layer("trunk") for m in models]
        heads = [m.get_layer("heads") for m in models]

        @tf.function(jit_compile=jit_compile, reduce_retracing=True)
        def contexts(x):
            return [t(x, training=False) for t in trunks]

        @tf.function(jit_compile=jit_compile, reduce_retracing=True)
        def field_probs(ctxs, given):
            outs = [h([c, given], training=False) for h, c in zip(heads, ctxs)]
            combined = {}
            for f in FIELDS:
                if combine == "product":
                    logp = tf.add_n([wi * tf.math.log(o[f] + 1e-9) for wi, o in zip(w, outs)])
                    combined[f] = tf.nn.softmax(logp, axis=-1)
                else:
                    combined[f] = tf.add_n([wi * o[f] for wi, o in zip(w, outs)])
            return combined
        self._contexts, self._field_probs = contexts, field_probs

    def _padded(self, a: np.ndarray) -> np.ndarray:
        # A smaller batch (re-drawing some tracks, the last batch) is padded to the full size:
        # one compiled shape, and a track's numbers do not depend on the batch it is in.
        a = np.asarray(a, np.int32)
        self.batch = self.batch or len(a)
        if len(a) < self.batch:
            a = np.concatenate([a, np.zeros((self.batch - len(a), *a.shape[1:]), np.int32)])
        return a

    def contexts(self, windows: np.ndarray):
        """Each member's summary of each window (kept in TensorFlow for field_probs)."""
        return self._contexts(self._padded(windows))

    def field_probs(self, contexts, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Every field's combined distribution per window, given the fields already in `rows`
        (a field's head only reads the fields before it)."""
        out = self._field_probs(contexts, self._padded(rows))
        return {f: out[f].numpy()[:len(rows)] for f in FIELDS}


def track_seed(run_seed: int, index: int, draw: int = 0) -> int:
    """The seed of a track's first take, or of its re-draw number `draw`."""
    return int(np.random.SeedSequence([run_seed, index] + ([draw] if draw else [])).generate_state(1)[0])


def self_repetition(rows, size: int = 16) -> float:
    """Mean share of each `size`-event block that equals the block before it, event by event."""
    rows = [tuple(r) for r in np.asarray(rows).reshape(len(rows), -1).tolist()]
    blocks = [rows[i:i + size] for i in range(0, len(rows) - size + 1, size)]
    if len(blocks) < 2:
        return 0.0
    return float(np.mean([np.mean([x == y for x, y in zip(a, b)]) for a, b in zip(blocks, blocks[1:])]))


def primer_from_midi(path: Path, vocab: Vocabulary, window: int) -> np.ndarray:
    if not path.is_file():
        raise StageError(f"primer {path}: file not found (generate.primer)")
    data = path.read_bytes()
    reason = midi_header_reason(data)
    if reason:
        raise StageError(f"primer {path}: {reason}")
    try:
        piece = analyse(read_midi(data), path.name, "primer", key_profiles())
    except UnusableMidi as exc:
        raise StageError(f"primer {path}: {exc}") from None
    ids = vocab.encode_events(piece_to_events(piece, int(vocab.config.get("velocity_bins", 4))))
    if len(ids) > window:
        raise StageError(f"primer {path}: {len(ids)} events, longer than the models' window of "
                         f"{window}; use a shorter primer")
    return ids


def generate_tracks(sampler: EnsembleSampler, field_sampler: FieldSampler, primers: list[np.ndarray],
                    rngs: list, target_ticks: int, max_events: int, hold_limit: int | None = None,
                    context: int | None = None, progress: bool = True) -> list[np.ndarray]:
    """Sample every track to `target_ticks` of music (or `max_events` events) in one batch; with
    `hold_limit`, no harmony stands longer than that many ticks; with `context`, the models see
    at most that many past events (the rest of the window is padding, as at a piece's start)."""
    n, window, n_fields = len(primers), sampler.window, len(FIELDS)
    seen = min(window, context or window)
    shifts = field_sampler.shift_ticks
    seqs = [np.asarray(p, np.int32).reshape(-1, n_fields) for p in primers]
    ticks = [int(shifts[s[:, 0]].sum()) for s in seqs]
    clocks = [None] * n
    if hold_limit is not None:
        clocks = [HarmonyClock(hold_limit, field_sampler.none["root"], shifts) for _ in seqs]
        for clock, s in zip(clocks, seqs):
            for row in s:
                clock.advance(row)
    done = [False] * n
    bar = tqdm(total=max_events, desc="generate", unit="step", disable=None if progress else True)
    for _ in range(max_events):
        windows = np.full((n, window, n_fields), PAD, np.int32)
        for i, s in enumerate(seqs):
            ctx = s[-seen:]
            if len(ctx):
                windows[i, window - len(ctx):] = ctx
        contexts = sampler.contexts(windows)
        rows = np.zeros((n, n_fields), np.int32)
        for j, f in enumerate(FIELDS):
            probs = sampler.field_probs(contexts, rows)[f]
            for i in range(n):
                if not done[i]:
                    rows[i, j] = field_sampler.draw_field(j, probs[i], rngs[i], rows[i], seqs[i], clocks[i])
        for i in range(n):
            if done[i]:
                continue
            if clocks[i] is not None:
                clocks[i].advance(rows[i])
            seqs[i] = np.vstack([seqs[i], rows[i][None, :]])
            ticks[i] += int(shifts[rows[i, 0]])
            done[i] = ticks[i] >= target_ticks or len(seqs[i]) >= max_events
        bar.update()
        if all(done):
            break
    bar.close()
    return seqs


def data_profile(vocab: Vocabulary, arrays: dict, quantile: float) -> dict:
    """What the training pieces look like to the music checks: each check's range, the hold
    limit for harmony, and whether the data has a melody and chords at all."""
    grid = int(vocab.config.get("grid", 12))
    pieces = [vocab.decode_events(ids)[0] for split, ids in piece_sequences(arrays) if split == "train"]
    pieces = [p for p in pieces if p]
    events = [e for p in pieces for e in p]
    piece_figures = [music_checks.figures(p, grid) for p in pieces]
    ranges = music_checks.data_ranges(piece_figures, quantile)
    # How strict the ranges are: the share of the training pieces themselves that pass every check.
    inside = float(np.mean([not music_checks.failures(f, ranges) for f in piece_figures])) if pieces else 0.0
    has_chords = any(e.is_chord for e in events)
    # A model trained on short pieces (8-second loops) never saw a long context; past the
    # pieces' usual length it drifts (measured on the lo-fi loops: 5-7 chord changes a bar
    # against the data's 0.3-4.1), so generation shows it no more than that.
    context = int(np.median([len(p) for p in pieces])) if pieces else None
    return {"pieces": len(pieces), "quantile": quantile, "ranges": ranges, "pieces_inside": round(inside, 4),
            "context_events": context,
            "melody_share": round(sum(e.pitch is not None for e in events) / max(1, len(events)), 4),
            "has_chords": has_chords,
            "hold_limit_ticks": music_checks.hold_limit_ticks(ranges, grid) if has_chords and ranges else None}


def take_report(seq: np.ndarray, vocab: Vocabulary, ranges: dict, grid: int) -> dict:
    figs = music_checks.figures(vocab.decode_events(seq)[0], grid)
    failed = music_checks.failures(figs, ranges)
    return {"figures": {k: round(v, 4) for k, v in figs.items()},
            "failed": [str(f) for f in failed], "outside": [f.check for f in failed]}


def draw_takes(sample, tracks: list[int], redraws: int, check, log=print) -> list[dict]:
    """The take of each track in `tracks` (indices from 0): `sample(indices, draw)` draws takes
    for the tracks named, `check(seq)` says what fails; a failing take is drawn again, up to
    `redraws` times. Each track keeps the first of its takes with the fewest failures, with
    `draws` (how many it took) and `checks`; one that still fails is kept, and the log warns,
    naming it and the figures."""
    takes: dict[int, list[dict]] = {i: [] for i in tracks}
    pending = list(tracks)
    for draw in range(redraws + 1):
        for i, take in zip(pending, sample(pending, draw)):
            takes[i].append({**take, "checks": check(take["seq"])})
        pending = [i for i in pending if takes[i][-1]["checks"]["failed"]]
        if not pending or draw == redraws:
            break
        for i in pending:
            log(f"track {i + 1}: take {draw + 1} fails {'; '.join(takes[i][-1]['checks']['failed'])}; re-drawing")
    chosen = []
    for i, options in takes.items():
        best = min(options, key=lambda t: len(t["checks"]["failed"]))
        chosen.append({**best, "draws": len(options)})
        if best["checks"]["failed"]:
            log(f"warning: track {i + 1} is outside the data's range after {len(options)} takes: "
                f"{'; '.join(best['checks']['failed'])} (kept, flagged in the report)")
    return chosen


def dev_primer(dev_pieces: list[np.ndarray], rng: np.random.Generator, n: int,
               want: tuple[int, int] | None = None) -> np.ndarray:
    """The opening of one of the dev pieces (never a test piece: those are only for scoring). With
    `want` = (root "-" id, pitch "-" id), it starts at the piece's first stretch of `n` events
    holding both a chord and a melody note, so the take starts with both streams going."""
    ids = dev_pieces[rng.integers(len(dev_pieces))]
    start = 0
    if want is not None and len(ids) > n:
        chord = ids[:, FIELDS.index("root")] != want[0]
        note = ids[:, FIELDS.index("pitch")] != want[1]
        start = next((i for i in range(len(ids) - n + 1) if chord[i:i + n].any() and note[i:i + n].any()), 0)
    return ids[start:start + n]


class _Session:
    """What a process needs to sample batches: the members loaded and compiled once, however
    many batches it runs (a kit is told apart by its "digest", made once by the driver)."""

    def __init__(self, kit: dict, log):
        from .model import configure_tensorflow
        from .train import load_ensemble
        configure_tensorflow(kit["threads"])
        cfg = kit["settings"]
        with tempfile.TemporaryDirectory(prefix="lofi-generate-") as tmp:
            for rel, data in kit["train"].items():
                (Path(tmp) / rel).parent.mkdir(parents=True, exist_ok=True)
                (Path(tmp) / rel).write_bytes(data)
            models, self.vocab, _ = load_ensemble(Path(tmp), kit["vocab"])
        weights = list(cfg["weights"]) or None
        self.sampler = EnsembleSampler(models, cfg["combine"], weights, jit_compile=True, batch=kit["batch"])
        try:  # XLA about doubles the rate here (benchmarks/bench_generate.py)
            zeros = np.zeros((kit["batch"], len(FIELDS)), np.int32)
            self.sampler.field_probs(self.sampler.contexts(np.zeros((kit["batch"], self.sampler.window,
                                                                     len(FIELDS)))), zeros)
        except Exception as exc:  # an op XLA cannot compile on this build: plain graph mode
            log(f"XLA unavailable ({type(exc).__name__}); using graph mode")
            self.sampler = EnsembleSampler(models, cfg["combine"], weights, batch=kit["batch"])
        self.field_sampler = FieldSampler(self.vocab, cfg)


_SESSIONS: dict[str, _Session] = {}


def _batch_job(kit: dict, indices: list[int]) -> dict:
    """Takes for one batch of tracks: {"takes": [...], "log": [lines]} (a Ray worker's log
    lines go back to the driver with its result)."""
    log: list[str] = []
    if kit["digest"] not in _SESSIONS:
        _SESSIONS.clear()
        _SESSIONS[kit["digest"]] = _Session(kit, log.append)
    session, cfg, profile = _SESSIONS[kit["digest"]], kit["settings"], kit["profile"]
    both_streams = profile["has_chords"] and profile["melody_share"] >= music_checks.MELODY_SHARE_MIN
    want = (session.vocab.index["root"][NONE], session.vocab.index["pitch"][NONE]) if both_streams else None
    target_ticks = cfg["bars"] * 4 * kit["grid"]
    max_events = cfg["events"] if cfg["events"] else target_ticks
    if cfg["events"]:
        target_ticks = 10**12

    def primer(rng):
        if cfg["primer"] == "none":
            return np.zeros((0, len(FIELDS)), np.int32)
        if kit["midi_primer"] is not None:
            return kit["midi_primer"]
        return dev_primer(kit["dev_pieces"], rng, cfg["primer_events"], want)

    def sample(tracks: list[int], draw: int) -> list[dict]:
        seeds = [track_seed(kit["run_seed"], i, draw) for i in tracks]
        rngs = [np.random.default_rng(s) for s in seeds]
        primers = [primer(rng) for rng in rngs]
        seqs = generate_tracks(session.sampler, session.field_sampler, primers, rngs, target_ticks,
                               max_events + max(map(len, primers)), profile["hold_limit_ticks"],
                               max(cfg["primer_events"], profile["context_events"] or 0) or None)
        return [{"seq": seq, "seed": seed, "primer_events": len(p)} for seq, seed, p in zip(seqs, seeds, primers)]
    check = functools.partial(take_report, vocab=session.vocab, ranges=profile["ranges"], grid=kit["grid"])
    return {"takes": draw_takes(sample, indices, cfg["redraws"], check, log.append), "log": log}


class GenerateStage(Stage):
    name = "generate"
    requires = ("train", "encode")
    reads = ("generate", "run.seed", "train.threads", "run.executor", "run.ray_address")
    help = "sample event sequences from the ensemble (temperature, top-k, top-p, primer, seed)"

    def external_inputs(self, params, root):
        # The primer is a mode or a MIDI file; a file counts by its bytes, never its path.
        primer = params.generate.primer
        if primer in ("dev", "none"):
            return {"primer": primer}
        return {"primer": path_digest(root / primer)}

    def check(self, params, root):
        unknown = sorted(set(params.generate.fields) - set(FIELDS))
        if unknown:
            raise StageError(f"config key generate.fields: {', '.join(unknown)} is not a field "
                             f"(fields: {', '.join(FIELDS)})")
        primer = params.generate.primer
        if primer not in ("dev", "none") and not (root / primer).is_file():
            raise StageError(f"primer {primer}: file not found (generate.primer is "
                             "'dev', 'none' or a MIDI file)")

    def run(self, ctx: StageContext) -> dict:
        cfg = ctx.params.generate
        vocab, arrays, _ = load_encoded(ctx.inputs["encode"])
        profile = data_profile(vocab, arrays, cfg.checks_quantile)
        info = json.loads((ctx.inputs["train"] / "members.json").read_text())
        midi_primer = None
        if cfg.primer not in ("dev", "none"):
            midi_primer = primer_from_midi(ctx.path(cfg.primer), vocab, info["window"])
        grid = int(vocab.config.get("grid", 12))
        kit = {"train": {rel: (ctx.inputs["train"] / rel).read_bytes() for rel in
                         ["members.json", "vocab.json", *(f"members/{m['name']}.keras" for m in info["members"])]},
               "vocab": vocab, "profile": profile, "midi_primer": midi_primer, "grid": grid,
               "dev_pieces": [ids for split, ids in piece_sequences(arrays) if split == "dev"],
               "settings": {k: getattr(cfg, k) for k in ("temperature", "top_k", "top_p", "repetition_penalty",
                                                         "repetition_window", "fields", "combine", "weights",
                                                         "primer", "primer_events", "redraws", "bars", "events")},
               "batch": min(cfg.batch_tracks, cfg.tracks), "run_seed": ctx.params.run.seed,
               "threads": ctx.params.train.threads}
        kit["digest"] = hashlib.sha256(b"".join(kit["train"][k] for k in sorted(kit["train"])) + repr(
            (kit["settings"], kit["batch"], kit["threads"])).encode()).hexdigest()
        del arrays
        # Batches of tracks, in turn here or one Ray task each; a track's seed and numbers do not
        # depend on the batch it is in, so every executor gives the same takes.
        size = cfg.batch_tracks
        batches = [list(range(i, min(i + size, cfg.tracks))) for i in range(0, cfg.tracks, size)]
        chosen = []
        for result in Executor.for_stage(ctx.params).map(_batch_job, batches, shared=kit, cpus=kit["threads"]):
            for line in result["log"]:
                ctx.log(line)
            chosen += result["takes"]
        tracks = []
        for i, take in enumerate(chosen):
            seq = take["seq"]
            events, _ = vocab.decode_events(seq)
            tracks.append({"index": i + 1, "seed": take["seed"], "primer_events": take["primer_events"],
                           "draws": take["draws"], "checks": take["checks"],
                           "flagged": bool(take["checks"]["failed"]),
                           "ids": seq.tolist(), "tokens": [list(t) for t in vocab.decode(seq)],
                           "self_repetition": round(self_repetition(seq), 4),
                           "distinct_events": len({tuple(r) for r in seq.tolist()}),
                           "chords": sum(e.is_chord for e in events),
                           "melody_notes": sum(e.pitch is not None for e in events)})
        atomic.write_json(ctx.out_dir / "tracks.json", {
            "grid": grid, "bars": None if cfg.events else cfg.bars, "fields": list(FIELDS),
            "vocab_fingerprint": vocab.fingerprint(), "data": profile, "tracks": tracks})
        for t in tracks:
            ctx.log(f"track {t['index']}: {len(t['ids'])} events ({t['chords']} chords, "
                    f"{t['melody_notes']} melody notes), {t['distinct_events']} distinct, "
                    f"self-repetition {t['self_repetition']:.2f}, take {t['draws']}")
        return {"tracks": len(tracks), "events": [len(t["ids"]) for t in tracks],
                "self_repetition": [t["self_repetition"] for t in tracks],
                "distinct_events": [t["distinct_events"] for t in tracks], "seeds": [t["seed"] for t in tracks],
                "takes": [t["draws"] for t in tracks], "redraws": sum(t["draws"] - 1 for t in tracks),
                "flagged": [t["index"] for t in tracks if t["flagged"]],
                "checks_failed": {t["index"]: t["checks"]["failed"] for t in tracks if t["flagged"]}}
