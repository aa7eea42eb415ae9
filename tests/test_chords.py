"""Chord recognition: every quality is found from its own notes, in any key, and its name is
the one music21 gives."""
import numpy as np
import pytest

from lofi_pipeline.music.chords import QUALITIES, QUALITY_NAMES, chord_pitch_classes, chord_symbol, recognise
from lofi_pipeline.music.piece import PITCH_NAMES


def weights(pcs, extra=()):
    w = np.zeros(12)
    w[list(pcs)] = 1.0
    for pc, amount in extra:
        w[pc] += amount
    return w


@pytest.mark.parametrize("quality", QUALITY_NAMES)
def test_every_quality_comes_back_from_its_notes_in_every_key(quality):
    rows = np.array([weights(chord_pitch_classes(root, quality)) for root in range(12)])
    roots, qualities, exact = recognise(rows, np.arange(12))  # played with the root in the bass
    assert roots.tolist() == list(range(12))
    assert [QUALITY_NAMES[q] for q in qualities] == [quality] * 12 and exact.all()


def test_a_passing_note_or_a_missing_fifth_does_not_change_the_chord():
    r, q, exact = recognise(np.array([weights([0, 4, 7, 11], [(2, 0.2)]), weights([9, 0, 7])]), np.array([0, 9]))
    assert [chord_symbol(int(a), QUALITY_NAMES[b]) for a, b in zip(r, q)] == ["Cmaj9", "Am7"]
    assert exact.tolist() == [True, False]


# music21's spelling of our quality names where the two differ; qualities music21 names as an
# inversion of another chord (6 as Am7/C, say) are left out.
MUSIC21_SPELLING = {"maj": "", "m": "m", "7": "7", "maj7": "maj7", "m7": "m7", "m7b5": "ø7", "dim": "dim",
                    "aug": "+", "sus4": "sus", "sus2": "sus2", "mmaj7": "mM7", "9": "9", "maj9": "M9",
                    "m9": "m9", "m11": "m11", "5": "power"}


def test_names_agree_with_music21():
    from music21 import chord, harmony
    for quality, spelling in MUSIC21_SPELLING.items():
        figure = harmony.chordSymbolFigureFromChord(chord.Chord([60 + i for i in QUALITIES[quality]]))
        assert figure == "C" + spelling, quality


def test_chord_symbols():
    assert chord_symbol(9, "m7") == "Am7" and chord_symbol(0, "maj") == "C"
    assert PITCH_NAMES[chord_pitch_classes(7, "7")[0]] == "D"  # G7 is D F G B, lowest class D
