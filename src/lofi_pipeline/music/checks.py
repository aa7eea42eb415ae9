"""Music checks: figures that catch a bad take (a chord held for two minutes, a stuck note, a
flurry of tiny gaps, events off the beat, a track that never comes back to anything), measured
the same way on a generated track and on every training piece, and the range the training
pieces span for each (and for each rate of music/rates.py, checked alike); and the profile of
the training pieces the sampler steers by.

The figures are rates or per-window values, so a 2-minute track and an 8-second loop can be
compared; only the longest unchanged harmony grows with length, and the sampler caps it.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from .harmony import bar_harmonies, harmony_changes, hold_limit_bars, hold_limit_ticks, same_bar_harmony
from .piece import GRID
from .rates import RATES, outside, rates
from .token_format import DEFAULT_METRE, Event, bar_ticks, timeline_end

SHORT_GAP_BEATS = 0.25  # a gap between onsets shorter than a 16th note is "very short"
MELODY_WINDOW_BARS = 4  # melody variety and range are measured per this many bars
MELODY_SHARE_MIN = 0.05  # a corpus with fewer melody events than this has no melody to follow
GRID_SHARE_MIN = 0.005  # a position in the beat that holds fewer of the data's onsets is off its grid
LOOP_LENGTHS = (1, 2, 4, 8)  # bars a loop may last
LOOP_PREFERRED = 4  # of loop lengths that explain repeats about as well, the one nearest this
LOOP_TIE = 0.02  # "about as well": within this share of repeats
STRAIGHT_8TH, SWUNG_8TH = 6, 8  # ticks into the beat

CHECKS = {
    "longest_harmony_bars": "longest unchanged harmony (bars)",
    "harmony_changes_per_bar": "harmony changes per bar",
    "onsets_per_beat": "onsets per beat",
    "short_gap_share": "share of gaps under a 16th",
    "melody_pitch_variety": f"distinct melody pitches per {MELODY_WINDOW_BARS} bars",
    "melody_range": f"melody range per {MELODY_WINDOW_BARS} bars (semitones)",
    "on_grid_share": "share of onsets on the beat or its 8th",
    "loop_repeat_share": "share of bars repeating the harmony a loop earlier",
}


def _melody_windows(events: list[Event], end: int, window: int) -> list[list[int]]:
    """Melody pitches per window; a last window shorter than half a window is left out
    unless it is the only one."""
    count = max(1, int(np.ceil(end / window)))
    if count > 1 and end - (count - 1) * window < window / 2:
        count -= 1
    out: list[list[int]] = [[] for _ in range(count)]
    for e in events:
        if e.pitch is not None and e.onset // window < count:
            out[e.onset // window].append(e.pitch)
    return out


def loop_repeat_share(events: list[Event], loop_bars: int,
                      sections: list[tuple[int, int]] | None = None) -> float | None:
    """The share of bars, among those with a bar `loop_bars` earlier in the same section (the
    whole sequence when there are none), whose harmony repeats that bar's; None if no bar has one."""
    harmonies = bar_harmonies(events)
    sections = sections or [(0, len(harmonies))]
    pairs = [(harmonies[b], harmonies[b - loop_bars]) for start, end in sections
             for b in range(start + loop_bars, min(end, len(harmonies)))
             if harmonies[b] is not None and harmonies[b - loop_bars] is not None]
    return float(np.mean([same_bar_harmony(a, b) for a, b in pairs])) if pairs else None


