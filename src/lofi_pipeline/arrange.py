"""arrange: generated events -> a lo-fi multi-track MIDI file per track.

Written with mido rather than music21: the arrangement needs exact control of MIDI channels
(drums pinned to channel 10 with a GM kit chosen by program change, which music21's writer
does not emit) and of millisecond-level humanised timing, which music21 re-quantises.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from types import SimpleNamespace

import mido
import numpy as np
from tqdm import tqdm

from . import atomic
from .errors import StageError
from .events import PITCH_NAMES
from .music_checks import MELODY_SHARE_MIN, harmony_changes
from .parallel import Executor
from .runner import Stage, StageContext
from .token_format import Event, tokens_to_events

TICKS_PER_BEAT = 480
BEATS_PER_BAR = 4
KICK, SNARE, SIDE_STICK, CLOSED_HAT, OPEN_HAT, LOW_TOM, MID_TOM = 36, 38, 37, 42, 46, 45, 47


@dataclass
class Part:
    name: str
    channel: int
    program: int
    notes: list = field(default_factory=list)  # (start_beats, duration_beats, pitch, velocity)

    def add(self, start: float, duration: float, pitch: int, velocity: float) -> None:
        self.notes.append((float(start), float(duration), int(pitch), int(np.clip(velocity, 1, 127))))


def tokens_to_timeline(rows: list, grid: int) -> tuple[list[Event], int]:
    """Decode rows of field tokens to events on the grid; rows holding a special token are
    dropped and counted."""
    return tokens_to_events([tuple(r) for r in rows])


def chord_root(pcs: list[int]) -> int:
    """The pitch class that best explains the set as a stack of thirds (ties: lowest pc)."""
    pcs_set = set(pcs)

    def score(r: int) -> float:
        return (2 * ((r + 7) % 12 in pcs_set) + 1.5 * (((r + 4) % 12 in pcs_set) or ((r + 3) % 12 in pcs_set))
                + 0.5 * (((r + 10) % 12 in pcs_set) or ((r + 11) % 12 in pcs_set)))
    return max(sorted(pcs_set), key=score)


def detect_minor(events: list[Event]) -> bool:
    """Material is in C major or A minor after extraction: which tonic does it lean on?"""
    weight = np.zeros(12)
    for e in events:
        if e.is_chord:
            weight[e.root] += e.shift
        if e.pitch is not None:
            weight[e.pitch % 12] += e.duration * 0.5
    return weight[9] > weight[0]


def choose_transposition(key: str, minor: bool, rng: np.random.Generator) -> tuple[int, str]:
    if key == "auto":
        shift = int(rng.integers(-5, 7))
    else:
        name = key.removesuffix("m")
        if name not in PITCH_NAMES:
            raise StageError(f"config key arrange.key: {key!r} is not 'auto' or a tonic "
                             f"({', '.join(PITCH_NAMES)})")
        shift = (PITCH_NAMES.index(name) - (9 if minor else 0) + 6) % 12 - 6
    tonic = PITCH_NAMES[((9 if minor else 0) + shift) % 12]
    return shift, tonic + ("m" if minor else "")


def swing_beats(b: float, swing: float) -> float:
    """Move off-beat 8ths to `swing` of the beat, stretching the rest of the beat to fit."""
    whole, frac = divmod(b, 1.0)
    frac = frac / 0.5 * swing if frac < 0.5 else swing + (frac - 0.5) / 0.5 * (1 - swing)
    return whole + frac


def voice_chord(pcs: list[int], root: int, extensions: bool, low: int = 52) -> list[int]:
    tones = set(pcs)
    if extensions:
        if (root + 4) % 12 in tones and (root + 10) % 12 not in tones:
            tones.add((root + 11) % 12)
        elif (root + 3) % 12 in tones:
            tones.add((root + 10) % 12)
        tones.add((root + 2) % 12)
    voiced, floor = [], low
    start = root
    for step in range(12):
        pc = (start + step) % 12
        if pc in tones:
            pitch = floor + (pc - floor) % 12
            voiced.append(pitch)
            floor = pitch + 1
    return sorted(voiced)


# The diatonic triads of the reference key (C major, which A minor shares): what a melody-only
# stretch is harmonised with, as (root, pitch classes).
DIATONIC_TRIADS = [(0, [0, 4, 7]), (2, [2, 5, 9]), (4, [4, 7, 11]), (5, [5, 9, 0]), (7, [7, 11, 2]), (9, [9, 0, 4])]


def harmonise_from_melody(events: list[Event], start: float, end: float, first: list[int] | None,
                          hold_limit: float) -> list[tuple[float, float, list[int]]]:
    """A stretch where the harmony does not move, bar by bar: the diatonic triad that fits the
    melody notes of the bar best (staying put on a tie), and a different one once a chord has
    stood for `hold_limit` beats, so the keys and the bass never freeze."""
    segs, current, since = [], first, start
    for bar_start in np.arange(start, end, BEATS_PER_BAR):
        bar_end = min(end, bar_start + BEATS_PER_BAR)
        weight = np.zeros(12)
        for e in events:
            if e.pitch is not None and bar_start <= e.onset < bar_end:
                weight[e.pitch % 12] += max(e.duration, 0.25)
        if bar_start == start and first is not None:
            segs.append([bar_start, bar_end, first])
            continue

        def fit(pcs: list[int]) -> float:
            inside = weight[pcs].sum()
            return inside - 0.5 * (weight.sum() - inside) + (0.1 if pcs == current else 0.0)
        must_move = current is not None and bar_start - since >= hold_limit
        options = [pcs for _, pcs in DIATONIC_TRIADS if not (must_move and pcs == current)]
        chosen = max(options, key=fit)
        if segs and chosen == current:
            segs[-1][1] = bar_end
        else:
            segs.append([bar_start, bar_end, chosen])
            current, since = chosen, bar_start
    return [(float(a), float(b), pcs) for a, b, pcs in segs]


def chords_from_events(events: list[Event], length: float,
                       hold_limit: float = 4.0 * BEATS_PER_BAR) -> tuple[list[tuple[float, float, list[int]]], float]:
    """(start, end, pitch classes) segments, and how many beats of them were harmonised here:
    a harmony that stands longer than `hold_limit` beats, and a chordless stretch with a melody,
    get chords from the melody (harmonise_from_melody)."""
    changes = [(e.onset, e.chord_pcs) for e in harmony_changes(events) if e.onset < length]
    stretches = [] if changes and changes[0][0] <= 0 else [(0.0, changes[0][0] if changes else length, None)]
    stretches += [(s, min(nxt, length), pcs) for (s, pcs), (nxt, _) in zip(changes, changes[1:] + [(length, None)])]
    out, filled = [], 0.0
    for start, end, pcs in stretches:
        if end <= start:
            continue
        if pcs is not None and end - start <= hold_limit:
            out.append((start, end, pcs))
            continue
        if pcs is None and not any(e.pitch is not None and start <= e.onset < end for e in events):
            continue  # nothing sounds before the first chord: the keys wait too
        out += harmonise_from_melody(events, start, end, pcs, hold_limit)
        filled += end - start - (min(BEATS_PER_BAR, end - start) if pcs is not None else 0)
    merged = out[:1]
    for seg in out[1:]:  # a restated chord is held, not struck again
        if sorted(seg[2]) == sorted(merged[-1][2]) and seg[0] <= merged[-1][1]:
            merged[-1] = (merged[-1][0], seg[1], merged[-1][2])
        else:
            merged.append(seg)
    return merged or [(0.0, length, [0, 4, 7])], filled


def lead_from_chords(chords, shift: int, rng: np.random.Generator, centre: int = 74) -> list:
    """For all-chord material: a line through the chord tones, moving to the nearest tone
    at most chord changes and drifting back towards `centre`, so it sings rather than jumps."""
    melody, prev = [], centre
    for start, end, pcs in chords:
        if rng.random() > 0.75:
            continue
        tones = [p for p in range(62, 87) if (p - shift) % 12 in pcs]
        moving = [p for p in tones if p != prev] or tones
        pitch = min(moving, key=lambda p: abs(p - prev) + 0.15 * abs(p - centre) + rng.random())
        melody.append((start, min(end - start, 2.0), pitch))
        prev = pitch
    return melody


def drum_bar(part: Part, bar_start: float, variant: int, fill: bool, rng, level: float) -> None:
    kicks = [[0, 2.5], [0, 1.75, 2.5], [0, 2, 2.75], [0, 0.75, 2.5]][variant]
    for k in kicks:
        part.add(bar_start + k, 0.25, KICK, (88 if k == 0 else 76) * level)
    for s in (1, 3):
        if not (fill and s == 3):
            part.add(bar_start + s, 0.25, SNARE, 74 * level)
    if rng.random() < 0.35:
        part.add(bar_start + 3.75, 0.2, SIDE_STICK, 30 * level)  # ghost note
    for h in np.arange(0, 4, 0.5):
        if fill and h >= 3:
            break
        pitch = OPEN_HAT if (h == 3.5 and variant == 2) else CLOSED_HAT
        part.add(bar_start + h, 0.2, pitch, (52 if h % 1 == 0 else 38) * level)
    if fill:
        for t, p in zip([3, 3.25, 3.5, 3.75], [SNARE, MID_TOM, LOW_TOM, SNARE]):
            part.add(bar_start + t, 0.25, p, (62 + 8 * rng.random()) * level)


def silent_bars(notes: list[Event], bars: int, at_least: int = 2) -> set[int]:
    """Bars in runs of `at_least` or more in which no melody note sounds."""
    sounding = np.zeros(bars, bool)
    for e in notes:
        first, last = int(e.onset // BEATS_PER_BAR), int((e.onset + max(e.duration, 1e-3) - 1e-6) // BEATS_PER_BAR)
        sounding[first:last + 1] = True
    silent, run = set(), []
    for b in range(bars + 1):
        if b < bars and not sounding[b]:
            run.append(b)
            continue
        if len(run) >= at_least:
            silent.update(run)
        run = []
    return silent


def lead_source(notes: int, events: int, data: dict | None) -> str:
    """Where the lead comes from: the learned melody when the data has one (judged by the take
    itself when the data is unknown), else a line through the chord tones."""
    data_has_melody = data["melody_share"] >= MELODY_SHARE_MIN if data else notes >= 0.25 * max(1, events)
    if not data_has_melody:
        return "chord tones (the data has no melody)"
    return "learned melody" if notes else "chord tones (this take has no melody)"


def arrange_events(events: list[Event], grid: int, bars: int, rng: np.random.Generator, cfg,
                   data: dict | None = None) -> dict:
    """The whole arrangement as parts of (beats) notes, before swing and humanising. `data` is
    the generate artifact's profile of the training pieces (melody share, harmony hold limit)."""
    length = float(bars * BEATS_PER_BAR)
    timeline = [Event(e.onset / grid, e.shift / grid, e.root, e.quality, e.pitch, e.duration / grid, e.velocity)
                for e in events]
    timeline = [e for e in timeline if e.onset < length]
    minor = detect_minor(timeline)
    shift, key = choose_transposition(cfg.key, minor, rng)
    intro, outro = min(cfg.intro_bars, bars // 3) * 4.0, min(cfg.outro_bars, bars // 3) * 4.0
    outro_start = length - outro

    def fade(t: float) -> float:
        return 1.0 if t < outro_start else max(0.35, 1 - 0.65 * (t - outro_start) / max(outro, 1))

    keys = Part("Electric Piano", 0, cfg.keys_program)
    lead = Part("Lead", 1, cfg.lead_program)
    bass = Part("Bass", 2, cfg.bass_program)
    drums = Part("Drums", 9, cfg.drum_kit)
    hold = data["hold_limit_ticks"] / grid if data and data.get("hold_limit_ticks") else 4.0 * BEATS_PER_BAR
    chords, filled_beats = chords_from_events(timeline, length, hold)
    for start, end, pcs in chords:
        pcs_t = [(pc + shift) % 12 for pc in pcs]
        root = chord_root(pcs_t)
        for p in voice_chord(pcs_t, root, cfg.extensions):
            keys.add(start, (end - start) * 0.95, p, (56 + 4 * rng.random()) * fade(start))
        if intro <= start < outro_start:
            bass_root = 36 + (root - 36) % 12
            dur = end - start
            bass.add(start, min(dur, 1.0) * 0.9, bass_root, 74)
            if dur >= 2:
                bass.add(start + 1.5, 0.45, bass_root + (12 if rng.random() < 0.5 else 7), 62)
            if dur >= 1.5 and rng.random() < 0.3:
                bass.add(end - 0.5, 0.4, bass_root - 1, 58)  # chromatic approach
    notes = [e for e in timeline if e.pitch is not None]
    lead_from = lead_source(len(notes), len(timeline), data)
    if lead_from == "learned melody":
        melody = [(e.onset, e.duration, e.pitch + shift) for e in notes]
        silent = silent_bars(notes, int(np.ceil(length / BEATS_PER_BAR)))
        if silent:  # the lead would rest for bars on end: a chord-tone line there
            melody += lead_from_chords([c for c in chords if int(c[0] // BEATS_PER_BAR) in silent], shift, rng)
            lead_from += f", chord tones in {len(silent)} bars without it"
    else:
        melody = lead_from_chords(chords, shift, rng)
    for start, dur, pitch in melody:
        if start >= intro / 2:
            while pitch < 64:
                pitch += 12
            while pitch > 84:
                pitch -= 12
            lead.add(start, dur * 0.9, pitch, (60 + 6 * rng.random()) * fade(start))
    for b in range(int(intro // 4), int(outro_start // 4)):
        phrase_end = (b + 1) % 8 == 0
        variant = 0 if b % 4 < 2 else int(rng.integers(1, 4))
        drum_bar(drums, b * 4.0, variant, phrase_end, rng, 1.0)
    return {"parts": [keys, lead, bass, drums], "key": key, "transpose": shift, "length_beats": length,
            "minor": minor, "lead": lead_from, "harmonised_bars": round(filled_beats / BEATS_PER_BAR, 2),
            "harmony_changes": len(chords)}


def humanise(parts: list[Part], tempo_bpm: float, swing: float, humanize_ms: float,
             velocity_jitter: int, rng: np.random.Generator) -> None:
    beats_per_ms = tempo_bpm / 60000.0
    for part in parts:
        out = []
        for start, dur, pitch, vel in part.notes:
            s = swing_beats(start, swing)
            e = swing_beats(start + dur, swing)
            s = max(0.0, s + rng.normal(0, humanize_ms) * beats_per_ms) if start > 0 else 0.0
            v = vel + rng.normal(0, velocity_jitter)
            out.append((s, max(0.05, e - s), pitch, int(np.clip(round(v), 1, 127))))
        part.notes = out


def parts_to_midi(parts: list[Part], tempo_bpm: float, key: str, title: str, length_beats: float) -> mido.MidiFile:
    mf = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    conductor = mido.MidiTrack()
    conductor.append(mido.MetaMessage("track_name", name=title, time=0))
    conductor.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm), time=0))
    conductor.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0))
    conductor.append(mido.MetaMessage("key_signature", key=key, time=0))
    end_tick = round(length_beats * TICKS_PER_BEAT)
    conductor.append(mido.MetaMessage("end_of_track", time=end_tick))
    mf.tracks.append(conductor)
    pans = {0: 50, 1: 78, 2: 64, 9: 64}
    for part in parts:
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=part.name, time=0))
        track.append(mido.Message("program_change", channel=part.channel, program=part.program, time=0))
        track.append(mido.Message("control_change", channel=part.channel, control=10,
                                  value=pans.get(part.channel, 64), time=0))
        msgs = []
        for start, dur, pitch, vel in part.notes:
            on = round(start * TICKS_PER_BEAT)
            off = max(on + 1, round((start + dur) * TICKS_PER_BEAT))
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
    return mf


