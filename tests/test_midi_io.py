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
