"""render: MIDI -> 44.1 kHz stereo float WAV with FluidSynth (through midi2audio).

midi2audio's own call puts the options after the file names, cannot pass gain or switch
reverb/chorus off, and ignores FluidSynth's exit status. `FluidSynthRenderer` keeps its
interface but builds the command itself, options first, and checks the result: FluidSynth
exits 0 and writes silence when the SoundFont cannot be loaded.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from midi2audio import FluidSynth
from pedalboard.io import AudioFile

from . import atomic
from .runner import Stage, StageContext, StageError, sha256_file

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
                              capture_output=True, text=True)
        if "not a SoundFont" in proc.stderr:
            raise StageError(f"fluidsynth could not load SoundFont {self.sound_font}")
        if proc.returncode != 0 or not Path(audio_file).exists():
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise StageError(f"fluidsynth failed on {midi_file} (exit {proc.returncode}): "
                             f"{detail[-1] if detail else 'no output'}")


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


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    with AudioFile(str(path)) as f:
        return f.read(f.frames), int(f.samplerate)


def write_audio(path: Path, audio: np.ndarray, sample_rate: int, fmt: str, **options) -> None:
    """Write audio atomically; `options` go to the encoder (bit_depth=32, quality=192, ...)."""
    with atomic.atomic_path(path) as tmp, open(tmp, "wb") as fh:
        with AudioFile(fh, "w", sample_rate, audio.shape[0], format=fmt, **options) as f:
            f.write(audio)


def trim_release(audio: np.ndarray, sample_rate: int, seconds: float, fade_s: float = 0.25) -> np.ndarray:
    """Cut FluidSynth's long release tails at `seconds`, fading out over the last `fade_s`."""
    n = min(audio.shape[1], int(round(seconds * sample_rate)))
    audio = audio[:, :n].copy()
    k = min(n, int(fade_s * sample_rate))
    audio[:, n - k:] *= np.linspace(1.0, 0.0, k, dtype=np.float32)
    return audio


def render_midi(midi: Path, wav: Path, soundfont: Path, sample_rate: int = 44100,
                gain: float = 0.4, release_s: float = 0.75) -> dict:
    """Render one MIDI file to `wav` atomically: as long as the MIDI plus `release_s`; fail on silence."""
    import mido
    check_soundfont(Path(soundfont))
    try:
        midi_seconds = mido.MidiFile(midi).length
    except (OSError, ValueError, EOFError) as exc:
        raise StageError(f"{midi}: not a readable MIDI file ({exc})") from None
    tmp_wav = wav.with_name(f".{wav.stem}.render.wav")
    try:
        FluidSynthRenderer(soundfont, sample_rate, gain).midi_to_audio(midi, tmp_wav)
        audio, sr = read_audio(tmp_wav)
    finally:
        tmp_wav.unlink(missing_ok=True)
    audio = trim_release(audio, sr, midi_seconds + release_s)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak < SILENCE_PEAK:
        raise StageError(f"rendering {midi.name} with {soundfont} gave silence; "
                         "is the SoundFont a valid General MIDI .sf2/.sf3?")
    if not np.isfinite(audio).all():
        raise StageError(f"rendering {midi.name} gave NaN or infinite samples")
    write_audio(wav, audio, sr, "wav", bit_depth=32)
    return {"seconds": round(audio.shape[1] / sr, 3), "peak": round(peak, 4), "channels": audio.shape[0]}


def given_midi_files(path: Path) -> list[Path]:
    """The files `--midi PATH` names: the file itself, or a folder's .mid/.midi files."""
    return sorted(path.glob("*.mid*")) if path.is_dir() else [path]


def midi_inputs(cfg, root: Path, inputs: dict) -> list[tuple[Path, dict]]:
    """(MIDI file, what is known of it: title, key, tempo, seed) for each file to render."""
    if cfg.render.midi:
        files = [(f, {"title": f.stem}) for f in given_midi_files(root / cfg.render.midi)]
    else:
        tracks = json.loads((inputs["arrange"] / "tracks.json").read_text())["tracks"]
        files = [(inputs["arrange"] / t["file"], {k: t[k] for k in ("title", "key", "tempo_bpm", "seed")})
                 for t in tracks]
    if not files:
        raise StageError(f"nothing to render in {cfg.render.midi or 'the arrange artifact'}")
    return files


class RenderStage(Stage):
    name = "render"
    requires = ("arrange",)
    version = "1"
    help = "render the arranged MIDI to WAV with FluidSynth and a SoundFont from soundfonts/"

    def params(self, cfg):
        return {k: v for k, v in cfg.section("render").items() if k not in ("workers", "soundfont", "midi")}

    def upstream(self, cfg):
        return () if cfg.render.midi else self.requires

    def external_inputs(self, cfg, root):
        sf = root / cfg.render.soundfont
        digests = {"soundfont": sha256_file(sf) if sf.is_file() else "missing"}
        if cfg.render.midi:
            digests["midi"] = ",".join(sha256_file(f) if f.is_file() else "missing"
                                       for f in given_midi_files(root / cfg.render.midi))
        return digests

    def check(self, cfg, root):
        check_fluidsynth()
        check_soundfont(root / cfg.render.soundfont)
        if cfg.render.midi and not (root / cfg.render.midi).exists():
            raise StageError(f"{cfg.render.midi}: MIDI file or folder not found (--midi / render.midi)")

    def run(self, ctx: StageContext) -> dict:
        cfg = ctx.cfg.render
        files = midi_inputs(ctx.cfg, Path("."), ctx.inputs)
        sf = Path(cfg.soundfont)

        def one(item: tuple[Path, dict]) -> dict:
            midi, meta = item
            wav = ctx.out_dir / f"{midi.stem}.wav"
            return {"midi": midi.name, "file": wav.name, "meta": meta,
                    **render_midi(midi, wav, sf, cfg.sample_rate, cfg.gain)}

        # FluidSynth runs as a subprocess, so threads are enough to use every core.
        with ThreadPoolExecutor(max(1, min(cfg.workers, len(files)))) as pool:
            rendered = list(pool.map(one, files))
        for r in rendered:
            ctx.log(f"{r['file']}: {r['seconds']:.1f}s, peak {r['peak']:.2f}")
        atomic.write_json(ctx.out_dir / "renders.json", {"renders": rendered})
        return {"files": len(rendered), "audio_seconds": round(sum(r["seconds"] for r in rendered), 2)}
