"""Real-time factors of render, master and export on a 2-minute arranged track.

Real-time factor = seconds of audio produced per wall-clock second. The one-core rows pin this
process to one CPU (os.sched_setaffinity), so "one core" is true. The stems row is what
export.stems = true adds per track (each part rendered alone, the texture, 24-bit WAVs),
against the chain that always runs. Baselines measured in the
same run: the chain at full rate (FluidSynth and the master at the output rate, as before
render.render_rate), pydub + ffmpeg's MP3 encoder (against pedalboard's built-in LAME) when
ffmpeg is present, and one process against two for several tracks (both cores).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from lofi_pipeline.audio.fluidsynth import render_midi, render_rate
from lofi_pipeline.audio.mastering import master_file
from lofi_pipeline.audio.mp3 import write_mp3
from lofi_pipeline.audio.stems import headroom_gain, pcm24_wav_bytes, render_stems, texture_stem
from lofi_pipeline.core.config import load_config
from lofi_pipeline.music.arrangement import arrange_track
from lofi_pipeline.music.part_files import channel_parts, part_midi
from lofi_pipeline.music.token_format import Event


def progression(bars: int) -> list[tuple[str, ...]]:
    """Token rows of Cmaj7 Dm7 G7 C, a bar each, under a melody in quarter notes, `bars` long."""
    chords = [(0, "maj7"), (2, "m7"), (7, "7"), (0, "maj")]
    melody = [[76, 74, 72, 74], [74, 72, 69, 72], [71, 67, 64, 67], [72, 67, 64, 60]]
    rows = []
    for bar in range(bars):
        root, quality = chords[bar % 4]
        for beat, pitch in enumerate(melody[bar % 4]):
            first = beat == 0
            rows.append(Event(onset=0, bar=bar, position=beat * 12, advance=int(first and bar > 0),
                              root=root if first else None, quality=quality if first else None, pitch=pitch,
                              duration=12, velocity=2).tokens)
    return rows


def one_track(args) -> float:
    """Render, master and export one track as the pipeline does; returns its audio seconds."""
    midi, folder, cfg = args
    wav, mastered, mp3 = folder / f"{midi.stem}.wav", folder / f"{midi.stem}.m.wav", folder / f"{midi.stem}.mp3"
    chain(midi, wav, mastered, mp3, cfg, render_rate(cfg.render.sample_rate, cfg.master.lowpass_hz))
    return write_mp3(mastered, mp3, cfg.export.bitrate_kbps)


def chain(midi: Path, wav: Path, mastered: Path, mp3: Path, cfg, rate: int) -> tuple[float, list[float]]:
    """Render at `rate`, master to the output rate; (audio seconds, [render, master] seconds)."""
    r, t_render = timed(render_midi, midi, wav, Path(cfg.render.soundfont), rate, cfg.render.gain)
    _, t_master = timed(master_file, wav, mastered, cfg.master, 1, cfg.render.sample_rate)
    return r["seconds"], [t_render, t_master]


def stems_seconds(midi: Path, rendered: Path, cfg, rate: int) -> float:
    """The faster of two rounds of what the stems stage does for the track with export.stems on:
    split it into parts, render each alone, add the texture, write 24-bit WAVs."""
    from lofi_pipeline.audio.audio_io import read_wav

    def stems() -> None:
        data, samples = midi.read_bytes(), read_wav(rendered)[0].shape[1]
        part_files = {p.name: part_midi(data, p.channel) for p in channel_parts(data)}
        audio = render_stems(part_files, Path(cfg.render.soundfont), rate, cfg.render.gain, samples,
                             cfg.render.sample_rate)
        audio["texture"] = texture_stem(samples, rate, cfg.render.sample_rate, cfg.master, 1)
        gain = headroom_gain(audio)
        for stem in audio.values():
            pcm24_wav_bytes(stem * gain, cfg.render.sample_rate)
    return min(timed(stems)[1] for _ in range(2))


def timed(fn, *a):
    t = time.perf_counter()
    out = fn(*a)
    return out, time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracks", type=int, default=4, help="tracks for the parallel measurement")
    args = ap.parse_args()
    cfg = load_config()
    folder = Path(tempfile.mkdtemp(prefix="bench_audio_"))
    try:
        _, _, info = arrange_track(progression(40), 12, 40, 7, cfg.arrange, "bench")
        bars = round(40 * 120.0 / info["seconds"])  # as many bars as last 2 minutes at the drawn tempo
        data, _, info = arrange_track(progression(bars), 12, bars, 7, cfg.arrange, "bench")
        midi = folder / "bench.mid"
        midi.write_bytes(data)
        print(f"track: {info['seconds']:.1f} s, {info['tempo_bpm']} BPM, {sum(info['notes_per_part'].values())} notes; "
              f"{os.cpu_count()} CPU cores")
        output_rate = cfg.render.sample_rate
        half = render_rate(output_rate, cfg.master.lowpass_hz)
        cores = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(cores)})
        rows = {}
        for _ in range(2):  # each step's faster of two rounds: the first also warms libraries up
            for label, rate in ((f"full rate ({output_rate} Hz, the baseline)", output_rate),
                                (f"render.render_rate ({half} Hz, what the pipeline runs)", half)):
                wav, mastered, mp3 = folder / f"{rate}.wav", folder / f"{rate}.m.wav", folder / f"{rate}.mp3"
                seconds, times = chain(midi, wav, mastered, mp3, cfg, rate)
                _, t_export = timed(write_mp3, mastered, mp3, cfg.export.bitrate_kbps)
                best = rows.get(label, (seconds, [float("inf")] * 3))[1]
                rows[label] = (seconds, [min(a, b) for a, b in zip(best, times + [t_export])])
        t_stems = stems_seconds(midi, folder / f"{half}.wav", cfg, half)  # still on one core
        os.sched_setaffinity(0, cores)
        print(f"one core (pinned to CPU {min(cores)}), master.preset = {cfg.master.preset} "
              f"(low-pass {cfg.master.lowpass_hz:g} Hz); real-time factors:")
        print(f"{'chain':<52} {'render':>8} {'master':>8} {'export':>8} {'all three':>10}")
        for label, (seconds, times) in rows.items():
            print(f"{label:<52} " + " ".join(f"{seconds / t:7.1f}x" for t in times)
                  + f" {seconds / sum(times):9.1f}x")
        (base_s, base_t), (seconds, times) = rows.values()
        print(f"{'ratio (pipeline / baseline), all three':<52} {(seconds / sum(times)) / (base_s / sum(base_t)):37.2f}x"
              "   target: 40x real time on one core")
        print(f"{'stems (export.stems = true), added':<52} {seconds / t_stems:7.1f}x real time: "
              f"{t_stems:.2f} s a track, {t_stems / sum(times):.2f}x the chain's {sum(times):.2f} s")
        wav, mastered = folder / f"{output_rate}.wav", folder / f"{output_rate}.m.wav"
        if shutil.which("ffmpeg"):
            try:
                from pydub import AudioSegment
                t = time.perf_counter()
                AudioSegment.from_wav(str(wav)).export(str(folder / "p.mp3"), format="mp3", bitrate="192k")
                t_pydub = time.perf_counter() - t
                print(f"export with pydub + ffmpeg: {seconds / t_pydub:.1f}x real time, "
                      f"pedalboard's LAME is {t_pydub / times[2]:.1f}x faster")
            except ImportError:
                print("pydub not installed (pip install -e '.[bench]'): skipping the ffmpeg comparison")
        jobs = []
        for i in range(args.tracks):
            copy = folder / f"t{i}.mid"
            shutil.copyfile(midi, copy)
            jobs.append((copy, folder, cfg))
        t = time.perf_counter()
        produced = sum(one_track(j) for j in jobs)
        t_serial = time.perf_counter() - t
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(2, mp_context=ctx) as pool:
            list(pool.map(one_track, jobs[:1]))  # start the workers before timing
            t = time.perf_counter()
            produced_par = sum(pool.map(one_track, jobs))
            t_par = time.perf_counter() - t
        print(f"{args.tracks} tracks, 1 process (unpinned)   {produced / t_serial:7.1f}x real time")
        print(f"{args.tracks} tracks, 2 processes             {produced_par / t_par:7.1f}x real time "
              f"({t_serial / t_par:.2f}x the single process)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
