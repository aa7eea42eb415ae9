"""Helpers the tests share: MIDI files and archives written on the spot, test signals, and
running `lofi` in a subprocess. Fixtures live in conftest.py and use these."""
from __future__ import annotations

import functools
import io
import os
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np

from lofi_pipeline.core.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SOUNDFONT = ROOT / "soundfonts" / "default.sf2"
MAJOR_TRIADS = [(0, 4, 7), (5, 9, 12), (7, 11, 14), (0, 4, 7)]      # I IV V I
MINOR_TRIADS = [(0, 3, 7), (5, 8, 12), (7, 11, 14), (0, 3, 7)]      # i iv V i


def midi_bytes(notes=(), drums=(), tempo_bpm=100.0, time_signature=(4, 4), tempo_events=True,
               ticks_per_beat=480, melody=(), signature_changes=()) -> bytes:
    """A type-1 MIDI file; notes, drums and melody are (start_beats, duration_beats, pitch,
    velocity). A melody gets a track of its own named "Melody" (channel 2), and the notes'
    track is then named "Piano"; `signature_changes` are (beat, numerator, denominator)."""
    mf = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    meta = mido.MidiTrack()
    if tempo_events:
        meta.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm), time=0))
    now = 0
    for beat, numerator, denominator in ((0, *time_signature), *signature_changes):
        tick = round(beat * ticks_per_beat)
        meta.append(mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator, time=tick - now))
        now = tick
    mf.tracks.append(meta)
    named = bool(melody)
    for channel, items, name in ((0, notes, "Piano"), (1, melody, "Melody"), (9, drums, None)):
        if not items:
            continue
        track = mido.MidiTrack()
        if named and name:
            track.append(mido.MetaMessage("track_name", name=name, time=0))
        msgs = []
        for start, dur, pitch, vel in items:
            on = round(start * ticks_per_beat)
            msgs.append((on, 1, pitch, vel))
            msgs.append((on + max(1, round(dur * ticks_per_beat)), 0, pitch, 0))
        now = 0
        for tick, is_on, pitch, vel in sorted(msgs):
            track.append(mido.Message("note_on" if is_on else "note_off", channel=channel,
                                      note=pitch, velocity=vel, time=tick - now))
            now = tick
        mf.tracks.append(track)
    buf = io.BytesIO()
    mf.save(file=buf)
    return buf.getvalue()


def progression_notes(tonic: int, minor: bool = False, bars: int = 4, melody: bool = True):
    """Block chords a beat each plus a melody, in the key of `tonic` (MIDI pitch)."""
    triads = MINOR_TRIADS if minor else MAJOR_TRIADS
    notes, t = [], 0.0
    scale = [0, 2, 3, 5, 7, 8, 11] if minor else [0, 2, 4, 5, 7, 9, 11]
    for bar in range(bars):
        chord = triads[bar % 4]
        for beat in range(4):
            for iv in chord:
                notes.append((t, 1.0, tonic - 12 + iv, 70))
            if melody:
                notes.append((t, 0.5, tonic + 12 + scale[(bar + beat * 2) % 7], 90))
                notes.append((t + 0.5, 0.5, tonic + 12 + scale[(bar + beat * 2 + 2) % 7], 84))
            t += 1.0
    return notes


# A C-major progression, one chord a bar: (root pitch class, quality, voicing above C3).
PROGRESSIONS = [
    [(0, "maj7", (48, 52, 55, 59)), (9, "m7", (45, 52, 55, 60)), (2, "m7", (50, 53, 57, 60)),
     (7, "7", (43, 53, 59, 62))],
    [(9, "m7", (45, 52, 55, 60)), (5, "maj7", (41, 52, 57, 60)), (0, "maj", (48, 52, 55, 60)),
     (7, "maj", (43, 50, 55, 59))],
    [(2, "m7", (50, 53, 57, 60)), (7, "7", (43, 53, 59, 62)), (0, "maj7", (48, 52, 55, 59)),
     (0, "6", (48, 52, 55, 57))],
]


