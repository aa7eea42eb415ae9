"""Drawing one event: a value from a field's distribution (temperature, top-k, top-p, a
repetition penalty), the fields of an event one after another under the token format's
pairing rule, and the clock that keeps a harmony from standing past its limit."""
from __future__ import annotations

import numpy as np

from ..music.harmony import same_harmony
from ..music.token_format import FIELDS, NONE, PAD, UNK, Vocabulary


def sample_value(probs: np.ndarray, rng: np.random.Generator, temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0, allowed: np.ndarray | None = None,
                 recent: np.ndarray | None = None, repetition_penalty: float = 1.0) -> int:
    """Draw one value id from a field's distribution; padding and <unk> are never drawn, nor
    anything `allowed` (a boolean mask) rules out."""
    p = np.asarray(probs, np.float64).copy()
    p[[PAD, UNK]] = 0.0
    if allowed is not None:
        p[~allowed] = 0.0
    if recent is not None and len(recent) and repetition_penalty != 1.0:
        p[np.unique(recent)] /= repetition_penalty
    p = np.power(np.clip(p, 0, None), 1.0 / temperature)
    if p.sum() <= 0:
        p = np.ones_like(p) if allowed is None else allowed.astype(np.float64)
        p[[PAD, UNK]] = 0.0
    order = np.argsort(-p, kind="stable")
    keep = len(order) if top_k <= 0 else min(top_k, len(order))
    sorted_p = p[order[:keep]] / p[order[:keep]].sum()
    if top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(sorted_p), top_p) + 1)
    chosen = order[:keep]
    chosen = chosen[p[chosen] > 0]
    weights = p[chosen] / p[chosen].sum()
    return int(chosen[rng.choice(len(chosen), p=weights)])


class FieldSampler:
    """Draws an event field by field. The second field of each pair (quality after root,
    duration after pitch) is drawn among the values the token format's pairing rule allows;
    the repetition penalty applies to melody pitches."""

    def __init__(self, vocab: Vocabulary, settings: dict):
        self.vocab = vocab
        self.settings = {f: {k: settings[k] for k in ("temperature", "top_k", "top_p")} for f in FIELDS}
        for f, extra in settings.get("fields", {}).items():
            self.settings[f].update(extra)
        self.penalty, self.window = settings["repetition_penalty"], settings["repetition_window"]
        self.none = {f: vocab.index[f].get(NONE, -1) for f in FIELDS}
        self.shift_ticks = vocab.value_table("shift")
        # A root that strikes a chord: any value but the specials and "-".
        self.struck_root = np.ones(len(vocab.fields["root"]), bool)
        self.struck_root[[PAD, UNK, self.none["root"]]] = False

    def draw_field(self, j: int, probs: np.ndarray, rng: np.random.Generator, row: np.ndarray,
                   history: np.ndarray, harmony: "HarmonyClock | None" = None) -> int:
        """Field `j` of an event whose earlier fields are in `row`. `harmony`, when given, keeps
        the chord from being held past its limit: the shift may not carry the harmony past it,
        and once there the event must change chord."""
        f = FIELDS[j]
        force = harmony is not None and harmony.must_change
        allowed, recent = self.vocab.pair_mask(f, row), None
        if f == "shift" and harmony is not None and not force:
            allowed = (self.shift_ticks >= 1) & (self.shift_ticks <= harmony.ticks_left)
        elif f == "root" and force:
            allowed = self.struck_root
        elif f == "quality" and force and row[FIELDS.index("root")] == harmony.chord[0]:
            allowed[harmony.chord[1]] = False  # the same chord again would be no change
        elif f == "pitch" and self.window:
            recent = history[-self.window:, j]
            recent = recent[recent != self.none["pitch"]]
        return sample_value(probs, rng, allowed=allowed, recent=recent,
                            repetition_penalty=self.penalty if f == "pitch" else 1.0, **self.settings[f])

    def draw(self, field_probs, rng: np.random.Generator, history: np.ndarray,
             harmony: "HarmonyClock | None" = None) -> np.ndarray:
        """One event, field by field; `field_probs(row)` gives the distributions once the fields
        before each are in `row`."""
        row = np.zeros(len(FIELDS), np.int32)
        for j, f in enumerate(FIELDS):
            row[j] = self.draw_field(j, field_probs(row)[f], rng, row, history, harmony)
        return row


class HarmonyClock:
    """How long one track's harmony has stood, in grid ticks, against the data's hold limit."""

    def __init__(self, limit_ticks: int, none_root: int, shift_ticks: np.ndarray):
        self.limit, self.none_root, self.shift_ticks = limit_ticks, none_root, shift_ticks
        self.held, self.chord = 0, (-1, -1)

    @property
    def must_change(self) -> bool:
        return self.held >= self.limit

    @property
    def ticks_left(self) -> int:
        return self.limit - self.held

    def advance(self, row: np.ndarray) -> None:
        chord = (int(row[FIELDS.index("root")]), int(row[FIELDS.index("quality")]))
        if chord[0] != self.none_root and not same_harmony(chord, self.chord):
            self.chord, self.held = chord, 0
        self.held += int(self.shift_ticks[row[0]])
