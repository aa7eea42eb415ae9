"""Reading MIDI: the header check intake uses, and three readers that give the same RawScore
(SMPTE-timed files placed on beats through their tempo).

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
DEFAULT_BPM = 120.0  # what the MIDI standard assumes when a file sets no tempo


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
    """A MIDI file as read: ticks per quarter note, tracks, the tempo map and the time signatures."""
    ticks_per_beat: int
    tracks: list[RawTrack]
    tempos: np.ndarray  # rows of (tick, quarter notes per minute)
    time_signatures: list[tuple[int, int, int]] = field(default_factory=list)  # (tick, numerator, denominator)
    reader: str = ""

    @property
    def time_signature(self) -> str:
        """The first time signature, as written ("4/4" when the file has none)."""
        return "{1}/{2}".format(*self.time_signatures[0]) if self.time_signatures else "4/4"


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
    signatures = [(int(t.time), int(t.numerator), int(t.denominator)) for t in score.time_signatures]
    return RawScore(int(score.ticks_per_quarter), tracks, tempos, signatures, "symusic")


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
    tempos, tracks, signatures = [], [], []
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
            elif msg.type == "time_signature":
                signatures.append((now, msg.numerator, msg.denominator))
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
                    sorted(set(signatures)), "mido")


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
    signatures = [(round(float(ts.offset) * tpb), int(ts.numerator), int(ts.denominator))
                  for ts in flat.getElementsByClass(meter.TimeSignature)]
    return RawScore(tpb, tracks, np.array(tempos, np.float64).reshape(-1, 2), signatures, "music21")


READERS = (("symusic", read_with_symusic), ("mido", read_with_mido), ("music21", read_with_music21))
SMPTE_TICKS_PER_BEAT = 480


def smpte_ticks_per_second(data: bytes) -> float | None:
    """Ticks per second of a file whose header gives SMPTE time (a negative division: frames per
    second and ticks per frame, as some transcriptions do), or None for ticks per quarter note."""
    if data[:4] != b"MThd" or len(data) < 14 or not data[12] & 0x80:
        return None
    fps = 256 - data[12]
    return (29.97 if fps == 29 else fps) * data[13]


def read_smpte(data: bytes, ticks_per_second: float) -> RawScore:
    """An SMPTE-timed file read with mido (its ticks are fractions of a second), placed on beats
    through its tempo events (120 BPM when it has none): seconds are turned back into quarter
    notes at SMPTE_TICKS_PER_BEAT ticks each."""
    patched = bytearray(data)
    patched[12:14] = (SMPTE_TICKS_PER_BEAT).to_bytes(2, "big")  # mido reads raw ticks either way
    raw = read_with_mido(bytes(patched))
    tempos = raw.tempos[np.argsort(raw.tempos[:, 0], kind="stable")] if len(raw.tempos) else raw.tempos
    tempos = tempos[tempos[:, 1] > 0]
    seconds = np.concatenate([[0.0], tempos[:, 0] / ticks_per_second])
    bpm = np.concatenate([[120.0], tempos[:, 1]])
    beats_at = np.concatenate([[0.0], np.cumsum(np.diff(seconds) * bpm[:-1] / 60.0)])

    def to_ticks(ticks: np.ndarray) -> np.ndarray:
        s = np.asarray(ticks, np.float64) / ticks_per_second
        i = np.searchsorted(seconds, s, side="right") - 1
        return np.round((beats_at[i] + (s - seconds[i]) * bpm[i] / 60.0) * SMPTE_TICKS_PER_BEAT).astype(np.int64)
    tracks = []
    for t in raw.tracks:
        notes = t.notes.copy()
        if len(notes):
            ends = to_ticks(notes[:, 0] + notes[:, 1])
            notes[:, 0] = to_ticks(notes[:, 0])
            notes[:, 1] = np.maximum(ends - notes[:, 0], 1)
        pedals = t.pedals.copy()
        if len(pedals):
            ends = to_ticks(pedals[:, 0] + pedals[:, 1])
            pedals[:, 0] = to_ticks(pedals[:, 0])
            pedals[:, 1] = ends - pedals[:, 0]
        tracks.append(RawTrack(t.name, t.program, t.is_drum, notes, pedals))
    new_tempos = np.stack([to_ticks(tempos[:, 0]), tempos[:, 1]], axis=1) if len(tempos) else tempos
    signatures = [(int(to_ticks([tick])[0]), n, d) for tick, n, d in raw.time_signatures]
    return RawScore(SMPTE_TICKS_PER_BEAT, tracks, new_tempos.reshape(-1, 2), signatures, "mido (SMPTE time)")


def read_midi(data: bytes, readers=READERS) -> RawScore:
    """The first reader that accepts the file; UnusableMidi with every reader's reason if none does.
    A file timed in SMPTE frames is read in seconds and placed on beats (read_smpte)."""
    reason = midi_header_reason(data)
    if reason:
        raise UnusableMidi(reason)
    per_second = smpte_ticks_per_second(data)
    if per_second is not None:
        try:
            return read_smpte(data, per_second)
        except Exception as exc:  # a reader raises many types on bad bytes
            raise UnusableMidi(f"unparseable: SMPTE-timed file: {type(exc).__name__}: {str(exc)[:80]}") from None
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
