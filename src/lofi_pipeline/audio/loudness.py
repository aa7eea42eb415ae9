"""Loudness and peaks: integrated loudness (ITU-R BS.1770, pyloudnorm), a true-peak meter,
gain to a target through a brickwall limiter, the final true-peak trim, and resampling."""
from __future__ import annotations

import numpy as np
import pyloudnorm
from pedalboard import BrickwallLimiter
from scipy import signal

# MP3 encoding adds about 0.1-0.15 dB of true peak, so the limiter aims this far below the ceiling.
# The chain low-passes well below Nyquist, so a sample-peak limiter leaves almost no
# inter-sample overshoot (pedalboard's true-peak mode costs six times as much here);
# trim_true_peak measures the true peak afterwards and trims what is left.
MP3_MARGIN_DB = 0.5

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
