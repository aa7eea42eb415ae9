"""Composing a track section by section: each track's plan is a small program (a generator)
that asks for one event at a time, with some fields fixed (a copied chord, a repeated bar line)
and the rest to be drawn under masks (where in the bar, the data's grid, the harmony clock);
`compose` answers a batch of such programs in lockstep, one ensemble call per field that any
track still has to draw.

A letter's first section draws its loop (N bars) freely and then plays it again, varied; a
later section of that letter plays its loop again, varied. Varied means: each bar is drawn
afresh with probability `variation`, else copied with each melody note drawn afresh with
probability `melody_variation`; a note drawn afresh before a kept one is drawn to lead into it
too (the pitch step expert read backwards: sampling.py). The first letter's loop is drawn
first, before the intro that quotes it, from the primer; the primer is context only and no
part of the track.
"""
from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Callable, Generator

import numpy as np
from tqdm import tqdm

from ..music.harmony import same_harmony
from ..music.token_format import FIELDS, MAX_ADVANCE, NONE, PAD, UNK, Vocabulary
from .form import Section
from .sampling import FieldSampler

MELODY = ("pitch", "duration", "velocity")
COL = {f: j for j, f in enumerate(FIELDS)}


@dataclass
class Request:
    """One event a track asks for: `fixed` field ids (column -> id), the rest to be drawn with
    `mask(column, row)` (None: no constraint) restricting the values."""
    fixed: dict[int, int]
    mask: Callable[[int, np.ndarray], np.ndarray | None]
    following: dict[int, int] = dataclass_field(default_factory=dict)  # column -> the id the drawn value leads to

    def draws(self, column: int) -> bool:
        return column not in self.fixed


@dataclass
class Placed:
    """An event at a track bar: its bar, its position and its field ids."""
    bar: int
    position: int
    row: np.ndarray


