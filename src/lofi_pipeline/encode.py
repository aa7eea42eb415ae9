"""encode: pieces -> events -> field ids -> training windows, split three ways by piece group.

The token format itself (fields, events, the vocabulary) lives in token_format.py.
"""
from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from . import atomic
from .errors import StageError
from .events import Piece
from .runner import Stage, StageContext
from .token_format import FIELDS, MAX_STEPS, PAD, UNK, Event, Vocabulary

SPLITS = ("train", "dev", "test")


def velocity_bin(velocity: int, bins: int) -> int:
    return min(bins - 1, max(0, int(velocity)) * bins // 128)


def piece_to_events(piece: Piece, velocity_bins: int = 4) -> list[Event]:
    """One event wherever a melody note starts or the chord changes; gaps longer than a bar
    become rest events. Onsets count from the first event."""
    melody = {n.onset: n for n in piece.melody}
    chords = {c.onset: c for c in piece.chords}
    times = sorted(set(melody) | set(chords))
    events: list[Event] = []
    for k, t in enumerate(times):
        note, chord = melody.get(t), chords.get(t)
        gap = times[k + 1] - t if k + 1 < len(times) else max(note.duration if note else 0, piece.grid)
        vel = velocity_bin(note.velocity if note else chord.velocity, velocity_bins)
        onset = t - times[0]
        shift = min(gap, MAX_STEPS)
        events.append(Event(onset, shift, chord.root if chord else None, chord.quality if chord else None,
                            note.pitch if note else None, min(note.duration, MAX_STEPS) if note else 0, vel))
        while gap > shift:
            onset, gap = onset + shift, gap - shift
            shift = min(gap, MAX_STEPS)
            events.append(Event(onset, shift, velocity=vel))
    return events


def make_windows(sequences: list[np.ndarray], window: int, stride: int = 1):
    """Every `stride`-th event is a target; its context is the `window` events before it,
    left-padded, so a piece's first events are targets too (and generation can start cold).
    x: (n, window, fields), y: (n, fields)."""
    n_fields = len(FIELDS)
    xs, ys = [], []
    for seq in sequences:
        padded = np.concatenate([np.full((window, n_fields), PAD, np.int32), seq])
        idx = np.arange(0, len(seq), stride)
        xs.append(padded[idx[:, None] + np.arange(window)[None, :]])
        ys.append(seq[idx])
    if not xs:
        return np.zeros((0, window, n_fields), np.int32), np.zeros((0, n_fields), np.int32)
    return np.concatenate(xs).astype(np.int32), np.concatenate(ys).astype(np.int32)


_VERSION_SUFFIX = re.compile(
    r"([ _.-]+(v\d+|copy|take ?\d+|alt|version ?\d+|final|analysis|reduction)|[ _-]*\(\d+\))+$", re.I)


def name_key(name: str) -> str:
    """A file name without folder, extension and version marks: 'Tune v2.mid' -> 'tune'."""
    stem = re.sub(r"\.(midi?|kar|rmi)$", "", name.replace("\\", "/").split("/")[-1], flags=re.I)
    return _VERSION_SUFFIX.sub("", stem).strip().lower()


def signatures(piece: Piece, n: int = 8) -> tuple[set, set]:
    """Transposition-free n-grams of a piece's chord changes and of its melody."""
    ch = [((b.root - a.root) % 12, b.quality, b.onset - a.onset) for a, b in zip(piece.chords, piece.chords[1:])]
    mel = [(b.pitch - a.pitch, a.duration) for a, b in zip(piece.melody, piece.melody[1:])]
    return ({tuple(ch[i:i + n]) for i in range(len(ch) - n + 1)},
            {tuple(mel[i:i + n]) for i in range(len(mel) - n + 1)})


def near_duplicate_groups(pieces: list[Piece], min_grams: int = 8, min_overlap: float = 0.5) -> list[int]:
    """A group id per piece: pieces sharing a name (up to version marks), or at least half of
    their chord-change or melody n-grams (a chorale and its realised analysis, two files of
    one tune), share a group. n-grams found in many pieces (stock progressions) do not count."""
    parent = list(range(len(pieces)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i, j):
        parent[find(i)] = find(j)
    by_name = defaultdict(list)
    for i, p in enumerate(pieces):
        by_name[name_key(p.name)].append(i)
    for members in by_name.values():
        for j in members[1:]:
            union(members[0], j)
    for kind in range(2):
        sets = [signatures(p)[kind] for p in pieces]
        index = defaultdict(list)
        for i, s in enumerate(sets):
            for g in s:
                index[g].append(i)
        common = max(3, len(pieces) // 50)
        shared: Counter = Counter()
        for holders in index.values():
            if len(holders) <= common:
                for a in range(len(holders)):
                    for b in range(a + 1, len(holders)):
                        shared[holders[a], holders[b]] += 1
        for (i, j), count in shared.items():
            smaller = min(len(sets[i]), len(sets[j]))
            if smaller >= min_grams and count >= min_overlap * smaller:
                union(i, j)
    return [find(i) for i in range(len(pieces))]


def grouped_split(groups: list[int], dev_share: float, test_share: float, seed: int) -> list[str]:
    """'train', 'dev' or 'test' per piece: whole groups, in a seeded order, fill test, then dev."""
    unique = sorted(set(groups))
    if len(unique) < 3:
        raise StageError(f"need at least 3 distinct pieces for a train/dev/test split, got {len(unique)}")
    size = Counter(groups)
    order = [unique[i] for i in np.random.default_rng(seed).permutation(len(unique))]
    total, side, filled = len(groups), {}, {"test": 0, "dev": 0}
    targets = {"test": max(1, round(test_share * total)), "dev": max(1, round(dev_share * total))}
    for k, g in enumerate(order):
        left = len(order) - k  # leave at least one group for each split still empty
        if filled["test"] < targets["test"] and left > 2:
            side[g] = "test"
        elif filled["dev"] < targets["dev"] and left > 1:
            side[g] = "dev"
        else:
            side[g] = "train"
        if side[g] in filled:
            filled[side[g]] += size[g]
    return [side[g] for g in groups]


class EncodeStage(Stage):
    name = "encode"
    requires = ("extract",)
    reads = ("encode", "run.seed")
    help = "turn pieces into field-wise events and windows; split train/dev/test by piece group"

    def run(self, ctx: StageContext) -> dict:
        cfg = ctx.params.encode
        data = json.loads((ctx.inputs["extract"] / "pieces.json").read_text())
        pieces = [Piece.from_json(p) for p in data["pieces"]]
        vocab = Vocabulary.closed(cfg.velocity_bins, {"window": cfg.window})
        vocab.save(ctx.out_dir / "vocab.json")
        events = [piece_to_events(p, cfg.velocity_bins) for p in pieces]
        keep = [i for i, ev in enumerate(events) if ev]
        pieces, events = [pieces[i] for i in keep], [events[i] for i in keep]
        groups = near_duplicate_groups(pieces)
        split = grouped_split(groups, cfg.dev_share, cfg.test_share, ctx.params.run.seed)
        seqs = [vocab.encode_events(ev) for ev in events]
        arrays = {}
        for name in SPLITS:
            chosen = [s for s, side in zip(seqs, split) if side == name]
            x, y = make_windows(chosen, cfg.window, cfg.stride if name == "train" else 1)
            arrays[f"x_{name}"], arrays[f"y_{name}"] = x, y
        lengths = np.array([len(s) for s in seqs])
        with atomic.atomic_path(ctx.out_dir / "data.npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, ids=np.concatenate(seqs), lengths=lengths,
                                    split=np.array([SPLITS.index(s) for s in split], np.int8), **arrays)
        meta = [{"sha256": p.sha256, "name": p.name, "split": side, "group": int(g), "tonic": p.tonic,
                 "mode": p.mode, "tempo_bpm": p.tempo_bpm, "time_signature": p.time_signature,
                 "events": len(s)} for p, side, g, s in zip(pieces, split, groups, seqs)]
        atomic.write_json(ctx.out_dir / "pieces.json", {"pieces": meta})
        every = np.concatenate(seqs)
        unknown = {f"unknown_share_{f}": round(float(np.mean(every[:, j] == UNK)), 4) for j, f in enumerate(FIELDS)}
        unknown["unknown_share"] = round(float(np.mean((every == UNK).any(axis=1))), 4)
        melody_notes = sum(len(p.melody) for p in pieces)
        chords = sum(len(p.chords) for p in pieces)
        approximated = {
            "melody_durations_cut_to_a_bar": sum(n.duration > MAX_STEPS for p in pieces for n in p.melody),
            "chords_not_exact": chords - sum(c.exact for p in pieces for c in p.chords),
            "rest_events": int(sum(e.root is None and e.pitch is None for ev in events for e in ev))}
        counts = Counter(split)
        ctx.log(f"{len(every)} events from {len(pieces)} pieces ({len(set(groups))} groups): "
                f"{counts['train']} train / {counts['dev']} dev / {counts['test']} test pieces; "
                f"unknown {unknown['unknown_share']:.1%}; {approximated['chords_not_exact']} of {chords} "
                f"chords approximated by the nearest chord quality")
        return {"vocab_sizes": dict(zip(FIELDS, vocab.sizes)), "vocab_fingerprint": vocab.fingerprint(),
                "pieces": {s: counts[s] for s in SPLITS}, "groups": len(set(groups)),
                "pieces_without_events": len(data["pieces"]) - len(pieces),
                "events": int(len(every)), "melody_notes": melody_notes, "chord_changes": chords,
                "windows": {s: int(len(arrays[f"y_{s}"])) for s in SPLITS}, **unknown,
                "approximated": approximated}


def load_encoded(encode_dir: Path):
    """(vocab, npz arrays, piece metadata) of an encode artifact."""
    encode_dir = Path(encode_dir)
    vocab = Vocabulary.load(encode_dir / "vocab.json")
    arrays = dict(np.load(encode_dir / "data.npz"))
    meta = json.loads((encode_dir / "pieces.json").read_text())["pieces"]
    return vocab, arrays, meta


def piece_sequences(arrays: dict) -> list[tuple[str, np.ndarray]]:
    """(split, ids) per piece, in the encode artifact's order."""
    starts = np.concatenate([[0], np.cumsum(arrays["lengths"])[:-1]])
    return [(SPLITS[s], arrays["ids"][a:a + n]) for s, a, n in zip(arrays["split"], starts, arrays["lengths"])]
