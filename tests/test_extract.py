"""The extract stage: every file read or skipped with its reason, counted, and cached per file."""

import numpy as np

from helpers import ROOT, midi_bytes, performed_song, progression_notes, song_bytes, write_zip
from lofi_pipeline.core.runner import Runner
from lofi_pipeline.music.midi_io import key_profiles
from lofi_pipeline.music.performance import ReadingParams
from lofi_pipeline.music.piece import Piece
from lofi_pipeline.pipeline import build_stages
from lofi_pipeline.stages.catalog import read_pieces
from lofi_pipeline.stages.extract import extract_file

BAD_FILES = {
    "drums_only.mid": midi_bytes(drums=[(b, 0.25, 36, 100) for b in range(8)]),
    "one_held_note.mid": midi_bytes([(0, 64, 60, 80)]),
    "broken.mid": b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\xff\xff\xff\xffgarbage",
    "zero_tempo.mid": midi_bytes([(b, 1, 60 + (b % 4) * 3, 80) for b in range(8)], tempo_bpm=120).replace(
        b"\xff\x51\x03\x07\xa1\x20", b"\xff\x51\x03\x00\x00\x00"),
    "2000_bpm.mid": midi_bytes([(b, 1, 60 + (b % 4) * 3, 80) for b in range(8)], tempo_bpm=2000),
    "doubled_notes.mid": midi_bytes([(b, 1, 60 + (b % 4) * 3, 80) for b in range(8)] * 2),
    "thirty_minutes.mid": midi_bytes([(b / 2, 0.5, int(p), int(v)) for b, (p, v) in enumerate(
        np.random.default_rng(0).integers([48, 40], [84, 100], size=(7200, 2)))], tempo_bpm=120),
}


def test_extract_file_never_raises():
    for name, data in BAD_FILES.items():
        result = extract_file(data, name, "sha", key_profiles(), ReadingParams(max_beats=2000))
        assert ("piece" in result) != ("skip" in result), name


def test_extract_reads_good_files_skips_bad_ones_with_reasons_and_caches(tmp_path, quick_cfg):
    archive = write_zip(tmp_path / "a.zip", {"a.mid": song_bytes(0),
                                             "b.mid": performed_song(seed=1, one_track=True).data, **BAD_FILES})
    logs = []
    runner = Runner(quick_cfg(f'run.archive="{archive}"'), build_stages(), root=ROOT, log=logs.append)
    runner.run(["extract"])
    stats = runner.manifest("extract")["stats"]
    assert stats["files_read"] == 9 and stats["pieces"] == 6
    assert stats["skipped_by_reason"] == {"no pitched notes": 1, "too few notes": 1, "unparseable": 1}
    assert stats["tempos_ignored"] == 2 and stats["repeats_dropped"] == 8
    assert stats["melody_from"] == {"track": 1, "top": 5} and stats["pedal_extended"] > 0  # single lines are melodies
    assert stats["readers"] == {"symusic": 6}
    _, skipped = read_pieces(runner.artifact_dir("extract"))
    assert {s["name"] for s in skipped} == {"drums_only.mid", "one_held_note.mid", "broken.mid"}
    assert any("skipped 'broken.mid': unparseable: symusic:" in line for line in logs)
    logs.clear()
    runner.run(["extract"])
    assert logs == [f"[intake] cached ({runner.key('intake')})", f"[extract] cached ({runner.key('extract')})"]


def test_adding_one_file_reads_only_that_file(tmp_path, quick_cfg):
    first = write_zip(tmp_path / "a.zip", {"a.mid": song_bytes(0), "b.mid": song_bytes(1)})
    Runner(quick_cfg(f'run.archive="{first}"'), build_stages(), root=ROOT, log=lambda m: None).run(["extract"])
    second = write_zip(tmp_path / "b.zip", {"a.mid": song_bytes(0), "b.mid": song_bytes(1), "c.mid": song_bytes(2)})
    runner = Runner(quick_cfg(f'run.archive="{second}"'), build_stages(), root=ROOT, log=lambda m: None)
    runner.run(["extract"])
    stats = runner.manifest("extract")["stats"]
    assert stats["files_read"] == 1 and stats["files_from_cache"] == 2 and stats["pieces"] == 3


def test_an_smpte_timed_file_is_a_piece_on_the_beat():
    from test_midi_io import smpte_file
    result = extract_file(smpte_file(), "solo.mid", "sha", key_profiles(), ReadingParams())
    assert "piece" in result
    piece = Piece.from_json(result["piece"])
    assert [n.onset for n in piece.melody + piece.harmony][:4] == [0, 12, 24, 36]


def test_melody_notes_under_the_top_and_pitches_clipped_by_the_transposition_are_counted():
    """A melody track playing thirds keeps its top note; in F major (moved down 5 semitones to C)
    a chord note and a melody note at MIDI pitches 2 and 3 fall below 0 and are clipped: both are
    counted, not lost silently."""
    chords = progression_notes(65, melody=False) + [(0, 4, 2, 60)]
    thirds = [(b, 1, p, 90) for b in range(16) for p in (81, 77)] + [(16, 1, 3, 90)]
    result = extract_file(midi_bytes(chords, melody=thirds), "thirds.mid", "sha", key_profiles(), ReadingParams())
    stats = result["piece"]["stats"]
    assert stats["melody_notes_below_the_top"] == 16
    assert stats["pitches_clipped"] == 2
