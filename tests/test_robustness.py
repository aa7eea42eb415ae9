"""Killed runs, fuzzed inputs and output hygiene."""
import io
import re
import shutil
import signal
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import ROOT, lofi_process, midi_bytes, song_bytes, wait_for, write_zip
from lofi_pipeline.audio.playlist import read_playlist
from lofi_pipeline.core.config import load_config
from lofi_pipeline.core.errors import StageError
from lofi_pipeline.core.runner import PAUSE_ENV
from lofi_pipeline.music.archive import Limits, read_archive
from lofi_pipeline.music.arrangement import arrange_track
from lofi_pipeline.stages.catalog import read_metrics

STAGES = ["intake", "extract", "encode", "train", "generate", "drums", "arrange", "render", "master", "stems", "export"]


def artifact_digest(stage_dir):
    """What must be equal between an interrupted-then-resumed run and a clean one."""
    out = {}
    for path in sorted(stage_dir.rglob("*")):
        if not path.is_file() or path.name in ("manifest.json", "curves.png") or path.suffix in (".keras", ".png"):
            continue
        rel = str(path.relative_to(stage_dir))
        if path.suffix == ".npz":
            out[rel] = {k: v.tolist() for k, v in np.load(path).items()}
        elif path.suffix == ".json" and path.name == "metrics.json":
            continue  # training resumes rather than repeating bit for bit
        else:
            out[rel] = path.read_bytes()
    return out


@pytest.fixture(scope="module")
def reference(quick_run, tmp_path_factory):
    """A copy of the session's quick run (`lofi all`, made once for every test file): (a folder
    for the tests' own copies, the run's options but --outputs, the copy)."""
    args, out, _ = quick_run
    base = tmp_path_factory.mktemp("kill")
    shutil.copytree(out, base / "reference", ignore=shutil.ignore_patterns(".lock"))
    return base, args[:args.index("--outputs")], base / "reference"


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_killed_before_it_commits_is_redone_and_nothing_is_lost(reference, stage):
    """SIGKILL at the worst moment: every output written, nothing committed yet (the runner holds
    the stage there when PAUSE_ENV names it, so the kill never misses its moment)."""
    base, args, ref = reference
    out = base / f"killed_{stage}"
    shutil.copytree(ref, out, ignore=shutil.ignore_patterns(".lock"))
    shutil.rmtree(out / stage)
    playlist_before = read_playlist(out / "playlist.m3u8")
    mp3s_before = sorted(p.name for p in (out / "tracks").glob("*.mp3"))
    if stage == "export":  # the stage writes its MP3s itself before it commits
        for name in mp3s_before:
            (out / "tracks" / name).unlink()
    proc = lofi_process(stage, *args, "--outputs", str(out), env={PAUSE_ENV: stage})
    assert wait_for((out / ".tmp" / f"{stage}.paused").exists, proc), proc.communicate()[1][-2000:]
    assert any((out / ".tmp" / stage).iterdir())  # its outputs are there, uncommitted
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    # (a) nothing half-done is taken as the artifact
    assert not (out / stage).exists()
    # (b) a second run completes and gives what an uninterrupted run gives
    again = lofi_process(stage, *args, "--outputs", str(out))
    stdout, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-2000:]
    assert f"[{stage}] running" in stdout
    assert not (out / ".tmp").exists() or not any((out / ".tmp").iterdir())
    assert artifact_digest(out / stage) == artifact_digest(ref / stage)
    # (c) the playlist and the MP3s lose nothing and gain no duplicate
    assert read_playlist(out / "playlist.m3u8") == playlist_before
    assert sorted(p.name for p in (out / "tracks").glob("*.mp3")) == mp3s_before


@pytest.mark.slow
def test_killed_training_resumes_from_its_checkpoint(reference):
    base, args, ref = reference
    out = base / "killed_training"
    shutil.copytree(ref, out, ignore=shutil.ignore_patterns(".lock"))
    shutil.rmtree(out / "train")
    slow = [*args, "--set", "train.max_steps=60", "--set", "train.patience=6", "--outputs", str(out)]
    proc = lofi_process("train", *slow)

    def two_checks_done() -> bool:
        return any(len(h.read_text().splitlines()) >= 3 for h in (out / ".cache" / "train").rglob(
            "member_0/history.csv"))  # a header and two dev checks
    assert wait_for(two_checks_done, proc), "training never reached its second dev check"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    again = lofi_process("train", *slow)
    stdout, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-2000:]
    done = int(re.search(r"member_0: resuming after check (\d+)", stdout).group(1))
    assert done >= 2
    # member_0 trains only the stretches of steps it had left; member_1 trains all six
    assert len(re.findall(r"^Epoch \d+/6", stdout, re.M)) == (6 - done) + 6
    assert [len(h) for h in read_metrics(out / "train")["histories"].values()] == [6, 6]


