"""What the stages that run FluidSynth (render, stems) read from outside the pipeline: the
SoundFont and, with --midi, the given files. Their digests go into both stages' keys, and both
fail fast, before any upstream work, when they cannot run."""
from __future__ import annotations

from ..audio.fluidsynth import check_fluidsynth, check_soundfont
from ..core.errors import StageError
from ..core.hashing import path_digest
from . import catalog


def render_inputs(params, root) -> dict[str, str]:
    """The bytes outside the pipeline a FluidSynth stage reads: the SoundFont, and --midi's files."""
    digests = {"soundfont": path_digest(root / params.render.soundfont)}
    if params.render.midi:
        digests["midi"] = ",".join(path_digest(f) for f in catalog.given_midi_files(root / params.render.midi))
    return digests


def check_render(params, root) -> None:
    check_fluidsynth()
    check_soundfont(root / params.render.soundfont)
    if params.render.midi and not (root / params.render.midi).exists():
        raise StageError(f"{params.render.midi}: MIDI file or folder not found (--midi / render.midi)")
