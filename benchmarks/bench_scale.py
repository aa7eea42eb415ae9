"""Local processes against a Ray cluster, and a long playlist through the cluster.

Runs itself inside the same two-node Ray cluster the tests start (a head and one worker
node on this machine, one logical CPU each, in a network namespace of its own, token
authentication on; see tests/helpers.py), so both executors get two CPUs:
  overhead   no-op jobs through each executor: milliseconds of wall time per task
  extract    `lofi extract` on the default set, a fresh per-file cache each time
             (local: two worker processes; ray: one task per file)
  audio      `lofi render master export` on N tracks (default 32) of the quick profile's
             model at full length (local: two workers per stage; ray: one task per track),
             and whether the two runs wrote the same bytes
  playlist   `lofi generate arrange render master export` for M tracks (default 100) through
             the cluster: wall time and the driver's peak memory (its resident set, from
             getrusage), against what M tracks' mastered audio would take held in memory
Every row is measured in this run; ratios are local time over Ray time (above 1: Ray faster).
Takes ~25 minutes on the 2-core VM; --tracks/--long-tracks/--bars make it shorter.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOG = Path("/tmp/lofi-bench-scale.log")
RAY = ["--set", "run.executor=ray", "--set", "run.ray_address=" + os.environ.get("RAY_ADDRESS", "")]


def _noop(job):
    return job


def lofi(*args: str) -> tuple[float, int]:
    """Run `lofi ARGS`; (wall seconds, the peak resident set of the driver and of any process
    it started and waited for, in MiB: Ray's workers are the cluster's, not counted)."""
    start = time.perf_counter()
    with open(LOG, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "lofi_pipeline", *args], cwd=ROOT, stdout=log, stderr=log)
        _, status, usage = os.wait4(proc.pid, 0)
    if status:
        sys.exit(f"lofi {' '.join(args)} failed:\n{LOG.read_text()[-3000:]}")
    return time.perf_counter() - start, usage.ru_maxrss // 1024


def stage_seconds(out: Path, stage: str) -> float:
    return json.loads((out / stage / "manifest.json").read_text())["timings"]["seconds"]


def outputs(out: Path, stage: str) -> dict:
    return json.loads((out / stage / "manifest.json").read_text())["outputs"]


def copy_run(src: Path, dst: Path) -> None:
    """A run's artifacts without its MP3s and playlist (export skips an MP3 already there)."""
    shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns("tracks", "playlist.m3u8"))


def overhead(jobs: int) -> dict[str, float]:
    from lofi_pipeline.core.parallel import Executor
    rows = {}
    for kind in ("local", "ray"):
        executor = Executor(kind, workers=2, ray_address=os.environ["RAY_ADDRESS"])
        list(executor.map(_noop, range(4)))  # workers (and the Ray connection) up before the clock
        start = time.perf_counter()
        assert list(executor.map(_noop, range(jobs))) == list(range(jobs))
        rows[kind] = 1000 * (time.perf_counter() - start) / jobs
    return rows


