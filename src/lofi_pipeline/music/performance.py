"""Performed MIDI -> Piece: what a human-played file means, worked out from the notes read.

Notes struck within a few milliseconds form one onset (rolled and humanised chords); the
onsets snap to the grid that fits the piece best (straight 16ths or 8th triplets, which also
holds swing); the sustain pedal lengthens the notes it holds; the tempo map gives the
tolerance in milliseconds, and a file with no tempo plays at MIDI's default 120 BPM. Tracks
are told apart: drums, bass, a melody (a melody track, or a top voice that moves on its own)
and the harmony, which is read as chord changes (root + quality) on the beat. It is long
because reading a performance is one chain of small steps, each a function here, with
`analyse` at the end putting them in order.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .bars import beat_offset, metre_segments
from .chords import QUALITY_NAMES, recognise
from .drum_format import is_drum_track
from .harmony import same_harmony
from .midi_io import DEFAULT_BPM, RawScore, RawTrack, UnusableMidi
from .piece import GRID, MAJOR, MINOR, PITCH_NAMES, ChordChange, NoteEvent, Piece, transposition_to_reference
from .token_format import bar_ticks

MELODY_NAME = re.compile(r"melod|lead|vocal|voice|solo|sopran|tune|theme", re.I)
BASS_NAME = re.compile(r"bass", re.I)
BASS_PROGRAMS = range(32, 40)
SUBDIVISIONS = {4: "straight", 3: "triplet"}  # grid steps per beat the onsets may snap to


@dataclass(frozen=True)
class ReadingParams:
    max_beats: int = 4000
    onset_tolerance_ms: float = 60.0
    min_tempo_bpm: float = 20.0
    max_tempo_bpm: float = 400.0
    min_notes: int = 4


class TempoMap:
    """Ticks -> seconds under the file's tempo changes; implausible tempos are ignored."""

    def __init__(self, tempos: np.ndarray, ticks_per_beat: int, lo: float, hi: float):
        ok = (tempos[:, 1] >= lo) & (tempos[:, 1] <= hi) if len(tempos) else np.zeros(0, bool)
        self.ignored = int((~ok).sum())
        kept = tempos[ok]
        kept = kept[np.argsort(kept[:, 0], kind="stable")] if len(kept) else kept
        self.missing = len(kept) == 0
        ticks = np.concatenate([[0.0], kept[:, 0]])
        bpm = np.concatenate([[DEFAULT_BPM], kept[:, 1]])
        if len(kept) and kept[0, 0] == 0:
            ticks, bpm = ticks[1:], bpm[1:]
        self.ticks, self.bpm, self.tpb = ticks, bpm, ticks_per_beat
        spans = np.diff(ticks) / ticks_per_beat * 60.0 / bpm[:-1]
        self.start_seconds = np.concatenate([[0.0], np.cumsum(spans)])

    def index(self, ticks: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.ticks, ticks, side="right") - 1

    def seconds(self, ticks: np.ndarray) -> np.ndarray:
        i = self.index(ticks)
        return self.start_seconds[i] + (ticks - self.ticks[i]) / self.tpb * 60.0 / self.bpm[i]

    def mean_bpm(self, end_tick: float) -> float:
        """The tempo that plays the piece in the same time, in beats per minute."""
        if end_tick <= 0:
            return float(self.bpm[0])
        return float(end_tick / self.tpb / self.seconds(np.array([end_tick]))[0] * 60.0)


def clean_notes(notes: np.ndarray) -> tuple[np.ndarray, int]:
    """Drop exact repeats of a pitch at one onset, cut a note where its pitch strikes again."""
    if not len(notes):
        return notes, 0
    notes = notes[np.lexsort((-notes[:, 1], notes[:, 0], notes[:, 2]))]  # by pitch, onset, longest first
    same = (np.diff(notes[:, 2]) == 0) & (np.diff(notes[:, 0]) == 0)
    keep = np.concatenate([[True], ~same])
    dropped = int((~keep).sum())
    notes = notes[keep].copy()
    nxt_same = np.concatenate([notes[1:, 2] == notes[:-1, 2], [False]])
    nxt_onset = np.concatenate([notes[1:, 0], [np.iinfo(np.int64).max]])
    notes[:, 1] = np.where(nxt_same, np.minimum(notes[:, 1], nxt_onset - notes[:, 0]), notes[:, 1])
    notes[:, 1] = np.maximum(notes[:, 1], 1)
    return notes[np.lexsort((notes[:, 2], notes[:, 0]))], dropped