@dataclass
class PerformedSong:
    """A human-played song and what a reader should find in it (beats, in C major)."""
    data: bytes
    chords: list  # (onset beat, root pc, quality)
    melody: list  # (onset beat, duration beats, pitch)


def performed_song(seed: int = 0, bars: int = 4, transpose: int = 0, tempo_bpm: float | None = 96.0,
                   one_track: bool = False, drums: bool = True, pedal: bool = True, triplets: bool = False,
                   ticks_per_beat: int = 480) -> PerformedSong:
    """Rolled chords (notes 10-40 ms apart, lowest first) struck short and held by the sustain
    pedal, a melody over them on its own track (or the top of one piano track), a drum track,
    every onset jittered by up to 20 ms; tempo_bpm=None writes no tempo event (120 is assumed)."""
    rng = np.random.default_rng(seed)
    bpm = tempo_bpm or 120.0
    progression = PROGRESSIONS[seed % len(PROGRESSIONS)]
    rhythm = [0, 1, 1.5, 2, 3] if not triplets else [0, 2 / 3, 1, 5 / 3, 2, 3]
    chords, melody, tracks = [], [], {"chords": [], "melody": [], "drums": []}
    pedals = []

    def tick(beat: float, jitter_ms: float = 0.0) -> int:
        return max(0, round((beat * 60 / bpm + jitter_ms / 1000) * bpm / 60 * ticks_per_beat))
    for bar in range(bars):
        root, quality, voicing = progression[bar % len(progression)]
        start = 4.0 * bar
        chords.append((start, root, quality))
        at, spread = rng.uniform(-20, 20), rng.uniform(10, 40) / (len(voicing) - 1)
        for k, pitch in enumerate(voicing):
            on = tick(start, at + k * spread)
            tracks["chords"].append((on, tick(start + 0.5), pitch + transpose, int(rng.integers(50, 70))))
        if pedal:
            pedals.append((tick(start, 60), tick(start + 3.9)))
        tones = sorted({(root + i) % 12 for i in (0, 4, 7)} | {voicing[-1] % 12})
        for beat in rhythm:
            dur = 0.5 if beat % 1 else 1.0
            dur = min(dur, ([b for b in rhythm if b > beat] + [4])[0] - beat)
            pitch = 72 + int(rng.choice(tones)) + (0 if rng.random() < 0.7 else 2)
            melody.append((start + beat, dur, pitch))
            on = tick(start + beat, rng.uniform(-20, 20))
            tracks["melody"].append((on, tick(start + beat + dur * 0.9), pitch + transpose, int(rng.integers(80, 100))))
        if drums:
            for beat in range(4):
                tracks["drums"].append((tick(start + beat, rng.uniform(-10, 10)), tick(start + beat + 0.1),
                                        36 if beat % 2 == 0 else 38, 90))
    mf = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    meta = mido.MidiTrack()
    if tempo_bpm is not None:
        meta.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm), time=0))
    mf.tracks.append(meta)
    layout = [("Piano", 0, tracks["chords"] + (tracks["melody"] if one_track else []), pedals)]
    if not one_track:
        layout.append(("Melody", 1, tracks["melody"], []))
    if drums:
        layout.append(("Drums", 9, tracks["drums"], []))
    for name, channel, notes, pedal_spans in layout:
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=name, time=0))
        msgs = [(on, 1, "note_on", pitch, vel) for on, off, pitch, vel in notes]
        msgs += [(off, 0, "note_off", pitch, 0) for on, off, pitch, vel in notes]
        msgs += [(down, 2, "cc", 127, 0) for down, _ in pedal_spans]
        msgs += [(up, 0, "cc", 0, 0) for _, up in pedal_spans]
        now = 0
        for t, _, kind, value, vel in sorted(msgs):
            if kind == "cc":
                track.append(mido.Message("control_change", channel=channel, control=64, value=value, time=t - now))
            else:
                track.append(mido.Message(kind, channel=channel, note=value, velocity=vel, time=t - now))
            now = t
        mf.tracks.append(track)
    buf = io.BytesIO()
    mf.save(file=buf)
    return PerformedSong(buf.getvalue(), chords, melody)