class Composer:
    """One track's program: the sections of `plan`, from the primer's context."""

    def __init__(self, plan: list[Section], loop_bars: int, metre: str, vocab: Vocabulary, primer: np.ndarray,
                 rng: np.random.Generator, variation: float, melody_variation: float, grid_ticks: set[int],
                 hold_limit: int | None, max_events: int | None = None, seen: int | None = None,
                 advances: tuple = tuple(range(MAX_ADVANCE + 1))):
        self.plan, self.loop_bars, self.vocab, self.rng = plan, loop_bars, vocab, rng
        self.variation, self.melody_variation, self.max_events = variation, melody_variation, max_events
        self.seen, self.metre = seen, metre  # the models see at most `seen` past events
        self.metre_id = vocab.index["metre"][metre]
        self.bar_len = int(vocab.bar_ticks_table()[self.metre_id])
        self.primer = np.asarray(primer, np.int32).reshape(-1, len(FIELDS))
        self.hold_limit = hold_limit
        self.advance_of = vocab.value_table("bar")
        self.usual_advance = np.isin(self.advance_of, advances)  # steps the data takes
        self.position_of = vocab.value_table("position")
        on_grid = np.array([(p % 12) in grid_ticks for p in self.position_of]) & (self.position_of < self.bar_len)
        on_grid[[PAD, UNK]] = False
        self.on_grid = on_grid
        self.none = {f: vocab.index[f][NONE] for f in ("root", "quality", "pitch", "duration")}
        self.track: list[Placed] = []
        self.material: dict[str, list[list[Placed]]] = {}
        self.program = self._program()
        self.request = next(self.program, None)

    # -- the context the models see ------------------------------------------------------
    def _begin(self) -> None:
        """A new sequence (the first loop's draft, then the track), after the primer."""
        self.events: list[Placed] = []
        self.context = [r for r in self.primer]
        self.last_bar = -1 if len(self.primer) else 0  # a sequence starts in the bar after the primer's
        self.last_position: int | None = None
        self.chord: tuple[int, int] | None = None
        self.chord_start = 0

    def window(self, size: int) -> np.ndarray:
        """The last events of the context, as the models see them (padding before, as at a piece's start)."""
        rows = np.full((size, len(FIELDS)), PAD, np.int32)
        recent = self.context[-min(size, self.seen or size):]
        if recent:
            rows[size - len(recent):] = np.array(recent)
        return rows

    @property
    def done(self) -> bool:
        return self.request is None

    def accept(self, row: np.ndarray) -> None:
        try:
            self.request = self.program.send(np.array(row, np.int32))
        except StopIteration:
            self.request = None

    def _place(self, bar: int, row: np.ndarray) -> Placed:
        event = Placed(bar, int(self.position_of[row[COL["position"]]]), row.copy())
        self.events.append(event)
        self.context.append(row.copy())
        if row[COL["root"]] != self.none["root"]:
            chord = (int(row[COL["root"]]), int(row[COL["quality"]]))
            if not same_harmony(chord, self.chord):
                self.chord, self.chord_start = chord, bar * self.bar_len + event.position
        self.last_bar, self.last_position = bar, event.position
        return event

    # -- drawing under masks ---------------------------------------------------------------
    def _free_mask(self, end_bar: int, first_bar: int, keep_in: bool) -> Callable[[int, np.ndarray], np.ndarray | None]:
        def mask(column: int, row: np.ndarray) -> np.ndarray | None:
            field = FIELDS[column]
            limit = None if self.hold_limit is None or self.chord is None else self.chord_start + self.hold_limit
            if field == "bar":
                lowest = max(0, first_bar - self.last_bar)
                if lowest == 0 and not self._room_after(self.last_position):
                    lowest = 1
                allowed = (self.advance_of >= lowest) & (self.usual_advance | (self.advance_of == lowest))
                if limit is not None:
                    # No bar line past the harmony's limit, but the section may end, and the
                    # nearest bar line stays open when a copied loop already held the harmony
                    # past it (the event there then changes it: see root and quality below).
                    starts = (self.last_bar + self.advance_of) * self.bar_len
                    nearest = (self.last_bar + lowest) * self.bar_len
                    allowed &= (starts <= max(limit, nearest)) | (self.last_bar + self.advance_of >= end_bar)
                allowed[[PAD, UNK]] = False
                inside = allowed & (self.last_bar + self.advance_of < end_bar)
                return inside if keep_in and inside.any() else allowed
            if field == "position":
                advance = int(self.advance_of[row[COL["bar"]]])
                later = self.position_of < self.bar_len
                later[[PAD, UNK]] = False
                if advance == 0 and self.last_position is not None:
                    later &= self.position_of > self.last_position
                allowed = self.on_grid & later
                if not allowed.any():  # no place of the data's grid left in this bar
                    return later if later.any() else None
                if limit is not None and self.last_bar + advance < end_bar:
                    in_time = allowed & ((self.last_bar + advance) * self.bar_len + self.position_of <= limit)
                    if in_time.any():  # else the event falls past the limit and changes the harmony
                        allowed = in_time
                return allowed
            if field in ("root", "quality") and limit is not None:
                onset = (self.last_bar + self.advance_of[row[COL["bar"]]]) * self.bar_len + \
                    self.position_of[row[COL["position"]]]
                if onset >= limit:  # the harmony has stood its time: this event changes it
                    allowed = np.ones(len(self.vocab.fields[field]), bool)
                    allowed[[PAD, UNK]] = False
                    if field == "root":
                        allowed[self.none["root"]] = False
                    elif row[COL["root"]] == self.chord[0]:
                        allowed[self.chord[1]] = False
                    pair = self.vocab.pair_mask(field, row)
                    return allowed if pair is None else allowed & pair
            return None
        return mask

    def _room_after(self, position: int | None) -> bool:
        return position is None or bool((self.on_grid & (self.position_of > position)).any())

    def _rests_before(self, bar: int) -> Generator:
        """Rest events on the way to `bar` when it lies more bar lines ahead than one event may step."""
        while bar - self.last_bar > MAX_ADVANCE:
            row = np.array([self.metre_id, self.vocab.index["bar"][str(MAX_ADVANCE)], self.vocab.index["position"]["0"],
                            self.none["root"], self.none["quality"], self.none["pitch"], self.none["duration"],
                            self.vocab.index["velocity"]["0"]], np.int32)
            yield Request(dict(enumerate(row)), lambda c, r: None)
            self._place(self.last_bar + MAX_ADVANCE, row)

    def _free(self, start_bar: int, end_bar: int, at_least_one: bool = False) -> Generator:
        """Events drawn freely in bars [start_bar, end_bar), until one would fall past them; with
        `at_least_one`, the first event falls inside them (a loop is never empty)."""
        yield from self._rests_before(start_bar)
        first = len(self.events)
        while self.max_events is None or len(self.events) < self.max_events:
            mask = self._free_mask(end_bar, start_bar, at_least_one and len(self.events) == first)
            row = yield Request({COL["metre"]: self.metre_id}, mask)
            bar = self.last_bar + int(self.advance_of[row[COL["bar"]]])
            if bar >= end_bar:
                return
            self._place(bar, row)

    def _copy(self, bar: int, source: list[Placed], vary: bool) -> Generator:
        """The events of one bar of a loop at track bar `bar`; varied, the bar is drawn afresh or
        its melody notes are."""
        if vary and self.rng.random() < self.variation:
            yield from self._free(bar, bar + 1)
            return
        yield from self._rests_before(bar)
        redrawn = [vary and self.rng.random() < self.melody_variation for _ in source]
        pitch = COL["pitch"]
        for k, event in enumerate(source):
            row = event.row.copy()
            row[COL["bar"]] = self.vocab.index["bar"][str(bar - self.last_bar)]
            fixed, following = dict(enumerate(row)), {}
            if redrawn[k]:
                for f in MELODY:
                    fixed.pop(COL[f])
                # the bar's next melody note, when it is kept: the new note leads to it
                later = [j for j in range(k + 1, len(source)) if source[j].row[pitch] != self.none["pitch"]]
                if later and not redrawn[later[0]]:
                    following[pitch] = int(source[later[0]].row[pitch])
            row = yield Request(fixed, lambda c, r: self.vocab.pair_mask(FIELDS[c], r), following)
            self._place(bar, row)

    def _bars(self, start_bar: int, end_bar: int) -> list[list[Placed]]:
        """The events of this sequence in bars [start_bar, end_bar), bar by bar, bars re-based to 0."""
        return [[Placed(e.bar - b, e.position, e.row) for e in self.events if e.bar == b]
                for b in range(start_bar, end_bar)]

    def _play_loop(self, section: Section, loop: list[list[Placed]], vary_first: bool) -> Generator:
        for k in range(section.bars):
            vary = vary_first or k >= len(loop)
            yield from self._copy(section.start + k, loop[k % len(loop)], vary)

    # -- the program -------------------------------------------------------------------------
    def _program(self) -> Generator:
        if self.max_events is not None:  # a number of events, no form
            self._begin()
            yield from self._free(0, 10**9)
            return
        sections = [s for s in self.plan if s.letter]
        first, loop_end = sections[0].letter, min(self.loop_bars, sections[0].bars)
        self._begin()  # the first loop is drawn first: the intro quotes it
        yield from self._free(0, loop_end, at_least_one=True)
        self.material[first] = self._bars(0, loop_end)
        self._begin()
        for section in self.plan:
            if section.label == "intro":
                yield from self._play_loop(section, self.material[first], vary_first=False)
            elif section.label == "outro":
                yield from self._play_loop(section, self.material[first], vary_first=True)
            elif section.letter not in self.material:  # a new loop, then again, varied
                loop_end = section.start + min(self.loop_bars, section.bars)
                yield from self._free(section.start, loop_end, at_least_one=True)
                self.material[section.letter] = self._bars(section.start, loop_end)
                rest = Section(section.label, loop_end, section.end - loop_end)
                yield from self._play_loop(rest, self.material[section.letter], vary_first=True)
            else:  # the bare letter again plays its loop as drawn, then varied; a primed one varies at once
                loop = self.material[section.letter]
                as_drawn = section.label == section.letter
                for k in range(section.bars):
                    yield from self._copy(section.start + k, loop[k % len(loop)], not (as_drawn and k < len(loop)))

    def take(self) -> np.ndarray:
        """The track's event rows; its first bar line counts from the track's bar 0."""
        rows, last = [], 0
        for e in self.events:
            row = e.row.copy()
            row[COL["bar"]] = self.vocab.index["bar"][str(e.bar - last)]
            rows.append(row)
            last = e.bar
        return np.array(rows, np.int32).reshape(-1, len(FIELDS))


