"""`lofi preview N`: one track of the run made again for new options, into outputs/preview/,
the run's artifacts untouched; it is the very MP3 the run then exports for that track."""
import re

import pytest

from helpers import copy_run, lofi
from lofi_pipeline.model.takes import track_seed
from lofi_pipeline.pipeline import STAGE_NAMES
from lofi_pipeline.stages import catalog

pytestmark = pytest.mark.slow
PREVIEW = re.compile(r"^preview: (preview/\S+\.mp3) \(track (\d+), (re-mastered|made anew) in [\d.]+ s\)$", re.M)


def previewed(out, args, track: int, *options: str) -> tuple[bytes, str, str]:
    """(the preview's bytes, how it was made, the whole output) of `lofi preview TRACK`."""
    run = lofi("preview", str(track), *args, *options)
    m = PREVIEW.search(run.stdout)
    assert m and int(m.group(2)) == track, run.stdout + run.stderr
    return (out / m.group(1)).read_bytes(), m.group(3), run.stdout


def exported(out) -> dict[int, bytes]:
    return {e.index: (out / e.file).read_bytes() for e in catalog.exports.read(out / "export")}


@pytest.mark.parametrize("options", [("--set", "master.hiss_db=-50.0"),  # the run's render, re-mastered
                                     ("--set", 'master.preset="clean"')],  # rendered again, at 44.1 kHz
                         ids=["master-only", "render-too"])
def test_a_re_mastered_preview_is_the_track_the_run_then_exports(quick_run, tmp_path, options):
    args, out = copy_run(quick_run, tmp_path)
    before = {n: (out / n / "manifest.json").read_bytes() for n in STAGE_NAMES}
    data, how, stdout = previewed(out, args, 2, *options)
    assert how == "re-mastered" and "running" not in stdout  # no stage of the run ran
    assert {n: (out / n / "manifest.json").read_bytes() for n in STAGE_NAMES} == before
    assert lofi("status", *args).stdout.count(" fresh ") == len(STAGE_NAMES)
    assert data not in exported(out).values()
    lofi("export", *args, *options)
    assert exported(out)[2] == data


def test_a_new_take_of_one_track_is_made_alone_and_the_others_keep_theirs(quick_run, tmp_path):
    args, out = copy_run(quick_run, tmp_path)
    old_seeds = {r.index: r.seed for r in catalog.tracks.read(out / "arrange")}
    old = exported(out)
    data, how, stdout = previewed(out, args, 1, "--set", "generate.retakes=[1]")
    assert how == "made anew" and "[generate] running" in stdout and "[train] cached" in stdout
    assert data != old[1]
    lofi("export", *args, "--set", "generate.retakes=[1]")
    seeds = {r.index: r.seed for r in catalog.tracks.read(out / "arrange")}
    assert seeds[2] == old_seeds[2] and seeds[1] != old_seeds[1]
    now = exported(out)
    assert now[1] == data and now[2] == old[2]
    again, _, _ = previewed(out, args, 1, "--set", "generate.retakes=[1, 1]")  # another take again
    assert again not in (data, old[1])


def test_a_preview_refuses_what_it_cannot_make(quick_run, tmp_path):
    args, out = copy_run(quick_run, tmp_path)
    run = lofi("preview", "9", *args, check=False)
    assert run.returncode == 1 and "lofi: error: no track 9 in this run (tracks 1 to 2)" in run.stderr
    run = lofi("preview", "1", *args, "--set", "train.max_steps=7", check=False)
    assert run.returncode == 1 and "no trained models for these options" in run.stderr
    assert not list((out / "preview").glob("*.mp3"))


def test_a_retake_has_a_seed_no_take_of_the_track_had():
    runs = {track_seed(1, i, d, s) for i in range(1, 100) for d in (0, 1) for s in ("run", "radio")}
    retakes = {track_seed(1, i, d, "run", k) for i in range(1, 100) for d in (0, 1) for k in (1, 2)}
    assert len(retakes) == 396 and not retakes & runs
