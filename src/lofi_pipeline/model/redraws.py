"""Re-draws: checking a take against the data's ranges, and drawing a failing one again.

A re-draw round draws several candidates for each failing track (generate.candidates): the
sampler pads a smaller batch to its full size (ensemble.py), so where a few tracks fail, their
candidates take the padding's place at little more model time. The number of candidates is
fixed, never "whatever fills the batch": a track's takes then do not depend on which other
tracks failed, so a one-track preview draws what the run drew.
"""
from __future__ import annotations

import numpy as np

from ..music import checks
from ..music.rates import rates
from ..music.token_format import Vocabulary

MISS_FLOOR = 0.05


def take_report(seq: np.ndarray, vocab: Vocabulary, profile: checks.DataProfile,
                sections: list[tuple[int, int]] | None = None) -> dict:
    """The music checks of one take: its figures and rates, and which fall outside the data's range."""
    events = vocab.decode_events(seq)[0]
    figs, track_rates = profile.figures(events, sections), rates(events, vocab.velocity_bins)
    failed = checks.failures(figs, profile.ranges) + checks.rate_failures(track_rates, profile.rate_ranges)
    return {"figures": {k: None if v is None else round(v, 4) for k, v in figs.items()},
            "rates": {k: None if v is None else round(v, 4) for k, v in track_rates.items()},
            "failed": [str(f) for f in failed], "outside": [f.check for f in failed],
            "miss": round(sum(_miss(f) for f in failed), 4)}


def _miss(failure: checks.Failure) -> float:
    """How far a figure lies outside its range, in range widths (a range of one value counts as
    MISS_FLOOR wide): of two takes failing as many checks, the nearer is kept."""
    gap = max(failure.low - failure.value, failure.value - failure.high, 0.0)
    return gap / max(failure.high - failure.low, MISS_FLOOR)


def round_draws(round_number: int, candidates: int) -> list[int]:
    """The draw numbers of a track's takes in a round: 0 first, then `candidates` new ones a round."""
    if round_number == 0:
        return [0]
    first = 1 + (round_number - 1) * candidates
    return list(range(first, first + candidates))


def draw_takes(sample, tracks: list[int], redraws: int, check, log=print, candidates: int = 1) -> list[dict]:
    """The take of each track in `tracks` (indices from 0): `sample(indices, draws)` draws one take
    for each (track, draw number) pair, `check(seq)` says what fails. A track whose takes all
    fail gets `candidates` more in each of up to `redraws` rounds. Each track keeps the first of
    its takes with the fewest failures (of those failing alike, the nearest its ranges), with
    `draws` (how many it drew) and `checks`; one that still fails is kept, and the log warns,
    naming it and the figures."""
    takes: dict[int, list[dict]] = {i: [] for i in tracks}
    pending = list(tracks)
    for round_number in range(redraws + 1):
        asked = [(i, d) for i in pending for d in round_draws(round_number, candidates)]
        drawn = sample([i for i, _ in asked], [d for _, d in asked])
        for (i, _), take in zip(asked, drawn):
            takes[i].append({**take, "checks": check(take["seq"])})
        pending = [i for i in pending if all(t["checks"]["failed"] for t in takes[i])]
        if not pending or round_number == redraws:
            break
        for i in pending:
            failed = "; ".join(_best(takes[i])["checks"]["failed"])
            which = f"take 1 fails {failed}" if len(takes[i]) == 1 else \
                f"{len(takes[i])} takes fail, the nearest {failed}"
            log(f"track {i + 1}: {which}; drawing {candidates} more")
    chosen = []
    for i, options in takes.items():
        best = _best(options)
        chosen.append({**best, "draws": len(options)})
        if best["checks"]["failed"]:
            log(f"warning: track {i + 1} is outside the data's range after {len(options)} takes: "
                f"{'; '.join(best['checks']['failed'])} (kept, flagged in the report)")
    return chosen


def _best(options: list[dict]) -> dict:
    return min(options, key=lambda t: (len(t["checks"]["failed"]), t["checks"]["miss"]))
