"""The radio's real-time factor and memory: minutes of audio it makes per minute of wall time,
with the quick profile's models and the default ones, and the resident memory of the process
that drives it (what `lofi serve` holds) after 2 tracks against after N.

The radio makes a track only while fewer than two wait unplayed; here every track counts as
played the moment it is made, as if a listener skipped to it, so the bench measures how fast
tracks come, not how long they play. Above 1x, a listener never waits after the first track.

    .venv/bin/python benchmarks/bench_radio.py [--tracks 20] [--default-outputs outputs]

`--default-outputs` names a folder where `lofi all` has trained the default models (make all);
without it only the quick profile is measured (trained here on twelve little songs).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lofi_pipeline.radio import Radio

ROOT = Path(__file__).resolve().parents[1]


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(outputs: Path, run_args: list[str], tracks: int) -> dict:
    radio = Radio(ROOT, outputs, run_args)
    radio.listening(+1)
    start = time.perf_counter()
    radio.start()
    marks = {}
    with radio.lock:
        while len(radio.queue) < tracks:
            radio.lock.wait_for(lambda: radio.error or len(radio.queue) > radio.played, 1800)
            if radio.error:
                raise SystemExit(f"the radio failed: {radio.error}")
            radio.played = len(radio.queue)  # as if a listener skipped to the newest track
            radio.lock.notify_all()
            if len(radio.queue) in (2, tracks):
                marks[len(radio.queue)] = rss_mib()
    wall = time.perf_counter() - start
    radio.stop()
    audio = sum(t["seconds"] for t in radio.queue[:tracks])
    return {"tracks": tracks, "audio_s": audio, "wall_s": wall, "rtf": audio / wall,
            "rss_2": marks.get(2), "rss_n": marks.get(tracks)}


def quick_outputs(folder: Path) -> tuple[Path, list[str]]:
    """Twelve little songs (the tests' fixture) trained with the quick profile."""
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers import quick_archive
    archive = quick_archive(folder)
    args = ["--archive", str(archive), "--profile", "quick"]
    subprocess.run([sys.executable, "-m", "lofi_pipeline", "train", *args, "--outputs", str(folder / "out")],
                   cwd=ROOT, check=True, capture_output=True)
    return folder / "out", args


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracks", type=int, default=20)
    ap.add_argument("--default-outputs", type=Path, help="outputs of a default `lofi all` (trained models)")
    args = ap.parse_args()
    print(f"{os.cpu_count()} CPU cores; every row makes {args.tracks} tracks, one `lofi export` each")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_radio_") as tmp:
        outputs, run_args = quick_outputs(Path(tmp))
        rows.append(("quick profile", measure(outputs, run_args, args.tracks)))
    if args.default_outputs:
        rows.append(("default settings", measure(args.default_outputs.resolve(), [], args.tracks)))
    print(f"{'models':<18} {'audio (s)':>10} {'wall (s)':>9} {'real-time factor':>17} {'RSS after 2':>12} "
          f"{'after ' + str(args.tracks):>10}")
    for label, r in rows:
        print(f"{label:<18} {r['audio_s']:10.1f} {r['wall_s']:9.1f} {r['rtf']:16.2f}x {r['rss_2']:10.1f} MiB "
              f"{r['rss_n']:6.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
