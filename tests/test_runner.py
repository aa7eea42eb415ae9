import json
import os
import subprocess
import sys
import time

import pytest

from conftest import ROOT, song_bytes, write_zip
from lofi_pipeline import atomic
from lofi_pipeline.lock import LockedError, OutputsLock
from lofi_pipeline.pipeline import STAGE_NAMES, build_stages
from lofi_pipeline.runner import Runner


@pytest.fixture
def runner_for(tmp_path, quick_cfg):
    archive = write_zip(tmp_path / "a.zip", {f"s{i}.mid": song_bytes(i) for i in range(4)})

    def make(*overrides):
        return Runner(quick_cfg(f'run.archive="{archive}"', *overrides), build_stages(), log=lambda m: None)
    return make


def test_keys_chain_so_an_effect_change_never_retrains(runner_for):
    base, changed = runner_for(), runner_for("master.reverb_wet=0.4")
    same = [n for n in STAGE_NAMES if base.key(n) == changed.key(n)]
    assert same == ["intake", "extract", "encode", "train", "generate", "arrange", "render"]
    sampling = runner_for("generate.temperature=0.5")
    assert [n for n in STAGE_NAMES if base.key(n) != sampling.key(n)] == STAGE_NAMES[4:]


def test_keys_hash_archive_bytes_not_paths(tmp_path, quick_cfg):
    a = write_zip(tmp_path / "a.zip", {"s.mid": song_bytes(0)})
    b = tmp_path / "copy.zip"
    b.write_bytes(a.read_bytes())
    ra = Runner(quick_cfg(f'run.archive="{a}"'), build_stages())
    rb = Runner(quick_cfg(f'run.archive="{b}"'), build_stages())
    assert ra.key("intake") == rb.key("intake")
    c = write_zip(tmp_path / "c.zip", {"s.mid": song_bytes(1)})
    assert Runner(quick_cfg(f'run.archive="{c}"'), build_stages()).key("intake") != ra.key("intake")


def test_status_says_why_a_stage_is_stale(runner_for):
    r = runner_for()
    r.run(["encode"])
    assert r.state("encode") == (True, "up to date")
    r2 = runner_for("encode.window=8")
    assert r2.state("encode") == (False, "parameters changed: encode.window")
    assert r2.state("extract")[0]
    assert r2.state("train") == (False, "not built yet")
    r3 = runner_for("extract.grid_per_beat=24")
    assert r3.state("encode") == (False, "upstream changed: extract")


def test_a_crash_mid_stage_leaves_nothing_trusted(runner_for, monkeypatch):
    r = runner_for()
    r.run(["extract"])
    before = (r.artifact_dir("extract") / "pieces.json").read_bytes()
    r2 = runner_for("extract.max_beats=64")

    def crash(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(atomic, "replace_dir", crash)
    with pytest.raises(KeyboardInterrupt):
        r2.run(["extract"])
    monkeypatch.undo()
    assert not (r2.outputs / ".tmp" / "extract").exists()
    assert (r.artifact_dir("extract") / "pieces.json").read_bytes() == before  # old artifact intact
    assert r2.state("extract")[0] is False
    r2.run(["extract"])
    assert r2.state("extract") == (True, "up to date")


def test_lock_refuses_a_second_writer_and_names_the_owner(tmp_path):
    with OutputsLock(tmp_path):
        with pytest.raises(LockedError, match=rf"in use by another lofi run \(pid {os.getpid()}\)"):
            with OutputsLock(tmp_path):
                pass
    with OutputsLock(tmp_path):  # released: free again
        pass


def hold_lock_elsewhere(folder, seconds: float) -> subprocess.Popen:
    """Another process that takes the outputs lock on `folder` and keeps it for `seconds`."""
    code = ("import sys, time; sys.path.insert(0, 'src'); from lofi_pipeline.lock import OutputsLock; "
            f"l = OutputsLock(__import__('pathlib').Path({str(folder)!r})); l.__enter__(); "
            f"print('locked', flush=True); time.sleep({seconds})")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_lock_left_by_a_killed_process_is_stale(tmp_path):
    proc = hold_lock_elsewhere(tmp_path, 60)
    with pytest.raises(LockedError):
        with OutputsLock(tmp_path):
            pass
    proc.kill()
    proc.wait()
    assert (tmp_path / ".lock").read_text().strip() == str(proc.pid)  # the pid file is left behind
    with OutputsLock(tmp_path):  # but the kernel dropped the lock with the process
        pass


def test_waiting_for_the_lock(tmp_path):
    proc = hold_lock_elsewhere(tmp_path, 1.5)
    start = time.monotonic()
    with OutputsLock(tmp_path, wait_s=20):
        assert time.monotonic() - start > 0.5
    proc.wait()


def test_manifest_records_class_versions_and_timings(runner_for):
    r = runner_for()
    r.run(["encode"])
    man = json.loads((r.artifact_dir("encode") / "manifest.json").read_text())
    assert man["class"] == "EncodeStage" and man["key"] == r.key("encode")
    assert man["upstream"] == {"extract": r.key("extract")}
    assert "music21" in man["versions"] and man["timings"]["seconds"] >= 0
