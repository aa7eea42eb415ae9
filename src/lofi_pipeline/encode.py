"""encode: pieces -> events -> tokens -> training windows, split by piece.

An event says what sounds from its onset (one pitch, or a chord as a pitch-class set in
ascending order), for how long, when the next event starts, and a coarse velocity. One event
is one token, so a model's next-token distribution is a distribution over whole events.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from . import atomic
from .events import Piece
from .runner import Stage, StageContext, StageError, hash_json

PAD, UNK = 0, 1
SPECIALS = ["<pad>", "<unk>"]
# Durations and time shifts snap to this ladder (in beats): straight and triplet values.
LADDER_BEATS = [Fraction(1, 12), Fraction(1, 6), Fraction(1, 4), Fraction(1, 3), Fraction(1, 2),
                Fraction(2, 3), Fraction(3, 4), Fraction(1), Fraction(4, 3), Fraction(3, 2),
                Fraction(2), Fraction(8, 3), Fraction(3), Fraction(4)]
VOCAB_VERSION = "1"


@dataclass(frozen=True)
class Event:
    onset: int
    duration: int
    shift: int
    sound: str  # "n60" for one pitch, "c0.4.7" for a chord's pitch classes
    velocity: int  # bin index

    @property
    def token(self) -> str:
        return f"{self.sound}_d{self.duration}_s{self.shift}_v{self.velocity}"

    @property
    def pitches(self) -> tuple[int, ...]:
        """Pitches to sound: the note itself, or the chord's classes above middle C."""
        if self.sound.startswith("n"):
            return (int(self.sound[1:]),)
        return tuple(60 + int(pc) for pc in self.sound[1:].split("."))

    @property
    def is_chord(self) -> bool:
        return self.sound.startswith("c")


def ladder(grid: int) -> np.ndarray:
    return np.array(sorted({max(1, round(b * grid)) for b in LADDER_BEATS}))


def snap(ticks: int, steps: np.ndarray) -> int:
    return int(steps[np.argmin(np.abs(steps - ticks))])


def token_to_event(token: str, onset: int) -> Event:
    sound, d, s, v = token.split("_")
    return Event(onset, int(d[1:]), int(s[1:]), sound, int(v[1:]))


