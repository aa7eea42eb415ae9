"""arrange: each generated take -> a lo-fi multi-track MIDI file (keys, lead, bass, drums) and
the track's record (title, seed, key, tempo, ...) that every later stage reads."""
from __future__ import annotations

from ..core import atomic
from ..core.runner import Stage, StageContext
from ..music.arrangement import arrange_track
from . import catalog


def _arrange_job(shared, take: dict) -> dict:
    """One take arranged: its MIDI bytes and record."""
    grid, bars, cfg, name, profile = shared
    title = f"{name} {take['index']:02d}"
    drums = take["drums"]
    midi, _, info = arrange_track(take["tokens"], grid, bars, take["seed"], cfg, title, profile, take["sections"],
                                  take["loop_bars"], take["melody_by"], drums.drum_bars() if drums else None)
    record = catalog.TrackRecord(index=take["index"], stem=f"track_{take['index']:02d}", title=title,
                                 seed=take["seed"], form=take["form"],
                                 drums=drums.source if drums else "pattern (a fixed boom-bap figure)", **info)
    return {"record": record, "midi": midi}


class ArrangeStage(Stage):
    name = "arrange"
    takes = (catalog.TAKES, catalog.PROFILE, catalog.DRUM_PARTS)
    gives = (catalog.TRACKS, catalog.ARRANGED_MIDI)
    reads = ("arrange", "run.name")
    help = "turn generated events into lo-fi MIDI: keys, lead, bass and the drums"

    def inputs(self, params):
        # The pattern needs no drum model: arrange then runs without the drums stage.
        return self.takes if params.arrange.drums == "learned" else self.takes[:2]

    def run(self, ctx: StageContext) -> dict:
        cfg = ctx.params.arrange
        takes = catalog.read_takes(ctx.source(catalog.TAKES))
        profile = catalog.read_profile(ctx.source(catalog.PROFILE))
        shared = (takes.grid, takes.bars, cfg, ctx.params.run.name, profile)
        drums = {}
        if cfg.drums == "learned":
            drums = {p.index: p for p in catalog.drum_parts.read(ctx.source(catalog.DRUM_PARTS))}
        jobs = [{"index": t.index, "seed": t.seed, "tokens": t.tokens, "sections": t.sections,
                 "loop_bars": t.loop_bars, "form": t.form, "melody_by": t.melody_by, "drums": drums.get(t.index)}
                for t in takes.tracks]
        records = []
        for result in ctx.fan_out(_arrange_job, jobs, total=len(jobs), workers=cfg.workers, shared=shared):
            r = result["record"]
            atomic.write_bytes(ctx.out_dir / catalog.midi_name(r), result["midi"])
            records.append(r)
            ctx.log(f"{catalog.midi_name(r)}: {r.key}, {r.metre} at {r.tempo_bpm} BPM, {r.seconds:.0f}s, "
                    + (f"{r.form}; " if r.form else "")
                    + ", ".join(f"{k} {v}" for k, v in r.notes_per_part.items())
                    + f"; {r.harmony_changes} chords, lead: {r.lead}, drums: {r.drums}"
                    + (f", {r.harmonised_bars:g} bars harmonised from the melody" if r.harmonised_bars else ""))
        catalog.tracks.write(ctx.out_dir, records)
        return {"tracks": len(records), "seconds": [r.seconds for r in records], "lead": [r.lead for r in records],
                "harmonised_bars": [r.harmonised_bars for r in records], "drums": [r.drums for r in records],
                "unknown_dropped": sum(r.unknown_dropped for r in records)}
