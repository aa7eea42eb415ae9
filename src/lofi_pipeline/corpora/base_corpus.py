"""The base corpus: what the shipped base ensemble is pre-trained on, built from music21's
bundled corpus (public domain, offline), with nothing the default set holds.

The default set (dataset.py) is Bach's chorales and the corpus's roman-numeral analyses. The
base takes other collections: fiddle and folk tunes (Ryan's Mammoth Collection, O'Neill's 1850,
Aird's Airs, the Essen folk songs, music21's miscellaneous folk: melodies in 2/4, 3/4, 4/4,
6/8, 9/8), a few songs and rags (Joplin, J. R. Johnson, Liliuokalani, the lead sheets), and
Renaissance polyphony to learn chords from (Palestrina's masses, Josquin, Ciconia, Lusitano).
Left out: Bach and Monteverdi (the default set analyses their works), the classical quartets
and the Trecento (a movement takes minutes to convert, and there is harmony enough without
them), and every piece, in any collection, that carries one of the default set's tunes
(tunes.py: a chorale's melody is also an Essen folk song). No archive an evaluation scores is
in it, so the base never saw any of their test pieces. Each collection gives at most
`per_collection` pieces, evenly spaced through it, so the folk songs do not drown the rest; a
source that cannot be converted is counted and left out.
"""
from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

from tqdm import tqdm

from ..core import atomic
from ..core.parallel import process_map
from .midi_zip import score_midi_bytes, write_midi_zip
from .tunes import TuneIndex

COLLECTIONS = ("airdsAirs", "essenFolksong", "miscFolk", "oneills1850", "ryansMammoth", "joplin", "johnson_j_r",
               "liliuokalani", "leadSheet", "palestrina", "josquin", "ciconia", "lusitano")


def _relative(path: str, root: Path) -> str:
    return Path(path).relative_to(root).as_posix()


def evenly(items: list, at_most: int) -> list:
    """At most `at_most` of `items`, evenly spaced through them."""
    step = max(1, -(-len(items) // at_most))
    return items[::step][:at_most]


def base_sources(per_collection: int = 800) -> list[str]:
    """Corpus files for the base, sorted; one file per work where the corpus has two formats,
    at most `per_collection` files per collection."""
    from music21 import common, corpus
    root = Path(common.getCorpusFilePath())
    every = sorted(_relative(p, root) for p in corpus.getCorePaths())
    analysed = {p.rsplit(".", 1)[0] for p in every if p.endswith(".rntxt")}
    works: dict[str, str] = {}
    for rel in every:
        stem = rel.rsplit(".", 1)[0]
        if rel.split("/")[0] not in COLLECTIONS or rel.endswith(".rntxt") or stem in analysed or stem.endswith("_old"):
            continue
        works.setdefault(stem, rel)  # sorted: .krn before .mxl, so one format per work
    by_collection: dict[str, list[str]] = defaultdict(list)
    for rel in sorted(works.values()):
        by_collection[rel.split("/")[0]].append(rel)
    return [str(root / rel) for name in sorted(by_collection) for rel in evenly(by_collection[name], per_collection)]


def source_to_midi_entries(source: str) -> tuple[str, list[tuple[str, bytes]], list[str]]:
    """(source, [(entry name, midi bytes)], errors): a tune book gives one entry per tune."""
    from music21 import corpus
    stem = source.replace("\\", "/").split("/corpus/")[-1].rsplit(".", 1)[0].replace("/", "__")
    try:
        parsed = corpus.parse(source)
    except Exception as exc:  # one unreadable corpus file must not stop the build
        return source, [], [f"{stem}: {type(exc).__name__}: {exc}"]
    scores = list(parsed.scores) if "Opus" in parsed.classes else [parsed]
    entries, errors = [], []
    for n, score in enumerate(scores):
        name = f"{stem}.mid" if len(scores) == 1 else f"{stem}__{n:04d}.mid"
        try:
            entries.append((name, score_midi_bytes(score)))
        except Exception as exc:
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
    return source, entries, errors


def build_base_corpus(out_zip: Path, held_out: dict[str, bytes], workers: int, per_collection: int = 800,
                      sources: list[str] | None = None) -> dict:
    """Write the base corpus to `out_zip` (entries in a fixed order with fixed times: the same
    corpus gives the same bytes) and a manifest beside it, leaving out every piece that carries
    a tune of `held_out` (the default set's pieces, by name), before each collection's share
    is chosen. `sources`: corpus files (default: base_sources)."""
    start = time.perf_counter()
    index = TuneIndex(held_out)
    sources = base_sources(per_collection) if sources is None else sources
    entries_by_collection: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
    failed: list[str] = []
    dropped: dict[str, str] = {}  # entry -> the held-out tune it carries
    # A tune book takes a minute, a mass a second: a wide window keeps both workers busy.
    converted = process_map(source_to_midi_entries, sources, workers, in_flight=64)
    for _, entries, errors in tqdm(converted, total=len(sources), desc="base corpus", unit="file", disable=None):
        for name, data in entries:
            if tune := index.match(data):
                dropped[name] = f"{tune[0]} ({tune[1]:.0%} aligned)"
            else:
                entries_by_collection[name.split("__", 1)[0]].append((name, data))
        failed.extend(errors)
    kept: list[tuple[str, bytes]] = []
    counts = {}
    for name in sorted(entries_by_collection):
        items = sorted(entries_by_collection[name])
        chosen = evenly(items, per_collection)  # a tune book gives many pieces per file
        counts[name] = {"available": len(items), "kept": len(chosen)}
        kept.extend(chosen)
    write_midi_zip(out_zip, kept)
    manifest = {"archive": out_zip.name, "pieces": len(kept), "collections": counts, "failed": len(failed),
                "failed_examples": failed[:20], "collections_used": list(COLLECTIONS),
                "left_out": "every roman-numeral analysis and the works analysed (the default set's sources)",
                "held_out_tunes": len(index), "dropped_as_held_out_tunes": len(dropped),
                "dropped": dict(sorted(dropped.items())),
                "origin": "music21 corpus (public domain)",
                "seconds": round(time.perf_counter() - start, 1)}
    atomic.write_json(out_zip.with_suffix(".json"), manifest)
    return manifest
