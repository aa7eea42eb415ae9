"""Build dataset/default.zip from music21's bundled corpus: no network involved.

The Bach chorales (350 distinct files) give four-part chord progressions; the corpus's roman-numeral
analyses (.rntxt) are realised as block chords, so the model also sees plain progressions. An
analysis is named after the chorale it analyses ("bach__bwv269__analysis.mid"), so the grouped
split keeps the two on one side.
"""
from __future__ import annotations

import time
import zipfile
from pathlib import Path

from tqdm import tqdm

from ..core import atomic
from ..core.config import default_of
from ..core.parallel import process_map
from .midi_zip import score_midi_bytes, write_midi_zip

DEFAULT_SET = default_of("run.archive")  # under the project root
ANALYSIS = "__analysis.mid"  # how an analysis's entry ends: block chords, no tune of its own


def corpus_sources() -> list[str]:
    from music21 import common, corpus
    chorales = [str(p) for p in corpus.chorales.Iterator(returnType="filename")]
    root = Path(common.getCorpusFilePath())
    analyses = [str(root / m.sourcePath) for m in corpus.search("romantext", "format")]
    return sorted(set(chorales)) + sorted(set(analyses))


def source_to_midi_bytes(source: str) -> tuple[str, bytes | None, str]:
    """(source, midi bytes or None, error)."""
    from music21 import corpus
    try:
        return source, score_midi_bytes(corpus.parse(source)), ""
    except Exception as exc:  # one unconvertible corpus file must not stop the build
        return source, None, f"{type(exc).__name__}: {exc}"


def analysed_work(source: str) -> str | None:
    """The BWV number a roman-numeral analysis names in its header, if any."""
    if not source.endswith(".rntxt"):
        return None
    try:
        head = Path(source).read_text(errors="replace")[:2000]
    except OSError:
        return None
    for line in head.splitlines():
        if line.startswith("BWV:"):
            return line.split(":", 1)[1].strip() or None
    return None


def entry_name(source: str) -> str:
    work = analysed_work(source)
    if work:
        return f"bach__bwv{work}{ANALYSIS}"
    stem = source.replace("\\", "/").split("/corpus/")[-1]
    for suffix in (".rntxt", ".mxl", ".xml", ".musicxml", ".krn"):
        stem = stem.removesuffix(suffix)
    return stem.replace("/", "__") + ".mid"


def build_default_dataset(out_zip: Path, workers: int, limit: int = 0) -> dict:
    start = time.perf_counter()
    sources = corpus_sources()
    if limit:
        sources = sources[:limit]
    entries, failed = [], []
    results = process_map(source_to_midi_bytes, sources, workers)
    for source, data, error in tqdm(results, total=len(sources), desc="dataset", unit="piece", disable=None):
        if data is None:
            failed.append({"source": entry_name(source), "error": error})
        else:
            entries.append((entry_name(source), data))
    write_midi_zip(out_zip, entries)
    written = [name for name, _ in entries]
    manifest = {"archive": out_zip.name, "pieces": len(written), "sources": written,
                "failed": failed, "origin": "music21 corpus (public domain)",
                "seconds": round(time.perf_counter() - start, 1)}
    atomic.write_json(out_zip.with_suffix(".json"), manifest)
    return manifest


def tunes(default_zip: Path) -> dict[str, bytes]:
    """The default set's pieces that carry a tune (every chorale; not the analyses' block chords)."""
    with zipfile.ZipFile(default_zip) as zf:
        return {n: zf.read(n) for n in sorted(zf.namelist()) if n.endswith(".mid") and not n.endswith(ANALYSIS)}
