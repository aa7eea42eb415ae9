
from pathlib import Path

import mido
import numpy as np
import pytest
from mutagen.id3 import ID3
from mutagen.mp3 import MP3

from helpers import ROOT, midi_bytes, progression_notes, read_mp3, reference_true_peak_db
from lofi_pipeline.audio.audio_io import read_wav
from lofi_pipeline.audio.loudness import integrated_lufs
from lofi_pipeline.audio.playlist import merge_playlist, read_playlist
from lofi_pipeline.core.runner import Runner
from lofi_pipeline.pipeline import build_stages
from lofi_pipeline.stages import catalog


def test_playlist_merge_appends_without_duplicates(tmp_path):
    path = tmp_path / "p.m3u8"
    assert merge_playlist(path, [("#EXTINF:10,A - one", "tracks/1.mp3")]) == 1
    assert merge_playlist(path, [("#EXTINF:10,A - one", "tracks/1.mp3"), ("#EXTINF:9,A - two", "tracks/2.mp3")]) == 1
    assert merge_playlist(path, []) == 0
    assert [p for _, p in read_playlist(path)] == ["tracks/1.mp3", "tracks/2.mp3"]
    assert path.read_text().startswith("#EXTM3U\n#EXTINF:10,A - one\ntracks/1.mp3\n")


@pytest.fixture
def song(tmp_path):
    path = tmp_path / "song.mid"
    path.write_bytes(midi_bytes(progression_notes(57, minor=True, bars=6),
                                drums=[(b / 2, 0.2, 36 if b % 4 == 0 else 42, 80) for b in range(48)], tempo_bpm=84))
    return path


def test_render_master_export_from_a_midi_file(song, tmp_path, quick_cfg):
    library = tmp_path / "library"
    cfg = quick_cfg(f'render.midi="{song}"', f'export.playlist_dir="{library}"')
    runner = Runner(cfg, build_stages(), root=ROOT, log=lambda m: None)
    runner.run(["export"])
    out = tmp_path / "outputs"
    assert runner.closure(["export"]) == ["render", "master", "stems", "export"]  # no model needed
    mastered, sr = read_wav(out / "master" / "song.wav")
    _, render_sr = read_wav(out / "render" / "song.wav")
    assert (render_sr, sr) == (22050, 44100)  # lofi preset: rendered at half rate, delivered at 44.1 kHz
    midi_seconds = mido.MidiFile(song).length
    assert abs(mastered.shape[1] / sr - midi_seconds) < 1.0
    exports = catalog.exports.read(out / "export")
    mp3 = out / exports[0].file
    decoded, sr = read_mp3(mp3)
    assert sr == 44100 and abs(decoded.shape[1] / sr - midi_seconds) < 1.0
    assert integrated_lufs(decoded, sr) == pytest.approx(-14.0, abs=1.0)
    assert reference_true_peak_db(decoded) <= -1.0 and np.isfinite(decoded).all()
    tags = ID3(mp3)
    assert str(tags["TIT2"]) == "song" and str(tags["TCON"]) == "Lo-fi" and str(tags["TALB"]) == cfg.run.name
    assert "seed=" in str(tags.getall("COMM")[0]) and "run_seed=" in str(tags.getall("COMM")[0])
    assert MP3(mp3).info.bitrate == 192000
    assert str(tags["TBPM"]) == "84" and "TKEY" not in tags  # the file's tempo; it has no key signature
    folder = out / "daw" / mp3.stem  # its MIDI for a DAW, in a folder named as the MP3
    names = ["song_84bpm.mid", "song_84bpm_ch1.mid", "song_84bpm_drums.mid"]
    assert sorted(f.name for f in folder.iterdir()) == names == sorted(Path(f).name for f in exports[0].stems)
    playlist = read_playlist(out / "playlist.m3u8")
    assert [p for _, p in playlist] == [exports[0].file]
    assert (library / exports[0].file).exists() and (library / "playlist.m3u8").exists()

    # A second run is cached; a forced export does not duplicate the entry.
    runner.run(["export"], force=True)
    assert len(read_playlist(out / "playlist.m3u8")) == 1
    # Changing an effect re-runs master and export only, and adds the new take.
    cfg2 = quick_cfg(f'render.midi="{song}"', "master.reverb_wet=0.3")
    runner2 = Runner(cfg2, build_stages(), root=ROOT, log=lambda m: None)
    assert runner2.plan(["export"]) == ["master", "export"]
    runner2.run(["export"])
    assert len(read_playlist(out / "playlist.m3u8")) == 2
    # The clean preset's 16 kHz low-pass needs the full rate: render re-runs too.
    clean = Runner(quick_cfg(f'render.midi="{song}"', "master.preset=clean"), build_stages(), root=ROOT,
                   log=lambda m: None)
    assert clean.plan(["export"]) == ["render", "master", "stems", "export"]
