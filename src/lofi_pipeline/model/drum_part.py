"""A track's drum part, played by the drum model with form: each letter's groove loop drawn
once and repeated with the harmony's loop, some of its bars drawn afresh on each repeat, a
fill on the last bar before a new section, the kit thinned in the intro's second half and
silent in its first, a bar of silence (the drop) before the last A, and the outro's ending: a
kick and a crash on its first beat. Bars are drawn event by event from the model, within what
the format allows (hits in order through the bar, each class once per 16th).
"""
from __future__ import annotations

import numpy as np

from ..music.drum_format import (
    CLASSES,
    DRUM_FIELDS,
    DRUM_TARGETS,
    END,
    NONE,
    PAD,
    DrumBar,
    DrumHit,
    DrumVocabulary,
    steps_per_bar,
)
from .sampling import sample_value

SPARSE = {CLASSES.index(c) for c in ("closed_hat", "ride", "side_stick", "open_hat")}
CRASH, KICK = CLASSES.index("crash"), CLASSES.index("kick")
MAX_HITS = 48  # a bar is closed after this many hits (the corpus's densest holds 45)


class BarPlayer:
    """Draws whole bars from the drum ensemble for one track, keeping what it played as context."""

    def __init__(self, sampler, vocab: DrumVocabulary, metre: str, tempo_bpm: float, rng: np.random.Generator,
                 temperature: float):
        self.sampler, self.vocab, self.metre, self.tempo, self.rng = sampler, vocab, metre, tempo_bpm, rng
        self.temperature = temperature
        self.steps = steps_per_bar(metre)
        self.context: list[list[int]] = []
        self.position_of = {i: v for v, i in vocab.index["position"].items()}

    def remember(self, bar: DrumBar) -> None:
        """A bar played (copied or drawn) joins the context the model continues from."""
        self.context += self.vocab.encode([bar], self.metre, self.tempo).tolist()

    def _window(self) -> np.ndarray:
        w = self.sampler.window
        rows = self.context[-w:]
        pad = [[PAD] * len(DRUM_FIELDS)] * (w - len(rows))
        return np.array([pad + rows], np.int32)

    def _position_mask(self, last: DrumHit | None, hits: int) -> np.ndarray:
        """The end of the bar, or a 16th at or after the last hit's (after it, if that hit was
        the last class in order)."""
        allowed = np.zeros(self.vocab.sizes["position"], bool)
        allowed[self.vocab.index["position"][END]] = True
        if hits < MAX_HITS:
            first = 0 if last is None else last.step + (last.instrument == len(CLASSES) - 1)
            for step in range(first, self.steps):
                allowed[self.vocab.index["position"][str(step)]] = True
        return allowed

    def _mask(self, field: str, row: np.ndarray, last: DrumHit | None, hits: int) -> np.ndarray:
        v = self.vocab
        if field == "position":
            return self._position_mask(last, hits)
        allowed = np.zeros(v.sizes[field], bool)
        if self.position_of.get(int(row[3])) == END:
            allowed[v.index[field][NONE]] = True
            return allowed
        allowed[2:] = True
        allowed[v.index[field][NONE]] = False
        if field == "instrument" and last is not None and str(last.step) == self.position_of.get(int(row[3])):
            for c in range(last.instrument + 1):  # hits on one 16th come in class order, each once
                allowed[v.index["instrument"][CLASSES[c]]] = False
        return allowed

    def draw(self, role: str) -> DrumBar:
        """One bar of `role` ("groove" or "fill"), drawn after the context."""
        given = self.vocab.given(self.metre, role, self.tempo)
        hits: list[DrumHit] = []
        while True:
            row = np.array([given + [PAD] * len(DRUM_TARGETS)], np.int32)
            contexts = self.sampler.contexts(self._window())
            last = hits[-1] if hits else None
            for j, field in enumerate(DRUM_TARGETS):
                probs = self.sampler.field_probs(contexts, row)[field][0]
                row[0, len(given) + j] = sample_value(probs, self.rng, self.temperature, 0, 1.0,
                                                      allowed=self._mask(field, row[0], last, len(hits)))
            self.context.append(row[0].tolist())
            hit = self.vocab.hit_of(row[0])
            if hit is None:
                return DrumBar(tuple(hits), role)
            hits.append(hit)


def _only(bar: DrumBar, classes: set[int]) -> DrumBar:
    return DrumBar(tuple(h for h in bar.hits if h.instrument in classes), bar.role)


def _with_crash(bar: DrumBar) -> DrumBar:
    """A new section opens on a crash (and a kick), if the bar has none on its first beat."""
    hits = list(bar.hits)
    for cls, level in ((KICK, 4), (CRASH, 4)):
        if not any(h.step == 0 and h.instrument == cls for h in hits):
            hits.append(DrumHit(0, cls, level, 3))
    return DrumBar(tuple(sorted(hits)), bar.role)


def drum_part(player: BarPlayer, sections: list[tuple[str, int, int]], loop_bars: int,
              variation: float) -> tuple[list[DrumBar], dict]:
    """Every bar of a track with `sections` ((label, first bar, bars)), and what was done where;
    `variation`: the share of a repeated loop's bars drawn afresh."""
    rng = player.rng
    letters = [s for s in sections if s[0] not in ("intro", "outro")]
    first_letter = letters[0][0][0] if letters else "A"
    last_a = max((i for i, s in enumerate(sections) if s[0][0] == first_letter and s[0] not in ("intro", "outro")),
                 default=None)
    loops: dict[str, list[DrumBar]] = {}

    def loop_of(letter: str) -> list[DrumBar]:
        if letter not in loops:
            bars = [player.draw("groove") for _ in range(loop_bars)]
            if not any(b.hits for b in bars):  # an empty groove is no groove: once more
                bars = [player.draw("groove") for _ in range(loop_bars)]
            loops[letter] = bars
        return loops[letter]
    loop_of(first_letter)  # the track's groove comes first, after the primer, whatever the intro quotes of it
    out: list[DrumBar] = []
    stats = {"drawn": loop_bars, "copied": 0, "varied": 0, "fills": 0, "drop_bars": 0, "sections": len(sections)}
    for k, (label, start, bars) in enumerate(sections):
        next_label = sections[k + 1][0] if k + 1 < len(sections) else None
        if label == "intro":
            for i in range(bars):
                out.append(DrumBar(()) if i < bars / 2 else _only(loop_of(first_letter)[i % loop_bars], SPARSE))
            continue
        if label == "outro":
            out += [DrumBar((DrumHit(0, KICK, 4, 3), DrumHit(0, CRASH, 3, 3)))] + [DrumBar(())] * (bars - 1)
            continue
        loop = loop_of(label[0])
        for i in range(bars):
            last_bar = i == bars - 1 and next_label is not None
            if last_bar and k + 1 == last_a and next_label is not None:
                bar = DrumBar(())  # the drop: the kit stops for a bar before the last A comes in
                stats["drop_bars"] += 1
            elif last_bar:
                bar = player.draw("fill")
                stats["fills"] += 1
            elif i >= loop_bars and rng.random() < variation:
                bar = player.draw("groove")
                stats["varied"] += 1
            else:
                bar = loop[i % loop_bars]
                player.remember(bar)
                stats["copied"] += 1
            if i == 0 and k > 0:
                bar = _with_crash(bar)
            out.append(bar)
    return out, stats
