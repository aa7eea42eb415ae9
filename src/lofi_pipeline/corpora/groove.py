"""The Groove MIDI Dataset (Gillick, Roberts, Engel, Eck and Bamman, "Learning to Groove with
Inverse Sequence Transformations", ICML 2019; CC BY 4.0): about 1,150 MIDI files, 13.6 hours of
human drumming on a Roland TD-11, with style, tempo, beat or fill and a train/validation/test
split in its info.csv. Vendored as dataset/groove/groove_midi.zip (its LICENSE beside it).

Read here as drum-format pieces (music/drum_format.py), each with its split, style, tempo and
role (a beat's bars are grooves, a fill's bars fills); what is dropped is counted with a reason.
"""
from __future__ import annotations

import csv
import io
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..music.drum_format import DrumBar, DrumVocabulary, drums_from_raw
from ..music.midi_io import UnusableMidi, read_midi

VENDORED = Path("dataset/groove/groove_midi.zip")
# The styles lo-fi drumming draws on (GMD's style labels, before any "/"): the base drum model
# specialises on them, tracks start from their grooves, and its realism is judged against them.
LOFI_STYLES = ("hiphop", "soul", "funk", "jazz")
SPLITS = {"train": "train", "validation": "dev", "test": "test"}


@dataclass
class GroovePiece:
    name: str
    split: str  # train, dev or test
    style: str
    beat_type: str  # beat or fill
    bpm: float
    metre: str
    bars: list[DrumBar]

    @property
    def lofi_style(self) -> bool:
        return self.style.split("/")[0] in LOFI_STYLES

    def ids(self, vocab: DrumVocabulary) -> np.ndarray:
        return vocab.encode(self.bars, self.metre, self.bpm)


def read_groove(zip_path: Path, min_bpm: float = 0, max_bpm: float = 1e9,
                metres: tuple[str, ...] = ("4/4",)) -> tuple[list[GroovePiece], Counter]:
    """The pieces of the zip whose tempo and metre are in range, and what was left out, by reason."""
    counts: Counter = Counter()
    pieces = []
    with zipfile.ZipFile(zip_path) as z:
        prefix = next(n for n in z.namelist() if n.endswith("info.csv"))[:-len("info.csv")]
        for row in csv.DictReader(io.TextIOWrapper(z.open(prefix + "info.csv"), "utf-8")):
            bpm = float(row["bpm"])
            if not min_bpm <= bpm <= max_bpm:
                counts["tempo outside the range"] += 1
                continue
            try:
                raw = read_midi(z.read(prefix + row["midi_filename"]))
            except (KeyError, UnusableMidi) as exc:
                counts[f"unreadable ({type(exc).__name__})"] += 1
                continue
            role = "fill" if row["beat_type"] == "fill" else "groove"
            bars, metre, _ = drums_from_raw(raw, role, counts)
            if metre not in metres:
                counts["metre not used"] += 1
                continue
            if not any(b.hits for b in bars):
                counts["no drum hits"] += 1
                continue
            pieces.append(GroovePiece(row["midi_filename"], SPLITS[row["split"]], row["style"], row["beat_type"],
                                      bpm, metre, bars))
    return pieces, counts
