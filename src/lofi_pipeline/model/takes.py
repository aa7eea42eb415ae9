"""Takes: each track's seed and its primer (re-drawing one that fails the checks: redraws.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import StageError
from ..music import checks
from ..music.midi_io import UnusableMidi, key_profiles, midi_header_reason, read_midi
from ..music.performance import analyse
from ..music.token_format import FIELDS, NONE, Vocabulary, piece_to_events

SEED_STREAMS = ("run", "radio")


def track_seed(run_seed: int, index: int, draw: int = 0, stream: str = "run", retake: int = 0) -> int:
    """The seed of a track's first take, or of its re-draw number `draw`; a stream other than
    the runs' mixes its number into the entropy, so the radio's track N is never a run's; a
    retake (generate.retakes) mixes in its count, so it is never a seed the track had before."""
    entropy = [run_seed, index] + ([draw] if draw or stream != "run" or retake else [])
    entropy += [SEED_STREAMS.index(stream)] if stream != "run" or retake else []
    entropy += [retake] if retake else []
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


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
    ids = vocab.encode_events(piece_to_events(piece, vocab.velocity_bins))
    if len(ids) > window:
        raise StageError(f"primer {path}: {len(ids)} events, longer than the models' window of "
                         f"{window}; use a shorter primer")
    return ids


def primer_wants(vocab: Vocabulary, profile: checks.DataProfile) -> tuple[int, int] | None:
    """dev_primer's `want` for this data: (root "-" id, pitch "-" id) where it has both chords
    and a melody, so that a primer holds both; None where it lacks either."""
    if not (profile.has_chords and profile.has_melody):
        return None
    return vocab.index["root"][NONE], vocab.index["pitch"][NONE]


def dev_primer(dev_pieces: list[np.ndarray], rng: np.random.Generator, n: int,
               want: tuple[int, int] | None = None) -> np.ndarray:
    """The opening of one of the dev pieces (never a test piece: those are only for scoring). With
    `want` = (root "-" id, pitch "-" id), the piece is drawn from those holding a stretch of `n`
    events with both a chord and a melody note, and the primer is its first such stretch: where
    the data mixes pieces with a melody and pieces without (a pack of chord loops, some with a top
    line), primers from any piece left 10 of 16 takes' melodies resting more than the data's
    range allows; these primers, measured together with rate matching's new target, 6
    (docs/model.md). Any piece's opening where none holds both."""
    having = holding_both(dev_pieces, n, want) if want is not None else []
    if not having:
        return dev_pieces[rng.integers(len(dev_pieces))][:n]
    piece = having[rng.integers(len(having))]
    start = both_streams_starts(piece, n, want)[0]
    return piece[start:start + n]


def holding_both(pieces: list[np.ndarray], n: int, want: tuple[int, int] | None) -> list[np.ndarray]:
    """The pieces of the kind the tracks are drawn to be: with `want` (primer_wants), those holding
    a stretch of `n` events with both a chord and a melody note; every piece without it."""
    return [ids for ids in pieces if want is None or len(both_streams_starts(ids, n, want))]


def both_streams_starts(ids: np.ndarray, n: int, want: tuple[int, int]) -> np.ndarray:
    """The starts of the stretches of `n` events of `ids` holding both a chord and a melody note."""
    if len(ids) < n or n == 0:
        return np.zeros(0, np.int64)
    chord = np.convolve(ids[:, FIELDS.index("root")] != want[0], np.ones(n, int), "valid")
    note = np.convolve(ids[:, FIELDS.index("pitch")] != want[1], np.ones(n, int), "valid")
    return np.flatnonzero((chord > 0) & (note > 0))
