"""Helpers the tests share: MIDI files and archives written on the spot, test signals, and
running `lofi` in a subprocess. Fixtures live in conftest.py and use these."""
from __future__ import annotations

import functools
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import mido
import numpy as np

from lofi_pipeline.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SOUNDFONT = ROOT / "soundfonts" / "default.sf2"
MAJOR_TRIADS = [(0, 4, 7), (5, 9, 12), (7, 11, 14), (0, 4, 7)]      # I IV V I
MINOR_TRIADS = [(0, 3, 7), (5, 8, 12), (7, 11, 14), (0, 3, 7)]      # i iv V i


def midi_bytes(notes=(), drums=(), tempo_bpm=100.0, time_signature=(4, 4), tempo_events=True,
               ticks_per_beat=480) -> bytes:
    """A type-1 MIDI file; notes and drums are (start_beats, duration_beats, pitch, velocity)."""
    mf = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    meta = mido.MidiTrack()
    if tempo_events:
        meta.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm), time=0))
    meta.append(mido.MetaMessage("time_signature", numerator=time_signature[0],
                                 denominator=time_signature[1], time=0))
    mf.tracks.append(meta)
    for channel, items in ((0, notes), (9, drums)):
        if not items:
            continue
        track = mido.MidiTrack()
        msgs = []
        for start, dur, pitch, vel in items:
            on = round(start * ticks_per_beat)
            msgs.append((on, 1, pitch, vel))
            msgs.append((on + max(1, round(dur * ticks_per_beat)), 0, pitch, 0))
        now = 0
        for tick, is_on, pitch, vel in sorted(msgs):
            track.append(mido.Message("note_on" if is_on else "note_off", channel=channel,
                                      note=pitch, velocity=vel, time=tick - now))
            now = tick
        mf.tracks.append(track)
    buf = io.BytesIO()
    mf.save(file=buf)
    return buf.getvalue()


def progression_notes(tonic: int, minor: bool = False, bars: int = 4, melody: bool = True):
    """Block chords a beat each plus a melody, in the key of `tonic` (MIDI pitch)."""
    triads = MINOR_TRIADS if minor else MAJOR_TRIADS
    notes, t = [], 0.0
    scale = [0, 2, 3, 5, 7, 8, 11] if minor else [0, 2, 4, 5, 7, 9, 11]
    for bar in range(bars):
        chord = triads[bar % 4]
        for beat in range(4):
            for iv in chord:
                notes.append((t, 1.0, tonic - 12 + iv, 70))
            if melody:
                notes.append((t, 0.5, tonic + 12 + scale[(bar + beat * 2) % 7], 90))
                notes.append((t + 0.5, 0.5, tonic + 12 + scale[(bar + beat * 2 + 2) % 7], 84))
            t += 1.0
    return notes


@functools.lru_cache(maxsize=None)
def song_bytes(index: int) -> bytes:
    """Deterministic little songs in varied keys and modes."""
    tonic = 55 + (index * 5) % 12
    return midi_bytes(progression_notes(tonic, minor=index % 3 == 1, bars=3 + index % 3),
                      drums=[(b, 0.25, 36 if b % 2 == 0 else 38, 90) for b in range(8)],
                      tempo_bpm=80 + index)


def write_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


@functools.lru_cache(maxsize=None)
def sine(freq_hz: float = 440.0, seconds: float = 2.0, sample_rate: int = 44100, level: float = 0.3):
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    mono = (level * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)
    return np.stack([mono, mono])


def quick_config(outputs: Path, *overrides):
    return load_config(ROOT / "lofi.toml", "quick", [f'run.outputs="{outputs}"', *overrides])


def reference_true_peak_db(audio) -> float:
    """Full 4x oversampling with scipy, independent of the pipeline's shortcut."""
    from scipy import signal
    return 20 * np.log10(np.max(np.abs(signal.resample_poly(audio, 4, 1, axis=-1))))


def read_mp3(path: Path) -> tuple[np.ndarray, int]:
    """Decode an MP3 (pedalboard's decoder, independent of the pipeline's WAV reader)."""
    from pedalboard.io import AudioFile
    with AudioFile(str(path)) as f:
        return f.read(f.frames), int(f.samplerate)


def lofi_process(*args, env: dict | None = None, **popen) -> subprocess.Popen:
    """`python -m lofi_pipeline ARGS` in the project root, output captured; `env` adds variables."""
    return subprocess.Popen([sys.executable, "-m", "lofi_pipeline", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, **popen)


def lofi(*args, check: bool = True, timeout: float = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = lofi_process(*args, env=env)
    out, err = proc.communicate(timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"lofi {' '.join(args)} exited {proc.returncode}:\n{err[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def quick_archive(folder: Path, songs: int = 12) -> Path:
    return write_zip(folder / "songs.zip", {f"song_{i:02d}.mid": song_bytes(i) for i in range(songs)})
