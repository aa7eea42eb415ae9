"""music21 scores as MIDI bytes, and MIDI entries as a zip that is the same bytes for the same
entries (fixed order, fixed times): what the default set and the base corpus are written with."""
from __future__ import annotations

import zipfile
from pathlib import Path

from ..core import atomic

ENTRY_TIME = (2020, 1, 1, 0, 0, 0)


def score_midi_bytes(score) -> bytes:
    """A music21 score (or part) as a standard MIDI file."""
    from music21 import midi
    return midi.translate.music21ObjectToMidiFile(score).writestr()


def write_midi_zip(out_zip: Path, entries: list[tuple[str, bytes]]) -> None:
    """`entries` (name, bytes), in their order, atomically, with fixed times."""
    with atomic.atomic_path(out_zip) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=ENTRY_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