def apply_pedal(notes: np.ndarray, pedals: np.ndarray) -> tuple[np.ndarray, int]:
    """A note released while the pedal is down sounds until the pedal comes up (or its pitch
    is struck again)."""
    if not len(notes) or not len(pedals):
        return notes, 0
    pedals = pedals[np.argsort(pedals[:, 0])]
    ends = notes[:, 0] + notes[:, 1]
    i = np.searchsorted(pedals[:, 0], ends, side="right") - 1
    held = (i >= 0) & (ends < pedals[np.maximum(i, 0), 0] + pedals[np.maximum(i, 0), 1])
    new_end = np.where(held, pedals[np.maximum(i, 0), 0] + pedals[np.maximum(i, 0), 1], ends)
    order = np.lexsort((notes[:, 0], notes[:, 2]))  # by pitch, then onset
    limit = np.full(len(notes), np.iinfo(np.int64).max)
    same = notes[order[1:], 2] == notes[order[:-1], 2]
    limit[order[:-1][same]] = notes[order[1:][same], 0]
    new_end = np.maximum(np.minimum(new_end, limit), ends)
    out = notes.copy()
    out[:, 1] = new_end - notes[:, 0]
    return out, int((new_end > ends).sum())


def with_key_durations(notes: np.ndarray) -> np.ndarray:
    """Notes with a fifth column: how long the key was held (the pedal may hold it longer)."""
    return np.hstack([notes, notes[:, 1:2]])


def cluster_onsets(seconds: np.ndarray, tolerance_s: np.ndarray) -> np.ndarray:
    """Cluster index of each (sorted) onset: a cluster holds the onsets within the tolerance
    of its first one, so a rolled chord is one onset but a fast run is not."""
    labels = np.empty(len(seconds), np.int64)
    current, start, tol = -1, -np.inf, 0.0
    for k, (s, t) in enumerate(zip(seconds.tolist(), tolerance_s.tolist())):
        if s - start > tol:
            current, start, tol = current + 1, s, t
        labels[k] = current
    return labels


def choose_subdivision(beats: np.ndarray) -> tuple[int, float, float]:
    """The grid (steps per beat) the onsets sit on best, its phase (in beats: a recording that
    starts off the beat has every onset a little late), and its misfit: the mean distance to
    the grid over what random onsets would give (0 = exactly on the grid, about 1 = no fit)."""
    best = (4, 0.0, np.inf)
    for sub in SUBDIVISIONS:  # straight first: it wins ties
        angle = 2 * np.pi * beats * sub
        phase = float(np.arctan2(np.sin(angle).sum(), np.cos(angle).sum()) / (2 * np.pi)) if len(beats) else 0.0
        dev = np.abs(beats * sub - phase - np.round(beats * sub - phase))
        fit = float(dev.mean() / 0.25) if len(beats) else 0.0
        if fit < best[2] - 0.05:
            best = (sub, phase / sub, fit)
    return best


def _monophonic(notes: np.ndarray) -> float:
    """Share of a track's onsets where only one of its notes starts."""
    if not len(notes):
        return 0.0
    _, counts = np.unique(notes[:, 0], return_counts=True)
    return float(np.mean(counts == 1))


def assign_roles(tracks: list[RawTrack], quantised: list[np.ndarray]) -> tuple[dict, str]:
    """Track indices for melody, bass and harmony (pitched tracks only), and where the melody
    came from."""
    pitched = [i for i, t in enumerate(tracks) if not is_drum_track(t.is_drum, t.name) and len(quantised[i])]
    named_melody = [i for i in pitched if MELODY_NAME.search(tracks[i].name or "")]
    bass = [i for i in pitched if BASS_NAME.search(tracks[i].name or "") or tracks[i].program in BASS_PROGRAMS]
    melody: list[int] = []
    source = "none"
    if named_melody:
        melody, source = named_melody[:1], f"track {tracks[named_melody[0]].name!r}"
    elif len(pitched) >= 2:
        mean_pitch = {i: float(quantised[i][:, 2].mean()) for i in pitched}
        lines = [i for i in pitched if i not in bass and _monophonic(quantised[i]) >= 0.75]
        if lines:
            top = max(lines, key=lambda i: mean_pitch[i])
            others = [mean_pitch[i] for i in pitched if i != top]
            if mean_pitch[top] > np.mean(others):
                melody, source = [top], f"track {tracks[top].name or top!r}"
    rest = [i for i in pitched if i not in melody and i not in bass]
    if not bass and len(rest) >= 2:
        low = min(rest, key=lambda i: quantised[i][:, 2].mean())
        if quantised[low][:, 2].mean() < 50 and _monophonic(quantised[low]) >= 0.75:
            bass, rest = [low], [i for i in rest if i != low]
    return {"melody": melody, "bass": [i for i in bass if i not in melody], "harmony": rest}, source