def figures(events: list[Event], main_ticks: frozenset = frozenset({0, STRAIGHT_8TH}), loop_bars: int = 4,
            sections: list[tuple[int, int]] | None = None) -> dict[str, float | None]:
    """Each check's figure for one sequence of events; `main_ticks` are the data's main places
    in the beat and `sections` (first bar, end bar) the stretches inside which bars may repeat."""
    if not events:
        return {name: 0.0 for name in CHECKS}
    bar = bar_ticks(events[0].metre)
    end = max(timeline_end(events), 1)
    changes = [e.onset for e in harmony_changes(events)]
    bounds = [0, *changes, end]
    struck = [e for e in events if e.is_chord or e.pitch is not None]
    gaps = np.diff([e.onset for e in struck])
    windows = _melody_windows(events, end, MELODY_WINDOW_BARS * bar)
    return {
        "longest_harmony_bars": float(max(b - a for a, b in zip(bounds, bounds[1:])) / bar),
        "harmony_changes_per_bar": float(len(changes) / (end / bar)),
        "onsets_per_beat": float(len(struck) / (end / GRID)),
        "short_gap_share": float(np.mean(gaps < SHORT_GAP_BEATS * GRID)) if len(gaps) else 0.0,
        "melody_pitch_variety": float(np.mean([len(set(w)) for w in windows])),
        "melody_range": float(np.mean([max(w) - min(w) if w else 0 for w in windows])),
        "on_grid_share": float(np.mean([e.beat_tick in main_ticks for e in struck])) if struck else 0.0,
        "loop_repeat_share": loop_repeat_share(events, loop_bars, sections),
    }


def data_ranges(piece_figures: list[dict[str, float | None]], quantile: float) -> dict[str, list[float]]:
    """Per figure (a check's, or a rate of music/rates.py), the [quantile, 1 - quantile] range of
    the pieces' figures (pieces that have one)."""
    ranges = {}
    for name in dict.fromkeys(name for f in piece_figures for name in f):
        values = [f[name] for f in piece_figures if f.get(name) is not None]
        if values:
            ranges[name] = [round(float(np.quantile(values, q)), 4) for q in (quantile, 1 - quantile)]
    return ranges


@dataclass(frozen=True)
class Failure:
    check: str
    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{({**CHECKS, **RATES})[self.check]} {self.value:.2f} (data {self.low:.2f}-{self.high:.2f})"


def failures(track_figures: dict[str, float | None], ranges: dict[str, list[float]]) -> list[Failure]:
    """The checks whose figure lies outside the data's range (a harmony may always stand as long
    as the generator lets one: harmony.hold_limit_bars);
    a figure the track cannot have (no bar a loop after another) is not checked."""
    out = []
    for name, (low, high) in ranges.items():
        if name == "longest_harmony_bars":
            high = hold_limit_bars(high)
        if name == "loop_repeat_share":  # coming back to the loop more than the data does is the lo-fi form
            high = 1.0
        value = track_figures.get(name)
        if value is not None and not low - 1e-9 <= value <= high + 1e-9:
            out.append(Failure(name, round(value, 4), low, high))
    return out


def rate_failures(track_rates: dict[str, float | None], ranges: dict[str, list[float]]) -> list[Failure]:
    """The rates (music/rates.py) outside the data's range, as check failures."""
    return [Failure(name, round(track_rates[name], 4), *ranges[name]) for name in outside(track_rates, ranges)]


@dataclass(frozen=True)
class DataProfile:
    """What the training pieces look like to the checks and to the sampler: their metre, the
    places in the beat they use, how long their loops are and how often bars repeat a loop
    later, each check's and each rate's range and how strict they are, how long a harmony may
    stand, and whether there is a melody and chords."""
    pieces: int
    quantile: float
    ranges: dict
    pieces_inside: float
    context_events: int | None
    melody_share: float
    has_chords: bool
    hold_limit_ticks: int | None
    metre: str = DEFAULT_METRE
    main_ticks: tuple = (0, STRAIGHT_8TH)
    grid_ticks: tuple = tuple(range(GRID))
    loop_bars: int = 4
    loop_repeat_target: float = 0.5
    longest_bars: int = 0
    advances: tuple = (0, 1)  # bar lines one event steps over in the data (rarer steps are masked)
    rate_ranges: dict = field(default_factory=dict)  # music/rates.py's, at the checks' quantile

    @property
    def has_melody(self) -> bool:
        return self.melody_share >= MELODY_SHARE_MIN

    def figures(self, events: list[Event], sections: list[tuple[int, int]] | None = None) -> dict:
        return figures(events, frozenset(self.main_ticks), self.loop_bars, sections)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "DataProfile":
        return cls(**{**d, "main_ticks": tuple(d["main_ticks"]), "grid_ticks": tuple(d["grid_ticks"]),
                      "advances": tuple(d["advances"])})


