"""A tweak in `lofi serve` as a listener meets it: the seconds from Apply (or a track's "New
take" button) until the changed track playing can be heard (its preview: `lofi preview`,
made first on the run's long-lived worker), against the baseline of the whole revision
being done (what a listener waited for before there were previews), measured in the same
run, on the same server.

The bench serves a copy of a folder where `lofi all` has run (hard links: nothing of it is
changed), starts a take (all cached), then applies each change in turn with track 2 playing.

    .venv/bin/python benchmarks/bench_tweak.py --outputs outputs [--repeat 2]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench_radio import call, serving

CHANGES = [  # (what the listener does, the key, a value for each go); None: the track's "New take" button
    ("master: hiss_db (re-master)", "master.hiss_db", [-40, -60]),
    ("master: lowpass_hz (render too)", "master.lowpass_hz", [4000, 7000]),
    ("master: preset", "master.preset", ["clean", "dusty"]),
    ("new take of track 2", None, [2, 2]),
    ("arrange: keys_program", "arrange.keys_program", [0, 5]),
]


def wait_run(url: str, number: int, track: int) -> tuple[float | None, float]:
    """(seconds until track `track`'s preview is there, seconds until the run has ended) of run `number`."""
    start, preview = time.perf_counter(), None
    while True:
        run = call(f"{url}/api/state")["run"]
        if run["number"] == number:
            if preview is None and str(track) in run["previews"]:
                preview = time.perf_counter() - start
            if run["status"] != "running":
                if run["status"] != "done":
                    raise SystemExit(f"the run {run['status']}: {run['error']}")
                return preview, time.perf_counter() - start
        time.sleep(0.05)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--outputs", type=Path, required=True, help="outputs of a default `lofi all`")
    ap.add_argument("--repeat", type=int, default=2, choices=(1, 2), help="times each change is applied")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_tweak_") as tmp:
        outputs = Path(tmp) / "outputs"
        shutil.copytree(args.outputs.resolve(), outputs, symlinks=True, copy_function=os.link,
                        ignore=shutil.ignore_patterns(".lock", "takes", "radio", "preview"))
        with serving(outputs, []) as (url, _):
            number = call(f"{url}/api/state")["run"]["number"] + 1
            call(f"{url}/api/run", {"profile": "default"})
            wait_run(url, number, 0)
            print(f"{os.cpu_count()} CPU cores; a take of {args.outputs} on screen, track 2 playing")
            rows = []
            for label, key, values in CHANGES:
                for n, value in enumerate(values[:args.repeat]):
                    number += 1
                    if key is None:
                        call(f"{url}/api/retake", {"index": value})
                    else:
                        call(f"{url}/api/run", {"take": "current", "tweaks": {key: value}, "playing": 2})
                    preview, whole = wait_run(url, number, 2)
                    rows.append((label if n == 0 else "  again", preview, whole))
                    print(f"  {rows[-1][0]}: heard after {preview or 0:.1f} s, the whole take after {whole:.1f} s",
                          flush=True)
    print(f"\n{'change (track 2 playing)':<32} {'heard after':>11} {'take done':>10} {'ratio':>6}")
    for label, preview, whole in rows:
        heard = f"{preview:10.1f}s" if preview is not None else f"{'(none)':>11}"
        ratio = f"{whole / preview:5.1f}x" if preview else f"{'-':>6}"
        print(f"{label:<32} {heard} {whole:9.1f}s {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