def piece_to_events(piece: Piece, velocity_bins: int = 4) -> list[Event]:
    """Segment a piece at every onset; each event holds everything sounding there."""
    steps = ladder(piece.grid)
    notes = sorted(piece.notes, key=lambda n: n.onset)
    onsets = sorted({n.onset for n in notes})
    events = []
    active: list = []
    i = 0
    for k, t in enumerate(onsets):
        active = [n for n in active if n.onset + n.duration > t]
        starting = []
        while i < len(notes) and notes[i].onset == t:
            starting.append(notes[i])
            i += 1
        active.extend(starting)
        pitches = sorted({p for n in active for p in n.pitches})
        pcs = sorted({p % 12 for p in pitches})
        sound = f"n{pitches[-1]}" if len(pcs) == 1 else "c" + ".".join(map(str, pcs))
        duration = snap(max(n.duration for n in starting), steps)
        shift = snap(onsets[k + 1] - t, steps) if k + 1 < len(onsets) else duration
        velocity = min(velocity_bins - 1,
                       int(np.mean([n.velocity for n in starting])) * velocity_bins // 128)
        events.append(Event(t, duration, shift, sound, velocity))
    # Onsets are re-derived from the snapped shifts so that decoding gives back the same events.
    onset = 0
    out = []
    for e in events:
        out.append(Event(onset, e.duration, e.shift, e.sound, e.velocity))
        onset += e.shift
    return out


def tokens_to_events(tokens: list[str]) -> list[Event]:
    events, onset = [], 0
    for tok in tokens:
        e = token_to_event(tok, onset)
        events.append(e)
        onset += e.shift
    return events


class Vocabulary:
    def __init__(self, tokens: list[str], counts: dict[str, int] | None = None, config: dict | None = None):
        self.tokens = SPECIALS + [t for t in tokens if t not in SPECIALS]
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.counts = counts or {}
        self.config = config or {}

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def build(cls, token_lists: list[list[str]], min_count: int, config: dict | None = None):
        counts = Counter(t for toks in token_lists for t in toks)
        kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        return cls(kept, {t: counts[t] for t in kept}, config)

    def encode(self, tokens: list[str]) -> np.ndarray:
        return np.array([self.index.get(t, UNK) for t in tokens], dtype=np.int32)

    def decode(self, ids) -> list[str]:
        return [self.tokens[i] for i in ids]

    def fingerprint(self) -> str:
        return hash_json(self.tokens)[:16]

    def to_json(self) -> dict:
        return {"class": type(self).__name__, "version": VOCAB_VERSION, "config": self.config,
                "fingerprint": self.fingerprint(), "tokens": self.tokens, "counts": self.counts}

    @classmethod
    def from_json(cls, d: dict) -> "Vocabulary":
        vocab = cls(d["tokens"], d.get("counts"), d.get("config"))
        if d.get("fingerprint") and d["fingerprint"] != vocab.fingerprint():
            raise StageError("vocabulary file is damaged: its fingerprint does not match its tokens")
        return vocab

    def save(self, path: Path) -> None:
        atomic.write_json(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> "Vocabulary":
        return cls.from_json(json.loads(Path(path).read_text()))


def make_windows(sequences: list[np.ndarray], window: int, stride: int = 1):
    """Every `stride`-th event is a target; its context is the `window` events before it,
    left-padded, so a piece's first events are targets too (and generation can start cold)."""
    xs, ys = [], []
    for seq in sequences:
        padded = np.concatenate([np.full(window, PAD, np.int32), seq])
        for i in range(0, len(seq), stride):
            xs.append(padded[i:i + window])
            ys.append(seq[i])
    if not xs:
        return np.zeros((0, window), np.int32), np.zeros((0,), np.int32)
    return np.stack(xs).astype(np.int32), np.array(ys, np.int32)


def split_by_piece(keys: list[str], validation_share: float, seed: int) -> set[str]:
    """The validation pieces, chosen by a seeded shuffle of their content hashes."""
    if len(keys) < 2:
        raise StageError(f"need at least 2 usable pieces for a train/validation split, got {len(keys)}")
    order = sorted(keys)
    perm = np.random.default_rng(seed).permutation(len(order))
    n_val = min(len(order) - 1, max(1, round(validation_share * len(order))))
    return {order[i] for i in perm[:n_val]}


class EncodeStage(Stage):
    name = "encode"
    requires = ("extract",)
    version = "1"
    help = "build the vocabulary, the token sequences and the training windows"

    def params(self, cfg):
        return {**cfg.section("encode"), "seed": cfg.run.seed}

    def run(self, ctx: StageContext) -> dict:
        cfg = ctx.cfg.encode
        data = json.loads((ctx.inputs["extract"] / "pieces.json").read_text())
        pieces = [Piece.from_json(p) for p in data["pieces"]]
        token_lists = {p.sha256: [e.token for e in piece_to_events(p, cfg.velocity_bins)] for p in pieces}
        val = split_by_piece(list(token_lists), cfg.validation_share, ctx.cfg.run.seed)
        train_keys = [p.sha256 for p in pieces if p.sha256 not in val]
        vocab = Vocabulary.build([token_lists[k] for k in train_keys], cfg.min_count,
                                 {"velocity_bins": cfg.velocity_bins, "grid": pieces[0].grid,
                                  "window": cfg.window})
        vocab.save(ctx.out_dir / "vocab.json")
        seqs = {k: vocab.encode(t) for k, t in token_lists.items()}
        meta = []
        for p in pieces:
            meta.append({"sha256": p.sha256, "name": p.name, "split": "val" if p.sha256 in val else "train",
                         "tonic": p.tonic, "mode": p.mode, "tempo_bpm": p.tempo_bpm,
                         "time_signature": p.time_signature, "events": len(seqs[p.sha256])})
        x_tr, y_tr = make_windows([seqs[k] for k in train_keys], cfg.window, cfg.stride)
        val_keys = [p.sha256 for p in pieces if p.sha256 in val]
        x_va, y_va = make_windows([seqs[k] for k in val_keys], cfg.window, 1)
        lengths = np.array([len(seqs[p.sha256]) for p in pieces])
        with atomic.atomic_path(ctx.out_dir / "data.npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, tokens=np.concatenate([seqs[p.sha256] for p in pieces]),
                                    lengths=lengths, is_val=np.array([p.sha256 in val for p in pieces]),
                                    x_train=x_tr, y_train=y_tr, x_val=x_va, y_val=y_va)
        atomic.write_json(ctx.out_dir / "pieces.json", {"pieces": meta})
        unk_train = float(np.mean(y_tr == UNK)) if len(y_tr) else 0.0
        unk_val = float(np.mean(y_va == UNK)) if len(y_va) else 0.0
        ctx.log(f"vocabulary {len(vocab)} tokens; {len(train_keys)} train / {len(val)} validation pieces; "
                f"{len(y_tr)} / {len(y_va)} windows; unknown {unk_train:.1%} / {unk_val:.1%}")
        return {"vocab_size": len(vocab), "vocab_fingerprint": vocab.fingerprint(),
                "pieces_train": len(train_keys), "pieces_val": len(val),
                "events": int(lengths.sum()), "windows_train": int(len(y_tr)),
                "windows_val": int(len(y_va)), "unknown_share_train": round(unk_train, 4),
                "unknown_share_val": round(unk_val, 4),
                "tokens_folded_to_unknown": int(sum(1 for k in train_keys for t in token_lists[k]
                                                    if t not in vocab.index))}


def load_encoded(encode_dir: Path):
    """(vocab, npz arrays, piece metadata) of an encode artifact."""
    encode_dir = Path(encode_dir)
    vocab = Vocabulary.load(encode_dir / "vocab.json")
    arrays = dict(np.load(encode_dir / "data.npz"))
    meta = json.loads((encode_dir / "pieces.json").read_text())["pieces"]
    return vocab, arrays, meta