@functools.lru_cache(maxsize=None)
def song_bytes(index: int) -> bytes:
    """Deterministic little performed songs in varied keys, tempi and progressions."""
    return performed_song(seed=index, bars=4 + index % 3, transpose=(index * 5) % 12 - 5,
                          tempo_bpm=80.0 + index, triplets=index % 4 == 3).data


def write_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


@functools.lru_cache(maxsize=None)
def sine(freq_hz: float = 440.0, seconds: float = 2.0, sample_rate: int = 44100, level: float = 0.3):
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    mono = (level * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)
    return np.stack([mono, mono])


def quick_config(outputs: Path, *overrides):
    return load_config(ROOT / "lofi.toml", "quick", [f'run.outputs="{outputs}"', *overrides])


def reference_true_peak_db(audio) -> float:
    """Full 4x oversampling with scipy, independent of the pipeline's shortcut."""
    from scipy import signal
    return 20 * np.log10(np.max(np.abs(signal.resample_poly(audio, 4, 1, axis=-1))))


def read_mp3(path: Path) -> tuple[np.ndarray, int]:
    """Decode an MP3 (pedalboard's decoder, independent of the pipeline's WAV reader)."""
    from pedalboard.io import AudioFile
    with AudioFile(str(path)) as f:
        return f.read(f.frames), int(f.samplerate)


