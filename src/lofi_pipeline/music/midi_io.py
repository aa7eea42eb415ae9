"""MIDI files in and out: the header check intake uses, three readers that give the same
RawScore, and the writer of arranged parts.

symusic (C++, the reader MidiTok builds on) reads a file in well under a millisecond; mido is
the fallback for files symusic rejects; music21 is the last resort (and the reference the
extraction benchmark compares against). Readers only read: what the notes mean (onsets,
pedal, melody, chords, key) is worked out in performance.py. music21's camelCase stays here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NOTE_COLUMNS = ("onset", "duration", "pitch", "velocity")  # onset and duration in ticks
PEDAL_DOWN = 64  # CC64 at or above this value holds the sustain pedal down


def midi_header_reason(data: bytes) -> str | None:
    """Why `data` is not a Standard MIDI File (or RIFF RMID), or None if it is one."""
    if not data:
        return "empty file: 0 bytes"
    if data[:4] == b"MThd":
        return None
    if data[:4] == b"RIFF" and data[8:12] == b"RMID":
        return None
    return "not a MIDI file: no MThd header"


class UnusableMidi(ValueError):
    """A file that parses but cannot be used, or does not parse; the message is the reason."""


@dataclass
class RawTrack:
    name: str
    program: int
    is_drum: bool
    notes: np.ndarray  # int64 rows of NOTE_COLUMNS
    pedals: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))  # (start, duration)


@dataclass
class RawScore:
    """A MIDI file as read: ticks per quarter note, tracks, and the tempo map."""
    ticks_per_beat: int
    tracks: list[RawTrack]
    tempos: np.ndarray  # rows of (tick, quarter notes per minute)
    time_signature: str = "4/4"
    reader: str = ""


def _notes_array(rows) -> np.ndarray:
    arr = np.array(rows, np.int64).reshape(-1, 4)
    return arr


def read_with_symusic(data: bytes) -> RawScore:
    from symusic import Score
    score = Score.from_midi(data)
    tracks = []
    for tr in score.tracks:
        n = tr.notes.numpy()
        notes = np.stack([n["time"], n["duration"], n["pitch"], n["velocity"]], axis=1).astype(np.int64) \
            if len(tr.notes) else np.zeros((0, 4), np.int64)
        p = tr.pedals.numpy()
        pedals = np.stack([p["time"], p["duration"]], axis=1).astype(np.int64) \
            if len(tr.pedals) else np.zeros((0, 2), np.int64)
        tracks.append(RawTrack(tr.name, int(tr.program), bool(tr.is_drum), notes, pedals))
    tempos = np.array([(t.time, t.qpm) for t in score.tempos], np.float64).reshape(-1, 2)
    ts = score.time_signatures
    sig = f"{ts[0].numerator}/{ts[0].denominator}" if len(ts) else "4/4"
    return RawScore(int(score.ticks_per_quarter), tracks, tempos, sig, "symusic")


def _pedal_spans(events: list[tuple[int, bool]], end: int) -> list[tuple[int, int]]:
    spans, down = [], None
    for tick, is_down in events:
        if is_down and down is None:
            down = tick
        elif not is_down and down is not None:
            spans.append((down, tick - down))
            down = None
    if down is not None:
        spans.append((down, max(0, end - down)))
    return spans


def read_with_mido(data: bytes) -> RawScore:
    import io

    import mido
    mf = mido.MidiFile(file=io.BytesIO(data), clip=True)
    if mf.type == 2:
        raise ValueError("type 2 (asynchronous) MIDI files are not supported")
    tempos, tracks, sig = [], [], None
    for track in mf.tracks:
        now, name = 0, ""
        # (channel) -> data; one RawTrack per channel used, as symusic does
        open_notes: dict[tuple[int, int], list] = {}
        notes: dict[int, list] = {}
        pedal: dict[int, list] = {}
        programs: dict[int, int] = {}
        for msg in track:
            now += msg.time
            if msg.type == "track_name":
                name = msg.name
            elif msg.type == "set_tempo":
                tempos.append((now, mido.tempo2bpm(msg.tempo) if msg.tempo else 0.0))
            elif msg.type == "time_signature" and sig is None:
                sig = f"{msg.numerator}/{msg.denominator}"
            elif msg.type == "program_change":
                programs[msg.channel] = msg.program
            elif msg.type == "control_change" and msg.control == 64:
                pedal.setdefault(msg.channel, []).append((now, msg.value >= PEDAL_DOWN))
            elif msg.type in ("note_on", "note_off"):
                key = (msg.channel, msg.note)
                if msg.type == "note_on" and msg.velocity > 0:
                    open_notes.setdefault(key, []).append((now, msg.velocity))
                elif open_notes.get(key):
                    start, vel = open_notes[key].pop(0)
                    notes.setdefault(msg.channel, []).append((start, now - start, msg.note, vel))
        for (ch, pitch), starts in open_notes.items():  # a note-on with no note-off ends with its track
            for start, vel in starts:
                notes.setdefault(ch, []).append((start, now - start, pitch, vel))
        for ch in sorted(notes):
            rows = _notes_array(sorted(notes[ch]))
            spans = np.array(_pedal_spans(pedal.get(ch, []), now), np.int64).reshape(-1, 2)
            tracks.append(RawTrack(name, programs.get(ch, 0), ch == 9, rows, spans))
    return RawScore(mf.ticks_per_beat, tracks, np.array(tempos, np.float64).reshape(-1, 2),
                    sig or "4/4", "mido")


def read_with_music21(data: bytes) -> RawScore:
    """music21's full parse (slow: seconds for a long file); onsets come back in its own ticks."""
    from music21 import chord, instrument, meter, note, percussion, tempo
    from music21 import midi as m21midi
    mf = m21midi.MidiFile()
    mf.readstr(data)
    score = m21midi.translate.midiFileToStream(mf, quantizePost=False)
    tpb = 960
    tracks = []
    for part in score.parts:
        inst = part.getInstrument(returnDefault=False)
        is_drum = isinstance(inst, instrument.UnpitchedPercussion) or (
            inst is not None and getattr(inst, "midiChannel", None) == 9)
        rows = []
        for el in part.stripTies().flatten().notes:
            onset, dur = round(float(el.offset) * tpb), max(1, round(float(el.quarterLength) * tpb))
            vel = el.volume.velocity if el.volume.velocity is not None else 80
            if isinstance(el, (note.Unpitched, percussion.PercussionChord)):
                members = list(getattr(el, "notes", ())) or [el]
                keys = [getattr(getattr(m, "storedInstrument", None), "percMapPitch", None) or 38 for m in members]
                rows += [(onset, dur, int(k), int(vel)) for k in keys]
            elif isinstance(el, (note.Note, chord.Chord)):
                rows += [(onset, dur, p.midi, int(vel)) for p in el.pitches]
        tracks.append(RawTrack(part.partName or "", int(getattr(inst, "midiProgram", None) or 0), is_drum,
                               _notes_array(sorted(rows))))
    flat = score.flatten()
    tempos = [(round(float(m.offset) * tpb), float(m.getQuarterBPM() or 0))
              for m in flat.getElementsByClass(tempo.MetronomeMark)]
    sigs = list(flat.getElementsByClass(meter.TimeSignature))
    return RawScore(tpb, tracks, np.array(tempos, np.float64).reshape(-1, 2),
                    sigs[0].ratioString if sigs else "4/4", "music21")


