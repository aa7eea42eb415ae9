"""One track of a run made again for new options, in seconds, into outputs/preview/, without
touching the run's artifacts (`lofi preview N`; the web app plays it while the whole run
catches up). The preview is the MP3 the run will export for that track, to the byte:

- when the arranged tracks are fresh for the options (a render or master change), it is the
  run's render of the track (or a new render of its MIDI when render's keys changed) through
  the master, encoded as export does;
- when only the trained models are (a new take of it, generate.retakes, or any generate or
  arrange change), the track is made alone, from generate to the master, in
  outputs/preview/run/, an outputs folder of its own holding links to the run's trained
  stages (catalog.link_stages), so the same runner, stages and cache do it, then encoded as export does.

Everything else (stale models) is refused with what to run instead."""
from __future__ import annotations

import copy
import shutil
import time
from pathlib import Path

from ..audio.fluidsynth import render_rate, render_wav_bytes
from ..audio.mastering import master_wav_bytes, texture_seed
from ..audio.mp3 import tagged_mp3_bytes
from ..core import atomic
from ..core.errors import StageError
from ..core.runner import Runner
from . import catalog

PREVIEW = "preview"  # under the outputs root; `lofi clean` removes it


def preview_track(runner: Runner, index: int) -> dict:
    """Track `index` of the run `runner` describes, made for its options (the caller holds the
    outputs lock): {"file": path under the outputs root, "how": "re-mastered" | "made anew",
    "seconds": time taken}."""
    started = time.monotonic()
    g = runner.cfg.generate
    if not g.first_track <= index < g.first_track + g.tracks:
        raise StageError(f"no track {index} in this run (tracks {g.first_track} to {g.first_track + g.tracks - 1})")
    if runner.cfg.render.midi:
        raise StageError("a preview makes a track of the run; render.midi (--midi) renders given files instead")
    for name in ("render", "master"):
        runner.stages[name].check(runner.params(name), runner.root)
    if runner.state("arrange")[0]:
        record, wav, how = *_remastered(runner, index), "re-mastered"
    else:
        fresh, why = runner.state("train")
        if not fresh:
            raise StageError(f"no trained models for these options ({why}): run lofi all first")
        record, wav, how = *_made_alone(runner, index), "made anew"
    tags = catalog.track_tags(record, index - g.first_track + 1, g.tracks, runner.cfg.export, runner.cfg.run)
    data = tagged_mp3_bytes(wav, runner.cfg.export.bitrate_kbps, tags)
    folder = runner.outputs / PREVIEW
    name = catalog.mp3_name(runner.cfg.run.name, index, data)
    atomic.write_bytes(folder / name, data)
    for old in folder.glob("*.mp3"):  # one preview at a time: the page plays the newest
        if old.name != name:
            old.unlink(missing_ok=True)
    return {"file": f"{PREVIEW}/{name}", "how": how, "seconds": round(time.monotonic() - started, 2)}


def _remastered(runner: Runner, index: int) -> tuple[catalog.TrackRecord, bytes]:
    """The arranged track, rendered (the run's WAV while render is fresh) and mastered."""
    arranged = runner.artifact_dir("arrange")
    record = next((r for r in catalog.tracks.read(arranged) if r.index == index), None)
    if record is None:
        raise StageError(f"no track {index} in the arranged tracks of {runner.outputs}")
    wav_name = f"{record.stem}.wav"
    if runner.state("render")[0]:
        wav = (runner.artifact_dir("render") / wav_name).read_bytes()
    else:
        r = runner.cfg.render
        rate = render_rate(r.sample_rate, runner.cfg.master.lowpass_hz)
        midi = arranged / catalog.midi_name(record)
        soundfont = runner.root / Path(r.soundfont).expanduser()
        wav = render_wav_bytes(midi.read_bytes(), midi.name, soundfont, rate, r.gain)[0]
    return record, _mastered(runner.cfg, wav, wav_name)


def _made_alone(runner: Runner, index: int) -> tuple[catalog.TrackRecord, bytes]:
    """The track made alone, generate to master, in outputs/preview/run/ by the same stages."""
    folder = runner.outputs / PREVIEW / "run"
    cfg = copy.deepcopy(runner.cfg)
    cfg.generate.tracks, cfg.generate.first_track, cfg.run.outputs = 1, index, str(folder)
    alone = Runner(cfg, list(runner.stages.values()), runner.root, runner.log)
    trained = runner.order[:runner.order.index("train") + 1]
    for _ in range(2):
        catalog.link_stages(runner.outputs, folder, trained)
        alone.forget()
        fresh, why = alone.state("train")
        if fresh:
            break
        shutil.rmtree(folder, ignore_errors=True)  # linked from another run: link afresh, once
    else:  # never train here: a preview takes seconds
        raise StageError(f"the trained models linked into {folder} are not fresh ({why})")
    alone.run(["master"])
    record = catalog.tracks.read(alone.artifact_dir("arrange"))[0]
    return record, (alone.artifact_dir("master") / f"{record.stem}.wav").read_bytes()


def _mastered(cfg, wav: bytes, wav_name: str) -> bytes:
    return master_wav_bytes(wav, cfg.master, texture_seed(cfg.run.seed, wav_name), cfg.render.sample_rate)[0]
