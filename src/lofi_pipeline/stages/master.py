"""master: every rendered WAV through the lo-fi chain (audio/mastering.py), to a loudness
target under a true-peak ceiling, delivered at render.sample_rate."""
from __future__ import annotations

from ..audio.mastering import master_wav_bytes, texture_seed
from ..core import atomic
from ..core.runner import Stage, StageContext
from . import catalog


def _master_job(shared, job) -> dict:
    p, output_rate = shared
    data, name, seed = job
    audio, info = master_wav_bytes(data, p, seed, output_rate)
    return {"audio": catalog.Mastered(name, info["seconds"], info["sample_rate"], info["lufs"],
                                      info["true_peak_db"], seed), "wav": audio}


class MasterStage(Stage):
    name = "master"
    takes = (catalog.RENDERS, catalog.RENDERED)
    gives = (catalog.MASTERS, catalog.MASTERED)
    reads = ("master", "run.seed", "render.sample_rate")
    help = "lo-fi mastering: EQ, compression, reverb, crackle, hiss, wow/flutter, loudness"

    def run(self, ctx: StageContext) -> dict:
        rendered = ctx.source(catalog.RENDERED)
        renders = catalog.renders.read(rendered)
        p, seed = ctx.params.master, ctx.params.run.seed
        # Each job carries its render's bytes and hands back the master's, written here as they come.
        jobs = (((rendered / r.file).read_bytes(), r.file, texture_seed(seed, r.file)) for r in renders)
        results = []
        for r in ctx.fan_out(_master_job, jobs, total=len(renders), workers=p.workers,
                             shared=(p, ctx.params.render.sample_rate)):
            audio = r["audio"]
            atomic.write_bytes(ctx.out_dir / audio.file, r["wav"])
            results.append(audio)
            ctx.log(f"{audio.file}: {audio.lufs:.1f} LUFS, true peak {audio.true_peak_db:.1f} dBTP")
        catalog.masters.write(ctx.out_dir, results)
        return {"files": len(results), "lufs": [a.lufs for a in results],
                "true_peak_db": [a.true_peak_db for a in results]}