def test_two_runs_at_once_the_second_refuses_with_the_owner(reference):
    base, args, ref = reference
    out = base / "concurrent"
    shutil.copytree(ref, out, ignore=shutil.ignore_patterns(".lock"))
    shutil.rmtree(out / "train")
    first = lofi_process("train", *args, "--outputs", str(out), env={PAUSE_ENV: "train"})
    assert wait_for((out / ".tmp" / "train.paused").exists, first)  # the first holds the lock, mid-stage
    second = lofi_process("train", *args, "--outputs", str(out))
    _, err = second.communicate(timeout=120)
    assert second.returncode == 75
    assert f"in use by another lofi run (pid {first.pid})" in err and err.count("\n") == 1
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 130 and not (out / "train").exists()


def test_clean_removes_only_what_the_pipeline_wrote(reference):
    base, args, ref = reference
    out = base / "clean"
    shutil.copytree(ref, out, ignore=shutil.ignore_patterns(".lock"))
    (out / "my_notes.txt").write_text("keep me")
    (out / "mixes").mkdir()
    proc = lofi_process("clean", *args, "--outputs", str(out))
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert sorted(p.name for p in out.iterdir()) == ["mixes", "my_notes.txt"]


def test_a_failing_stage_leaves_no_temporary_files(tmp_path, quick_cfg):
    from lofi_pipeline.core.runner import Runner
    from lofi_pipeline.pipeline import build_stages
    only_drums = write_zip(tmp_path / "d.zip", {"a.mid": midi_bytes(drums=[(0, 1, 36, 90)]),
                                                "b.mid": midi_bytes(drums=[(0, 1, 38, 90)])})
    runner = Runner(quick_cfg(f'run.archive="{only_drums}"'), build_stages(), root=ROOT, log=lambda m: None)
    with pytest.raises(StageError, match="at least 3 distinct pieces"):
        runner.run(["encode"])
    leftovers = [p for p in (tmp_path / "outputs").rglob("*") if ".tmp" in p.name or p.parent.name == ".tmp"]
    assert leftovers == []
    assert runner.manifest("extract")["stats"]["skipped_by_reason"] == {"no pitched notes": 2}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(st.tuples(st.text(min_size=1, max_size=20), st.binary(max_size=300)), max_size=6),
       cut=st.integers(min_value=0, max_value=4000))
def test_intake_never_crashes_on_arbitrary_archives(tmp_path, entries, cut):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries:
            zf.writestr(name.replace("\x00", "_") or "x", (b"MThd" + data) if len(data) % 2 else data)
    data = buf.getvalue()
    path = tmp_path / "fuzz.zip"
    path.write_bytes(data[: len(data) - min(cut, len(data) // 2)] if cut % 3 == 0 else data)
    try:
        result = read_archive(path, Limits(max_entry_bytes=200))
    except StageError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert all(b.data[:4] == b"MThd" for b in result.files)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(*[st.sampled_from(["<unk>", "<pad>"])] * 6),
    st.tuples(st.sampled_from(["1", "3", "4", "6", "12", "24", "48", "<pad>"]),
              st.sampled_from(["-", "0", "2", "7", "9", "11", "<unk>"]),
              st.sampled_from(["-", "maj", "m7", "7b9", "1", "5"]),
              st.one_of(st.just("-"), st.integers(0, 127).map(str)),
              st.sampled_from(["-", "1", "6", "12", "48"]),
              st.sampled_from(["0", "3"]))), max_size=80),
    st.integers(0, 2**31 - 1))
def test_random_token_rows_decode_to_valid_midi_or_a_clear_error(rows, seed):
    import mido
    cfg = load_config(ROOT / "lofi.toml", "quick").arrange
    try:
        midi, _, info = arrange_track(rows, 12, 4, seed, cfg, "fuzz")
    except StageError as exc:
        assert "no decodable events" in str(exc)
        return
    again = mido.MidiFile(file=io.BytesIO(midi))
    assert again.length > 0 and len(again.tracks) == 5


def processes_in_group(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is `pgid`, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_many_file_extract_stops_every_process_of_the_run(tmp_path, sig):
    archive = write_zip(tmp_path / "many.zip", {f"s{i:03d}.mid": song_bytes(i) for i in range(400)})
    out = tmp_path / "o"
    proc = lofi_process("extract", "--archive", str(archive), "--outputs", str(out),
                        "--set", "extract.workers=2", start_new_session=True)
    cache = out / ".cache" / "extract"
    assert wait_for(lambda: len(list(cache.glob("*.json"))) >= 6, proc), "extract never got going"
    assert len(processes_in_group(proc.pid)) >= 3  # the run and its two workers
    proc.send_signal(sig)
    sent = time.monotonic()
    _, err = proc.communicate(timeout=30)
    while processes_in_group(proc.pid) and time.monotonic() - sent < 5:
        time.sleep(0.05)
    assert processes_in_group(proc.pid) == [], "a process of the run outlived it by 5 s"
    assert proc.returncode == 130 and err.strip().splitlines()[-1].startswith("lofi: interrupted")
    assert len(list(cache.glob("*.json"))) < 400  # the queued files were not parsed after the stop
    assert not (out / "extract").exists()