def piano_roll_png(parts: list[Part], tempo_bpm: float, title: str) -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(11, 4), dpi=100)
    sec = 60.0 / tempo_bpm
    for i, part in enumerate(parts):
        if part.notes:
            start, dur, pitch, _ = np.array(part.notes).T
            ax.barh(pitch, np.maximum(dur * sec, 0.03), left=start * sec, height=0.8, color=f"C{i}",
                    alpha=0.8, label=part.name)
    ax.set_xlabel("seconds")
    ax.set_ylabel("MIDI pitch (drums: GM keys)")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8, ncol=4)
    ax.grid(alpha=0.2)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _arrange_job(shared, track: dict) -> dict:
    """One generated track arranged: its MIDI file's and piano roll's bytes, and what it holds."""
    grid, bars, cfg, name, data = shared
    title = f"{name} {track['index']:02d}"
    mf, parts, info = arrange_track(track["tokens"], grid, bars, track["seed"], cfg, title, data)
    midi = io.BytesIO()
    mf.save(file=midi)
    png = piano_roll_png(parts, info["tempo_bpm"], f"{title}: {info['key']}, {info['tempo_bpm']} BPM")
    return {"title": title, "info": info, "midi": midi.getvalue(), "png": png}


def arrange_track(tokens: list[str], grid: int, bars: int | None, seed: int, cfg, title: str,
                  data: dict | None = None):
    """(mido.MidiFile, parts, info) for one generated track; pure apart from its seed."""
    events, dropped = tokens_to_timeline(tokens, grid)
    if not events:
        raise StageError(f"{title}: no decodable events to arrange")
    if bars is None:
        bars = max(1, int(np.ceil(sum(e.shift for e in events) / grid / BEATS_PER_BAR)))
    rng = np.random.default_rng(seed)
    tempo = int(rng.integers(cfg.tempo_min_bpm, cfg.tempo_max_bpm + 1))
    arr = arrange_events(events, grid, bars, rng, cfg, data)
    humanise(arr["parts"], tempo, cfg.swing, cfg.humanize_ms, cfg.velocity_jitter, rng)
    mf = parts_to_midi(arr["parts"], tempo, arr["key"], title, arr["length_beats"])
    info = {"key": arr["key"], "tempo_bpm": tempo, "bars": bars, "seconds": round(float(mf.length), 3),
            "unknown_dropped": dropped, "events": len(events), "lead": arr["lead"],
            "harmonised_bars": arr["harmonised_bars"], "harmony_changes": arr["harmony_changes"],
            "notes_per_part": {p.name: len(p.notes) for p in arr["parts"]}}
    return mf, arr["parts"], info


