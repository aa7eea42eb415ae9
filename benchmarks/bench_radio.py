"""The radio as `lofi serve` runs it: minutes of audio made per minute of wall time (the
real-time factor) and the memory of the server's whole process tree (the server, its workers
and their children) over N tracks, against the baseline of one cold `lofi export` process per
track (what the radio did before it had a long-lived worker), measured in the same run.

The bench starts `lofi serve` on a free port, listens to the radio (an open event stream) and
marks each new track as playing the moment it is made, as if a listener skipped to it, so it
measures how fast tracks come, not how long they play. Above 1x a listener never waits after
the first track.

    .venv/bin/python benchmarks/bench_radio.py [--tracks 20] [--cold 3] [--default-outputs outputs]

`--default-outputs` names a folder where `lofi all` has trained the default models (make all);
without it only the quick profile is measured (trained here on twelve little songs).
"""
from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from lofi_pipeline.stages import catalog

ROOT = Path(__file__).resolve().parents[1]


def tree_rss_mib(pid: int) -> float:
    """Resident memory of `pid` and all its descendants, in MiB."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as r:
        return json.loads(r.read())


def listen(url: str) -> None:
    """An open event stream: the radio makes tracks while one is open (it ends with the server)."""
    with contextlib.suppress(OSError, http.client.HTTPException):
        urllib.request.urlopen(url).read()


@contextlib.contextmanager
def serving(outputs: Path, run_args: list[str]):
    """`lofi serve` on a free port, answering: (its URL, its process); stopped on the way out."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "lofi_pipeline", "serve", "--port", str(port),
                               "--outputs", str(outputs), *run_args], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                call(f"{url}/api/state")
                break
            except OSError:
                if server.poll() is not None:
                    raise SystemExit("lofi serve did not start")
                time.sleep(0.2)
        yield url, server
    finally:
        server.terminate()
        server.wait(60)


def served_radio(outputs: Path, run_args: list[str], tracks: int) -> dict:
    """N radio tracks from `lofi serve`: wall time, audio, and the process tree's memory."""
    with serving(outputs, run_args) as (url, server):
        rss_start = tree_rss_mib(server.pid)
        start = time.perf_counter()
        call(f"{url}/api/radio/start", {})
        listener = threading.Thread(target=listen, args=(f"{url}/api/radio/events",), daemon=True)
        listener.start()
        memory, made = {}, 0
        while made < tracks:
            state = call(f"{url}/api/radio")
            if state.get("error"):
                raise SystemExit(f"the radio failed: {state['error']}")
            if state["made"] > made:
                made = state["made"]
                call(f"{url}/api/radio/playing", {"index": state["queue"][-1]["index"]})
                memory[made] = tree_rss_mib(server.pid)
                print(f"  track {made}: {time.perf_counter() - start:.1f} s, tree {memory[made]:.0f} MiB", flush=True)
            time.sleep(0.2)
        wall = time.perf_counter() - start
        audio = sum(t["seconds"] for t in call(f"{url}/api/radio")["queue"][-min(8, tracks):])
        audio *= tracks / min(8, tracks)  # the queue lists the last 8; every track is about as long
        on_disk = sum(1 for _ in (outputs / "radio" / "tracks").glob("*.mp3"))
    return {"wall_s": wall, "audio_s": audio, "rss_start": rss_start, "rss_2": memory[min(2, tracks)],
            "rss_n": memory[tracks], "rss_max": max(memory.values()), "on_disk": on_disk}


def cold_tracks(outputs: Path, run_args: list[str], tracks: int) -> dict:
    """The baseline: one `lofi export` process per radio track (Python and TensorFlow started
    every time), in a copy of the trained folder."""
    with tempfile.TemporaryDirectory(prefix="bench_radio_cold_") as tmp:
        folder = Path(tmp)
        for stage in ("intake", "extract", "encode", "train"):
            shutil.copytree(outputs / stage, folder / stage)
        start, audio = time.perf_counter(), 0.0
        for n in range(1, tracks + 1):
            subprocess.run([sys.executable, "-m", "lofi_pipeline", "export", *run_args, "--outputs", str(folder),
                            "--set", "generate.tracks=1", "--set", f"generate.first_track={n}",
                            "--set", "generate.seed_stream=\"radio\""], cwd=ROOT, check=True, capture_output=True)
            audio += catalog.exports.read(folder / "export")[0].seconds
        return {"wall_s": time.perf_counter() - start, "audio_s": audio}


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
    ap.add_argument("--cold", type=int, default=3, help="baseline tracks, one cold process each")
    ap.add_argument("--default-outputs", type=Path, help="outputs of a default `lofi all` (trained models)")
    args = ap.parse_args()
    print(f"{os.cpu_count()} CPU cores; the radio of `lofi serve` makes {args.tracks} tracks a row, "
          f"the baseline {args.cold} (one cold `lofi export` each)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_radio_") as tmp:
        outputs, run_args = quick_outputs(Path(tmp))
        rows.append(("quick profile", cold_tracks(outputs, run_args, args.cold),
                     served_radio(outputs, run_args, args.tracks)))
    if args.default_outputs:
        outputs = args.default_outputs.resolve()
        rows.append(("default settings", cold_tracks(outputs, [], args.cold), served_radio(outputs, [], args.tracks)))
    print(f"\n{'models':<17} {'baseline RTF':>12} {'served RTF':>10} {'ratio':>6} {'tree MiB: start':>15} "
          f"{'track 2':>8} {'track ' + str(args.tracks):>9} {'max':>6} {'MP3s on disk':>12}")
    for label, cold, served in rows:
        cold_rtf, served_rtf = cold["audio_s"] / cold["wall_s"], served["audio_s"] / served["wall_s"]
        print(f"{label:<17} {cold_rtf:11.1f}x {served_rtf:9.1f}x {served_rtf / cold_rtf:5.2f}x "
              f"{served['rss_start']:15.0f} {served['rss_2']:8.0f} {served['rss_n']:9.0f} {served['rss_max']:6.0f} "
              f"{served['on_disk']:12d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
