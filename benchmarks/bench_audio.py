"""Real-time factors of render, master and export on a 2-minute arranged track.

Real-time factor = seconds of audio produced per wall-clock second. Baselines measured in
the same run: the three stages on one core for several tracks (against two worker processes),
and pydub + ffmpeg's MP3 encoder (against pedalboard's built-in LAME), when ffmpeg is present.
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

from lofi_pipeline.arrange import arrange_track
from lofi_pipeline.audio_io import read_wav
from lofi_pipeline.config import load_config
from lofi_pipeline.export import write_mp3
from lofi_pipeline.master import master_file
from lofi_pipeline.render import render_midi

# Rows of field tokens (shift, root, quality, pitch, duration, velocity): Cmaj7 Dm7 G7 C.
PROGRESSION = [("12", "0", "maj7", "76", "6", "2"), ("6", "-", "-", "74", "6", "2"), ("6", "-", "-", "72", "12", "2"),
               ("24", "2", "m7", "-", "-", "2"), ("12", "7", "7", "71", "4", "2"), ("4", "-", "-", "67", "4", "2"),
               ("8", "-", "-", "64", "4", "2"), ("24", "0", "maj", "-", "-", "2")]


def one_track(args) -> float:
    """Render, master and export one track; returns its audio seconds."""
    midi, folder, cfg = args
    wav, mastered, mp3 = folder / f"{midi.stem}.wav", folder / f"{midi.stem}.m.wav", folder / f"{midi.stem}.mp3"
    render_midi(midi, wav, Path(cfg.render.soundfont), cfg.render.sample_rate, cfg.render.gain)
    p = {k: v for k, v in cfg.section("master").items() if k != "workers"}
    master_file(wav, mastered, p, 1)
    return write_mp3(mastered, mp3, cfg.export.bitrate_kbps)


def timed(fn, *a):
    t = time.perf_counter()
    out = fn(*a)
    return out, time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracks", type=int, default=4, help="tracks for the parallel measurement")
    args = ap.parse_args()
    cfg = load_config("lofi.toml")
    folder = Path(tempfile.mkdtemp(prefix="bench_audio_"))
    try:
        mf, _, info = arrange_track(PROGRESSION * 40, 12, 40, 7, cfg.arrange, "bench")
        scale = 120.0 / info["seconds"]  # stretch the tempo so the track lasts 2 minutes
        mf, _, info = arrange_track(PROGRESSION * 40, 12, round(40 * scale), 7, cfg.arrange, "bench")
        midi = folder / "bench.mid"
        mf.save(midi)
        print(f"track: {info['seconds']:.1f} s, {info['tempo_bpm']} BPM, {sum(info['notes_per_part'].values())} notes; "
              f"{os.cpu_count()} CPU cores")
        wav, mastered, mp3 = folder / "b.wav", folder / "b.m.wav", folder / "b.mp3"
        r, t_render = timed(render_midi, midi, wav, Path(cfg.render.soundfont), 44100, cfg.render.gain)
        seconds = r["seconds"]
        p = {k: v for k, v in cfg.section("master").items() if k != "workers"}
        _, t_master = timed(master_file, wav, mastered, p, 1)
        _, t_export = timed(write_mp3, mastered, mp3, cfg.export.bitrate_kbps)
        total = t_render + t_master + t_export
        print(f"render  (FluidSynth)      {seconds / t_render:7.1f}x real time  ({t_render:.2f} s)")
        print(f"master  (lo-fi chain)     {seconds / t_master:7.1f}x real time  ({t_master:.2f} s)")
        print(f"export  (pedalboard LAME) {seconds / t_export:7.1f}x real time  ({t_export:.2f} s)")
        print(f"all three, one core       {seconds / total:7.1f}x real time  (target: 40x)")
        if shutil.which("ffmpeg"):
            try:
                from pydub import AudioSegment
                audio, sr = read_wav(mastered)
                t = time.perf_counter()
                AudioSegment.from_wav(str(wav)).export(str(folder / "p.mp3"), format="mp3", bitrate="192k")
                t_pydub = time.perf_counter() - t
                print(f"export  (pydub + ffmpeg)  {seconds / t_pydub:7.1f}x real time  "
                      f"-> pedalboard is {t_pydub / t_export:.1f}x faster")
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
        print(f"{args.tracks} tracks, 1 process       {produced / t_serial:7.1f}x real time")
        print(f"{args.tracks} tracks, 2 processes     {produced_par / t_par:7.1f}x real time "
              f"({t_serial / t_par:.2f}x the single process)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
