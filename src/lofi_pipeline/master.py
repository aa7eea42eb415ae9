"""master: the lo-fi chain. Tape wobble, pedalboard effects, a steep roll-off, vinyl texture,
then loudness to a target with a true-peak ceiling."""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pyloudnorm
from pedalboard import (
    Bitcrush,
    BrickwallLimiter,
    Compressor,
    HighpassFilter,
    HighShelfFilter,
    LowShelfFilter,
    Pedalboard,
    Resample,
    Reverb,
)
from scipy import signal
from tqdm import tqdm

from . import atomic
from .audio_io import read_wav, wav_bytes
from .parallel import Executor
from .runner import Stage, StageContext

# MP3 encoding adds about 0.1-0.15 dB of true peak, so the limiter aims this far below the ceiling.
# The chain low-passes well below Nyquist, so a sample-peak limiter leaves almost no
# inter-sample overshoot (pedalboard's true-peak mode costs six times as much here);
# trim_true_peak measures the true peak afterwards and trims what is left.
MP3_MARGIN_DB = 0.5


def effects_board(p: dict, sample_rate: int) -> Pedalboard:
    board = [HighpassFilter(cutoff_frequency_hz=p["highpass_hz"]),
             LowShelfFilter(cutoff_frequency_hz=250, gain_db=p["low_shelf_db"]),
             HighShelfFilter(cutoff_frequency_hz=3000, gain_db=p["high_shelf_db"]),
             Compressor(threshold_db=p["compressor_threshold_db"], ratio=p["compressor_ratio"],
                        attack_ms=15, release_ms=180),
             Reverb(room_size=p["reverb_room_size"], damping=0.6, wet_level=p["reverb_wet"],
                    dry_level=1.0 - p["reverb_wet"] / 2, width=0.9)]
    if p["bitcrush_bits"] > 0:
        board.append(Bitcrush(bit_depth=p["bitcrush_bits"]))
    if 0 < p["resample_hz"] < sample_rate:
        # Linear is about 50x faster than the default windowed sinc, and grit is the point here.
        board.append(Resample(target_sample_rate=p["resample_hz"], quality=Resample.Quality.Linear))
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


# A 4x oversampling interpolator as four 12-tap phases (BS.1770 uses a 48-tap FIR too).
_PHASES = (4 * signal.firwin(48, 0.25, window=("kaiser", 8.0))).reshape(-1, 4).T[:, ::-1].astype(np.float32)
_PHASE_GAIN = float(np.abs(_PHASES).sum(axis=1).max())