class ArrangeStage(Stage):
    name = "arrange"
    requires = ("generate",)
    reads = ("arrange", "run.name", "run.executor", "run.ray_address")
    help = "turn generated events into lo-fi MIDI: keys, lead, bass, swung drums"

    def run(self, ctx: StageContext) -> dict:
        data = json.loads((ctx.inputs["generate"] / "tracks.json").read_text())
        cfg = SimpleNamespace(**ctx.params.section("arrange"))
        shared = (data["grid"], data["bars"], cfg, ctx.params.run.name, data.get("data"))
        infos = []
        arranged = Executor.for_stage(ctx.params, cfg.workers).map(_arrange_job, data["tracks"], shared=shared)
        for track, result in tqdm(zip(data["tracks"], arranged, strict=True), total=len(data["tracks"]),
                                  desc="arrange", unit="track", disable=None):
            stem, info = f"track_{track['index']:02d}", result["info"]
            atomic.write_bytes(ctx.out_dir / f"{stem}.mid", result["midi"])
            atomic.write_bytes(ctx.out_dir / f"{stem}.png", result["png"])
            infos.append({"file": f"{stem}.mid", "piano_roll": f"{stem}.png", "title": result["title"],
                          "seed": track["seed"], **info})
            ctx.log(f"{stem}.mid: {info['key']}, {info['tempo_bpm']} BPM, {info['seconds']:.0f}s, "
                    + ", ".join(f"{k} {v}" for k, v in info["notes_per_part"].items())
                    + f"; {info['harmony_changes']} chords, lead: {info['lead']}"
                    + (f", {info['harmonised_bars']:g} bars harmonised from the melody"
                       if info["harmonised_bars"] else ""))
        atomic.write_json(ctx.out_dir / "tracks.json", {"tracks": infos})
        return {"tracks": len(infos), "seconds": [i["seconds"] for i in infos],
                "lead": [i["lead"] for i in infos], "harmonised_bars": [i["harmonised_bars"] for i in infos],
                "unknown_dropped": sum(i["unknown_dropped"] for i in infos)}
