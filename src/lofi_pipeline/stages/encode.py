"""encode: pieces -> events -> field ids -> training windows, split three ways by piece group,
and the profile of the training pieces that generate and arrange steer by.

The token format itself (fields, events, the vocabulary) lives in music/token_format.py.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict

import numpy as np

from ..core.errors import StageError
from ..core.runner import Stage, StageContext
from ..model.training import make_windows
from ..music.checks import data_profile
from ..music.piece import Piece
from ..music.token_format import FIELDS, MAX_STEPS, UNK, Vocabulary, piece_to_events
from . import catalog
from .catalog import SPLITS

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


def near_duplicate_groups(pieces: list[Piece], min_grams: int = 8, min_overlap: float = 0.5,
                          max_holders: int = 0) -> list[int]:
    """A group id per piece: pieces sharing a name (up to version marks), or at least half of
    their chord-change or melody n-grams (a chorale and its realised analysis, the settings of
    one tune), share a group.

    A stock progression is kept apart by the overlap rule (two pieces sharing one or two stock
    8-grams share far less than half of theirs), not by ignoring common n-grams: that would also
    ignore every n-gram of a tune with many settings, and let its settings land on both sides
    of the split. Only an n-gram held by more than `max_holders` pieces (0: the larger of 50 and
    a tenth of the archive) is skipped, to keep the pair count bounded on huge archives."""
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
        common = max_holders or max(50, len(pieces) // 10)
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
    takes = (catalog.PIECES,)
    gives = (catalog.VOCABULARY, catalog.SEQUENCES, catalog.SPLIT, catalog.PROFILE)
    reads = ("encode", "run.seed")
    help = "turn pieces into field-wise events and windows; split train/dev/test by piece group"

    def run(self, ctx: StageContext) -> dict:
        cfg = ctx.params.encode
        read, _ = catalog.read_pieces(ctx.source(catalog.PIECES))
        vocab = Vocabulary.closed(cfg.velocity_bins, {"window": cfg.window})
        events = [piece_to_events(p, cfg.velocity_bins) for p in read]
        keep = [i for i, ev in enumerate(events) if ev]
        pieces, events = [read[i] for i in keep], [events[i] for i in keep]
        groups = near_duplicate_groups(pieces)
        split = grouped_split(groups, cfg.dev_share, cfg.test_share, ctx.params.run.seed)
        seqs = [vocab.encode_events(ev) for ev in events]
        arrays = {"ids": np.concatenate(seqs), "lengths": np.array([len(s) for s in seqs]),
                  "split": np.array([SPLITS.index(s) for s in split], np.int8)}
        for name in SPLITS:
            chosen = [s for s, side in zip(seqs, split) if side == name]
            arrays[f"x_{name}"], arrays[f"y_{name}"] = make_windows(chosen, cfg.window,
                                                                   cfg.stride if name == "train" else 1)
        meta = [{"sha256": p.sha256, "name": p.name, "split": side, "group": int(g), "tonic": p.tonic,
                 "mode": p.mode, "tempo_bpm": p.tempo_bpm, "time_signature": p.time_signature,
                 "events": len(s)} for p, side, g, s in zip(pieces, split, groups, seqs)]
        catalog.write_encoded(ctx.out_dir, vocab, arrays, meta)
        train_pieces = [vocab.decode_events(s)[0] for s, side in zip(seqs, split) if side == "train"]
        profile = data_profile(train_pieces, cfg.checks_quantile, cfg.velocity_bins)
        catalog.write_profile(ctx.out_dir, profile)
        every = arrays["ids"]
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
                "pieces_without_events": len(read) - len(pieces),
                "events": int(len(every)), "melody_notes": melody_notes, "chord_changes": chords,
                "windows": {s: int(len(arrays[f"y_{s}"])) for s in SPLITS}, **unknown,
                "approximated": approximated, "training_pieces_inside_checks": profile.pieces_inside}
