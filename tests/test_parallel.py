"""Executors: local worker processes, and a real Ray cluster (a head and a worker node in a
network namespace the test makes itself) running the same stages to the same bytes."""
import json
import re

import pytest

from helpers import in_ray_cluster, lofi, performed_song, write_zip
from lofi_pipeline.core.config import ConfigError, load_config
from lofi_pipeline.core.errors import StageError
from lofi_pipeline.core.parallel import Executor, process_map
from lofi_pipeline.stages.catalog import read_pieces

STAGES = ["intake", "extract", "encode", "train", "generate", "drums", "arrange", "render", "master", "stems", "export"]


def _add(offset, x):
    return offset + x


def _fail_on_three(x):
    if x == 3:
        raise StageError("job 3 failed")
    return x


@pytest.mark.parametrize("workers", [1, 2])
def test_results_come_in_job_order_and_jobs_are_made_only_as_slots_free(workers):
    made = []

    def jobs():
        for i in range(20):
            made.append(i)
            yield i
    results = process_map(_add, jobs(), workers, shared=100, in_flight=3)
    first = next(results)
    assert first == 100 and len(made) <= 3
    assert [first, *results] == [100 + i for i in range(20)]


def test_a_failing_job_reaches_the_stage_as_its_own_error():
    with pytest.raises(StageError, match="job 3 failed"):
        list(Executor("local", workers=2).map(_fail_on_three, range(8)))


def test_the_ray_executor_without_ray_installed_is_a_config_error(monkeypatch):
    import importlib.util
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else find_spec(name, *a))
    with pytest.raises(ConfigError, match=r"run.executor: 'ray' needs Ray.*pip install -e '\.\[ray\]'"):
        load_config(None, overrides=["run.executor=ray"])


def test_ray_is_in_no_stage_key_so_installing_it_leaves_caches_fresh():
    from lofi_pipeline.core.hashing import code_fingerprint
    from lofi_pipeline.pipeline import build_stages
    for stage in build_stages():
        code = code_fingerprint(type(stage).__module__)
        assert "ray" not in code["libraries"] and "core/ray_tasks.py" not in code["sources"], stage.name
    assert "core/parallel.py" in code_fingerprint("lofi_pipeline.stages.render")["sources"]


def manifests(out):
    return {s: json.loads((out / s / "manifest.json").read_text()) for s in STAGES}


