"""Step experts: how far the training pieces move from one melody note to the next (the pitch
field) and from one chord root to the next (the root field), each multiplied into the
ensemble's distribution of its field with a weight fitted on the dev split (a product of
experts, as shallow fusion adds a language model to a speech recogniser).

Why: pitch and root are absolute values (a MIDI pitch, a pitch class above the tonic), and the
networks, given the true past, spread a note or a root over the harmony's tones more than the
music does. On the default set they put 48 % of a melody note's mass on a step of 1-2 semitones
where the dev melodies take one 65 % of the time, and 28 % of a root's on a third where the dev
chords move so 17 %; drawn event after event, the tracks leapt thirds two to three times as
often as the data (docs/model.md). An expert only reshapes which value is played: the model's
chance of a value at all (against "-": no note, the harmony goes on) is kept.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from ..music.token_format import FIELDS, Vocabulary

FIELDS_WITH_STEPS = ("pitch", "root")
MAX_STEP = 24  # a melody's step, in semitones either way; a wider one counts as this one
BINS = {"pitch": 2 * MAX_STEP + 1, "root": 12}  # roots move by pitch classes: up 0 to 11
WEIGHT_RANGE = (0.0, 2.0)


def numbers(vocab: Vocabulary, field: str) -> np.ndarray:
    """The number each id of the field stands for (a MIDI pitch, a root's pitch class), -1 for
    "-" and the specials."""
    return np.array([int(t) if t.isdigit() else -1 for t in vocab.fields[field]], np.int64)


def step_bins(field: str, new: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """The bin of each step from `previous` to `new`."""
    if field == "root":
        return (new - previous) % 12
    return np.clip(new - previous, -MAX_STEP, MAX_STEP) + MAX_STEP


def fit_steps(sequences: list[np.ndarray], vocab: Vocabulary, field: str) -> list[float] | None:
    """The log-probability of each step between consecutive values of the field in the pieces
    (events without one in between do not count), add-one smoothed; None where no piece holds
    two values in a row."""
    table, column = numbers(vocab, field), FIELDS.index(field)
    counts = np.ones(BINS[field])
    for seq in sequences:
        values = table[np.asarray(seq).reshape(-1, len(FIELDS))[:, column]]
        values = values[values >= 0]
        np.add.at(counts, step_bins(field, values[1:], values[:-1]), 1)
    if counts.sum() <= len(counts):
        return None
    return [round(float(v), 5) for v in np.log(counts / counts.sum())]


def previous_values(windows: np.ndarray, table: np.ndarray, field: str) -> np.ndarray:
    """The field's last value in each window (events, fields), -1 where it holds none (`table`:
    numbers(vocab, field))."""
    values = table[np.asarray(windows)[..., FIELDS.index(field)]]
    has = values >= 0
    last = has.shape[-1] - 1 - np.argmax(has[..., ::-1], axis=-1)
    return np.where(has.any(axis=-1), np.take_along_axis(values, last[..., None], -1)[..., 0], -1)


def reweigh_towards(probs: np.ndarray, following: int, steps: list[float], weight: float, table: np.ndarray,
                    field: str) -> np.ndarray:
    """One distribution after the expert read backwards: each value's probability times
    exp(weight * log p(step from it to `following`)), the value the drawn one leads to (a note
    drawn afresh between two kept ones), renormalised within the values' mass."""
    probs = np.asarray(probs, np.float64)
    if weight == 0 or following < 0:
        return probs
    bins = step_bins(field, np.int64(following), table)
    return _renormalised(probs[None], bins[None], np.ones((1, 1), bool), steps, weight, table)[0]