READERS = (("symusic", read_with_symusic), ("mido", read_with_mido), ("music21", read_with_music21))


def read_midi(data: bytes, readers=READERS) -> RawScore:
    """The first reader that accepts the file; UnusableMidi with every reader's reason if none does."""
    reason = midi_header_reason(data)
    if reason:
        raise UnusableMidi(reason)
    failures = []
    for name, read in readers:
        try:
            return read(data)
        except Exception as exc:  # readers raise many types on bad bytes
            failures.append(f"{name}: {type(exc).__name__}: {str(exc)[:80]}")
    raise UnusableMidi("unparseable: " + "; ".join(failures))


def key_profiles() -> tuple[np.ndarray, np.ndarray]:
    """music21's default key-finding weights (Aarden-Essen), major and minor, tonic first."""
    from music21.analysis import discrete
    ae = discrete.AardenEssen()
    return np.array(ae.getWeights("major"), float), np.array(ae.getWeights("minor"), float)


@dataclass
class Part:
    """One instrument of an arrangement: its MIDI channel and GM program, and its notes as
    (start_beats, duration_beats, pitch, velocity)."""
    name: str
    channel: int
    program: int
    notes: list = field(default_factory=list)

    def add(self, start: float, duration: float, pitch: int, velocity: float) -> None:
        self.notes.append((float(start), float(duration), int(pitch), int(np.clip(velocity, 1, 127))))


WRITE_TICKS_PER_BEAT = 480
PANS = {0: 50, 1: 78, 2: 64, 9: 64}  # keys a little left, the lead right, bass and drums centred


def write_parts(parts: list[Part], tempo_bpm: float, key: str, title: str, length_beats: float) -> bytes:
    """A type-1 MIDI file's bytes: a conductor track (title, tempo, 4/4, key signature) and one
    track per part with its program and pan, written with mido for exact channels (drums on
    channel 10 with a kit chosen by program change) and tick-level timing."""
    import io

    import mido
    mf = mido.MidiFile(type=1, ticks_per_beat=WRITE_TICKS_PER_BEAT)
    conductor = mido.MidiTrack()
    conductor.append(mido.MetaMessage("track_name", name=title, time=0))
    conductor.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm), time=0))
    conductor.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0))
    conductor.append(mido.MetaMessage("key_signature", key=key, time=0))
    end_tick = round(length_beats * WRITE_TICKS_PER_BEAT)
    conductor.append(mido.MetaMessage("end_of_track", time=end_tick))
    mf.tracks.append(conductor)
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
    buffer = io.BytesIO()
    mf.save(file=buffer)
    return buffer.getvalue()
