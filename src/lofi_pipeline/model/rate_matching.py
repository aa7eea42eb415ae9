"""Sampling settings matched to the data's rates by playing, not only by scoring.

A temperature fitted to the dev NLL (calibration.py) is right for one step given the true past;
a take is hundreds of steps, each given the model's own past, and small leans add up (too many
notes, too many leaps, a harmony that changes too often or too seldom). So, on the dev pieces:
the models play short continuations of dev primers (the same seeds for every candidate, so
candidates differ by their settings alone), and each group of fields (timing, harmony, melody,
velocity) has its temperatures scaled where that brings the played segments' figures closer to
the dev pieces': where onsets fall, chords a bar and their families, root motion, melody steps,
density and range (the realism figure's features), the velocity levels and the rests (beats
with no melody note sounding). Then each step expert (step_experts.py) is played heavier where
that brings the figures it shapes (melody steps and range, root motion) closer; "distance" is
over every figure, after the temperatures.

The figures are matched to the pieces the primers are drawn from: where the data has both
chords and a melody, only pieces holding both (averaging in the pieces without a melody would
ask a take that begins with one to rest as they do). Where the dev
pieces give fewer than TARGET_SEGMENTS two-bar segments (a 40-loop pack has 4 dev pieces, one
with a top line), the training pieces are added to the target: its figures were one piece's,
and matching them chose a melody temperature that leapt past the data's range in most takes.
The test pieces never are.
"""
from __future__ import annotations

import warnings

import numpy as np

from ..core.config import default_of
from ..music.rates import rest_share
from ..music.realism import FEATURES, SEGMENT_BARS, features, segments
from ..music.token_format import TARGETS, Event, bar_ticks, timeline_end
from .calibration import TEMPERATURE_RANGE
from .compose import Composer, compose
from .form import Section
from .sampling import FieldSampler
from .step_experts import WEIGHT_RANGE, drawn
from .takes import dev_primer, holding_both, primer_wants

GROUPS = {"timing": ("bar", "position"), "harmony": ("root", "quality"), "melody": ("pitch", "duration"),
          "velocity": ("velocity",)}
SCALES = (0.8, 1.25)  # each group's temperatures times these, against as they are
STEP_SCALES = (1.5, 2.5)  # each step expert's weight times these, against as fitted
# The figures an expert's weight is matched on: what it shapes. Matched on every figure, its
# few were lost in the others' sampling noise (one run chose x2.5, the next x1).
STEP_FIGURES = {"pitch": [i for i, f in enumerate(FEATURES) if f.startswith(("melody steps", "melody range"))],
                "root": [i for i, f in enumerate(FEATURES) if f.startswith("root motion")]}
BARS = 8  # bars each
PRIMER_EVENTS = default_of("generate.primer_events")  # start as a run does by default
TARGET_SEGMENTS = 40  # two-bar segments the target figures want at least (as the realism figure does)
SPREAD_FLOOR = 0.05  # a figure that never varies in the data still has a scale for its distance
assert {f for fields in GROUPS.values() for f in fields} == set(TARGETS)


def figures(sequences: list[list[Event]], velocity_bins: int) -> np.ndarray:
    """One row per two-bar segment: the realism figure's features, the mean velocity level (0 to 1),
    the share of onsets at the loudest level and the share of beats with no melody note sounding
    (a note held over from before the segment sounds in it; the last segment of a piece ends
    where the piece does, so a 3-bar loop's missing fourth bar is no rest; not a number where
    the sequence has no melody at all, as a rate of music/rates.py is None)."""
    rows = []
    for events in sequences:
        melody = [e for e in events if e.pitch is not None]
        end = timeline_end(events) if events else 0
        for segment in segments(events):
            levels = np.array([e.velocity for e in segment]) / max(1, velocity_bins - 1)
            first = segment[0]
            start = first.onset - first.position - (first.bar % SEGMENT_BARS) * bar_ticks(first.metre)
            stop = min(start + SEGMENT_BARS * bar_ticks(first.metre), end)
            rests = rest_share(melody, start, stop) if melody else np.nan
            rows.append(np.concatenate([features(segment), [levels.mean(), np.mean(levels >= 1.0), rests]]))
    return np.array(rows).reshape(len(rows), -1)


def distance(played: np.ndarray, data: np.ndarray, columns: list[int] | None = None) -> float:
    """How far the played segments' mean figures (those in `columns`, else all) lie from the
    data's, in the data's spreads; a figure that either side lacks everywhere is not judged."""
    if not len(played) or not len(data):
        return float("inf")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the mean of a figure one side lacks: not a number
        gaps = np.abs(np.nanmean(played, 0) - np.nanmean(data, 0)) / (np.nanstd(data, 0) + SPREAD_FLOOR)
    gaps = gaps if columns is None else gaps[columns]
    return float(np.mean(gaps[~np.isnan(gaps)])) if (~np.isnan(gaps)).any() else 0.0


