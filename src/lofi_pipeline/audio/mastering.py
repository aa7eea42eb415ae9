"""The lo-fi mastering chain: tape wow and flutter, pedalboard effects, vinyl crackle and
surface hiss, a steep roll-off, then loudness to a target under a true-peak ceiling. The
settings are the [master] section, read by attribute."""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from pedalboard import (
    Bitcrush,
    Compressor,
    HighpassFilter,
    HighShelfFilter,
    LowShelfFilter,
    Pedalboard,
    Resample,
    Reverb,
)
from scipy import signal

from ..core import atomic
from .audio_io import read_wav, wav_bytes
from .loudness import limit_to_loudness, resample, trim_true_peak


def effects_board(p, sample_rate: int) -> Pedalboard:
    board = [HighpassFilter(cutoff_frequency_hz=p.highpass_hz),
             LowShelfFilter(cutoff_frequency_hz=250, gain_db=p.low_shelf_db),
             HighShelfFilter(cutoff_frequency_hz=3000, gain_db=p.high_shelf_db),
             Compressor(threshold_db=p.compressor_threshold_db, ratio=p.compressor_ratio,
                        attack_ms=15, release_ms=180),
             Reverb(room_size=p.reverb_room_size, damping=0.6, wet_level=p.reverb_wet,
                    dry_level=1.0 - p.reverb_wet / 2, width=0.9)]
    if p.bitcrush_bits > 0:
        board.append(Bitcrush(bit_depth=p.bitcrush_bits))
    if 0 < p.resample_hz < sample_rate:
        # Linear is about 50x faster than the default windowed sinc, and grit is the point here.
        board.append(Resample(target_sample_rate=p.resample_hz, quality=Resample.Quality.Linear))
    return Pedalboard(board)


def lowpass(audio: np.ndarray, sample_rate: int, cutoff_hz: float, order: int = 4) -> np.ndarray:
    """A Butterworth roll-off (24 dB/octave at order 4); pedalboard's LowpassFilter is 6 dB/octave."""
    sos = signal.butter(order, cutoff_hz, "low", fs=sample_rate, output="sos")
    return signal.sosfilt(sos, audio, axis=-1).astype(np.float32)


def wow_flutter(audio: np.ndarray, sample_rate: int, wow_cents: float, flutter_cents: float,
                rng: np.random.Generator, wow_hz: float = 0.55, flutter_hz: float = 6.5) -> np.ndarray:
    """Pitch wobble as a time-varying delay: the read position is the integral of the pitch ratio.
    The delay changes slowly, so it is computed every 32 samples and interpolated."""
    if wow_cents <= 0 and flutter_cents <= 0:
        return audio
    n = audio.shape[-1]
    coarse = np.arange(0, n + 32, 32)
    t = coarse / sample_rate
    k = np.log(2) / 1200 * sample_rate
    phase_w, phase_f = rng.uniform(0, 2 * np.pi, 2)
    offset = k * (wow_cents / (2 * np.pi * wow_hz) * (1 - np.cos(2 * np.pi * wow_hz * t + phase_w))
                  + flutter_cents / (2 * np.pi * flutter_hz) * (1 - np.cos(2 * np.pi * flutter_hz * t + phase_f)))
    pos = np.clip(np.arange(n) - np.interp(np.arange(n), coarse, offset), 0, n - 1)
    i0 = pos.astype(np.int64)
    i1 = np.minimum(i0 + 1, n - 1)
    frac = (pos - i0).astype(np.float32)
    return (audio[:, i0] * (1 - frac) + audio[:, i1] * frac).astype(np.float32)


