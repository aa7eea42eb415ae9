"""Chord qualities and chord recognition: pitch-class weights -> (root, quality).

A chord is a root pitch class plus a quality, so the same progression in any key has the same
qualities, and every sounding set of pitch classes gets the quality that explains it best.
Names follow chord-symbol practice (music21's chordSymbolFigure gives the same ones; a test
checks it).
"""
from __future__ import annotations

import numpy as np

from .piece import PITCH_NAMES

# Intervals above the root. Order breaks ties: simpler and commoner chords first.
QUALITIES: dict[str, tuple[int, ...]] = {
    "maj": (0, 4, 7), "m": (0, 3, 7), "7": (0, 4, 7, 10), "maj7": (0, 4, 7, 11), "m7": (0, 3, 7, 10),
    "m7b5": (0, 3, 6, 10), "dim": (0, 3, 6), "dim7": (0, 3, 6, 9), "aug": (0, 4, 8),
    "sus4": (0, 5, 7), "sus2": (0, 2, 7), "7sus4": (0, 5, 7, 10), "6": (0, 4, 7, 9), "m6": (0, 3, 7, 9),
    "mmaj7": (0, 3, 7, 11), "add9": (0, 2, 4, 7), "madd9": (0, 2, 3, 7), "9": (0, 2, 4, 7, 10),
    "maj9": (0, 2, 4, 7, 11), "m9": (0, 2, 3, 7, 10), "7b9": (0, 1, 4, 7, 10), "m11": (0, 2, 3, 5, 7, 10),
    "13": (0, 2, 4, 7, 9, 10), "6/9": (0, 2, 4, 7, 9), "5": (0, 7), "1": (0,),
}
QUALITY_NAMES = list(QUALITIES)
# What a quality is at a glance: major, minor, dominant, diminished, augmented or suspended.
# A performed voicing's extensions come and go (Cmaj7, C, Cadd9 from one hand), its family stays.
FAMILIES = {"maj": "maj", "6": "maj", "maj7": "maj", "add9": "maj", "maj9": "maj", "6/9": "maj", "5": "maj",
            "1": "maj", "m": "min", "m6": "min", "m7": "min", "mmaj7": "min", "madd9": "min", "m9": "min",
            "m11": "min", "7": "dom", "9": "dom", "13": "dom", "7b9": "dom", "7sus4": "dom", "dim": "dim",
            "dim7": "dim", "m7b5": "dim", "aug": "aug", "sus4": "sus", "sus2": "sus"}
assert set(FAMILIES) == set(QUALITIES)
MISSING_TONE_PENALTY = 0.15  # per chord tone that does not sound
BASS_ROOT_BONUS = 0.1  # the lowest sounding note is usually the root
SIZE_PENALTY = 0.01  # per tone: of two equally good explanations, the smaller chord

_MASKS = np.zeros((len(QUALITIES) * 12, 12))  # row q * 12 + root
for _q, _intervals in enumerate(QUALITIES.values()):
    for _root in range(12):
        _MASKS[_q * 12 + _root, [(_root + i) % 12 for i in _intervals]] = 1.0
_SCORING = np.vstack([2 * _MASKS.T, -MISSING_TONE_PENALTY * _MASKS.T]).astype(np.float32)
_OFFSET = (-1 - SIZE_PENALTY * _MASKS.sum(axis=1)).astype(np.float32)
_COLUMNS_OF_ROOT = np.array([[q * 12 + r for q in range(len(QUALITIES))] for r in range(12)])


def chord_pitch_classes(root: int, quality: str) -> list[int]:
    return sorted((root + i) % 12 for i in QUALITIES[quality])


def recognise(weights: np.ndarray, bass_pc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For K rows of 12 pitch-class weights (sounding time) and K bass pitch classes (-1: none),
    the best (root, quality index, exact) per row. exact: the sounding set is the chord's."""
    w = np.asarray(weights, np.float32)
    total = w.sum(axis=1, keepdims=True)
    h = w / np.maximum(total, 1e-9)
    absent = (h <= 0.05 * h.max(axis=1, keepdims=True)).astype(np.float32)
    # One product gives 2 * (share inside the chord) - penalty * (chord tones missing).
    score = np.hstack([h, absent]) @ _SCORING + _OFFSET
    bass = np.asarray(bass_pc)
    rows = np.flatnonzero(bass >= 0)
    score[rows[:, None], _COLUMNS_OF_ROOT[bass[rows]]] += BASS_ROOT_BONUS
    best = np.argmax(score, axis=1)  # first maximum: the order of QUALITIES breaks ties
    exact = ((1 - absent) == _MASKS[best]).all(axis=1) & (total[:, 0] > 0)
    return best % 12, best // 12, exact


def chord_symbol(root: int, quality: str) -> str:
    """'Am7', 'C', 'F#maj9': the root's name, then the quality (nothing for a major triad)."""
    return PITCH_NAMES[root] + ("" if quality == "maj" else quality)
