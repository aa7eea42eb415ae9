"""Splitting a MIDI file into its parts, the tempo and key it declares, and sample-library names."""
import io

import mido
import pytest

from helpers import midi_bytes, performed_song, progression_notes
from lofi_pipeline.audio.sample_names import parse_name, sample_name
from lofi_pipeline.music.part_files import channel_parts, part_midi, tempo_and_key


def notes_by_channel(data: bytes) -> dict[int, list]:
    """{channel: [(absolute tick, pitch)]} of the note-ons of a file."""
    found: dict[int, list] = {}
    for track in mido.MidiFile(file=io.BytesIO(data)).tracks:
        tick = 0
        for m in track:
            tick += m.time
            if m.type == "note_on" and m.velocity > 0:
                found.setdefault(m.channel, []).append((tick, m.note))
    return {c: sorted(v) for c, v in found.items()}


@pytest.fixture
def band() -> bytes:
    """A type-1 file: a conductor track (tempo, metre), piano chords with a melody, drums."""
    return midi_bytes(progression_notes(57, minor=True, bars=4), drums=[(b / 2, 0.2, 42, 80) for b in range(32)],
                      tempo_bpm=84)


def test_each_part_file_holds_only_its_part_at_the_same_ticks(band):
    everything = notes_by_channel(band)
    parts = channel_parts(band)
    assert [p.channel for p in parts] == sorted(everything) and 9 in everything
    for part in parts:
        alone = part_midi(band, part.channel)
        assert notes_by_channel(alone) == {part.channel: everything[part.channel]}
        assert part.notes == len(everything[part.channel])
        assert tempo_and_key(alone) == tempo_and_key(band)  # the conductor stays


def test_part_names_come_from_their_tracks_or_their_channel():
    performed = performed_song(seed=3).data  # several tracks, a sustain pedal, drums
    names = [p.name for p in channel_parts(performed)]
    assert len(names) == len(set(names)) and all(n and " " not in n for n in names)
    one_track = mido.MidiFile(type=0, ticks_per_beat=96)
    track = mido.MidiTrack([mido.MetaMessage("track_name", name="Song", time=0)])
    for ch, note in ((0, 60), (9, 36), (3, 48)):
        track += [mido.Message("note_on", channel=ch, note=note, velocity=90, time=0),
                  mido.Message("note_off", channel=ch, note=note, velocity=0, time=96)]
    one_track.tracks.append(track)
    buffer = io.BytesIO()
    one_track.save(file=buffer)
    type0 = buffer.getvalue()
    assert [(p.channel, p.name) for p in channel_parts(type0)] == [(0, "ch1"), (3, "ch4"), (9, "drums")]
    assert notes_by_channel(part_midi(type0, 3)) == {3: [(192, 48)]}


def test_tempo_and_key_default_to_what_a_player_assumes():
    assert tempo_and_key(midi_bytes(progression_notes(60), tempo_bpm=84))[0] == pytest.approx(84, abs=0.01)
    assert tempo_and_key(midi_bytes(progression_notes(60), tempo_events=False)) == (120.0, None)


@pytest.mark.parametrize("title,tempo,key,part", [("Late Night Study 01", 82.4, "Dbm", "bass"),
                                                  ("song", 120, "F#", None), ("x y", 95, None, "texture"),
                                                  ("Late Night Study 02", 75, "C", "drums-2")])
def test_sample_names_parse_back_to_tempo_and_key(title, tempo, key, part):
    name = sample_name(title, tempo, key, part, "wav")
    assert " " not in name
    assert parse_name(name) == {"title": name.split("_")[0], "tempo_bpm": round(tempo), "key": key,
                                "part": part, "ext": "wav"}


def test_the_example_name_of_the_issue():
    assert sample_name("late night study 01", 82, "Dbm", "bass", "wav") == "late-night-study-01_82bpm_Dbm_bass.wav"
    assert parse_name("notes.txt") is None


def test_a_tempo_map_outside_the_first_track_stays_with_every_part():
    """Some files keep tempo and metre in the piano's track: the bass's file must keep them too."""
    mf = mido.MidiFile(type=1, ticks_per_beat=96)
    mf.tracks.append(mido.MidiTrack([mido.MetaMessage("track_name", name="Song", time=0)]))
    piano = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(72), time=0),
                            mido.MetaMessage("key_signature", key="Eb", time=0),
                            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(90), time=192)])
    bass = mido.MidiTrack([mido.MetaMessage("track_name", name="Bass", time=0)])
    for track, ch, note in ((piano, 0, 63), (bass, 1, 39)):
        track += [mido.Message("note_on", channel=ch, note=note, velocity=90, time=0),
                  mido.Message("note_off", channel=ch, note=note, velocity=0, time=384)]
    mf.tracks += [piano, bass]
    buffer = io.BytesIO()
    mf.save(file=buffer)
    whole = buffer.getvalue()
    alone = part_midi(whole, 1)
    assert notes_by_channel(alone) == {1: [(0, 39)]}
    assert tempo_and_key(alone) == tempo_and_key(whole) == (pytest.approx(72), "Eb")
    assert mido.MidiFile(file=io.BytesIO(alone)).length == pytest.approx(mido.MidiFile(file=io.BytesIO(whole)).length)


def test_a_file_mido_cannot_read_is_a_value_error():
    with pytest.raises(ValueError):
        tempo_and_key(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01")