def click_response(sample_rate: int, floor: float = 1e-7) -> np.ndarray:
    """One click's ring: a one-pole resonance, high-passed at 1.2 kHz so it ticks, cut where it
    falls below `floor` of its peak."""
    impulse = np.zeros(sample_rate // 20)
    impulse[0] = 1.0
    ring = signal.lfilter([1.0], [1.0, -0.55], impulse)
    ring = signal.sosfilt(signal.butter(2, 1200, "high", fs=sample_rate, output="sos"), ring)
    return ring[: np.flatnonzero(np.abs(ring) > floor * np.abs(ring).max())[-1] + 1].astype(np.float32)


def vinyl_crackle(n: int, sample_rate: int, per_second: float, level_db: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Sparse clicks: a Poisson impulse train, each click its ring added where it falls. The ring
    is added click by click: filtering the whole, almost silent track ran into denormal
    floats (the decaying tails) and cost ten times the rest of the crackle."""
    out = np.zeros(n, np.float32)
    count = rng.poisson(per_second * n / sample_rate)
    if count == 0:
        return out
    where = rng.integers(0, n, count)
    gains = (10 ** (level_db / 20)) * rng.lognormal(0, 0.6, count) * rng.choice([-1, 1], count)
    ring = click_response(sample_rate)
    for at, gain in zip(where, gains.astype(np.float32)):
        tail = ring[: n - at]
        out[at:at + len(tail)] += gain * tail
    return out


def surface_hiss(shape: tuple, sample_rate: int, level_db: float, rng: np.random.Generator) -> np.ndarray:
    """Band-limited noise; the right channel is the left one delayed by a third of a second,
    which is uncorrelated for noise and halves the work."""
    noise = rng.standard_normal(shape[-1], dtype=np.float32)
    sos = signal.butter(1, [800, min(9000, 0.45 * sample_rate)], "band", fs=sample_rate, output="sos")
    noise = signal.sosfilt(sos, noise).astype(np.float32)
    noise *= 10 ** (level_db / 20) / (np.sqrt(np.mean(noise ** 2)) + 1e-12)
    return np.stack([noise, np.roll(noise, sample_rate // 3)])[: shape[0]]


def vinyl_texture(samples: int, sample_rate: int, p, seed: int) -> np.ndarray | None:
    """The crackle and hiss the master adds (stereo, `samples` long), or None when both are off.
    Drawn from a generator of its own, so the texture stem is exactly what the mix got."""
    if p.crackle_per_second <= 0 and p.hiss_db <= -120:
        return None
    rng = np.random.default_rng([seed, 1])
    texture = np.zeros((2, samples), np.float32)
    if p.crackle_per_second > 0:
        clicks = vinyl_crackle(samples, sample_rate, p.crackle_per_second, p.crackle_db, rng)
        texture += np.stack([clicks, 0.8 * clicks])
    if p.hiss_db > -120:
        texture += surface_hiss(texture.shape, sample_rate, p.hiss_db, rng)
    return texture


def master_audio(audio: np.ndarray, sample_rate: int, p, seed: int,
                 output_rate: int | None = None) -> tuple[np.ndarray, float, float]:
    """The whole chain on a (channels, samples) float array at `sample_rate`, delivered at
    `output_rate` (default: the same): (audio, LUFS, dBTP). Pure apart from its seed."""
    rng = np.random.default_rng(seed)
    if audio.shape[0] == 1:
        audio = np.repeat(audio, 2, axis=0)
    audio = wow_flutter(audio.astype(np.float32), sample_rate, p.wow_cents, p.flutter_cents, rng)
    audio = effects_board(p, sample_rate)(audio, sample_rate)
    texture = vinyl_texture(audio.shape[-1], sample_rate, p, seed)
    if texture is not None:
        audio = audio + texture
    audio = lowpass(audio, sample_rate, p.lowpass_hz)
    audio, lufs = limit_to_loudness(audio, sample_rate, p.target_lufs, p.true_peak_db, p.lowpass_hz)
    if output_rate and output_rate != sample_rate:
        audio = resample(audio, sample_rate, output_rate)
    return trim_true_peak(audio, lufs, p.true_peak_db)


def texture_seed(run_seed: int, name: str) -> int:
    return (run_seed * 1_000_003 + zlib.crc32(name.encode())) % (2**32)


def master_wav_bytes(data: bytes, p, seed: int, output_rate: int | None = None) -> tuple[bytes, dict]:
    """One rendered WAV's bytes mastered: (WAV bytes, {seconds, lufs, true_peak_db, seed, sample_rate})."""
    audio, sr = read_wav(data)
    out, lufs, peak = master_audio(audio, sr, p, seed, output_rate)
    rate = output_rate or sr
    return wav_bytes(out, rate), {"seconds": round(out.shape[1] / rate, 3), "lufs": round(lufs, 2),
                                  "true_peak_db": round(peak, 2), "seed": seed, "sample_rate": rate}


def master_file(src: Path, dst: Path, p, seed: int, output_rate: int | None = None) -> dict:
    audio, info = master_wav_bytes(Path(src).read_bytes(), p, seed, output_rate)
    atomic.write_bytes(dst, audio)
    return {"file": dst.name, **info}