def compose(sampler, field_sampler: FieldSampler, composers: list[Composer], progress: bool = True) -> None:
    """Run every composer's program to its end, one event of each per step."""
    bar = tqdm(desc="generate", unit="event", disable=None if progress else True)
    while not all(c.done for c in composers):
        live = [i for i, c in enumerate(composers) if not c.done]
        requests = {i: composers[i].request for i in live}
        rows = np.zeros((len(composers), len(FIELDS)), np.int32)
        drawing = any(requests[i].draws(j) for i in live for j in range(len(FIELDS)))
        contexts = sampler.contexts(np.stack([c.window(sampler.window) for c in composers])) if drawing else None
        for j, field in enumerate(FIELDS):
            takers = [i for i in live if requests[i].draws(j)]
            probs = sampler.field_probs(contexts, rows)[field] if takers else None
            for i in live:
                if i in takers:
                    rows[i, j] = field_sampler.draw_field(field, probs[i], composers[i].rng, rows[i],
                                                          np.array(composers[i].context[-64:]).reshape(-1, len(FIELDS)),
                                                          requests[i].mask(j, rows[i]), requests[i].following.get(j))
                else:
                    rows[i, j] = requests[i].fixed[j]
        for i in live:
            composers[i].accept(rows[i])
        bar.update(len(live))
    bar.close()
