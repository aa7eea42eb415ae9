import dataclasses

import numpy as np
import pytest
from scipy import signal

from helpers import ROOT, reference_true_peak_db, sine
from lofi_pipeline.audio.loudness import integrated_lufs, true_peak_db
from lofi_pipeline.audio.mastering import lowpass, master_audio, vinyl_crackle, wow_flutter
from lofi_pipeline.core.config import load_config

SR = 44100


def params(*overrides):
    return load_config(ROOT / "lofi.toml", None, list(overrides)).master


def music(seconds=6.0):
    """A chord with a hard attack every half second and a bright top: something to master."""
    t = np.arange(int(seconds * SR)) / SR
    env = np.exp(-6 * (t % 0.5))
    tone = sum(np.sin(2 * np.pi * f * t) for f in (110, 220, 330, 440, 2637, 7040, 10000)) * env * 0.2
    return np.stack([tone, tone * 0.9]).astype(np.float32)


def band_energy(audio, lo, hi):
    f, pxx = signal.welch(audio[0], SR, nperseg=4096)
    return pxx[(f >= lo) & (f < hi)].sum()


def test_master_hits_loudness_and_true_peak_without_nan():
    out, lufs, peak = master_audio(music(), SR, params(), seed=1)
    assert np.isfinite(out).all() and np.max(np.abs(out)) < 1.0
    assert integrated_lufs(out, SR) == pytest.approx(-14.0, abs=1.0) and lufs == pytest.approx(-14.0, abs=0.3)
    assert reference_true_peak_db(out) <= -1.0 and peak == pytest.approx(reference_true_peak_db(out), abs=0.2)


@pytest.mark.parametrize("level", [0.05, 0.5])
def test_true_peak_matches_full_oversampling(level):
    rng = np.random.default_rng(4)
    noise = (rng.standard_normal((2, SR)) * level).astype(np.float32)
    for audio in (noise, music(2.0), lowpass(noise, SR, 5000)):
        assert true_peak_db(audio) == pytest.approx(reference_true_peak_db(audio), abs=0.2)
    full_scale = np.sin(np.pi / 2 * np.arange(SR) + np.pi / 4)[None].astype(np.float32)  # fs/4 at 45 deg
    assert true_peak_db(full_scale) > 20 * np.log10(np.max(np.abs(full_scale))) + 2.5  # the classic +3 dB


def test_lowpass_leaves_less_energy_above_the_cutoff():
    out, _, _ = master_audio(music(), SR, params("master.crackle_per_second=0"), seed=1)
    cutoff = params().lowpass_hz
    assert band_energy(out, cutoff, 20000) < 0.05 * band_energy(out, 20, cutoff)
    steep = lowpass(sine(12000.0), SR, 3000)
    assert np.sqrt(np.mean(steep[:, 4000:] ** 2)) < 0.01 * 0.3  # 2 octaves above: > 40 dB down


def test_crackle_is_there_when_enabled_and_absent_when_disabled():
    quiet = sine(220.0, 4.0, level=0.2)
    hp = signal.butter(4, 2000, "high", fs=SR, output="sos")

    def clicks(p):
        out, _, _ = master_audio(quiet, SR, p, seed=3)
        residual = signal.sosfilt(hp, out[0])
        return np.max(np.abs(residual)) / (np.median(np.abs(residual)) + 1e-9)
    off = params("master.crackle_per_second=0", "master.hiss_db=-120", "master.wow_cents=0",
                 "master.flutter_cents=0")
    on = dataclasses.replace(off, crackle_per_second=10.0, crackle_db=-24.0)
    assert clicks(on) > 3 * clicks(off)
    assert np.count_nonzero(vinyl_crackle(SR * 2, SR, 0.0, -20, np.random.default_rng(0))) == 0


def test_texture_is_seeded():
    a, _, _ = master_audio(sine(), SR, params(), seed=7)
    b, _, _ = master_audio(sine(), SR, params(), seed=7)
    c, _, _ = master_audio(sine(), SR, params(), seed=8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_wow_and_flutter_bend_the_pitch_slightly():
    tone = sine(1000.0, 3.0)
    bent = wow_flutter(tone, SR, 30.0, 0.0, np.random.default_rng(0))
    f, t, z = signal.stft(bent[0], SR, nperseg=8192)
    peaks = f[np.argmax(np.abs(z[:, 2:-2]), axis=0)]
    assert peaks.max() - peaks.min() >= 5.0 and abs(np.median(peaks) - 1000) < 25
    assert np.array_equal(wow_flutter(tone, SR, 0, 0, np.random.default_rng(0)), tone)


def test_crackle_equals_the_click_train_filtered_as_a_whole():
    """Adding each click's ring where it falls is the same signal as filtering the impulse train."""
    n, sr = SR * 3, SR
    built = vinyl_crackle(n, sr, 20.0, -20.0, np.random.default_rng(5))
    rng = np.random.default_rng(5)
    train = np.zeros(n)
    count = rng.poisson(20.0 * n / sr)
    np.add.at(train, rng.integers(0, n, count), 0.1 * rng.lognormal(0, 0.6, count) * rng.choice([-1, 1], count))
    whole = signal.sosfilt(signal.butter(2, 1200, "high", fs=sr, output="sos"),
                           signal.lfilter([1.0], [1.0, -0.55], train))
    assert count > 30 and np.max(np.abs(built - whole)) < 1e-6 * np.max(np.abs(whole))


def test_a_half_rate_master_delivers_at_the_output_rate_like_a_full_rate_one():
    """render.render_rate: the chain at 22.05 kHz behind a 5.5 kHz low-pass, delivered at 44.1 kHz,
    has the full-rate master's loudness, true-peak ceiling and spectrum below the low-pass."""
    p = params("master.crackle_per_second=0", "master.hiss_db=-120", "master.wow_cents=0", "master.flutter_cents=0")
    full, lufs_full, _ = master_audio(music(), SR, p, seed=1)
    half, lufs_half, peak = master_audio(music()[:, ::2], SR // 2, p, seed=1, output_rate=SR)
    assert half.shape[1] == full.shape[1] and half.dtype == np.float32
    assert lufs_half == pytest.approx(lufs_full, abs=0.3)
    assert reference_true_peak_db(half) <= -1.0 and peak == pytest.approx(reference_true_peak_db(half), abs=0.2)
    for lo, hi in ((20, 500), (500, 2000), (2000, 5000)):
        ratio = band_energy(half, lo, hi) / band_energy(full, lo, hi)
        assert 0.7 < ratio < 1.4, (lo, hi, ratio)
    assert band_energy(half, 11025, 20000) < 1e-6 * band_energy(half, 20, 5000)  # nothing above the half rate
