"""render: MIDI -> stereo float WAV with FluidSynth, at render.sample_rate, or at half of it when
the master low-passes at or below an eighth of it (audio/fluidsynth.py: render_rate).
FluidSynth's version (`fluidsynth --version`) is part of the stage's key."""
from __future__ import annotations

from ..audio.fluidsynth import render_rate, render_wav_bytes
from ..core import atomic
from ..core.errors import StageError
from ..core.runner import Stage, StageContext
from . import catalog
from .fluidsynth_inputs import check_render, render_inputs
from .track_midi import track_midi_files


def _render_job(shared, job) -> dict:
    soundfont, sample_rate, gain = shared
    midi_data, midi_name, wav_name = job
    audio, info = render_wav_bytes(midi_data, midi_name, soundfont, sample_rate, gain)
    return {"audio": catalog.Rendered(wav_name, info["seconds"], sample_rate, info["peak"]), "wav": audio}


class RenderStage(Stage):
    name = "render"
    takes = (catalog.TRACKS, catalog.ARRANGED_MIDI)
    gives = (catalog.RENDERS, catalog.RENDERED)
    reads = ("render", "master.lowpass_hz")
    binaries = ("fluidsynth",)
    help = "render the arranged MIDI to WAV with FluidSynth and a SoundFont from soundfonts/"

    def inputs(self, params):
        return () if params.render.midi else self.takes  # --midi: the given files instead

    def external_inputs(self, params, root):
        return render_inputs(params, root)

    def check(self, params, root):
        check_render(params, root)

    def run(self, ctx: StageContext) -> dict:
        p = ctx.params.render
        files = [(r.stem, path) for r, path in track_midi_files(
            ctx.path(p.midi) if p.midi else None, None if p.midi else ctx.source(catalog.ARRANGED_MIDI))]
        if not files:
            raise StageError(f"nothing to render in {p.midi or 'the arrange artifact'}")
        rate = render_rate(p.sample_rate, ctx.params.master.lowpass_hz)
        if rate != p.sample_rate:
            ctx.log(f"rendering at {rate} Hz: the master low-passes at {ctx.params.master.lowpass_hz:g} Hz "
                    f"and delivers at {p.sample_rate} Hz")
        # Each job carries its MIDI bytes and hands back WAV bytes, written here as they come.
        jobs = ((midi.read_bytes(), midi.name, f"{stem}.wav") for stem, midi in files)
        rendered = []
        for r in ctx.fan_out(_render_job, jobs, total=len(files), workers=p.workers,
                             shared=(ctx.path(p.soundfont), rate, p.gain)):
            audio = r["audio"]
            atomic.write_bytes(ctx.out_dir / audio.file, r["wav"])
            rendered.append(audio)
            ctx.log(f"{audio.file}: {audio.seconds:.1f}s, peak {audio.peak:.2f}")
        catalog.renders.write(ctx.out_dir, rendered)
        return {"files": len(rendered), "audio_seconds": round(sum(a.seconds for a in rendered), 2),
                "sample_rate": rate}