def play(sampler, vocab, profile, dev_pieces: list[np.ndarray], temperatures: dict[str, float],
         seed: int, tracks: int, experts: dict | None = None) -> list[list[Event]]:
    """`tracks` continuations of BARS bars from dev primers, drawn whole (no truncation), with the
    step experts given (step_experts.fit_experts)."""
    settings = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "repetition_penalty": 1.0, "repetition_window": 0,
                "fields": {f: {"temperature": t} for f, t in temperatures.items()},
                "step_experts": drawn(experts)}
    want = primer_wants(vocab, profile)
    seen = max(PRIMER_EVENTS, profile.context_events or 0)
    composers = []
    for i in range(tracks):
        rng = np.random.default_rng([seed, i])
        primer = dev_primer(dev_pieces, rng, PRIMER_EVENTS, want)
        metre = vocab.fields["metre"][primer[-1, 0]] if len(primer) else profile.metre
        composers.append(Composer([Section("A", 0, BARS)], BARS, metre, vocab, primer, rng, 1.0, 0.0,
                                  set(profile.grid_ticks), profile.hold_limit_ticks, None, seen, profile.advances))
    compose(sampler, FieldSampler(vocab, settings), composers, progress=False)
    return [vocab.decode_events(c.take())[0] for c in composers]


def target_figures(vocab, profile, dev_pieces: list[np.ndarray],
                   train_pieces: list[np.ndarray]) -> tuple[np.ndarray, str]:
    """The figures the played segments are matched to, and which pieces gave them (see above)."""
    want = primer_wants(vocab, profile)
    kind = "dev pieces holding chords and a melody" if want else "dev pieces"
    data = figures([vocab.decode_events(ids)[0] for ids in holding_both(dev_pieces, PRIMER_EVENTS, want)],
                   vocab.velocity_bins)
    if len(data) < TARGET_SEGMENTS and train_pieces:
        more = figures([vocab.decode_events(ids)[0] for ids in holding_both(train_pieces, PRIMER_EVENTS, want)],
                       vocab.velocity_bins)
        data = np.concatenate([data, more]) if len(data) else more
        kind = f"{kind}, and training pieces (the dev pieces gave under {TARGET_SEGMENTS} segments)"
    return data, kind


def match_rates(sampler, vocab, profile, dev_pieces: list[np.ndarray], temperatures: dict[str, float],
                seed: int, tracks: int, log=print, experts: dict | None = None,
                train_pieces: list[np.ndarray] | None = None) -> dict | None:
    """The per-field temperatures after one pass over the groups of fields, each group scaled by
    whichever of SCALES (or none) brings the played figures nearest the target's
    (target_figures), with every trial's distance; None where there is no segment to compare with."""
    bins = vocab.velocity_bins
    data, target = target_figures(vocab, profile, dev_pieces, train_pieces or [])
    if not len(data):
        return None
    log(f"matching the sampler to {len(data)} two-bar segments of the {target}")

    def trial(temps: dict[str, float], weights: dict[str, dict], columns: list[int] | None = None) -> float:
        played = figures(play(sampler, vocab, profile, dev_pieces, temps, seed, tracks, weights), bins)
        return distance(played, data, columns)
    experts = {f: e for f, e in (experts or {}).items() if e.get("steps") and e.get("weight")}
    best = start = trial(temperatures, experts)
    trials = [{"group": "as fitted", "scale": 1.0, "distance": round(start, 4)}]
    for group, fields in GROUPS.items():
        chosen, chosen_scale = temperatures, 1.0
        for scale in SCALES:
            temps = {**temperatures, **{f: float(np.clip(temperatures[f] * scale, *TEMPERATURE_RANGE)) for f in fields}}
            d = trial(temps, experts)
            trials.append({"group": group, "scale": scale, "distance": round(d, 4)})
            if d < best - 1e-9:
                best, chosen, chosen_scale = d, temps, scale
        temperatures = chosen
        log(f"played {tracks} x {BARS} bars from dev primers: {group} temperatures x{chosen_scale:g} "
            f"(distance to the target {best:.3f})")
    # An expert's weight fitted for one event given the true past is too light for music given
    # its own: the model's spread over the harmony's tones adds up event after event.
    for field, expert in list(experts.items()):
        columns = STEP_FIGURES[field]
        chosen, chosen_scale, nearest = expert, 1.0, trial(temperatures, experts, columns)
        trials.append({"group": f"{field} steps", "scale": 1.0, "distance": round(nearest, 4), "figures": "its own"})
        for scale in STEP_SCALES:
            trying = {**expert, "weight": round(min(expert["weight"] * scale, WEIGHT_RANGE[1]), 3)}
            d = trial(temperatures, {**experts, field: trying}, columns)
            trials.append({"group": f"{field} steps", "scale": scale, "distance": round(d, 4), "figures": "its own"})
            if d < nearest - 1e-9:
                nearest, chosen, chosen_scale = d, trying, scale
        experts[field] = chosen
        log(f"played {tracks} x {BARS} bars from dev primers: the {field} step expert x{chosen_scale:g} "
            f"(distance to the target on its figures {nearest:.3f})")
    return {"temperatures": {f: round(t, 3) for f, t in temperatures.items()},
            "step_weights": {f: e["weight"] for f, e in experts.items()}, "trials": trials,
            "distance": round(best, 4), "distance_as_fitted": round(start, 4), "target": target,
            "target_segments": int(len(data))}
