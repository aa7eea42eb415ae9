"""Stems of a real quick run: each part rendered alone by FluidSynth, the texture, the MIDI per
part, tempo and key in the tags and the names."""
import shutil
import wave
from pathlib import Path

import mido
import numpy as np
import pytest
from mutagen.id3 import ID3

from helpers import ROOT, midi_bytes, progression_notes, quick_config
from lofi_pipeline.audio.audio_io import read_wav
from lofi_pipeline.audio.loudness import resample
from lofi_pipeline.audio.sample_names import parse_name
from lofi_pipeline.core.runner import Runner
from lofi_pipeline.pipeline import build_stages
from lofi_pipeline.stages import catalog

# The parts' renders sum to the whole render with at least this signal-to-residual ratio. It is
# not exact: FluidSynth reuses a finished voice's slot for a later note, which carries a little
# state into that note's onset (two lone notes on two channels differ by 2e-4 at the second's
# onset), so the parts rendered alone differ from the whole at onsets. Measured: 47.6-50.8 dB.
SUM_TOLERANCE_DB = 40.0


def residual_db(reference: np.ndarray, approximation: np.ndarray) -> float:
    """Signal-to-residual ratio in dB."""
    return float(10 * np.log10(np.sum(reference ** 2) / max(np.sum((reference - approximation) ** 2), 1e-30)))


@pytest.fixture(scope="module")
def stems_run(quick_run, tmp_path_factory):
    """A copy of the quick run's outputs, generated again with an intro (where bass and drums rest)
    and exported with export.stems = true: (outputs, runner)."""
    args, outputs, _ = quick_run
    out = tmp_path_factory.mktemp("stems") / "outputs"
    shutil.copytree(outputs, out)
    archive = args[args.index("--archive") + 1]
    runner = Runner(quick_config(out, f'run.archive="{archive}"', 'generate.form="intro:2 A:4"', "export.stems=true"),
                    build_stages(), root=ROOT, log=lambda m: None)
    assert runner.plan(["export"]) == ["generate", "drums", "arrange", "render", "master", "stems", "export"]
    runner.run(["export"])
    return out, runner


def test_stems_are_as_long_as_the_mix_and_sum_to_the_unmastered_render(stems_run):
    out, _ = stems_run
    sets = catalog.stem_sets.read(out / "stems")
    masters = {m.file: m for m in catalog.masters.read(out / "master")}
    assert len(sets) == 2
    for stem_set in sets:
        mix, mix_rate = read_wav(out / "master" / f"{stem_set.stem}.wav")
        render, render_rate = read_wav(out / "render" / f"{stem_set.stem}.wav")
        assert mix_rate == stem_set.sample_rate == masters[f"{stem_set.stem}.wav"].sample_rate == 44100
        audio = {}
        for row in stem_set.parts:
            with wave.open(str(out / "stems" / row["wav"])) as header:  # the standard library's reader
                assert (header.getsampwidth(), header.getnchannels()) == (3, 2)  # 24-bit PCM, stereo
            audio[row["part"]], rate = read_wav(out / "stems" / row["wav"])
            assert rate == mix_rate and audio[row["part"]].shape == mix.shape  # all start at 0, the mix's length
        assert set(audio) == {"keys", "lead", "bass", "drums"}
        total = sum(audio.values()) / 10 ** (stem_set.gain_db / 20)
        reference = resample(render, render_rate, mix_rate)  # the render, at the mix's rate as master takes it
        assert residual_db(reference, total) >= SUM_TOLERANCE_DB
        without_bass = total - audio["bass"] / 10 ** (stem_set.gain_db / 20)
        assert residual_db(reference, without_bass) < 20  # the check can tell a missing part
        texture, rate = read_wav(out / "stems" / stem_set.texture)
        assert texture.shape == mix.shape and 0 < np.abs(texture).max() < 0.5


@pytest.mark.parametrize("resting", ["bass", "drums"])
def test_a_stem_is_silent_where_its_part_rests(stems_run, resting):
    """Bass and drums sit out the intro (Band), so their stems are silent there while the keys sound."""
    out, _ = stems_run
    for stem_set in catalog.stem_sets.read(out / "stems"):
        by_part = {r["part"]: r for r in stem_set.parts}
        midi = mido.MidiFile(out / "stems" / by_part[resting]["midi"])
        first_note = min(t for t, m in _timed(midi) if m.type == "note_on" and m.velocity > 0)
        audio, rate = read_wav(out / "stems" / by_part[resting]["wav"])
        keys, _ = read_wav(out / "stems" / by_part["keys"]["wav"])
        before = int(first_note * rate) - rate // 50  # 20 ms of leeway for the resampler's ring
        assert before > rate  # a rest of over a second to check
        assert np.abs(audio[:, :before]).max() < 1e-5 < np.abs(keys[:, :before]).max()
        assert np.abs(audio[:, before:]).max() > 1e-2


def _timed(midi: mido.MidiFile):
    """(seconds, message) for every message of a file, as it plays."""
    now = 0.0
    for m in midi:
        now += m.time
        yield now, m