def top_voice(notes: np.ndarray, min_notes: int = 8, min_alone: float = 0.3) -> np.ndarray:
    """Boolean mask of the notes (rows with the key-held duration in column 4) that form a
    melody on top of the harmony: at its onset a note is the highest starting and no key
    above it is still held. Only a top voice that moves on its
    own (often strikes alone) counts; the top notes of block chords are harmony."""
    if not len(notes):
        return np.zeros(0, bool)
    onsets, first = np.unique(notes[:, 0], return_index=True)
    cand = np.zeros(len(notes), bool)
    alone = 0
    ends = notes[:, 0] + notes[:, 4]  # keys held: a pedalled note does not hide the line above it
    for k, t in enumerate(onsets):
        lo = first[k]
        hi = first[k + 1] if k + 1 < len(onsets) else len(notes)
        j = lo + int(np.argmax(notes[lo:hi, 2]))
        earlier = slice(max(0, lo - 64), lo)
        sounding_higher = (ends[earlier] > t) & (notes[earlier, 2] > notes[j, 2])
        if not sounding_higher.any():
            cand[j] = True
            alone += hi - lo == 1
    if cand.sum() < min_notes or alone / cand.sum() < min_alone:
        return np.zeros(len(notes), bool)
    return cand


def monophonic_line(notes: np.ndarray) -> np.ndarray:
    """One note at a time: the highest at each onset, cut where the next one starts."""
    if not len(notes):
        return notes
    notes = notes[np.lexsort((-notes[:, 2], notes[:, 0]))]
    keep = np.concatenate([[True], np.diff(notes[:, 0]) > 0])
    line = notes[keep].copy()
    nxt = np.concatenate([line[1:, 0], [np.iinfo(np.int64).max]])
    line[:, 1] = np.maximum(1, np.minimum(line[:, 1], nxt - line[:, 0]))
    return line


