"""A MIDI file split into its parts: which channels play notes and what each is called, one
file per channel holding only that part (what a DAW imports, and what FluidSynth renders a
stem from), and the tempo and key a file declares. Works on any Standard MIDI File, type 0 or
1, not only the arranged ones."""
from __future__ import annotations

import io
import re
from dataclasses import dataclass

from .midi_io import DEFAULT_BPM

DRUM_CHANNEL = 9
# Meta events that place every part in time: a part's file keeps the tracks that hold them.
TIMING = {"set_tempo", "time_signature", "key_signature", "smpte_offset", "marker"}


@dataclass(frozen=True)
class PartChannel:
    """A channel that plays notes: its name as a file-name word ("bass", "drums", "ch5") and notes."""
    channel: int
    name: str
    notes: int


def _midi(data: bytes):
    """The parsed file; anything mido cannot read (a bad key signature among it) is a ValueError."""
    import mido
    try:
        return mido.MidiFile(file=io.BytesIO(data))
    except (OSError, EOFError, mido.KeySignatureError) as exc:
        raise ValueError(str(exc)) from None


def _word(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def channel_parts(data: bytes) -> list[PartChannel]:
    """The channels with notes, in channel order. A channel is named after its track when the
    track holds no other channel's notes (the arranged files: keys, lead, bass, drums), else
    "drums" on channel 10 and "chN" elsewhere; a repeated name gets "-2", "-3"."""
    counts: dict[int, int] = {}
    tracks_of: dict[int, set[int]] = {}
    names, channels_in = [], []
    for t, track in enumerate(_midi(data).tracks):
        names.append(next((m.name for m in track if m.type == "track_name"), ""))
        chans = set()
        for m in track:
            if m.type == "note_on" and m.velocity > 0:
                counts[m.channel] = counts.get(m.channel, 0) + 1
                tracks_of.setdefault(m.channel, set()).add(t)
                chans.add(m.channel)
        channels_in.append(chans)
    parts, taken = [], set()
    for ch in sorted(counts):
        homes = tracks_of[ch]
        own = len(homes) == 1 and channels_in[next(iter(homes))] == {ch} and _word(names[next(iter(homes))])
        name = own or ("drums" if ch == DRUM_CHANNEL else f"ch{ch + 1}")
        unique, n = name, 2
        while unique in taken:
            unique, n = f"{name}-{n}", n + 1
        taken.add(unique)
        parts.append(PartChannel(ch, unique, counts[ch]))
    return parts


def part_midi(data: bytes, channel: int) -> bytes:
    """The file with only `channel`'s part: every other channel's messages removed, then every
    track dropped that is left with neither a channel message nor a tempo, metre, key or marker,
    except the first (the conductor, whose end sets the file's length): so a file whose tempo map
    sits in a piano track keeps it in the bass's file too. Timing is kept to the tick."""
    import mido
    source = _midi(data)
    out = mido.MidiFile(type=source.type, ticks_per_beat=source.ticks_per_beat)
    for t, track in enumerate(source.tracks):
        kept, now, last, needed = mido.MidiTrack(), 0, 0, t == 0
        for m in track:
            now += m.time
            if hasattr(m, "channel") and m.channel != channel:
                continue
            needed |= hasattr(m, "channel") or m.type in TIMING
            kept.append(m.copy(time=now - last))
            last = now
        if needed:
            out.tracks.append(kept)
    buffer = io.BytesIO()
    out.save(file=buffer)
    return buffer.getvalue()


def tempo_and_key(data: bytes) -> tuple[float, str | None]:
    """The tempo (BPM; 120 when the file has none) and key signature ("Dbm"; None) it declares
    first in time (the earliest track breaking a tie)."""
    import mido
    tempos, keys = [], []
    for t, track in enumerate(_midi(data).tracks):
        now = 0
        for m in track:
            now += m.time
            if m.type == "set_tempo":
                tempos.append((now, t, mido.tempo2bpm(m.tempo)))
            elif m.type == "key_signature":
                keys.append((now, t, m.key))
    return (min(tempos)[2] if tempos else DEFAULT_BPM), (min(keys)[2] if keys else None)
