"""Stems: each part of a track rendered alone by FluidSynth from the same MIDI (every other
channel removed), at the rate and gain of the whole render and cut to its exact length, so the
parts sum back to it; and the vinyl-and-tape texture the master adds. No master-bus processing
(as mixing and sample-library practice expects); delivered as 24-bit WAV at the mix's rate, all
starting at 0 and all as long as the mix.

FluidSynth mixes voices by adding them, with its reverb and chorus off (as render runs it), but
a voice slot it reuses carries a little state into the next note, so the parts' renders sum to
the whole render to about 50 dB, not to the bit (docs/audio.md); 24-bit quantisation adds at
most half a step (6e-8) per stem.
"""
from __future__ import annotations

import io

import numpy as np
from pedalboard.io import AudioFile

from .fluidsynth import render_audio
from .loudness import resample
from .mastering import vinyl_texture

FULL_SCALE = 0.999  # the largest stem peak 24-bit PCM carries without clipping


def pcm24_wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """A 24-bit PCM WAV file's bytes (pedalboard's writer: scipy writes no 24-bit)."""
    buffer = io.BytesIO()
    with AudioFile(buffer, "w", sample_rate, audio.shape[0], format="wav", bit_depth=24) as f:
        f.write(np.ascontiguousarray(audio, dtype=np.float32))
    return buffer.getvalue()


def deliver_rate(audio: np.ndarray, render_rate: int, output_rate: int) -> np.ndarray:
    """At the mix's rate, exactly as the master resamples the render."""
    return audio if render_rate == output_rate else resample(audio, render_rate, output_rate)


def render_stems(part_files: dict[str, bytes], soundfont, render_rate: int, gain: float, samples: int,
                 output_rate: int) -> dict[str, np.ndarray]:
    """{part name: float (2, n) audio at `output_rate`} from {part name: its MIDI file's bytes}:
    each rendered alone at `render_rate`, `samples` long (the whole render's length), then
    resampled as the master resamples the mix."""
    stems = {}
    for name, midi in part_files.items():
        audio = render_audio(midi, f"{name}.mid", soundfont, render_rate, gain, samples)
        stems[name] = deliver_rate(np.atleast_2d(audio), render_rate, output_rate)
    return stems


def texture_stem(samples: int, render_rate: int, output_rate: int, p, seed: int) -> np.ndarray | None:
    """The crackle and hiss the master adds to this track, before its low-pass and loudness gain."""
    texture = vinyl_texture(samples, render_rate, p, seed)
    return None if texture is None else deliver_rate(texture, render_rate, output_rate)


def headroom_gain(stems: dict[str, np.ndarray]) -> float:
    """1, or the one gain that brings every stem under full scale (the parts keep their balance)."""
    peak = max((float(np.max(np.abs(a))) for a in stems.values() if a.size), default=0.0)
    return 1.0 if peak <= FULL_SCALE else FULL_SCALE / peak