def detect_key(notes: np.ndarray, profiles: tuple[np.ndarray, np.ndarray]) -> tuple[int, str]:
    """Tonic pitch class and mode whose key profile (music21's) best correlates with the
    duration-weighted pitch-class histogram."""
    hist = np.bincount(notes[:, 2] % 12, weights=notes[:, 1], minlength=12).astype(float)
    if hist.std() == 0:
        return 0, MAJOR
    keys = np.array([np.roll(profile, tonic) for profile in profiles for tonic in range(12)])
    keys = (keys - keys.mean(axis=1, keepdims=True)) / keys.std(axis=1, keepdims=True)
    r = keys @ ((hist - hist.mean()) / hist.std())  # Pearson correlation, up to a constant factor
    best = int(np.argmax(r))
    return best % 12, (MAJOR, MINOR)[best // 12]


def chord_changes(notes: np.ndarray, end: int) -> list[ChordChange]:
    """Chord changes in harmony+bass notes (grid ticks): at each onset, the chord that best
    explains what sounds for the next beat or until the next onset; a chord that does not
    change is not repeated."""
    if not len(notes):
        return []
    end = max(end, int((notes[:, 0] + notes[:, 1]).max())) + 1
    diff = np.zeros((end + 1, 12), np.int32)
    np.add.at(diff, (notes[:, 0], notes[:, 2] % 12), 1)
    np.add.at(diff, (notes[:, 0] + notes[:, 1], notes[:, 2] % 12), -1)
    pc_roll = (np.cumsum(diff, axis=0)[:end] > 0).astype(np.float64)  # (tick, pitch class) sounding
    cum = np.vstack([np.zeros((1, 12)), np.cumsum(pc_roll, axis=0)])
    onsets, first = np.unique(notes[:, 0], return_index=True)
    nxt = np.concatenate([onsets[1:], [end]])
    stop = np.minimum(np.maximum(nxt, onsets + GRID), onsets + 4 * GRID).clip(max=end)
    weights = cum[stop] - cum[onsets]
    bass = np.minimum.reduceat(notes[:, 2], first) % 12  # the lowest note struck
    roots, qualities, exact = recognise(weights, bass)
    velocity = np.add.reduceat(notes[:, 3], first) / np.diff(np.concatenate([first, [len(notes)]]))
    out: list[ChordChange] = []
    for k in range(len(onsets)):
        label = (int(roots[k]), QUALITY_NAMES[qualities[k]])
        if not out or not same_harmony((out[-1].root, out[-1].quality), label):
            out.append(ChordChange(int(onsets[k]), label[0], label[1], int(round(velocity[k])), bool(exact[k])))
    return out


def _to_events(rows: np.ndarray) -> list[NoteEvent]:
    return list(map(NoteEvent._make, rows.tolist()))


def analyse(raw: RawScore, name: str, sha256: str, profiles: tuple[np.ndarray, np.ndarray],
            params: ReadingParams = ReadingParams()) -> Piece:
    """The piece a performed MIDI file holds; UnusableMidi says why when it holds none."""
    tpb = max(1, raw.ticks_per_beat)
    tempo = TempoMap(raw.tempos, tpb, params.min_tempo_bpm, params.max_tempo_bpm)
    stats = {"reader": raw.reader, "tempo_missing": tempo.missing, "tempos_ignored": tempo.ignored}
    cleaned, dropped, extended = [], 0, 0
    drum_track = [is_drum_track(t.is_drum, t.name) for t in raw.tracks]
    for track, is_drums in zip(raw.tracks, drum_track):
        notes, d = clean_notes(track.notes)
        notes = with_key_durations(notes)
        if not is_drums:
            notes, e = apply_pedal(notes, track.pedals)
            extended += e
        cleaned.append(notes)
        dropped += d
    pitched = [n for n, is_drums in zip(cleaned, drum_track) if not is_drums and len(n)]
    if not pitched:
        raise UnusableMidi("no pitched notes" + (" (every track is drums)" if any(len(n) for n in cleaned) else ""))
    limit = params.max_beats * tpb
    all_notes = np.concatenate(cleaned)
    onset_ticks = np.unique(all_notes[:, 0][all_notes[:, 0] < limit])
    # One onset per struck chord: cluster in seconds, then snap each cluster to the grid.
    secs = tempo.seconds(onset_ticks.astype(float))
    sixteenth = 60.0 / tempo.bpm[tempo.index(onset_ticks.astype(float))] / 4
    labels = cluster_onsets(secs, np.minimum(params.onset_tolerance_ms / 1000, 0.45 * sixteenth))
    first = np.concatenate([[0], np.flatnonzero(np.diff(labels)) + 1])
    cluster_beats = onset_ticks[first] / tpb
    sub, phase, misfit = choose_subdivision(cluster_beats)
    step = GRID // sub
    snapped = np.round((cluster_beats - phase) * sub).astype(np.int64) * step
    snapped_onsets = snapped[labels]
    error_s = np.abs(tempo.seconds((snapped_onsets / GRID + phase) * tpb) - secs)
    notes_at = np.bincount(np.searchsorted(onset_ticks, all_notes[:, 0][all_notes[:, 0] < limit]),
                           minlength=len(onset_ticks))
    moved_beat = beat_offset(snapped_onsets, notes_at, step)
    snapped_onsets = snapped_onsets + moved_beat

    def quantise(notes: np.ndarray) -> np.ndarray:
        notes = notes[notes[:, 0] < limit]
        if not len(notes):
            return np.zeros((0, 5), np.int64)
        on = snapped_onsets[np.searchsorted(onset_ticks, notes[:, 0])]

        def snapped_end(duration):
            end_beats = np.minimum(notes[:, 0] + duration, limit) / tpb - phase
            return np.round(end_beats * sub).astype(np.int64) * step + moved_beat
        out = np.stack([on, np.maximum(snapped_end(notes[:, 1]) - on, step), notes[:, 2], notes[:, 3],
                        np.maximum(snapped_end(notes[:, 4]) - on, step)], axis=1)
        return out[np.lexsort((out[:, 2], out[:, 0]))]

    quantised = [quantise(n) for n in cleaned]
    roles, melody_source = assign_roles(raw.tracks, quantised)
    pick = {role: (np.concatenate([quantised[i] for i in idx]) if idx else np.zeros((0, 5), np.int64))
            for role, idx in roles.items()}
    for role in pick:
        pick[role] = pick[role][np.lexsort((pick[role][:, 2], pick[role][:, 0]))]
    if not roles["melody"]:
        mask = top_voice(pick["harmony"])
        if mask.any():
            pick["melody"], pick["harmony"] = pick["harmony"][mask], pick["harmony"][~mask]
            melody_source = "top voice"
    melody = monophonic_line(pick["melody"])[:, :4]
    stats["melody_notes_below_the_top"] = int(len(pick["melody"]) - len(melody))  # dropped: one note at a time
    pick = {role: rows[:, :4] for role, rows in pick.items()}
    every = np.concatenate([melody, pick["harmony"], pick["bass"]])
    if len(every) < params.min_notes:
        raise UnusableMidi(f"too few notes: {len(every)} (need at least {params.min_notes})")
    tonic, mode = detect_key(every, profiles)
    shift = transposition_to_reference(tonic, mode)

    def moved(rows: np.ndarray) -> np.ndarray:
        rows = rows.copy()
        rows[:, 2] = np.clip(rows[:, 2] + shift, 0, 127)
        return rows
    stats["pitches_clipped"] = int(sum(((rows[:, 2] + shift < 0) | (rows[:, 2] + shift > 127)).sum()
                                       for rows in (pick["harmony"], pick["bass"], melody)))
    harmony, bass, melody = moved(pick["harmony"]), moved(pick["bass"]), moved(melody)
    accompaniment = np.concatenate([harmony, bass])
    accompaniment = accompaniment[np.lexsort((accompaniment[:, 2], accompaniment[:, 0]))]
    end = int((every[:, 0] + every[:, 1]).max())
    chords = chord_changes(accompaniment, end)
    signatures = [(int(round((tick / tpb - phase) * sub)) * step + moved_beat, n, d)
                  for tick, n, d in raw.time_signatures if tick < limit]
    melody_events = _to_events(melody)
    metre = metre_segments(signatures, chords, melody_events, int(every[:, 0].min()))
    bar = bar_ticks(metre[0][1])
    own_bar_line = signatures[0][0] - moved_beat if signatures else 0  # the file's, on the moved beat
    downbeat_moved = len(metre) == 1 and metre[0][0] % bar != own_bar_line % bar
    drums = np.concatenate([quantised[i][:, :4] for i, is_drums in enumerate(drum_track) if is_drums] or
                           [np.zeros((0, 4), np.int64)])
    # The drums as played (the grid's beats, not snapped): their micro-timing is the groove.
    performed = np.concatenate([n[n[:, 0] < limit] for n, is_drums in zip(cleaned, drum_track) if is_drums] or
                               [np.zeros((0, 5), np.int64)])
    performed = performed[np.argsort(performed[:, 0], kind="stable")]
    drum_beats = performed[:, 0] / tpb - phase + moved_beat / GRID - metre[0][0] / GRID
    n_notes = int(sum(len(n) for n in cleaned))
    stats.update({
        "notes": n_notes, "onsets": int(len(onset_ticks)), "chord_onsets": int(labels[-1] + 1) if len(labels) else 0,
        "repeats_dropped": dropped, "pedal_extended": extended,
        "cropped": int((all_notes[:, 0] >= limit).sum()), "grid": SUBDIVISIONS[sub], "grid_misfit": round(misfit, 3),
        "timing_error_ms": round(float(error_s.mean() * 1000), 1) if len(error_s) else 0.0,
        "melody_source": melody_source, "chords_exact": int(sum(c.exact for c in chords)),
        "metre_changes": len(metre) - 1, "beat_moved": bool(moved_beat), "downbeat_moved": downbeat_moved})
    return Piece(sha256=sha256, name=name, grid=GRID, subdivision=sub, tonic=PITCH_NAMES[tonic], mode=mode,
                 transpose=shift, tempo_bpm=round(tempo.mean_bpm(float(min(all_notes[:, 0].max(), limit))), 3),
                 time_signature=raw.time_signature, metre=metre, melody=melody_events, harmony=_to_events(harmony),
                 bass=_to_events(bass), drums=_to_events(drums), chords=chords, stats=stats,
                 drum_hits=[[round(float(b), 4), int(p), int(v)] for b, p, v in
                            zip(drum_beats, performed[:, 2], performed[:, 3])])
