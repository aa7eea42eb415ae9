"""Fixtures: tiny MIDI files and archives the tests write themselves."""
from __future__ import annotations

import functools
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import mido
import numpy as np
import pytest

from lofi_pipeline.config import load_config

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.chdir(ROOT)  # config paths (soundfonts/, lofi.toml) are relative to the project root

MAJOR_TRIADS = [(0, 4, 7), (5, 9, 12), (7, 11, 14), (0, 4, 7)]      # I IV V I
MINOR_TRIADS = [(0, 3, 7), (5, 8, 12), (7, 11, 14), (0, 3, 7)]      # i iv V i


def midi_bytes(notes=(), drums=(), tempo_bpm=100.0, time_signature=(4, 4), tempo_events=True,
               ticks_per_beat=480) -> bytes:
    """A type-1 MIDI file; notes and drums are (start_beats, duration_beats, pitch, velocity)."""
    import io
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


@pytest.fixture
def tiny_midi(tmp_path) -> Path:
    path = tmp_path / "tiny.mid"
    path.write_bytes(song_bytes(0))
    return path


@pytest.fixture
def song_archive(tmp_path) -> Path:
    return write_zip(tmp_path / "songs.zip", {f"songs/song_{i:02d}.mid": song_bytes(i) for i in range(10)})


@pytest.fixture
def quick_cfg(tmp_path):
    """The quick profile, with outputs in a temporary folder and the repo as working dir."""
    def make(*overrides):
        return quick_config(tmp_path / "outputs", *overrides)
    return make


@functools.lru_cache(maxsize=None)
def sine(freq_hz: float = 440.0, seconds: float = 2.0, sample_rate: int = 44100, level: float = 0.3):
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    mono = (level * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)
    return np.stack([mono, mono])


def quick_config(outputs: Path, *overrides):
    return load_config(ROOT / "lofi.toml", "quick", [f'run.outputs="{outputs}"', *overrides])


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A real quick-profile run through `train` on ten little songs: (config, runner)."""
    from lofi_pipeline.pipeline import build_stages
    from lofi_pipeline.runner import Runner
    base = tmp_path_factory.mktemp("trained")
    archive = write_zip(base / "songs.zip", {f"song_{i:02d}.mid": song_bytes(i) for i in range(10)})
    cfg = quick_config(base / "outputs", f'run.archive="{archive}"', "encode.validation_share=0.2",
                       "train.epochs=12", "train.patience=3")
    runner = Runner(cfg, build_stages(), log=lambda m: None)
    runner.run(["train"])
    return cfg, runner


def lofi_process(*args) -> subprocess.Popen:
    """`python -m lofi_pipeline ARGS` in the project root, output captured."""
    return subprocess.Popen([sys.executable, "-m", "lofi_pipeline", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def lofi(*args, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    proc = lofi_process(*args)
    out, err = proc.communicate(timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"lofi {' '.join(args)} exited {proc.returncode}:\n{err[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def quick_archive(folder: Path, songs: int = 12) -> Path:
    return write_zip(folder / "songs.zip", {f"song_{i:02d}.mid": song_bytes(i) for i in range(songs)})