def reweigh(probs: np.ndarray, previous: np.ndarray, steps: list[float], weight: float, table: np.ndarray,
            field: str) -> np.ndarray:
    """Distributions (rows) after the expert: each value's probability times
    exp(weight * log p(step from the previous value)), renormalised within the values' mass; rows
    with no previous value, and the "-" and special ids, are left as they are."""
    probs = np.asarray(probs, np.float64)
    previous = np.asarray(previous).reshape(-1)
    if weight == 0 or not (previous >= 0).any():
        return probs
    bins = step_bins(field, table[None, :], previous[:, None])
    return _renormalised(probs, bins, previous[:, None] >= 0, steps, weight, table)


def _renormalised(probs: np.ndarray, bins: np.ndarray, rows: np.ndarray, steps: list[float], weight: float,
                  table: np.ndarray) -> np.ndarray:
    """Each row's values (in `rows` where they apply) times exp(weight * log p(their step bin)),
    scaled back to the mass the values had; "-" and the special ids are left as they are."""
    is_value = table >= 0
    log_steps = np.asarray(steps, np.float64)
    factor = np.where(is_value[None, :] & rows, np.exp(weight * (log_steps[bins] - log_steps.max())), 1.0)
    before = (probs * is_value).sum(axis=1, keepdims=True)
    shaped = probs * factor
    after = (shaped * is_value).sum(axis=1, keepdims=True)
    scale = np.where(after > 0, before / np.where(after > 0, after, 1.0), 1.0)
    return np.where(is_value[None, :], shaped * scale, probs)


def fit_weight(probs: np.ndarray, windows: np.ndarray, targets: np.ndarray, steps: list[float] | None,
               vocab: Vocabulary, field: str) -> dict:
    """The expert's weight that gives the dev events' values of the field the lowest NLL (0: it
    does not help), with that NLL and the NLL without it. "fitted_weight" keeps it; "weight" is
    what the sampler draws with (rate_matching.py may make it heavier)."""
    table = numbers(vocab, field)
    previous, rows = previous_values(windows, table, field), np.arange(len(targets))

    def nll(weight: float) -> float:
        p = reweigh(probs, previous, steps, weight, table, field)
        return float(-np.mean(np.log(np.clip(p[rows, targets], 1e-12, None))))
    without = nll(0.0)
    weight, best = 0.0, without
    if steps is not None and len(targets):
        fit = minimize_scalar(nll, bounds=WEIGHT_RANGE, method="bounded", options={"xatol": 1e-3})
        if fit.fun < without:
            weight, best = round(float(fit.x), 3), float(fit.fun)
    return {"steps": steps, "weight": weight, "fitted_weight": weight,
            "dev_nll_without": round(without, 4), "dev_nll": round(best, 4)}


def fit_experts(probs: dict[str, np.ndarray], windows: np.ndarray, y: np.ndarray, train_sequences: list[np.ndarray],
                vocab: Vocabulary) -> dict[str, dict]:
    """Each field's expert, its steps counted on the training pieces and its weight fitted on
    the dev windows and events given."""
    return {f: fit_weight(probs[f], windows, y[:, FIELDS.index(f)], fit_steps(train_sequences, vocab, f), vocab, f)
            for f in FIELDS_WITH_STEPS}


def apply_experts(probs: dict[str, np.ndarray], windows: np.ndarray, experts: dict | None, vocab: Vocabulary,
                  weight_key: str = "weight") -> dict[str, np.ndarray]:
    """The fields' distributions after their experts (at `weight_key`: "weight" as drawn,
    "fitted_weight" as scored)."""
    out = dict(probs)
    for f, expert in (experts or {}).items():
        if expert and expert.get("steps") and expert.get(weight_key):
            table = numbers(vocab, f)
            out[f] = reweigh(probs[f], previous_values(windows, table, f), expert["steps"], expert[weight_key],
                             table, f)
    return out


def drawn(experts: dict | None) -> dict[str, dict]:
    """The experts the sampler draws with: {field: {"steps", "weight"}}, those weighing anything."""
    return {f: {"steps": e["steps"], "weight": e["weight"]} for f, e in (experts or {}).items()
            if e and e.get("steps") and e.get("weight")}