def true_peak_db(audio: np.ndarray) -> float:
    """Peak of the 4x-oversampled signal, in dBTP. An interpolated value can exceed the
    sample peak only near samples louder than peak / (sum of |taps|), so it is computed
    there alone: exact for this interpolator, and a fraction of the full cost."""
    taps = _PHASES.shape[1]
    best = float(np.max(np.abs(audio))) if audio.size else 0.0
    peak = best
    for ch in np.atleast_2d(audio):
        # Outputs within a window of a loud sample: a running count of loud samples over the
        # window (a cumulative sum costs a third of a maximum filter on a 2-minute track).
        loud = np.pad(np.abs(ch) * _PHASE_GAIN > best, (taps // 2, taps // 2))
        count = np.concatenate([[0], np.cumsum(loud, dtype=np.int32)])
        near = np.flatnonzero(count[taps:taps + len(ch)] > count[:len(ch)])
        if len(near):
            windows = np.lib.stride_tricks.sliding_window_view(np.pad(ch, (taps, taps)), taps)
            peak = max(peak, float(np.abs(windows[near + taps // 2 + 1] @ _PHASES.T).max()))
    return 20 * np.log10(max(peak, 1e-12))


def integrated_lufs(audio: np.ndarray, sample_rate: int, bandwidth_hz: float | None = None) -> float:
    """ITU-R BS.1770 integrated loudness. Audio already low-passed below a quarter of the
    sample rate loses nothing when measured at half the rate, which halves the cost."""
    if bandwidth_hz is not None and bandwidth_hz < sample_rate / 4:
        audio, sample_rate = audio[:, ::2], sample_rate // 2
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(audio.T.astype(np.float64)))


def limit_to_loudness(audio: np.ndarray, sample_rate: int, target_lufs: float, ceiling_db: float,
                      bandwidth_hz: float | None = None) -> tuple[np.ndarray, float]:
    """Gain to the target loudness through a brickwall limiter under the ceiling; returns
    (audio, LUFS). Limiting lowers loudness a little, so gain and limiting repeat until the
    loudness settles."""
    limiter = BrickwallLimiter(ceiling_db=ceiling_db - MP3_MARGIN_DB, release_ms=80, lookahead_ms=5)
    loudness = integrated_lufs(audio, sample_rate, bandwidth_hz)
    if not np.isfinite(loudness):
        return audio, loudness
    for _ in range(3):
        audio = limiter((audio * 10 ** ((target_lufs - loudness) / 20)).astype(np.float32), sample_rate,
                        reset=True)
        loudness = integrated_lufs(audio, sample_rate, bandwidth_hz)
        if abs(loudness - target_lufs) < 0.2:
            break
    return audio, loudness


def resample(audio: np.ndarray, sample_rate: int, output_rate: int) -> np.ndarray:
    """Polyphase resampling (render works at half rate behind a low-pass, see render.render_rate)."""
    g = np.gcd(output_rate, sample_rate)
    return signal.resample_poly(audio, output_rate // g, sample_rate // g, axis=-1).astype(np.float32)


def trim_true_peak(audio: np.ndarray, loudness: float, ceiling_db: float) -> tuple[np.ndarray, float, float]:
    """The last step, at the output rate: trim what the limiter left over the true-peak ceiling
    (less the MP3 margin); returns (audio, LUFS, dBTP)."""
    peak = true_peak_db(audio)
    over = peak - (ceiling_db - MP3_MARGIN_DB)
    if over > 0:
        audio = audio * 10 ** (-over / 20)
        loudness, peak = loudness - over, peak - over
    return audio.astype(np.float32), loudness, peak


def master_audio(audio: np.ndarray, sample_rate: int, p: dict, seed: int,
                 output_rate: int | None = None) -> tuple[np.ndarray, float, float]:
    """The whole chain on a (channels, samples) float array at `sample_rate`, delivered at
    `output_rate` (default: the same): (audio, LUFS, dBTP). Pure apart from its seed."""
    rng = np.random.default_rng(seed)
    if audio.shape[0] == 1:
        audio = np.repeat(audio, 2, axis=0)
    audio = wow_flutter(audio.astype(np.float32), sample_rate, p["wow_cents"], p["flutter_cents"], rng)
    audio = effects_board(p, sample_rate)(audio, sample_rate)
    if p["crackle_per_second"] > 0:
        clicks = vinyl_crackle(audio.shape[-1], sample_rate, p["crackle_per_second"], p["crackle_db"], rng)
        audio = audio + np.stack([clicks, 0.8 * clicks])
    if p["hiss_db"] > -120:
        audio = audio + surface_hiss(audio.shape, sample_rate, p["hiss_db"], rng)
    audio = lowpass(audio, sample_rate, p["lowpass_hz"])
    audio, lufs = limit_to_loudness(audio, sample_rate, p["target_lufs"], p["true_peak_db"], p["lowpass_hz"])
    if output_rate and output_rate != sample_rate:
        audio = resample(audio, sample_rate, output_rate)
    return trim_true_peak(audio, lufs, p["true_peak_db"])


def texture_seed(run_seed: int, name: str) -> int:
    return (run_seed * 1_000_003 + zlib.crc32(name.encode())) % (2**32)


def master_wav_bytes(data: bytes, p: dict, seed: int, output_rate: int | None = None) -> tuple[bytes, dict]:
    """One rendered WAV's bytes mastered: (WAV bytes, {seconds, lufs, true_peak_db, seed, sample_rate})."""
    audio, sr = read_wav(data)
    out, lufs, peak = master_audio(audio, sr, p, seed, output_rate)
    rate = output_rate or sr
    return wav_bytes(out, rate), {"seconds": round(out.shape[1] / rate, 3), "lufs": round(lufs, 2),
                                  "true_peak_db": round(peak, 2), "seed": seed, "sample_rate": rate}


def master_file(src: Path, dst: Path, p: dict, seed: int, output_rate: int | None = None) -> dict:
    audio, info = master_wav_bytes(Path(src).read_bytes(), p, seed, output_rate)
    atomic.write_bytes(dst, audio)
    return {"file": dst.name, **info}


def _master_job(shared, job) -> dict:
    p, output_rate = shared
    data, name, seed = job
    audio, info = master_wav_bytes(data, p, seed, output_rate)
    return {"file": name, **info, "wav": audio}


class MasterStage(Stage):
    name = "master"
    requires = ("render",)
    reads = ("master", "run.seed", "render.sample_rate", "run.executor", "run.ray_address")
    help = "lo-fi mastering: EQ, compression, reverb, crackle, hiss, wow/flutter, loudness"

    def run(self, ctx: StageContext) -> dict:
        renders = json.loads((ctx.inputs["render"] / "renders.json").read_text())["renders"]
        p = ctx.params.section("master")
        # Each job carries its render's bytes and hands back the master's, written here as they come.
        seed = ctx.params.run.seed
        jobs = (((ctx.inputs["render"] / r["file"]).read_bytes(), r["file"], texture_seed(seed, r["file"]))
                for r in renders)
        executor = Executor.for_stage(ctx.params, p["workers"])
        results = []
        mastered = executor.map(_master_job, jobs, shared=(p, ctx.params.render.sample_rate))
        for r, src in tqdm(zip(mastered, renders, strict=True), total=len(renders), desc="master", unit="track",
                           disable=None):
            atomic.write_bytes(ctx.out_dir / r["file"], r.pop("wav"))
            r["meta"] = src.get("meta", {})
            results.append(r)
            ctx.log(f"{r['file']}: {r['lufs']:.1f} LUFS, true peak {r['true_peak_db']:.1f} dBTP")
        atomic.write_json(ctx.out_dir / "masters.json", {"masters": results})
        return {"files": len(results), "lufs": [r["lufs"] for r in results],
                "true_peak_db": [r["true_peak_db"] for r in results]}
