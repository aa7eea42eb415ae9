"""The drum format: GMD-style files read into bars and back, the reductions counted, drums
found on another channel by name, micro-timing kept."""
import io
from collections import Counter

import mido
import numpy as np
import pytest

from helpers import groove_file, midi_bytes
from lofi_pipeline.music.drum_format import (
    CLASSES,
    DrumBar,
    DrumHit,
    DrumVocabulary,
    bar_notes,
    drums_from_raw,
    offset_fraction,
)
from lofi_pipeline.music.midi_io import UnusableMidi, key_profiles, read_midi
from lofi_pipeline.music.performance import analyse


def test_groove_file_reads_into_bars_with_each_reduction_counted():
    counts = Counter()
    bars, metre, bpm = drums_from_raw(read_midi(groove_file(bars=2)), "groove", counts)
    assert (metre, round(bpm)) == ("4/4", 92) and len(bars) == 2
    first = bars[0]
    kicks = [h.step for h in first.hits if CLASSES[h.instrument] == "kick"]
    hats = [h.step for h in first.hits if CLASSES[h.instrument] == "closed_hat"]
    snares = [h for h in first.hits if CLASSES[h.instrument] == "snare"]
    assert kicks == [0, 10] and hats == [0, 2, 4, 6, 8, 10, 12, 14]  # the edge note (22) is a closed hat
    # The snare sits late on 2 and 4: on its 16th, in a bin after the grid's.
    assert [h.step for h in snares] == [4, 12] and all(h.offset > 3 for h in snares)
    assert counts["drum notes outside the GM drum map"] == 1
    assert counts["drum hits merged (rolls, flams)"] == 2  # three snares inside one 16th: one hit


def test_encode_then_decode_is_equal_and_ends_every_bar():
    vocab = DrumVocabulary()
    bars, metre, bpm = drums_from_raw(read_midi(groove_file(bars=3)))
    bars = [*bars, DrumBar(()), DrumBar(bars[0].hits, "fill")]  # an empty bar and a fill
    ids = vocab.encode(bars, metre, bpm)
    assert vocab.decode(ids) == bars
    ends = ids[:, 3] == vocab.index["position"]["end"]
    assert ends.sum() == len(bars) and ends[-1]


def test_played_notes_keep_the_micro_timing():
    hit = DrumHit(step=4, instrument=CLASSES.index("snare"), level=4, offset=5)
    (start, _, pitch, velocity), = bar_notes(DrumBar((hit,)), start_beats=8.0)
    assert pitch == 38 and velocity > 100
    assert np.isclose(start, 8.0 + (4 + offset_fraction(5)) / 4) and start > 9.0


def test_drums_on_another_channel_named_as_drums_are_drums():
    song = midi_bytes(notes=[(b, 1, 60 + b % 3, 70) for b in range(8)])
    drums_elsewhere = groove_file(bars=2, channel=3, name="Drums", stray_note=False)
    for data, expected in ((drums_elsewhere, 2), (song, 0)):
        bars, _, _ = drums_from_raw(read_midi(data))
        assert len(bars) == expected


def test_extract_keeps_the_archives_drums_as_played():
    from helpers import performed_song
    piece = analyse(read_midi(performed_song(seed=1, bars=4).data), "song.mid", "x", key_profiles())
    beats = np.array([h[0] for h in piece.drum_hits])
    assert len(beats) == 16 and np.all(np.abs(beats - np.round(beats)) < 0.05)  # quarter notes, jittered
    assert np.any(np.abs(beats - np.round(beats)) > 0.001)  # not snapped


def test_a_drum_file_with_no_tempo_plays_at_120_and_a_drum_only_file_is_skipped_with_its_reason():
    mf = mido.MidiFile(file=io.BytesIO(groove_file(bars=1)))
    mf.tracks[0] = mido.MidiTrack([m for m in mf.tracks[0] if m.type != "set_tempo"])
    buf = io.BytesIO()
    mf.save(file=buf)
    bars, _, bpm = drums_from_raw(read_midi(buf.getvalue()))
    assert bpm == 120.0 and len(bars) == 1
    with pytest.raises(UnusableMidi, match="every track is drums"):
        analyse(read_midi(groove_file()), "kit.mid", "x", key_profiles())
