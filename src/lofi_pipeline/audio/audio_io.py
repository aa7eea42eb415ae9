"""WAV files in and out as float32 (channels, samples) arrays, written atomically.

scipy's reader and writer, not pedalboard's: the render stage must not depend on the
effects library, so that upgrading pedalboard re-keys mastering and export only.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from scipy.io import wavfile

from ..core import atomic


def read_wav(source: Path | bytes) -> tuple[np.ndarray, int]:
    """(audio as float32 channels x samples, sample rate) from a WAV file or its bytes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", wavfile.WavFileWarning)  # FluidSynth's LIST chunk
        sample_rate, data = wavfile.read(io.BytesIO(source) if isinstance(source, bytes) else source)
    if data.dtype.kind in "iu":
        scale = float(np.iinfo(data.dtype).max) + 1.0
        data = data.astype(np.float32) / scale
    audio = np.atleast_2d(data.astype(np.float32, copy=False).T)
    return np.ascontiguousarray(audio), int(sample_rate)


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """A 32-bit float WAV file's bytes (what a worker hands back to the driver)."""
    buffer = io.BytesIO()
    wavfile.write(buffer, sample_rate, np.ascontiguousarray(np.atleast_2d(audio).T, dtype=np.float32))
    return buffer.getvalue()


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """32-bit float WAV, atomically."""
    atomic.write_bytes(path, wav_bytes(audio, sample_rate))
