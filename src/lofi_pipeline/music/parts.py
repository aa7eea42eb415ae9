"""An arrangement's parts (an instrument each: channel, GM program, notes in beats) and the
MIDI file they make, written with mido for exact channels and tick-level timing."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Part:
    """One instrument of an arrangement: its MIDI channel and GM program, and its notes as
    (start_beats, duration_beats, pitch, velocity)."""
    name: str
    channel: int
    program: int
    notes: list = field(default_factory=list)
    performed: bool = False  # timing and velocities as played (a drum model's): swung, never jittered

    def add(self, start: float, duration: float, pitch: int, velocity: float) -> None:
        self.notes.append((float(start), float(duration), int(pitch), int(np.clip(velocity, 1, 127))))


WRITE_TICKS_PER_BEAT = 480
PANS = {0: 50, 1: 78, 2: 64, 9: 64}  # keys a little left, the lead right, bass and drums centred


def _meta_track(name: str, head: list, timed: list, kind: str, end_tick: int):
    """A track of meta events only: `head` at tick 0, then (beats, text) as `kind` events."""
    import mido
    track = mido.MidiTrack([mido.MetaMessage("track_name", name=name, time=0), *head])
    now = 0
    for beats, text in sorted(timed, key=lambda x: x[0]):
        tick = round(beats * WRITE_TICKS_PER_BEAT)
        track.append(mido.MetaMessage(kind, text=text, time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=max(0, end_tick - now)))
    return track


def write_parts(parts: list[Part], tempo_bpm: float, key: str, title: str, length_beats: float,
                metre: str = "4/4", chord_symbols: list = (), markers: list = ()) -> bytes:
    """A type-1 MIDI file's bytes, laid out as a DAW expects: a conductor track (title, tempo,
    metre, key signature, and a marker where each section starts), one track per part with its
    name, program and pan, and a "Chords" track of chord-symbol text events ("Am7") where each
    chord starts, so the progression shows without a note sounding. Written with mido for exact
    channels (drums on channel 10 with a kit chosen by program change) and tick-level timing."""
    import io

    import mido
    mf = mido.MidiFile(type=1, ticks_per_beat=WRITE_TICKS_PER_BEAT)
    numerator, denominator = (int(x) for x in metre.split("/"))
    end_tick = round(length_beats * WRITE_TICKS_PER_BEAT)
    mf.tracks.append(_meta_track(title, [
        mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm), time=0),
        mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator, time=0),
        mido.MetaMessage("key_signature", key=key, time=0)], markers, "marker", end_tick))
    for part in parts:
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=part.name, time=0))
        track.append(mido.Message("program_change", channel=part.channel, program=part.program, time=0))
        track.append(mido.Message("control_change", channel=part.channel, control=10,
                                  value=PANS.get(part.channel, 64), time=0))
        msgs = []
        for start, dur, pitch, vel in part.notes:
            on = round(start * WRITE_TICKS_PER_BEAT)
            off = max(on + 1, round((start + dur) * WRITE_TICKS_PER_BEAT))
            msgs.append((on, 1, pitch, vel))
            msgs.append((off, 0, pitch, 0))
        msgs.sort()
        now = 0
        for tick, is_on, pitch, vel in msgs:
            kind = "note_on" if is_on else "note_off"
            track.append(mido.Message(kind, channel=part.channel, note=pitch, velocity=vel, time=tick - now))
            now = tick
        track.append(mido.MetaMessage("end_of_track", time=max(0, end_tick - now)))
        mf.tracks.append(track)
    if chord_symbols:
        mf.tracks.append(_meta_track("Chords", [], chord_symbols, "text", end_tick))
    buffer = io.BytesIO()
    mf.save(file=buffer)
    return buffer.getvalue()
