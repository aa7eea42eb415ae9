"""Rendering MIDI with FluidSynth (through midi2audio) to stereo float WAV bytes.

midi2audio's own call puts the options after the file names, cannot pass gain or switch
reverb/chorus off, and ignores FluidSynth's exit status. `FluidSynthRenderer` keeps its
interface but builds the command itself, options first, and checks the result: FluidSynth
exits 0 and writes silence when the SoundFont cannot be loaded.
"""
from __future__ import annotations

import ctypes
import io
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from midi2audio import FluidSynth

from ..core import atomic
from ..core.errors import StageError
from .audio_io import read_wav, wav_bytes

SILENCE_PEAK = 1e-4


class FluidSynthRenderer(FluidSynth):
    def __init__(self, sound_font: str | Path, sample_rate: int, gain: float):
        super().__init__(str(sound_font), sample_rate)
        self.gain = gain

    def command(self, midi_file: Path, audio_file: Path) -> list[str]:
        return ["fluidsynth", "-ni", "-q", "-g", f"{self.gain:g}", "-R", "0", "-C", "0",
                "-r", str(self.sample_rate), "-O", "float", "-T", "wav",
                "-F", str(audio_file), self.sound_font, str(midi_file)]

    def midi_to_audio(self, midi_file, audio_file) -> None:
        check_fluidsynth()
        check_soundfont(Path(self.sound_font))
        proc = subprocess.run(self.command(Path(midi_file), Path(audio_file)),
                              capture_output=True, text=True, preexec_fn=_die_with_parent)
        if "not a SoundFont" in proc.stderr:
            raise StageError(f"fluidsynth could not load SoundFont {self.sound_font}")
        if proc.returncode != 0 or not Path(audio_file).exists():
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise StageError(f"fluidsynth failed on {midi_file} (exit {proc.returncode}): "
                             f"{detail[-1] if detail else 'no output'}")


def _die_with_parent() -> None:
    """In the child before exec: if the process that started FluidSynth is killed (a worker
    terminated on Ctrl-C or SIGTERM), the kernel kills FluidSynth too (PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the render finishes on its own


def check_fluidsynth() -> None:
    if shutil.which("fluidsynth") is None:
        raise StageError("fluidsynth not found on PATH; run `make setup` "
                         "(or `apt-get install fluidsynth`)")


def check_soundfont(path: Path) -> None:
    if not path.is_file():
        raise StageError(f"SoundFont {path} not found; run `make soundfont` to link the Debian "
                         "GM SoundFont, or drop a .sf2/.sf3 into soundfonts/ and set render.soundfont")
    with open(path, "rb") as f:
        head = f.read(12)
    # Debian's fluidsynth quietly falls back to its default SoundFont when this one is bad.
    if head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise StageError(f"SoundFont {path} is not a .sf2/.sf3 file (no RIFF sfbk header); "
                         "replace it or set render.soundfont")


def render_rate(output_rate: int, lowpass_hz: float) -> int:
    """The rate FluidSynth renders and the master works at. A master low-pass at or below an
    eighth of the output rate (the lofi and dusty presets at 44.1 kHz) is an octave under the
    half rate's Nyquist, where its 24 dB/octave roll-off has taken 24 dB off: the top octave a
    full-rate render would carry is thrown away anyway, so render, master and resampling work
    on half the samples, and master delivers at the output rate."""
    return output_rate // 2 if output_rate % 2 == 0 and lowpass_hz <= output_rate / 8 else output_rate


def fit_length(audio: np.ndarray, samples: int, sample_rate: int, fade_s: float = 0.25) -> np.ndarray:
    """Exactly `samples` long: FluidSynth's long release tails cut (or a short render padded with
    silence), then faded out over the last `fade_s`. Fixing the length before the fade keeps
    renders of a file's parts summing to the render of the whole."""
    out = np.zeros((audio.shape[0], samples), np.float32)
    n = min(samples, audio.shape[1])
    out[:, :n] = audio[:, :n]
    k = min(samples, int(fade_s * sample_rate))
    out[:, samples - k:] *= np.linspace(1.0, 0.0, k, dtype=np.float32)
    return out


def midi_seconds(midi_data: bytes, name: str) -> float:
    """How long a MIDI file plays (to its last event), as mido reads it."""
    import mido
    try:
        return float(mido.MidiFile(file=io.BytesIO(midi_data)).length)
    except (OSError, ValueError, EOFError) as exc:
        raise StageError(f"{name}: not a readable MIDI file ({exc})") from None


def render_audio(midi_data: bytes, name: str, soundfont: Path, sample_rate: int, gain: float,
                 samples: int) -> np.ndarray:
    """One MIDI file's bytes rendered: float (channels, samples), exactly `samples` long, silence
    allowed. FluidSynth reads and writes files, kept in a private temporary folder, so a job
    needs nothing but its bytes and the SoundFont."""
    check_soundfont(Path(soundfont))
    with tempfile.TemporaryDirectory(prefix="lofi-render-") as tmp:
        midi, raw = Path(tmp) / name, Path(tmp) / "fluidsynth.wav"
        midi.write_bytes(midi_data)
        FluidSynthRenderer(soundfont, sample_rate, gain).midi_to_audio(midi, raw)
        audio, sr = read_wav(raw)
    if sr != sample_rate:
        raise StageError(f"fluidsynth wrote {name} at {sr} Hz, not the {sample_rate} Hz asked for")
    return fit_length(audio, samples, sr)


def render_wav_bytes(midi_data: bytes, name: str, soundfont: Path, sample_rate: int, gain: float,
                     release_s: float = 0.75) -> tuple[bytes, dict]:
    """Render one MIDI file's bytes: (float WAV bytes as long as the MIDI plus `release_s`,
    {seconds, peak, channels}); fail on silence."""
    samples = int(round((midi_seconds(midi_data, name) + release_s) * sample_rate))
    audio = render_audio(midi_data, name, soundfont, sample_rate, gain, samples)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak < SILENCE_PEAK:
        raise StageError(f"rendering {name} with {soundfont} gave silence; "
                         "is the SoundFont a valid General MIDI .sf2/.sf3?")
    if not np.isfinite(audio).all():
        raise StageError(f"rendering {name} gave NaN or infinite samples")
    return wav_bytes(audio, sample_rate), {"seconds": round(audio.shape[1] / sample_rate, 3),
                                           "peak": round(peak, 4), "channels": audio.shape[0]}


def render_midi(midi: Path, wav: Path, soundfont: Path, sample_rate: int, gain: float,
                release_s: float = 0.75) -> dict:
    """Render one MIDI file to `wav` atomically (see render_wav_bytes)."""
    try:
        data = Path(midi).read_bytes()
    except OSError as exc:
        raise StageError(f"{midi}: cannot read the MIDI file ({exc.strerror})") from None
    audio, info = render_wav_bytes(data, Path(midi).name, soundfont, sample_rate, gain, release_s)
    atomic.write_bytes(wav, audio)
    return info
