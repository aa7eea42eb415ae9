"""Reading MIDI: the header check intake uses and the parse that turns bytes into a Piece.

This is the only module that talks to music21's parser, so its camelCase stays here.
Pieces are transposed to C major / A minor after music21's key analysis.
"""
from __future__ import annotations

from .events import MAJOR, MINOR, PITCH_NAMES, NoteEvent, Piece, transposition_to_reference


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


def _tempo_and_meter(flat) -> tuple[float, str]:
    from music21 import meter, tempo
    marks = list(flat.getElementsByClass(tempo.MetronomeMark))
    bpm = 120.0
    if marks:
        q = marks[0].getQuarterBPM()
        if q and q > 0:
            bpm = float(q)
    sigs = list(flat.getElementsByClass(meter.TimeSignature))
    return bpm, (sigs[0].ratioString if sigs else "4/4")


def _is_drum_part(part) -> bool:
    from music21 import instrument
    inst = part.getInstrument(returnDefault=False)
    return isinstance(inst, instrument.UnpitchedPercussion) or (
        inst is not None and getattr(inst, "midiChannel", None) == 9)


def _drum_keys(el) -> tuple[int, ...]:
    """GM drum keys of an Unpitched, a PercussionChord, or a note on the drum channel."""
    members = list(getattr(el, "notes", ())) or [el]
    keys = set()
    for m in members:
        inst = getattr(m, "storedInstrument", None)
        key = getattr(inst, "percMapPitch", None)
        if key is None and hasattr(m, "pitch"):
            key = m.pitch.midi
        keys.add(int(key) if key is not None else 38)
    return tuple(sorted(keys))


def midi_bytes_to_piece(data: bytes, name: str, sha256: str, grid: int = 12,
                        max_beats: int = 4000) -> Piece:
    """Parse one MIDI file; raise UnusableMidi with a reason when it cannot be used."""
    from music21 import chord, note, percussion
    from music21 import midi as m21midi
    try:
        mf = m21midi.MidiFile()
        mf.readstr(data)
        score = m21midi.translate.midiFileToStream(mf, quantizePost=False)
    except Exception as exc:  # music21 raises many types on bad bytes
        raise UnusableMidi(f"unparseable: {type(exc).__name__}: {str(exc)[:120]}") from None

    limit = max_beats * grid
    notes: list[NoteEvent] = []
    drums: list[NoteEvent] = []
    pitched_parts = []
    for part in score.parts:
        drum_part = _is_drum_part(part)
        if not drum_part:
            pitched_parts.append(part)
        # music21 splits notes at barlines into tied pieces; one sounding note is one event.
        for el in part.stripTies().flatten().notes:
            onset = round(float(el.offset) * grid)
            if onset >= limit:
                continue
            duration = max(1, min(round(float(el.quarterLength) * grid), limit - onset))
            vel = el.volume.velocity if el.volume.velocity is not None else 80
            if isinstance(el, (note.Unpitched, percussion.PercussionChord)) or drum_part:
                drums.append(NoteEvent(onset, duration, _drum_keys(el), int(vel)))
            elif isinstance(el, (note.Note, chord.Chord)):
                pitches = tuple(sorted({p.midi for p in el.pitches}))
                if pitches:
                    notes.append(NoteEvent(onset, duration, pitches, int(vel)))
    if not notes:
        raise UnusableMidi("no pitched notes")

    try:
        pitched = score.__class__()
        for part in pitched_parts:
            pitched.insert(0, part)
        key = pitched.analyze("key")
        tonic_pc, mode = key.tonic.pitchClass, (MINOR if key.mode == "minor" else MAJOR)
    except Exception:
        tonic_pc, mode = 0, MAJOR
    shift = transposition_to_reference(tonic_pc, mode)
    notes = [NoteEvent(n.onset, n.duration, tuple(min(127, max(0, p + shift)) for p in n.pitches),
                       n.velocity) for n in notes]
    notes.sort(key=lambda n: (n.onset, n.pitches))
    drums.sort(key=lambda n: (n.onset, n.pitches))
    bpm, ts = _tempo_and_meter(score.flatten())
    return Piece(sha256=sha256, name=name, grid=grid, tonic=PITCH_NAMES[tonic_pc], mode=mode,
                 transpose=shift, tempo_bpm=round(bpm, 3), time_signature=ts,
                 notes=notes, drums=drums)
