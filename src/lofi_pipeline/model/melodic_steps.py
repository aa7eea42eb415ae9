"""A melodic-step expert: how far the training pieces' melodies move from one note to the next,
multiplied into the ensemble's pitch distribution with a weight fitted on the dev split (a
product of experts, as shallow fusion adds a language model to a speech recogniser).

Why: the pitch field is an absolute pitch, and the networks, given the true past, spread a
note's mass over the harmony's tones more than the melodies do. On the default set they put
48 % of it on a step of 1-2 semitones where the dev melodies take one 65 % of the time, and
20 % on a third where they take 8 %; drawn note after note, the tracks leapt thirds three times
as often as the data (docs/model.md). The expert only reshapes which note is played: the
model's chance of a note at all (against "-", no note) is kept.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from ..music.token_format import FIELDS, Vocabulary

MAX_STEP = 24  # semitones either way; a wider step counts as this one
WEIGHT_RANGE = (0.0, 2.0)
PITCH = FIELDS.index("pitch")


def pitch_numbers(vocab: Vocabulary) -> np.ndarray:
    """The MIDI pitch each id of the pitch field stands for, -1 for "-" and the specials."""
    return np.array([int(t) if t.isdigit() else -1 for t in vocab.fields["pitch"]], np.int64)


def fit_steps(sequences: list[np.ndarray], vocab: Vocabulary) -> list[float] | None:
    """The log-probability of each signed step (-MAX_STEP..MAX_STEP) between consecutive melody
    notes of the pieces, add-one smoothed; None where they hold no two notes in a row."""
    numbers = pitch_numbers(vocab)
    counts = np.ones(2 * MAX_STEP + 1)
    for seq in sequences:
        notes = numbers[np.asarray(seq).reshape(-1, len(FIELDS))[:, PITCH]]
        notes = notes[notes >= 0]
        np.add.at(counts, np.clip(np.diff(notes), -MAX_STEP, MAX_STEP) + MAX_STEP, 1)
    if counts.sum() <= len(counts):
        return None
    return [round(float(v), 5) for v in np.log(counts / counts.sum())]


def previous_notes(windows: np.ndarray, numbers: np.ndarray) -> np.ndarray:
    """The last melody note in each window (events, fields), -1 where it holds none (`numbers`:
    pitch_numbers of the vocabulary)."""
    numbers = numbers[np.asarray(windows)[..., PITCH]]
    has = numbers >= 0
    last = has.shape[-1] - 1 - np.argmax(has[..., ::-1], axis=-1)
    return np.where(has.any(axis=-1), np.take_along_axis(numbers, last[..., None], -1)[..., 0], -1)


def reweigh(probs: np.ndarray, previous: np.ndarray, steps: list[float], weight: float,
            numbers: np.ndarray) -> np.ndarray:
    """Pitch distributions (rows) after the expert: each note's probability times
    exp(weight * log p(step from the previous note)), renormalised within the notes' mass; rows
    with no previous note, and the "-" and special ids, are left as they are."""
    probs = np.asarray(probs, np.float64)
    is_note = numbers >= 0
    previous = np.asarray(previous).reshape(-1)
    if weight == 0 or not (previous >= 0).any():
        return probs
    table = np.asarray(steps, np.float64)
    step = np.clip(numbers[None, :] - previous[:, None], -MAX_STEP, MAX_STEP) + MAX_STEP
    factor = np.where(is_note[None, :] & (previous[:, None] >= 0), np.exp(weight * (table[step] - table.max())), 1.0)
    notes_before = (probs * is_note).sum(axis=1, keepdims=True)
    shaped = probs * factor
    notes_after = (shaped * is_note).sum(axis=1, keepdims=True)
    scale = np.where(notes_after > 0, notes_before / np.where(notes_after > 0, notes_after, 1.0), 1.0)
    return np.where(is_note[None, :], shaped * scale, probs)


def fit_weight(probs: np.ndarray, previous: np.ndarray, targets: np.ndarray, steps: list[float] | None,
               vocab: Vocabulary) -> dict:
    """The expert's weight that gives the dev events' pitches the lowest NLL (0: it does not
    help), with that NLL and the NLL without it."""
    rows, numbers = np.arange(len(targets)), pitch_numbers(vocab)

    def nll(weight: float) -> float:
        p = reweigh(probs, previous, steps, weight, numbers)
        return float(-np.mean(np.log(np.clip(p[rows, targets], 1e-12, None))))
    without = nll(0.0)
    if steps is None or not len(targets):
        return {"steps": None, "weight": 0.0, "dev_pitch_nll_without": round(without, 4),
                "dev_pitch_nll": round(without, 4)}
    fit = minimize_scalar(nll, bounds=WEIGHT_RANGE, method="bounded", options={"xatol": 1e-3})
    weight = float(fit.x) if fit.fun < without else 0.0
    return {"steps": steps, "weight": round(weight, 3), "dev_pitch_nll_without": round(without, 4),
            "dev_pitch_nll": round(min(fit.fun, without), 4)}
