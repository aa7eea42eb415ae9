"""The three readers agree, and a file one rejects falls through to the next."""
import numpy as np
import pytest

from helpers import performed_song
from lofi_pipeline.music.midi_io import READERS, UnusableMidi, read_midi, read_with_mido, read_with_symusic


def notes_in_beats(raw):
    rows = np.concatenate([t.notes for t in raw.tracks if not t.is_drum])
    return sorted((round(o / raw.ticks_per_beat, 2), p) for o, _, p, _ in rows.tolist())


def test_symusic_and_mido_read_the_same_notes_pedal_and_tempo():
    data = performed_song().data
    fast, slow = read_with_symusic(data), read_with_mido(data)
    assert notes_in_beats(fast) == notes_in_beats(slow)
    pedals = [[len(t.pedals) for t in raw.tracks if not t.is_drum] for raw in (fast, slow)]
    assert pedals[0] == pedals[1] and sum(pedals[0]) > 0
    assert fast.tempos[:, 1] == pytest.approx(slow.tempos[:, 1]) and fast.reader == "symusic"


def test_music21_reads_the_same_notes():
    data = performed_song(seed=1, drums=False).data
    m21 = dict(READERS)["music21"](data)
    assert sorted(p for _, p in notes_in_beats(m21)) == sorted(p for _, p in notes_in_beats(read_with_symusic(data)))


def test_a_file_a_reader_rejects_falls_through_to_the_next():
    def refuses(data):
        raise RuntimeError("MiniMidi: not today")
    raw = read_midi(performed_song().data, readers=(("refuses", refuses), ("mido", read_with_mido)))
    assert raw.reader == "mido"
    with pytest.raises(UnusableMidi, match="unparseable: refuses: RuntimeError: MiniMidi: not today; mido: "):
        read_midi(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\xff\xff\xff\xffgarbage",
                  readers=(("refuses", refuses), ("mido", read_with_mido)))


def smpte_file(fps: int = 25, ticks_per_frame: int = 40, tempo_bpm: float | None = None) -> bytes:
    """Eight notes half a second apart, in a file whose header counts SMPTE frames (a negative
    division), as some transcriptions are written."""
    import io
    import struct

    import mido
    mf = mido.MidiFile(type=1, ticks_per_beat=480)
    track = mido.MidiTrack()
    if tempo_bpm:
        track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm), time=0))
    per_half_second = fps * ticks_per_frame // 2
    for i in range(8):
        track.append(mido.Message("note_on", note=60 + i, velocity=80, time=0 if i == 0 else per_half_second // 2))
        track.append(mido.Message("note_off", note=60 + i, velocity=0, time=per_half_second // 2))
    mf.tracks.append(track)
    buf = io.BytesIO()
    mf.save(file=buf)
    data = bytearray(buf.getvalue())
    data[12:14] = struct.pack(">bB", -fps, ticks_per_frame)
    return bytes(data)


@pytest.mark.parametrize("tempo_bpm, beats_apart", [(None, 1.0), (60.0, 0.5)])
def test_an_smpte_timed_file_is_read_in_seconds_and_placed_on_beats_through_its_tempo(tempo_bpm, beats_apart):
    raw = read_midi(smpte_file(tempo_bpm=tempo_bpm))
    onsets = raw.tracks[0].notes[:, 0] / raw.ticks_per_beat
    assert raw.reader == "mido (SMPTE time)" and np.allclose(np.diff(onsets), beats_apart)
    assert np.allclose(raw.tracks[0].notes[:, 1] / raw.ticks_per_beat, beats_apart / 2)
