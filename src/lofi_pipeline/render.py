"""render: MIDI -> stereo float WAV with FluidSynth (through midi2audio), at render.sample_rate,
or at half of it when the master low-passes at or below an eighth of it (see render_rate).

FluidSynth's version (`fluidsynth --version`) is part of the stage's key.

midi2audio's own call puts the options after the file names, cannot pass gain or switch
reverb/chorus off, and ignores FluidSynth's exit status. `FluidSynthRenderer` keeps its
interface but builds the command itself, options first, and checks the result: FluidSynth
exits 0 and writes silence when the SoundFont cannot be loaded.
"""
from __future__ import annotations

import ctypes
import io
import json
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from midi2audio import FluidSynth
from tqdm import tqdm

from . import atomic
from .audio_io import read_wav, wav_bytes
from .errors import StageError
from .hashing import path_digest
from .parallel import Executor
from .runner import Stage, StageContext

SILENCE_PEAK = 1e-4


class FluidSynthRenderer(FluidSynth):
    def __init__(self, sound_font: str | Path, sample_rate: int = 44100, gain: float = 0.4):
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


def trim_release(audio: np.ndarray, sample_rate: int, seconds: float, fade_s: float = 0.25) -> np.ndarray:
    """Cut FluidSynth's long release tails at `seconds`, fading out over the last `fade_s`."""
    n = min(audio.shape[1], int(round(seconds * sample_rate)))
    audio = audio[:, :n].copy()
    k = min(n, int(fade_s * sample_rate))
    audio[:, n - k:] *= np.linspace(1.0, 0.0, k, dtype=np.float32)
    return audio


def render_wav_bytes(midi_data: bytes, name: str, soundfont: Path, sample_rate: int = 44100,
                     gain: float = 0.4, release_s: float = 0.75) -> tuple[bytes, dict]:
    """Render one MIDI file's bytes: (float WAV bytes as long as the MIDI plus `release_s`,
    {seconds, peak, channels}); fail on silence. FluidSynth reads and writes files, kept in a
    private temporary folder, so a job needs nothing but its bytes and the SoundFont."""
    import mido
    check_soundfont(Path(soundfont))
    try:
        midi_seconds = mido.MidiFile(file=io.BytesIO(midi_data)).length
    except (OSError, ValueError, EOFError) as exc:
        raise StageError(f"{name}: not a readable MIDI file ({exc})") from None
    with tempfile.TemporaryDirectory(prefix="lofi-render-") as tmp:
        midi, raw = Path(tmp) / name, Path(tmp) / "fluidsynth.wav"
        midi.write_bytes(midi_data)
        FluidSynthRenderer(soundfont, sample_rate, gain).midi_to_audio(midi, raw)
        audio, sr = read_wav(raw)
    audio = trim_release(audio, sr, midi_seconds + release_s)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak < SILENCE_PEAK:
        raise StageError(f"rendering {name} with {soundfont} gave silence; "
                         "is the SoundFont a valid General MIDI .sf2/.sf3?")
    if not np.isfinite(audio).all():
        raise StageError(f"rendering {name} gave NaN or infinite samples")
    return wav_bytes(audio, sr), {"seconds": round(audio.shape[1] / sr, 3), "peak": round(peak, 4),
                                  "channels": audio.shape[0]}


def render_midi(midi: Path, wav: Path, soundfont: Path, sample_rate: int = 44100,
                gain: float = 0.4, release_s: float = 0.75) -> dict:
    """Render one MIDI file to `wav` atomically (see render_wav_bytes)."""
    try:
        data = Path(midi).read_bytes()
    except OSError as exc:
        raise StageError(f"{midi}: cannot read the MIDI file ({exc.strerror})") from None
    audio, info = render_wav_bytes(data, Path(midi).name, soundfont, sample_rate, gain, release_s)
    atomic.write_bytes(wav, audio)
    return info


def given_midi_files(path: Path) -> list[Path]:
    """The files `--midi PATH` names: the file itself, or a folder's .mid/.midi files."""
    return sorted(path.glob("*.mid*")) if path.is_dir() else [path]


def midi_inputs(given: Path | None, inputs: dict) -> list[tuple[Path, dict]]:
    """(MIDI file, what is known of it: title, key, tempo, seed) for each file to render:
    the `given` file or folder, else the arrange artifact's tracks."""
    if given is not None:
        files = [(f, {"title": f.stem}) for f in given_midi_files(given)]
    else:
        tracks = json.loads((inputs["arrange"] / "tracks.json").read_text())["tracks"]
        files = [(inputs["arrange"] / t["file"], {k: t[k] for k in ("title", "key", "tempo_bpm", "seed")})
                 for t in tracks]
    if not files:
        raise StageError(f"nothing to render in {given or 'the arrange artifact'}")
    return files


def _render_job(shared, job) -> dict:
    soundfont, sample_rate, gain = shared
    midi_data, midi_name, wav_name, meta = job
    audio, info = render_wav_bytes(midi_data, midi_name, soundfont, sample_rate, gain)
    return {"midi": midi_name, "file": wav_name, "meta": meta, **info, "wav": audio}


class RenderStage(Stage):
    name = "render"
    requires = ("arrange",)
    reads = ("render", "master.lowpass_hz", "run.executor", "run.ray_address")
    binaries = ("fluidsynth",)
    help = "render the arranged MIDI to WAV with FluidSynth and a SoundFont from soundfonts/"

    def upstream(self, params):
        return () if params.render.midi else self.requires

    def external_inputs(self, params, root):
        digests = {"soundfont": path_digest(root / params.render.soundfont)}
        if params.render.midi:
            digests["midi"] = ",".join(path_digest(f) for f in given_midi_files(root / params.render.midi))
        return digests

    def check(self, params, root):
        check_fluidsynth()
        check_soundfont(root / params.render.soundfont)
        if params.render.midi and not (root / params.render.midi).exists():
            raise StageError(f"{params.render.midi}: MIDI file or folder not found (--midi / render.midi)")

    def run(self, ctx: StageContext) -> dict:
        p = ctx.params.render
        files = midi_inputs(ctx.path(p.midi) if p.midi else None, ctx.inputs)
        rate = render_rate(p.sample_rate, ctx.params.master.lowpass_hz)
        if rate != p.sample_rate:
            ctx.log(f"rendering at {rate} Hz: the master low-passes at {ctx.params.master.lowpass_hz:g} Hz "
                    f"and delivers at {p.sample_rate} Hz")
        # Each job carries its MIDI bytes and hands back WAV bytes, written here as they come.
        jobs = ((midi.read_bytes(), midi.name, f"{midi.stem}.wav", meta) for midi, meta in files)
        executor = Executor.for_stage(ctx.params, p.workers)
        rendered = []
        for r in tqdm(executor.map(_render_job, jobs, shared=(ctx.path(p.soundfont), rate, p.gain)),
                      total=len(files), desc="render", unit="track", disable=None):
            atomic.write_bytes(ctx.out_dir / r["file"], r.pop("wav"))
            rendered.append(r)
            ctx.log(f"{r['file']}: {r['seconds']:.1f}s, peak {r['peak']:.2f}")
        atomic.write_json(ctx.out_dir / "renders.json", {"renders": rendered})
        return {"files": len(rendered), "audio_seconds": round(sum(r["seconds"] for r in rendered), 2),
                "sample_rate": rate}
