"""Performed MIDI in: chord onsets, chords, melody, pedal, grid, tempo and bad input."""
import mido
import numpy as np
import pytest

from helpers import midi_bytes, performed_song
from lofi_pipeline.music.chords import chord_symbol
from lofi_pipeline.music.midi_io import UnusableMidi, key_profiles, read_midi
from lofi_pipeline.music.performance import ReadingParams, analyse, choose_subdivision, cluster_onsets
from lofi_pipeline.music.piece import GRID

PROFILES = key_profiles()


def piece_of(data: bytes, **params):
    return analyse(read_midi(data), "t.mid", "sha", PROFILES, ReadingParams(**params))


def chords_of(piece):
    return [(c.onset, chord_symbol(c.root, c.quality)) for c in piece.chords]


def expected_chords(song):
    return [(round(b * GRID), chord_symbol(r, q)) for b, r, q in song.chords]


def expected_melody(song):
    return [(round(b * GRID), round(d * GRID), p) for b, d, p in song.melody]


@pytest.mark.parametrize("options", [
    {}, {"tempo_bpm": None}, {"transpose": 3, "seed": 2}, {"transpose": -4, "seed": 1, "tempo_bpm": 72.0},
    {"triplets": True, "seed": 1}, {"one_track": True}, {"one_track": True, "seed": 2, "transpose": 5},
    {"ticks_per_beat": 96, "seed": 1},
])
def test_performed_songs_come_back_as_chord_onsets_chords_and_melody(options):
    song = performed_song(**options)
    piece = piece_of(song.data)
    assert chords_of(piece) == expected_chords(song)
    assert [(n.onset, n.duration, n.pitch) for n in piece.melody] == expected_melody(song)
    assert piece.stats["pedal_extended"] > 0  # the short chord notes are held by CC64
    assert len(piece.drums) == 4 * 4 and not any(n.pitch in (36, 38) for n in piece.harmony)
    assert piece.stats["melody_source"] == ("top voice" if options.get("one_track") else "track 'Melody'")
    assert piece.subdivision == (3 if options.get("triplets") else 4)
    assert piece.stats["timing_error_ms"] < 25


def test_a_rolled_chord_is_one_onset_but_a_fast_run_is_not():
    seconds = np.array([0.0, 0.012, 0.025, 0.040, 0.5, 0.55, 0.6, 0.65])
    labels = cluster_onsets(seconds, np.full(len(seconds), 0.045))
    assert labels.tolist() == [0, 0, 0, 0, 1, 2, 3, 4]


def test_the_grid_fits_straight_swung_and_late_starting_performances():
    straight = np.arange(0, 16, 0.25) + np.random.default_rng(0).normal(0, 0.02, 64)
    swung = np.sort(np.concatenate([np.arange(16), np.arange(16) + 2 / 3]))
    assert choose_subdivision(straight)[0] == 4
    assert choose_subdivision(swung)[0] == 3
    sub, phase, misfit = choose_subdivision(np.arange(0, 16, 0.5) + 0.11)  # recorded 0.11 beats late
    assert sub == 4 and phase == pytest.approx(0.11, abs=1e-6) and misfit < 0.01


def test_the_pedal_holds_notes_until_it_comes_up_but_not_past_a_restrike():
    song = performed_song(drums=False)
    held = piece_of(song.data)
    dry = piece_of(performed_song(drums=False, pedal=False).data)
    assert max(n.duration for n in held.harmony) > 3 * GRID >= max(n.duration for n in dry.harmony)


def test_tempo_maps_and_implausible_tempos():
    two_tempi = midi_bytes([(b, 1, 60 + (b % 3) * 4, 80) for b in range(16)], tempo_bpm=90)
    piece = piece_of(two_tempi)
    assert piece.tempo_bpm == pytest.approx(90, abs=0.01) and not piece.stats["tempo_missing"]
    for bad in (0.0, 2000.0):
        data = midi_bytes([(b, 1, 60 + (b % 3) * 4, 80) for b in range(16)], tempo_bpm=bad if bad else 120)
        if bad == 0.0:  # mido cannot write a zero tempo: patch the three tempo bytes
            data = data.replace(b"\xff\x51\x03" + mido.bpm2tempo(120).to_bytes(3, "big"), b"\xff\x51\x03\x00\x00\x00")
        piece = piece_of(data)
        assert piece.tempo_bpm == 120.0 and piece.stats["tempos_ignored"] == 1
        assert [n.onset for n in piece.melody + piece.harmony][:1] == [0]


@pytest.mark.parametrize("data, reason", [
    (midi_bytes(drums=[(b, 0.25, 36, 100) for b in range(8)]), "no pitched notes (every track is drums)"),
    (midi_bytes([(0, 8, 60, 80)]), "too few notes: 1"),
    (midi_bytes([]), "no pitched notes"),
    (b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\xff\xff\xff\xffgarbage", "unparseable"),
    (b"RIFF", "not a MIDI file"),
])
def test_unusable_files_say_why(data, reason):
    with pytest.raises(UnusableMidi, match=reason.replace("(", r"\(").replace(")", r"\)")):
        piece_of(data)


def test_odd_but_usable_files_are_handled():
    doubled = midi_bytes([(b, 1, 60 + (b % 3) * 4, 80) for b in range(8)] * 2)  # every note struck twice at once
    piece = piece_of(doubled)
    assert piece.stats["repeats_dropped"] == 8 and len(piece.melody) + len(piece.harmony) == 8
    # Notes switched on and never off, among ordinary ones: read without them or with them ended.
    mf = mido.MidiFile(type=0, ticks_per_beat=480)
    track = mido.MidiTrack()
    for i in range(6):
        track += [mido.Message("note_on", note=60 + 2 * i, velocity=80, time=0),
                  mido.Message("note_off", note=60 + 2 * i, velocity=0, time=480)]
    track += [mido.Message("note_on", note=50 + i, velocity=80, time=0) for i in range(3)]
    mf.tracks.append(track)
    import io
    buf = io.BytesIO()
    mf.save(file=buf)
    piece = piece_of(buf.getvalue())
    assert [p - piece.transpose for _, p in sorted((n.onset, n.pitch) for n in piece.melody + piece.harmony)
            if p - piece.transpose >= 60] == \
        [60, 62, 64, 66, 68, 70]
    # Thirty minutes of music: kept up to max_beats, the rest counted.
    long = midi_bytes([(b, 1, 60 + (b % 5) * 2, 80) for b in range(3600)], tempo_bpm=120)
    piece = piece_of(long, max_beats=1000)
    assert piece.stats["cropped"] == 2600 and max(n.onset for n in piece.melody + piece.harmony) < 1000 * GRID


def test_key_is_found_and_moved_to_c_major_or_a_minor():
    for transpose in (-5, 2, 6):
        piece = piece_of(performed_song(seed=1, transpose=transpose).data)
        assert -6 <= piece.transpose <= 5
        assert chords_of(piece) == expected_chords(performed_song(seed=1))
