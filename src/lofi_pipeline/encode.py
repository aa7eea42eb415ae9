"""encode: pieces -> events -> tokens -> training windows, split by piece.

The token format itself (events, tokens, the vocabulary) lives in token_format.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import atomic
from .errors import StageError
from .events import Piece
from .runner import Stage, StageContext
from .token_format import PAD, UNK, Event, Vocabulary, ladder, snap


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
    reads = ("encode", "run.seed")
    help = "build the vocabulary, the token sequences and the training windows"

    def run(self, ctx: StageContext) -> dict:
        cfg = ctx.params.encode
        data = json.loads((ctx.inputs["extract"] / "pieces.json").read_text())
        pieces = [Piece.from_json(p) for p in data["pieces"]]
        token_lists = {p.sha256: [e.token for e in piece_to_events(p, cfg.velocity_bins)] for p in pieces}
        val = split_by_piece(list(token_lists), cfg.validation_share, ctx.params.run.seed)
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
