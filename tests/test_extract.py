import json

import pytest

from helpers import ROOT, midi_bytes, progression_notes, song_bytes, write_zip
from lofi_pipeline.midi_io import UnusableMidi, midi_bytes_to_piece
from lofi_pipeline.pipeline import build_stages
from lofi_pipeline.runner import Runner


def parse(data, **kw):
    return midi_bytes_to_piece(data, "t.mid", "sha", **kw)


@pytest.mark.parametrize("tonic, minor, expected_mode, expected_tonic_pc", [
    (62, False, "major", 0),   # D major -> C major
    (64, True, "minor", 9),    # E minor -> A minor
    (58, False, "major", 0),   # Bb major -> C major
])
def test_major_goes_to_c_and_minor_to_a(tonic, minor, expected_mode, expected_tonic_pc):
    piece = parse(midi_bytes(progression_notes(tonic, minor, bars=4)))
    assert piece.mode == expected_mode
    lowest = min(n.pitches[0] for n in piece.notes if n.onset == 0)
    assert lowest % 12 == expected_tonic_pc
    assert -6 <= piece.transpose <= 5


def test_offsets_snap_to_a_grid_that_holds_triplets_and_swing():
    third = 1 / 3
    notes = [(0, third, 60, 80), (third, third, 62, 80), (2 * third, third, 64, 80),
             (1.0 + 0.004, 0.5, 65, 80), (1.5 + 0.166, 0.34, 67, 80)]   # jittered 8th and a swung 8th
    piece = parse(midi_bytes(notes, tempo_bpm=90))
    assert [n.onset for n in piece.notes] == [0, 4, 8, 12, 20]
    assert [n.duration for n in piece.notes][:3] == [4, 4, 4]
    assert piece.grid == 12 and piece.tempo_bpm == pytest.approx(90, abs=0.01)


def test_drums_are_kept_apart_and_meter_is_read():
    data = midi_bytes(progression_notes(60, bars=1), drums=[(0, 0.25, 36, 100), (1, 0.25, 38, 100)],
                      time_signature=(7, 8))
    piece = parse(data)
    assert [d.pitches for d in piece.drums] == [(36,), (38,)]
    assert all(p >= 40 for n in piece.notes for p in n.pitches)
    assert piece.time_signature == "7/8"


def test_unusable_files_raise_with_a_reason():
    with pytest.raises(UnusableMidi, match="no pitched notes"):
        parse(midi_bytes(drums=[(0, 1, 36, 100)]))
    with pytest.raises(UnusableMidi, match="unparseable"):
        parse(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\xff\xff\xff\xffgarbage")
    with pytest.raises(UnusableMidi, match="no pitched notes"):
        parse(midi_bytes([]))


def test_odd_files_still_parse():
    no_tempo = parse(midi_bytes(progression_notes(60), tempo_events=False))
    assert no_tempo.tempo_bpm == 120.0
    long_note = parse(midi_bytes([(0, 800, 60, 80), (0, 800, 64, 80)]))  # ten minutes at 80 BPM
    assert long_note.notes[0].duration == 800 * 12
    waltz = parse(midi_bytes(progression_notes(60), time_signature=(3, 4)))
    assert waltz.time_signature == "3/4"


def test_extract_counts_skips_and_second_run_is_cached(tmp_path, quick_cfg):
    archive = write_zip(tmp_path / "a.zip", {"a.mid": song_bytes(0), "b.mid": song_bytes(1),
                                             "drums_only.mid": midi_bytes(drums=[(0, 1, 36, 90)]),
                                             "broken.mid": b"MThd\x00\x00\x00\x06garbage"})
    logs = []
    runner = Runner(quick_cfg(f'run.archive="{archive}"'), build_stages(), root=ROOT, log=logs.append)
    runner.run(["extract"])
    stats = json.loads((runner.artifact_dir("extract") / "manifest.json").read_text())["stats"]
    assert stats["pieces"] == 2 and stats["files_parsed"] == 4
    assert stats["skipped_by_reason"] == {"no pitched notes": 1, "unparseable": 1}
    logs.clear()
    runner.run(["extract"])
    assert logs == [f"[intake] cached ({runner.key('intake')})", f"[extract] cached ({runner.key('extract')})"]


def test_adding_one_file_reparses_only_that_file(tmp_path, quick_cfg):
    first = write_zip(tmp_path / "a.zip", {"a.mid": song_bytes(0), "b.mid": song_bytes(1)})
    Runner(quick_cfg(f'run.archive="{first}"'), build_stages(), root=ROOT, log=lambda m: None).run(["extract"])
    second = write_zip(tmp_path / "b.zip", {"a.mid": song_bytes(0), "b.mid": song_bytes(1), "c.mid": song_bytes(2)})
    runner = Runner(quick_cfg(f'run.archive="{second}"'), build_stages(), root=ROOT, log=lambda m: None)
    runner.run(["extract"])
    stats = runner.manifest("extract")["stats"]
    assert stats["files_parsed"] == 1 and stats["files_from_cache"] == 2 and stats["pieces"] == 3
