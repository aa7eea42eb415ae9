"""Each track's record and MIDI file, for the stages after arrange that read MIDI: the arranged
files, or the files `--midi` gives with what they declare. Its own module, not the catalog's,
so that only those stages depend on reading a file's tempo and key."""
from __future__ import annotations

from pathlib import Path

from ..core.errors import StageError
from ..music.part_files import tempo_and_key
from .catalog import TrackRecord, given_midi_files, midi_name, tracks


def given_midi_records(path: Path) -> list[tuple[TrackRecord, Path]]:
    """A record for each file `--midi PATH` names (what its name, tempo and key signature tell), with the file."""
    records = []
    for i, f in enumerate(given_midi_files(path), 1):
        try:
            tempo, key = tempo_and_key(f.read_bytes())
        except OSError as exc:
            raise StageError(f"{f}: cannot read the MIDI file ({exc.strerror})") from None
        except ValueError as exc:
            raise StageError(f"{f}: not a readable MIDI file ({exc})") from None
        records.append((TrackRecord(index=i, stem=f.stem, title=f.stem, key=key, tempo_bpm=round(tempo)), f))
    return records


def track_midi_files(given: Path | None, arranged: Path | None) -> list[tuple[TrackRecord, Path]]:
    """Each track's record and MIDI file: the files `--midi` gives, else the arranged ones."""
    if given is not None:
        return given_midi_records(given)
    return [(r, arranged / midi_name(r)) for r in tracks.read(arranged)]