def lofi_process(*args, env: dict | None = None, cwd: Path = ROOT, **popen) -> subprocess.Popen:
    """`python -m lofi_pipeline ARGS` in `cwd` (the project root), output captured (or where
    `popen` says); `env` adds variables."""
    return subprocess.Popen([sys.executable, "-m", "lofi_pipeline", *args], cwd=cwd, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                            **{"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen})


def wait_for(condition, proc: subprocess.Popen, limit_s: float = 300) -> bool:
    """Wait until `condition()` holds (a state, checked as often as the machine allows), or
    until `proc` has ended or `limit_s` passed (a guard against a hang, not a timing)."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            return condition()
        time.sleep(0.01)
    return True


def lofi(*args, check: bool = True, timeout: float = 900, env: dict | None = None,
         cwd: Path = ROOT) -> subprocess.CompletedProcess:
    proc = lofi_process(*args, env=env, cwd=cwd)
    out, err = proc.communicate(timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"lofi {' '.join(args)} exited {proc.returncode}:\n{err[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def copy_run(quick_run, folder: Path) -> tuple[list[str], Path]:
    """A copy of the `quick_run` fixture's outputs in `folder`: (its options, pointed at the copy; the copy)."""
    args, out, _ = quick_run
    copy = folder / "outputs"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns(".lock"))
    return [*args[:-1], str(copy)], copy


def quick_archive(folder: Path, songs: int = 12) -> Path:
    return write_zip(folder / "songs.zip", {f"song_{i:02d}.mid": song_bytes(i) for i in range(songs)})


RAY_PORT = 6390


def in_ray_cluster(script: str, folder: Path, timeout: float | None = 900, cpus_per_node: int = 2,
                   capture: bool = True) -> subprocess.CompletedProcess:
    """Run the bash `script` beside a real two-node Ray cluster (a head and one worker node,
    `cpus_per_node` logical CPUs each: a member's training task asks for two), all inside a
    network namespace of its own with only loopback up (`unshare -n`; tests run as root):
    outside one, Ray binds to the machine's interface address whatever --node-ip-address
    says. Token authentication is on, as Ray 2.60 has it for clusters: both nodes and the
    driver read one token from a file. RAY_ADDRESS, LOFI (the command) and PYTHON are set for
    the script; the cluster is stopped however it ends. The head marks a node dead only after
    a minute without an answer to its health checks (Ray's default is 15 s): on two busy cores a
    starved raylet is slow, not gone."""
    token = folder / "ray-token"
    token.write_text(os.urandom(32).hex())
    token.chmod(0o600)
    ray = Path(sys.executable).with_name("ray")
    node = (f"--node-ip-address=127.0.0.1 --num-cpus={cpus_per_node} --object-store-memory={400 * 2**20} "
            "--disable-usage-stats")
    wrapper = f"""set -euo pipefail
ip link set lo up
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH={token} RAY_ADDRESS=127.0.0.1:{RAY_PORT}
export RAY_health_check_period_ms=5000 RAY_health_check_timeout_ms=20000 RAY_health_check_failure_threshold=12
export PYTHON="{sys.executable}" LOFI="{sys.executable} -m lofi_pipeline"
trap '{ray} stop --force >/dev/null 2>&1 || true' EXIT
{ray} start --head --port={RAY_PORT} --include-dashboard=false {node} >/dev/null
{ray} start --address=127.0.0.1:{RAY_PORT} {node} >/dev/null
{script}
"""
    return subprocess.run(["unshare", "-n", "bash", "-c", wrapper], cwd=ROOT, capture_output=capture, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def timed_rows(rows, metre: str = "4/4") -> list[tuple[str, ...]]:
    """Token rows from a simpler description: (ticks to the next event, root, quality, pitch,
    duration, velocity), as strings, each event placed in its bar (12 ticks a beat). A row whose
    first token is special is written with that token as its bar field, and moves no time."""
    from lofi_pipeline.music.token_format import bar_ticks
    out, onset, last_bar = [], 0, 0
    for shift, *rest in rows:
        if shift.startswith("<"):
            out.append((metre, shift, "0", *rest))
            continue
        bar, position = divmod(onset, bar_ticks(metre))
        out.append((metre, str(bar - last_bar), str(position), *rest))
        onset, last_bar = onset + int(shift), bar
    return out


def timed_events(rows, metre: str = "4/4"):
    """Events from (ticks to the next event, root, quality, pitch, duration) rows (ints and None)."""
    from lofi_pipeline.music.token_format import tokens_to_events
    tokens = [(str(shift), *("-" if v is None else str(v) for v in (root, quality, pitch)),
               "-" if pitch is None else str(duration), "2") for shift, root, quality, pitch, duration in rows]
    events, dropped = tokens_to_events(timed_rows(tokens, metre))
    assert dropped == 0
    return events


def metred_song(numerator: int = 4, denominator: int = 4, swing: bool = False, bars: int = 6, pickup_beats: int = 0,
                seed: int = 0, tempo_bpm: float = 90.0, changes_to: tuple[int, int] | None = None) -> bytes:
    """A performed song in a metre: a chord rolled on each bar line (a different root each bar,
    held through the bar), and a melody on every quarter-note beat and
    the 8th after it (at two thirds of the beat when `swing`; on every 8th in a compound metre
    such as 6/8), onsets jittered by up to 15 ms. A pickup of `pickup_beats` melody notes comes
    first, written from tick 0 as notation exports do; with `changes_to`, the second half of the
    bars is in that metre (a time signature event at its first bar line)."""
    rng = np.random.default_rng(seed)
    seconds_per_beat = 60.0 / tempo_bpm
    roots = [0, 9, 2, 7, 5, 4, 0, 7]

    def beat_played(beat: float) -> float:
        return max(0.0, beat + rng.uniform(-0.015, 0.015) / seconds_per_beat)

    def note(start: float, end: float, pitch: int, velocity: int) -> tuple:
        on = beat_played(start)
        return on, beat_played(end) - on, pitch, velocity
    notes, melody, bar_start, changes = [], [], float(pickup_beats), []
    for k in range(pickup_beats):
        melody.append(note(k, k + 0.9, 72 + k, 80))
    metre = (numerator, denominator)
    for b in range(bars):
        if changes_to and b == bars // 2:
            metre = changes_to
            changes.append((bar_start, *metre))
        beats = metre[0] * 4 / metre[1]
        root = roots[b % len(roots)]
        for k, iv in enumerate((0, 4, 7)):
            notes.append(note(bar_start + 0.01 * k, bar_start + beats - 0.1, 48 + root + iv, 60))
        compound = metre[1] == 8 and metre[0] % 3 == 0
        offbeat = 2 / 3 if swing else 0.5
        steps = [e * 0.5 for e in range(int(beats * 2))] if compound else \
            [b2 + off for b2 in range(int(beats)) for off in (0, offbeat)]
        for step in steps:
            melody.append(note(bar_start + step, bar_start + step + 0.3, 72 + int(rng.integers(0, 8)), 85))
        bar_start += beats
    return midi_bytes(notes, tempo_bpm=tempo_bpm, time_signature=(numerator, denominator), melody=melody,
                      signature_changes=changes)


def groove_file(bars: int = 2, bpm: float = 92.0, channel: int = 9, name: str = "", late_snare_ms: float = 25.0,
                roll: bool = True, stray_note: bool = True) -> bytes:
    """A drum file as the Groove MIDI Dataset's are: drums alone, a tempo and 4/4, hats on the
    TD-11's edge note (22) as well as 42, a snare played late on 2 and 4, a kick on 1 and the
    "and" of 3, a roll (three snares inside one 16th) at the end, and a note outside the GM map (15)."""
    beat_s = 60 / bpm
    hits = []
    for bar in range(bars):
        at = 4.0 * bar
        for eighth in range(8):
            hits.append((at + eighth / 2, 0.1, 22 if eighth % 2 else 42, 70 if eighth % 2 else 90))
        for beat in (0.0, 2.5):
            hits.append((at + beat, 0.1, 36, 100))
        for beat in (1.0, 3.0):
            hits.append((at + beat + late_snare_ms / 1000 / beat_s, 0.1, 38, 110))
    if roll:
        end = 4.0 * bars - 0.25
        hits += [(end + k * 0.06, 0.05, 38, 60 + 10 * k) for k in range(3)]
    if stray_note:
        hits.append((0.0, 0.1, 15, 80))
    mf = mido.MidiFile(type=1, ticks_per_beat=480)
    meta = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0),
                           mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0)])
    track = mido.MidiTrack([mido.MetaMessage("track_name", name=name, time=0)] if name else [])
    msgs = sorted([(round(s * 480), 1, p, v) for s, d, p, v in hits] + [(round((s + d) * 480), 0, p, 0)
                                                                      for s, d, p, v in hits])
    now = 0
    for tick, on, pitch, vel in msgs:
        track.append(mido.Message("note_on" if on else "note_off", channel=channel, note=pitch, velocity=vel,
                                  time=tick - now))
        now = tick
    mf.tracks += [meta, track]
    buf = io.BytesIO()
    mf.save(file=buf)
    return buf.getvalue()


def groove_zip(path: Path, files: list[tuple[str, str, str, bytes]]) -> Path:
    """A zip laid out as the Groove MIDI Dataset's: groove/info.csv and its MIDI files, from
    (style, beat_type, split, MIDI bytes) each (split as GMD names it: train, validation, test)."""
    rows = ["drummer,session,id,style,bpm,beat_type,time_signature,midi_filename,audio_filename,duration,split"]
    with zipfile.ZipFile(path, "w") as z:
        for k, (style, beat_type, split, data) in enumerate(files):
            name = f"drummer1/session1/{k}_{style.replace('/', '-')}_92_{beat_type}_4-4.mid"
            bpm = mido.tempo2bpm(next(m.tempo for t in mido.MidiFile(file=io.BytesIO(data)).tracks for m in t
                                      if m.type == "set_tempo"))
            rows.append(f"drummer1,drummer1/session1,drummer1/session1/{k},{style},{round(bpm)},{beat_type},4-4,"
                        f"{name},,4.0,{split}")
            z.writestr(f"groove/{name}", data)
        z.writestr("groove/info.csv", "\n".join(rows) + "\n")
    return path