def inside(work: Path, tracks: int, long_tracks: int, bars: int) -> None:
    archive = ROOT / "dataset" / "default.zip"
    print(f"{'':<34}{'local':>10}{'ray':>10}{'local/ray':>11}")
    ms = overhead(200)
    print(f"{'no-op task, ms each (200 jobs)':<34}{ms['local']:>10.2f}{ms['ray']:>10.2f}"
          f"{ms['local'] / ms['ray']:>10.2f}x")

    files = {}
    for kind, extra in (("local", []), ("ray", RAY)):
        out = work / f"extract_{kind}"
        shutil.rmtree(out, ignore_errors=True)
        lofi("extract", "--archive", str(archive), "--outputs", str(out), *extra)
        files[kind] = stage_seconds(out, "extract")
    listing = json.loads((work / "extract_local" / "intake" / "files.json").read_text())["files"]
    same = outputs(work / "extract_local", "extract") == outputs(work / "extract_ray", "extract")
    added_ms = 1000 * (files["ray"] - files["local"]) / len(listing)
    print(f"{f'extract, {len(listing)} files, s':<34}{files['local']:>10.1f}{files['ray']:>10.1f}"
          f"{files['local'] / files['ray']:>10.2f}x   per task {added_ms:+.1f} ms, "
          f"same bytes: {'yes' if same else 'NO'}")

    local = work / "audio_local"
    shutil.rmtree(local, ignore_errors=True)
    # One thread per model: a node here has one CPU, and a member's or a batch's task asks for its threads.
    common = ["--profile", "quick", "--archive", str(archive), "--set", f"generate.tracks={tracks}",
              "--set", f"generate.bars={bars}", "--set", "train.threads=1"]
    lofi("all", *common, "--outputs", str(local))
    ray_out = work / "audio_ray"
    shutil.rmtree(ray_out, ignore_errors=True)
    copy_run(local, ray_out)
    lofi("render", "master", "export", "--force", *common, "--outputs", str(ray_out), *RAY)
    seconds = lambda out, s: stage_seconds(out, s)  # noqa: E731
    for stage in ("render", "master", "export"):
        a, b = seconds(local, stage), seconds(ray_out, stage)
        same = outputs(local, stage) == outputs(ray_out, stage)
        print(f"{f'{stage}, {tracks} tracks, s':<34}{a:>10.1f}{b:>10.1f}{a / b:>10.2f}x   per task "
              f"{1000 * (b - a) / tracks:+.0f} ms, same bytes: {'yes' if same else 'NO'}")
    total = [sum(seconds(o, s) for s in ("render", "master", "export")) for o in (local, ray_out)]
    audio_s = sum(r["seconds"] for r in json.loads((local / "master" / "masters.json").read_text())["masters"])
    print(f"{'render+master+export, s':<34}{total[0]:>10.1f}{total[1]:>10.1f}{total[0] / total[1]:>10.2f}x"
          f"   ({audio_s / 60:.0f} minutes of audio)")

    playlist = work / "playlist_ray"
    shutil.rmtree(playlist, ignore_errors=True)
    copy_run(local, playlist)
    for stage in ("generate", "arrange", "render", "master", "export"):
        shutil.rmtree(playlist / stage, ignore_errors=True)
    longer = [a.replace(f"generate.tracks={tracks}", f"generate.tracks={long_tracks}") for a in common]
    wall, peak_mib = lofi("generate", "arrange", "render", "master", "export", *longer, "--outputs", str(playlist),
                          *RAY)
    masters = json.loads((playlist / "master" / "masters.json").read_text())["masters"]
    held_mib = sum(m["seconds"] * m["sample_rate"] * 2 * 4 for m in masters) / 2**20
    steps = ", ".join(f"{s} {stage_seconds(playlist, s):.0f}" for s in ("generate", "arrange", "render", "master",
                                                                         "export"))
    print(f"\n{long_tracks} tracks of {bars} bars, generate -> export on Ray: {wall:.0f} s ({steps} s); "
          f"{sum(m['seconds'] for m in masters) / 60:.0f} minutes of audio, "
          f"{len(list((playlist / 'tracks').glob('*.mp3')))} MP3s")
    print(f"driver peak memory {peak_mib} MiB; the mastered audio held at once would be {held_mib:,.0f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracks", type=int, default=32, help="tracks for the local-vs-Ray audio rows")
    ap.add_argument("--long-tracks", type=int, default=100, help="tracks for the playlist run")
    ap.add_argument("--bars", type=int, default=52, help="bars per track")
    ap.add_argument("--work", type=Path, default=Path("/tmp/lofi-bench-scale"), help="scratch folder")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inside:
        return inside(args.work, args.tracks, args.long_tracks, args.bars)
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers import in_ray_cluster  # the cluster the tests start, one CPU per node
    args.work.mkdir(parents=True, exist_ok=True)
    inner = (f"{sys.executable} {Path(__file__).resolve()} --inside --work {args.work} --tracks {args.tracks} "
             f"--long-tracks {args.long_tracks} --bars {args.bars}")
    run = in_ray_cluster(inner, args.work, timeout=None, cpus_per_node=1, capture=False)
    sys.exit(run.returncode)


if __name__ == "__main__":
    main()
