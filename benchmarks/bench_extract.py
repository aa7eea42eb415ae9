"""Files per second: the extraction `lofi extract` runs against music21's full parse.

For each archive, in one run, both on the same files and the same two worker processes:
  music21    the parse the pipeline used before: music21's MIDI-to-stream translation plus its
             key analysis (Stream.analyze("key")); slow, so timed on a sample of files
  extract    what the extract stage runs per file: symusic reads the notes, then onset
             clustering, grid and phase, pedal, melody/harmony/bass/drums, chord recognition
             and key analysis (music21's key profiles) on the notes already read
The ratio is extract's rate over music21's on the sample; extract's rate on the whole archive
is printed beside it. Each reader gets its own pool of warm workers (imports done before the
clock starts): music21's parse leaves a heap that would slow whatever ran after it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import zipfile
from multiprocessing import get_context
from pathlib import Path

from lofi_pipeline.core.parallel import ONE_THREAD
from lofi_pipeline.music.midi_io import key_profiles
from lofi_pipeline.music.performance import ReadingParams
from lofi_pipeline.stages.extract import extract_file

PROFILES = None


def _warm(_):
    global PROFILES
    PROFILES = key_profiles()
    import music21.midi.translate  # noqa: F401  (both readers' imports happen before the clock)
    import symusic  # noqa: F401
    return os.getpid()


def new_extraction(item) -> bool:
    name, data = item
    return "piece" in extract_file(data, name, "bench", PROFILES, ReadingParams())


def music21_parse(item) -> bool:
    from music21 import midi as m21midi
    name, data = item
    try:
        mf = m21midi.MidiFile()
        mf.readstr(data)
        score = m21midi.translate.midiFileToStream(mf, quantizePost=False)
        score.analyze("key")
        return True
    except Exception:  # noqa: BLE001  (a file music21 cannot read counts as read: it took its time)
        return False


def rate(pool, fn, items) -> tuple[float, int]:
    start = time.perf_counter()
    ok = sum(pool.imap(fn, items, chunksize=max(1, len(items) // 32)))
    return len(items) / (time.perf_counter() - start), ok


def midi_entries(path: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as zf:
        return [(n, zf.read(n)) for n in sorted(zf.namelist()) if n.lower().endswith((".mid", ".midi"))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("archives", nargs="*", type=Path,
                    default=[Path("dataset/default.zip"), Path("../shared/data/pop909_first100.zip")])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sample", type=int, default=40, help="files music21 parses per archive (it is slow)")
    args = ap.parse_args()
    missing = [str(a) for a in args.archives if not a.is_file()]
    if missing:
        print(f"archive not found: {', '.join(missing)} (make dataset builds dataset/default.zip)", file=sys.stderr)
        return 1
    print(f"{args.workers} worker processes, {os.cpu_count()} CPU cores")
    print(f"{'archive':<24} {'files':>6} {'music21 files/s':>16} {'extract files/s':>16} {'ratio':>7} "
          f"{'extract, all files':>19}")
    os.environ.update({k: v for k, v in ONE_THREAD.items() if k not in os.environ})  # as process_map does

    def timed(fn, items) -> tuple[float, int]:
        with get_context("spawn").Pool(args.workers) as pool:
            pool.map(_warm, range(args.workers))
            return rate(pool, fn, items)
    for archive in args.archives:
        items = midi_entries(archive)
        step = max(1, len(items) // args.sample)
        sample = items[::step][:args.sample]
        whole, ok = timed(new_extraction, items)
        new, _ = timed(new_extraction, sample)
        base, _ = timed(music21_parse, sample)
        print(f"{archive.name:<24} {len(sample):>6} {base:>16.1f} {new:>16.1f} {new / base:>6.0f}x "
              f"{whole:>10.1f} ({ok}/{len(items)} read)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