def loop_length(pieces: list[list[Event]]) -> tuple[int, list[float]]:
    """The loop length, in bars, that explains the pieces' repeats best (the one nearest 4 bars
    among those about as good), with the pieces' repeat shares at it; pieces too short to
    repeat at any length give the longest length they hold."""
    shares = {n: [s for s in (loop_repeat_share(p, n) for p in pieces) if s is not None] for n in LOOP_LENGTHS}
    enough = max(3, len(pieces) // 10)
    scored = {n: float(np.mean(v)) for n, v in shares.items() if len(v) >= enough}
    if not scored:
        bars = int(np.median([p[-1].bar + 1 for p in pieces])) if pieces else 1
        n = max([n for n in LOOP_LENGTHS if n <= bars] or [1])
        return n, shares[n]
    best = max(scored.values())
    n = min((n for n, s in scored.items() if s >= best - LOOP_TIE), key=lambda n: (abs(n - LOOP_PREFERRED), -n))
    return n, shares[n]


def data_profile(pieces: list[list[Event]], quantile: float, velocity_bins: int) -> DataProfile:
    """The profile of the training pieces (as events, with `velocity_bins` levels)."""
    pieces = [p for p in pieces if p]
    events = [e for p in pieces for e in p]
    struck = [e for e in events if e.is_chord or e.pitch is not None]
    ticks = Counter(e.beat_tick for e in struck)
    total = max(1, len(struck))
    grid_ticks = tuple(sorted({0} | {t for t, n in ticks.items() if n / total >= GRID_SHARE_MIN}))
    main_ticks = (0, STRAIGHT_8TH if ticks[STRAIGHT_8TH] >= ticks[SWUNG_8TH] else SWUNG_8TH)
    steps = Counter(e.advance for p in pieces for e in p[1:])
    stepped = max(1, sum(steps.values()))
    advances = tuple(sorted({0, 1} | {a for a, n in steps.items() if n / stepped >= GRID_SHARE_MIN}))
    metre = Counter(e.metre for e in events).most_common(1)[0][0] if events else DEFAULT_METRE
    loop_bars, shares = loop_length(pieces)
    piece_figures = [figures(p, frozenset(main_ticks), loop_bars) for p in pieces]
    ranges = data_ranges(piece_figures, quantile)
    piece_rates = [rates(p, velocity_bins) for p in pieces]
    rated = data_ranges(piece_rates, quantile)
    # How strict the ranges are: the share of the training pieces themselves that pass every check.
    inside = float(np.mean([not failures(f, ranges) and not outside(r, rated)
                            for f, r in zip(piece_figures, piece_rates)])) if pieces else 0.0
    has_chords = any(e.is_chord for e in events)
    # A model trained on short pieces (8-second loops) never saw a long context; past the
    # pieces' usual length it drifts (measured on the lo-fi loops: 5-7 chord changes a bar
    # against the data's 0.3-4.1), so generation shows it no more than that.
    context = int(np.median([len(p) for p in pieces])) if pieces else None
    hold = hold_limit_ticks(ranges["longest_harmony_bars"][1], bar_ticks(metre)) if has_chords and ranges else None
    return DataProfile(pieces=len(pieces), quantile=quantile, ranges=ranges, pieces_inside=round(inside, 4),
                       context_events=context,
                       melody_share=round(sum(e.pitch is not None for e in events) / max(1, len(events)), 4),
                       has_chords=has_chords, hold_limit_ticks=hold, metre=metre, main_ticks=main_ticks,
                       grid_ticks=grid_ticks, loop_bars=loop_bars, advances=advances,
                       longest_bars=max((p[-1].bar + 1 for p in pieces), default=0),
                       loop_repeat_target=round(float(np.quantile(shares, 0.75)), 4) if shares else 0.5,
                       rate_ranges=rated)
