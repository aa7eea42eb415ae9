"""The base corpus leaves out the default set's tunes by the tune, not by the folder: a melody
is told again in another key, rhythm and harmonisation, with a passing note added; another
melody, or one too short to be a phrase, is not."""
import json
import zipfile

from music21 import common

from helpers import midi_bytes
from lofi_pipeline.corpora.base_corpus import build_base_corpus, source_to_midi_entries
from lofi_pipeline.corpora.tunes import TuneIndex, contour, melody

# The opening of "Ein feste Burg" (C major), as a chorale book has it.
TUNE = [72, 72, 72, 67, 69, 71, 72, 71, 69, 67, 72, 71, 69, 67, 69, 71, 67, 64, 67, 69, 67, 65, 64, 62, 60,
        67, 69, 71, 72, 71, 69, 67]
OTHER = [60, 62, 64, 65, 67, 65, 64, 62, 60, 64, 67, 72, 67, 64, 60, 59, 60, 62, 60, 57, 60, 64, 62, 60,
         65, 64, 62, 64, 60, 62, 59, 60]


def chorale(soprano: list[int]) -> bytes:
    """Four voices in one track, a half-note each: the soprano on top."""
    notes = []
    for beat, pitch in enumerate(soprano):
        notes += [(beat * 2, 2, pitch, 80), (beat * 2, 2, pitch - 5 - beat % 3, 70), (beat * 2, 2, pitch - 12, 70),
                  (beat * 2, 2, pitch - 19 - beat % 2, 70)]
    return midi_bytes(notes)


def folk_song(pitches: list[int], transpose: int) -> bytes:
    """A single line in another key and a dotted rhythm, a note repeated and a passing note added."""
    line = [*pitches[:6], pitches[5], 68, *pitches[6:]]  # a repeat (merged away) and a passing note
    rhythm = (1.5, 0.5, 1.0, 1.0)
    notes, at = [], 0.0
    for i, pitch in enumerate(line):
        notes.append((at, rhythm[i % 4], pitch + transpose, 90))
        at += rhythm[i % 4]
    return midi_bytes(notes)


def test_a_tune_is_told_again_in_another_key_rhythm_and_harmonisation():
    index = TuneIndex({"bach__bwv302.mid": chorale(TUNE)})
    assert melody(chorale(TUNE)) == TUNE  # the soprano: the highest note at each onset
    assert contour([60, 60, 62, 59]) == [2, -3]
    found = index.match(folk_song(TUNE, transpose=-5))
    assert found and found[0] == "bach__bwv302.mid" and found[1] >= 0.8
    assert index.match(folk_song(OTHER, transpose=2)) is None
    assert index.match(folk_song(TUNE[:6], transpose=0)) is None  # five intervals are no phrase


def test_the_base_corpus_drops_the_pieces_that_carry_a_held_out_tune(tmp_path):
    root = str(common.getCorpusFilePath())
    kept_source = f"{root}/leadSheet/berlinAlexandersRagtime.mxl"
    dropped_source = f"{root}/leadSheet/fosterBrownHair.mxl"
    _, [(_, foster)], _ = source_to_midi_entries(dropped_source)
    held_out = {"bach__bwv0.mid": chorale([p + 3 for p in melody(foster)])}  # its tune, set for four voices
    made = build_base_corpus(tmp_path / "corpus.zip", held_out, workers=1, sources=[kept_source, dropped_source])
    assert made["held_out_tunes"] == 1 and made["dropped_as_held_out_tunes"] == 1
    assert list(made["dropped"]) == ["leadSheet__fosterBrownHair.mid"]
    assert made["dropped"]["leadSheet__fosterBrownHair.mid"].startswith("bach__bwv0.mid (")
    assert zipfile.ZipFile(tmp_path / "corpus.zip").namelist() == ["leadSheet__berlinAlexandersRagtime.mid"]
    assert json.loads((tmp_path / "corpus.json").read_text())["dropped_as_held_out_tunes"] == 1
