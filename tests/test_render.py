import mido
import numpy as np
import pytest

from helpers import SOUNDFONT as SF2
from helpers import midi_bytes, progression_notes
from lofi_pipeline.audio.audio_io import read_wav
from lofi_pipeline.audio.fluidsynth import FluidSynthRenderer, render_midi, render_rate
from lofi_pipeline.core.config import Config
from lofi_pipeline.core.errors import StageError

RENDER = Config().render  # the settings' sample rate and gain


@pytest.fixture
def multi_track_midi(tmp_path):
    path = tmp_path / "song.mid"
    path.write_bytes(midi_bytes(progression_notes(60, bars=4), drums=[(b / 2, 0.2, 42, 70) for b in range(32)],
                                tempo_bpm=96))
    return path


def test_render_writes_stereo_float_wav_as_long_as_the_midi(multi_track_midi, tmp_path):
    wav = tmp_path / "out.wav"
    info = render_midi(multi_track_midi, wav, SF2, RENDER.sample_rate, RENDER.gain)
    audio, sr = read_wav(wav)
    midi_seconds = mido.MidiFile(multi_track_midi).length
    assert sr == RENDER.sample_rate and audio.shape[0] == 2 and audio.dtype == np.float32
    assert midi_seconds <= info["seconds"] <= midi_seconds + 1.0
    assert 0.01 < np.max(np.abs(audio)) < 1.0 and np.isfinite(audio).all()


def test_render_runs_at_half_rate_only_behind_a_low_pass_an_octave_under_its_nyquist(multi_track_midi, tmp_path):
    assert render_rate(44100, 5500.0) == 22050 and render_rate(44100, 4200.0) == 22050  # lofi, dusty
    assert render_rate(44100, 16000.0) == 44100 and render_rate(44100, 5600.0) == 44100  # clean; too close
    assert render_rate(48000, 6000.0) == 24000 and render_rate(22051, 100.0) == 22051
    info = render_midi(multi_track_midi, tmp_path / "half.wav", SF2, render_rate(44100, 5500.0), RENDER.gain)
    audio, sr = read_wav(tmp_path / "half.wav")
    assert sr == 22050 and audio.shape[1] == round(info["seconds"] * 22050) and np.max(np.abs(audio)) > 0.01


def test_options_come_first_with_gain_and_no_builtin_effects(multi_track_midi, tmp_path):
    cmd = FluidSynthRenderer(SF2, 44100, 0.3).command(multi_track_midi, tmp_path / "o.wav")
    assert cmd[:2] == ["fluidsynth", "-ni"] and cmd[-2:] == [str(SF2), str(multi_track_midi)]
    joined = " ".join(cmd)
    assert "-g 0.3" in joined and "-R 0" in joined and "-C 0" in joined and "-O float" in joined


def test_missing_soundfont_is_one_clear_line(multi_track_midi, tmp_path):
    with pytest.raises(StageError, match=r"SoundFont .*nope\.sf2 not found; run `make soundfont`") as err:
        render_midi(multi_track_midi, tmp_path / "o.wav", tmp_path / "nope.sf2", RENDER.sample_rate, RENDER.gain)
    assert "\n" not in str(err.value) and not (tmp_path / "o.wav").exists()


def test_a_file_that_is_not_a_soundfont_gives_an_error_not_a_silent_wav(multi_track_midi, tmp_path):
    fake = tmp_path / "fake.sf2"
    fake.write_bytes(b"RIFF....not a soundfont")
    with pytest.raises(StageError, match="not a .sf2/.sf3 file"):
        render_midi(multi_track_midi, tmp_path / "o.wav", fake, RENDER.sample_rate, RENDER.gain)
    assert not (tmp_path / "o.wav").exists()


def test_missing_fluidsynth_binary_says_how_to_fix(multi_track_midi, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StageError, match="fluidsynth not found on PATH; run `make setup`"):
        render_midi(multi_track_midi, tmp_path / "o.wav", SF2, RENDER.sample_rate, RENDER.gain)