def test_each_part_midi_holds_only_that_part_and_the_whole_file_all_of_them(stems_run):
    out, _ = stems_run
    for stem_set in catalog.stem_sets.read(out / "stems"):
        whole = mido.MidiFile(out / "stems" / stem_set.midi)
        arranged = (out / "arrange" / f"{stem_set.stem}.mid").read_bytes()
        assert (out / "stems" / stem_set.midi).read_bytes() == arranged
        assert [m.type for m in whole.tracks[0] if m.type in ("set_tempo", "key_signature")] == ["set_tempo",
                                                                                                  "key_signature"]
        for row in stem_set.parts:
            part = mido.MidiFile(out / "stems" / row["midi"])
            channels = {m.channel for t in part.tracks for m in t if not m.is_meta}
            assert channels == {row["channel"]}
            assert sum(m.type == "note_on" and m.velocity > 0 for t in part.tracks for m in t) == row["notes"] > 0
            names = [m.name for t in part.tracks for m in t if m.type == "track_name"]
            assert len(part.tracks) == 2 and names[1].lower() == row["part"]
            assert list(part.tracks[0]) == list(whole.tracks[0])  # tempo, metre, key, markers, length


def test_tags_and_names_carry_tempo_and_key(stems_run):
    out, _ = stems_run
    tracks = {t.stem: t for t in catalog.tracks.read(out / "arrange")}
    exports = catalog.exports.read(out / "export")
    for export, stem_set in zip(exports, catalog.stem_sets.read(out / "stems"), strict=True):
        record = tracks[stem_set.stem]
        tags = ID3(out / export.file)
        assert str(tags["TBPM"]) == str(record.tempo_bpm) and str(tags["TKEY"]) == record.key
        assert len(export.stems) == len(stem_set.files()) == 4 * 2 + 2  # MIDI and WAV per part, whole MIDI, texture
        for path in export.stems:
            assert (out / path).is_file() and (out / path).parent.name == (out / export.file).stem
            assert (out / path).samefile(out / "stems" / (out / path).name)  # a hard link: the bytes once on disk
            parsed = parse_name((out / path).name)
            assert (parsed["tempo_bpm"], parsed["key"]) == (record.tempo_bpm, record.key)
        assert {parse_name(p.split("/")[-1])["part"] for p in export.stems} == {
            None, "keys", "lead", "bass", "drums", "texture"}


def test_stems_off_gives_midi_only(quick_run):
    _, outputs, _ = quick_run
    sets = catalog.stem_sets.read(outputs / "stems")
    assert all(s.texture is None and all(r["wav"] is None for r in s.parts) for s in sets)
    assert not list((outputs / "stems").glob("*.wav")) and list((outputs / "stems").glob("*.mid"))


def test_a_stem_set_is_the_same_bytes_twice_and_switching_stems_off_empties_the_daw_folders(stems_run):
    """Re-running the stems stage gives the same files (reproducible, so export stays fresh);
    with export.stems off again, the MP3s are the same takes and their folders lose the WAVs."""
    out, runner = stems_run
    before = {p.name: p.read_bytes() for p in (out / "stems").iterdir() if p.suffix == ".wav"}
    runner.run(["stems"], force=True)
    after = {p.name: p.read_bytes() for p in (out / "stems").iterdir() if p.suffix == ".wav"}
    assert before == after and before
    assert runner.plan(["export"]) == []
    mp3s = sorted(p.name for p in (out / "tracks").iterdir())
    args = runner.cfg.run.archive
    off = Runner(quick_config(out, f'run.archive="{args}"', 'generate.form="intro:2 A:4"'), build_stages(),
                 root=ROOT, log=lambda m: None)
    off.run(["export"])
    assert sorted(p.name for p in (out / "tracks").iterdir()) == mp3s  # the same takes, no new MP3
    for export in catalog.exports.read(out / "export"):
        folder = out / "daw" / (out / export.file).stem
        assert sorted(p.name for p in folder.iterdir()) == sorted(Path(f).name for f in export.stems)
        assert not list(folder.glob("*.wav")) and len(export.stems) == 5  # the whole MIDI and four parts


def test_midi_files_with_the_same_name_get_stems_of_their_own(tmp_path, quick_cfg):
    """--midi files whose names make the same slug ("Song", "song") and declare no tempo or key."""
    folder = tmp_path / "given"
    folder.mkdir()
    for i, name in enumerate(("Song.mid", "song.mid")):
        (folder / name).write_bytes(midi_bytes(progression_notes(57 + i, bars=2), tempo_events=False,
                                               drums=[(b, 0.2, 36, 90) for b in range(8)]))
    runner = Runner(quick_cfg(f'render.midi="{folder}"', "export.stems=true"), build_stages(), root=ROOT,
                    log=lambda m: None)
    runner.run(["export"])
    out = tmp_path / "outputs"
    sets = catalog.stem_sets.read(out / "stems")
    assert [s.midi for s in sets] == ["song-01_120bpm.mid", "song-02_120bpm.mid"]
    for stem_set in sets:
        mix, _ = read_wav(out / "master" / f"{stem_set.stem}.wav")
        assert [r["part"] for r in stem_set.parts] == ["ch1", "drums"]
        for row in stem_set.parts:
            assert read_wav(out / "stems" / row["wav"])[0].shape == mix.shape
    assert len({f for e in catalog.exports.read(out / "export") for f in e.stems}) == 2 * 6
