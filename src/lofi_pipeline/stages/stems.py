"""stems: what a producer takes into a DAW, per track. Always: the arrangement's MIDI (track
names, tempo, key signature, section markers, a chord-symbol track) and one MIDI file per part.
With export.stems: one 24-bit WAV per part and one of the vinyl-and-tape texture, unmastered,
all as long as the mix (audio/stems.py). Names carry tempo and key (audio/sample_names.py);
export copies the files beside the track's MP3."""
from __future__ import annotations

import math
from dataclasses import replace

from ..audio.audio_io import read_wav
from ..audio.fluidsynth import render_rate
from ..audio.mastering import texture_seed
from ..audio.sample_names import sample_name
from ..audio.stems import headroom_gain, pcm24_wav_bytes, render_stems, texture_stem
from ..core import atomic
from ..core.runner import Stage, StageContext
from ..music.part_files import channel_parts, part_midi
from . import catalog
from .fluidsynth_inputs import check_render, render_inputs
from .track_midi import track_midi_files

TEXTURE = "texture"
TEXTURE_KEYS = ("crackle_per_second", "crackle_db", "hiss_db")


def make_stem_set(shared, job) -> dict:
    """One track's files: {"set": its StemSet, "files": {name: bytes}} (a worker's job)."""
    soundfont, rate, gain, output_rate, texture_params, make_audio = shared
    record, title, midi_data, samples, seed = job
    parts = [p if p.name != TEXTURE else replace(p, name=f"{TEXTURE}-part") for p in channel_parts(midi_data)]

    def name(part, ext):
        return sample_name(title, record.tempo_bpm, record.key, part, ext)
    part_files = {p.name: part_midi(midi_data, p.channel) for p in parts}
    files = {name(None, "mid"): midi_data, **{name(part, "mid"): data for part, data in part_files.items()}}
    rows = [{"part": p.name, "channel": p.channel, "notes": p.notes, "midi": name(p.name, "mid"),
             "wav": name(p.name, "wav") if make_audio else None} for p in parts]
    stem_set = catalog.StemSet(record.index, record.stem, name(None, "mid"), rows)
    if make_audio:
        audio = render_stems(part_files, soundfont, rate, gain, samples, output_rate)
        vinyl = texture_stem(samples, rate, output_rate, texture_params, seed)
        if vinyl is not None:
            audio[TEXTURE] = vinyl
            stem_set.texture = name(TEXTURE, "wav")
        headroom = headroom_gain(audio)
        for part, stem in audio.items():
            files[name(part, "wav")] = pcm24_wav_bytes(stem * headroom, output_rate)
        stem_set.seconds = round(samples / rate, 3)
        stem_set.sample_rate = output_rate
        stem_set.gain_db = round(20 * math.log10(headroom), 2)
    return {"set": stem_set, "files": files}


def unique_titles(records: list) -> dict[int, str]:
    """Each track's title for its file names; titles that would name the same files (two --midi
    files "Song" and "song") get their track number."""
    words = [sample_name(r.title, 0, None, None, "x") for r in records]
    return {r.index: r.title if words.count(w) == 1 else f"{r.title} {r.index:02d}" for r, w in zip(records, words)}


class StemsStage(Stage):
    name = "stems"
    takes = (catalog.RENDERS, catalog.RENDERED, catalog.TRACKS, catalog.ARRANGED_MIDI)
    gives = (catalog.STEMS, catalog.STEM_FILES)
    reads = ("export.stems", "render", "master.lowpass_hz", "run.seed",
             *(f"master.{k}" for k in TEXTURE_KEYS))
    binaries = ("fluidsynth",)
    help = "MIDI per part with tempo, key and chords for a DAW; with export.stems, a 24-bit WAV per part"

    def inputs(self, params):
        return self.takes[:2] if params.render.midi else self.takes  # --midi: the given files

    def external_inputs(self, params, root):
        return render_inputs(params, root)

    def check(self, params, root):
        check_render(params, root)

    def run(self, ctx: StageContext) -> dict:
        p, master = ctx.params.render, ctx.params.master
        make_audio = ctx.params.export.stems
        rendered = ctx.source(catalog.RENDERED)
        by_stem = {r.file.removesuffix(".wav"): r for r in catalog.renders.read(rendered)}
        files = track_midi_files(ctx.path(p.midi) if p.midi else None,
                                         None if p.midi else ctx.source(catalog.ARRANGED_MIDI))
        rate = render_rate(p.sample_rate, master.lowpass_hz)
        titles = unique_titles([r for r, _ in files])
        jobs = []
        for record, midi in files:
            wav = by_stem[record.stem].file
            samples = read_wav(rendered / wav)[0].shape[1] if make_audio else 0
            jobs.append((record, titles[record.index], midi.read_bytes(), samples,
                         texture_seed(ctx.params.run.seed, wav)))
        shared = (ctx.path(p.soundfont), rate, p.gain, p.sample_rate, master, make_audio)
        sets, total_bytes = [], 0
        for result in ctx.fan_out(make_stem_set, jobs, total=len(jobs), workers=p.workers, shared=shared):
            stem_set = result["set"]
            for file_name, data in result["files"].items():
                atomic.write_bytes(ctx.out_dir / file_name, data)
                total_bytes += len(data)
            sets.append(stem_set)
            wavs = [r["part"] for r in stem_set.parts if r["wav"]] + ([TEXTURE] if stem_set.texture else [])
            ctx.log(f"{stem_set.midi}: MIDI of " + ", ".join(r["part"] for r in stem_set.parts)
                    + (f"; 24-bit WAV of {', '.join(wavs)} at {stem_set.sample_rate} Hz" if wavs else "")
                    + (f", all {stem_set.gain_db:+.2f} dB to fit 24 bits" if stem_set.gain_db else ""))
        catalog.stem_sets.write(ctx.out_dir, sets)
        return {"tracks": len(sets), "audio": make_audio, "files": sum(len(s.files()) for s in sets),
                "megabytes": round(total_bytes / 2**20, 1), "gain_db": [s.gain_db for s in sets]}
