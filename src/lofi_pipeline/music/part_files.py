"""A MIDI file split into its parts: which channels play notes and what each is called, one
file per channel holding only that part (what a DAW imports, and what FluidSynth renders a
stem from), and the tempo and key a file declares. Works on any Standard MIDI File, type 0 or
1, not only the arranged ones."""
from __future__ import annotations

import io
import re
from dataclasses import dataclass

DRUM_CHANNEL = 9
DEFAULT_TEMPO_BPM = 120.0  # what a MIDI file without a tempo event plays at


@dataclass(frozen=True)
class PartChannel:
    """A channel that plays notes: its name as a file-name word ("bass", "drums", "ch5") and notes."""
    channel: int
    name: str
    notes: int


def _midi(data: bytes):
    import mido
    return mido.MidiFile(file=io.BytesIO(data))


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
    """The file with only `channel`'s part: every other channel's messages removed, and every
    track then left without a channel message dropped, except the first (the conductor: tempo,
    metre, key, markers, and the end that sets the file's length). Timing is kept to the tick."""
    import mido
    source = _midi(data)
    out = mido.MidiFile(type=source.type, ticks_per_beat=source.ticks_per_beat)
    for t, track in enumerate(source.tracks):
        kept, now, last, has_part = mido.MidiTrack(), 0, 0, False
        for m in track:
            now += m.time
            if hasattr(m, "channel") and m.channel != channel:
                continue
            has_part |= hasattr(m, "channel")
            kept.append(m.copy(time=now - last))
            last = now
        if t == 0 or has_part:
            out.tracks.append(kept)
    buffer = io.BytesIO()
    out.save(file=buffer)
    return buffer.getvalue()


def tempo_and_key(data: bytes) -> tuple[float, str | None]:
    """The first tempo (BPM; 120 when the file has none) and key signature ("Dbm"; None) it declares."""
    import mido
    tempo, key = None, None
    for track in _midi(data).tracks:
        for m in track:
            if m.type == "set_tempo" and tempo is None:
                tempo = mido.tempo2bpm(m.tempo)
            elif m.type == "key_signature" and key is None:
                key = m.key
    return (tempo if tempo is not None else DEFAULT_TEMPO_BPM), key