@pytest.mark.slow
def test_the_quick_profile_through_a_ray_cluster_matches_the_local_run(quick_run, tmp_path):
    args, local_out, _ = quick_run
    ray_out = tmp_path / "ray_outputs"
    args = [a if a != str(local_out) else str(ray_out) for a in args]
    run = in_ray_cluster(f"$LOFI all {' '.join(args)} --set run.executor=ray --set run.ray_address=$RAY_ADDRESS",
                         tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    local, ray = manifests(local_out), manifests(ray_out)
    for stage in STAGES:
        assert ray[stage]["key"] == local[stage]["key"], stage
        assert ray[stage]["outputs"] == local[stage]["outputs"], stage
    midi = sorted(p.name for p in (local_out / "arrange").glob("*.mid"))
    assert len(midi) == 2
    assert all((ray_out / "arrange" / m).read_bytes() == (local_out / "arrange" / m).read_bytes() for m in midi)
    names = [sorted(p.name for p in (out / "tracks").iterdir()) for out in (ray_out, local_out)]
    assert names[0] == names[1] and len(names[0]) == 2


FAULTS = r"""
# Each step says its name; a step that fails says which it was (under set -e a failing command
# would otherwise end the script with no word of where).
step() {{ STEP="$1"; echo "step: $1"; }}
trap 'echo "failed at step: $STEP (line $LINENO)"' ERR
on_ray="--set run.executor=ray --set run.ray_address=$RAY_ADDRESS"
render="$LOFI render --midi {songs} --outputs {base}/worker_killed"
# the Ray worker process whose FluidSynth is rendering (the driver runs `fluidsynth --version` too);
# waits for that state (at most 5 minutes on a starved machine), else fails naming the step
ray_worker_rendering() {{
  for i in $(seq 6000); do
    for fs in $(pgrep -x fluidsynth); do
      parent=$(ps -o ppid= -p "$fs" | tr -d ' ')
      if [ -n "$parent" ] && ps -o args= -p "$parent" | grep -q "^ray::"; then echo "$parent"; return 0; fi
    done
    sleep 0.05
  done
  echo "no Ray worker was seen rendering" >&2; return 1
}}
step "a file that is not MIDI: its task's result is the file's skip reason"
$LOFI extract --archive {bad_zip} --outputs {base}/extract_out $on_ray
step "a task no node can hold is an error, not a wait for ever"
($PYTHON -c "from lofi_pipeline.core.parallel import Executor; list(Executor('ray').map(str, [1], cpus=3))" 2>&1 \
  || true) | tail -1 | sed 's/^/too big: /'
step "a Ray worker killed while its FluidSynth renders: Ray runs the task again"
$render $on_ray --set render.workers=1 > {base}/worker_killed.log 2>&1 &
driver=$!
worker=$(ray_worker_rendering)
echo "worker: $(ps -o args= -p "$worker")"
kill -9 "$worker" 2>/dev/null || echo "the worker had already ended"
status=0; wait "$driver" || status=$?
echo "render exit: $status"
[ "$status" = 0 ] || tail -5 {base}/worker_killed.log
step "the driver killed mid-render (forced re-run): the finished artifact stays"
$render $on_ray --force > {base}/driver_killed.log 2>&1 &
driver=$!
ray_worker_rendering >/dev/null || true
# The driver may have ended by itself by now (on a starved machine its raylet can die first);
# either way the forced re-run never finished, which is what the next step is about.
kill -9 "$driver" 2>/dev/null && echo "driver: killed" || echo "driver: had already ended"
wait "$driver" || true
step "nothing half-written is trusted (checked locally: the keys do not depend on the executor)"
$render > {base}/after.log 2>&1
echo "after the driver was killed: $(grep '^\[render\]' {base}/after.log)"
"""


@pytest.mark.slow
def test_a_killed_worker_is_retried_a_bad_file_is_skipped_and_a_killed_driver_leaves_nothing_trusted(tmp_path):
    songs = tmp_path / "songs"
    songs.mkdir()
    for i in range(3):  # long enough that FluidSynth is still at work when its worker is killed
        (songs / f"song_{i}.mid").write_bytes(performed_song(i, bars=40).data)
    bad_zip = write_zip(tmp_path / "bad.zip", {"good.mid": performed_song(1).data, "broken.mid": b"MThd\x00\x00junk"})
    local = tmp_path / "local"
    lofi("render", "--outputs", str(local), "--midi", str(songs))
    run = in_ray_cluster(FAULTS.format(songs=songs, bad_zip=bad_zip, base=tmp_path), tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    _, skipped = read_pieces(tmp_path / "extract_out" / "extract")
    assert [s["name"] for s in skipped] == ["broken.mid"] and skipped[0]["reason"]
    assert re.search(r"^worker: ray::", run.stdout, re.M), run.stdout  # a Ray worker process, mid-task
    assert "render exit: 0" in run.stdout
    assert re.search(r"^too big: .*StageError: no node of the Ray cluster has 3 CPUs for one str task "
                     r"\(the largest has 2 CPUs\)", run.stdout, re.M), run.stdout
    killed = tmp_path / "worker_killed"
    for wav in sorted((local / "render").glob("*.wav")):
        assert (killed / "render" / wav.name).read_bytes() == wav.read_bytes()
    assert manifests_equal(killed, local, "render")
    assert re.search(r"^after the driver was killed: \[render\] cached \(", run.stdout, re.M), run.stdout


def manifests_equal(a, b, stage):
    ma, mb = (json.loads((x / stage / "manifest.json").read_text()) for x in (a, b))
    return ma["key"] == mb["key"] and ma["outputs"] == mb["outputs"]

