import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from helpers import ROOT, quick_config, song_bytes, write_zip
from lofi_pipeline.core import atomic, hashing
from lofi_pipeline.core.config import INPUT, MASTER_PRESETS, PARAM, RUNTIME, SECTIONS, Config
from lofi_pipeline.core.errors import StageError
from lofi_pipeline.core.lock import LockedError, OutputsLock
from lofi_pipeline.core.runner import STAGE_MANIFEST, Runner, artifact_digest
from lofi_pipeline.model import base as base_ensemble
from lofi_pipeline.model import drum_model
from lofi_pipeline.pipeline import STAGE_NAMES, build_stages
from lofi_pipeline.stages.catalog import PIECES, link_stages


@pytest.fixture
def runner_for(tmp_path, quick_cfg):
    archive = write_zip(tmp_path / "a.zip", {f"s{i}.mid": song_bytes(i) for i in range(4)})

    def make(*overrides):
        return Runner(quick_cfg(f'run.archive="{archive}"', *overrides), build_stages(), root=ROOT,
                      log=lambda m: None)
    return make


# -- every config key re-keys exactly the stages that read it -------------------------------
def config_fields():
    """(section, field) for every key of every config section: new keys are covered by themselves."""
    return [(s, f) for s in SECTIONS for f in dataclasses.fields(getattr(Config(), s))]


def changed_value(f: dataclasses.Field, default):
    """A valid value other than `default` (the key's value in the quick profile), whatever the key's type and range."""
    lo, hi, choices = f.metadata["lo"], f.metadata["hi"], f.metadata["choices"]
    if choices:
        return next(c for c in choices if c != default)
    if default == "auto" and lo is not None:  # "auto" or a number in range
        return (lo + hi) / 2
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default + 1 if hi is None or default + 1 <= hi else default - 1
    if isinstance(default, float):
        return default + (hi - default) / 2 if hi > default else (default + lo) / 2
    if isinstance(default, list):
        return default + default[:1] if default else [1]
    if isinstance(default, dict):
        return {"pitch": {"temperature": 1.1}}
    return default + "_changed"


def toml_value(value) -> str:
    if isinstance(value, dict):  # TOML inline table: {pitch = {temperature = 1.1}}
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def readers(section: str, key: str) -> set[str]:
    """The stages that read the key; master.preset also stands for every key a preset sets
    (render reads master.lowpass_hz)."""
    keys = {key} | (set().union(*MASTER_PRESETS.values()) if (section, key) == ("master", "preset") else set())
    return {s.name for s in build_stages() if section in s.reads or any(f"{section}.{k}" in s.reads for k in keys)}


def own_parts(runner: Runner) -> dict:
    return {n: runner.own_parts(n) for n in STAGE_NAMES}


# Keys that name a base folder: (the shipped folder, a weights file in it).
BASE_FOLDERS = {("train", "base"): (base_ensemble.SHIPPED, "member_0.weights.h5"),
                ("drums", "base"): (drum_model.SHIPPED, "drums_0.weights.h5")}


@pytest.mark.parametrize("section, field", config_fields(), ids=lambda v: getattr(v, "name", v))
def test_changing_a_config_key_rekeys_exactly_the_stages_that_read_it(tmp_path, section, field):
    role = field.metadata["role"]
    # train.base counts only when train.init = "base" (the quick profile trains from scratch), and it is a folder.
    context = ['train.init="base"'] if (section, field.name) == ("train", "base") else []
    make = lambda *o: Runner(quick_config(tmp_path / "outputs", *context, *o), build_stages(),  # noqa: E731
                             root=tmp_path)
    base = own_parts(make())
    if (section, field.name) in BASE_FOLDERS:  # a folder of weights: their bytes count
        shipped, weights_file = BASE_FOLDERS[section, field.name]
        one, same, two = (tmp_path / name for name in ("one", "same", "two"))
        for folder in (one, same, two):
            shutil.copytree(shipped, folder)
        weights = two / weights_file
        weights.write_bytes(weights.read_bytes() + b"\0")
        first = own_parts(make(f"{section}.{field.name}={toml_value(str(one))}"))
        assert own_parts(make(f"{section}.{field.name}={toml_value(str(same))}")) == first
        second = own_parts(make(f"{section}.{field.name}={toml_value(str(two))}"))
        assert {n for n in STAGE_NAMES if first[n] != second[n]} == readers(section, field.name) != set()
        changed = second  # the first is the shipped base's bytes: the default's key
    elif role == INPUT:  # a path: its bytes count, never the path itself
        one, same, two = tmp_path / "one.bin", tmp_path / "same.bin", tmp_path / "two.bin"
        one.write_bytes(b"first file")
        same.write_bytes(b"first file")
        two.write_bytes(b"second file")
        first = own_parts(make(f"{section}.{field.name}={toml_value(str(one))}"))
        assert own_parts(make(f"{section}.{field.name}={toml_value(str(same))}")) == first
        second = own_parts(make(f"{section}.{field.name}={toml_value(str(two))}"))
        assert {n for n in STAGE_NAMES if first[n] != second[n]} == readers(section, field.name) != set()
        changed = first
    else:
        current = getattr(getattr(quick_config(tmp_path / "outputs"), section), field.name)
        changed = own_parts(make(f"{section}.{field.name}={toml_value(changed_value(field, current))}"))
    rekeyed = {n for n in STAGE_NAMES if base[n] != changed[n]}
    runner, after = make(), set(rekeyed)  # what the web app says a change re-runs: these and all after
    for name in STAGE_NAMES:
        after |= {name} if after & set(runner.upstream(name)) else set()
    assert set(runner.rekeyed_by(f"{section}.{field.name}")) == after
    if role == RUNTIME:
        assert rekeyed == set(), f"{section}.{field.name} only says where or how fast work runs"
    else:
        assert role in (PARAM, INPUT)
        assert rekeyed == readers(section, field.name) != set(), f"nothing hashes {section}.{field.name}"


def test_every_key_has_a_help_text_and_a_known_role():
    for section, field in config_fields():
        assert field.metadata["help"].strip(), f"{section}.{field.name}"
        assert field.metadata["role"] in (PARAM, INPUT, RUNTIME)


# -- code, libraries and programs are in the keys --------------------------------------------
def test_library_and_program_versions_rekey_only_the_stages_that_use_them(runner_for, monkeypatch, tmp_path):
    base = own_parts(runner_for())
    real_version = hashing.metadata.version
    monkeypatch.setattr(hashing.metadata, "version",
                        lambda d: "0.0.1-other" if d == "pedalboard" else real_version(d))
    newer = own_parts(runner_for())
    assert {n for n in STAGE_NAMES if base[n] != newer[n]} == {"master", "stems", "export"}
    monkeypatch.undo()
    fake = tmp_path / "bin" / "fluidsynth"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'FluidSynth runtime version 9.9.9'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    hashing.binary_version.cache_clear()
    try:
        other = own_parts(runner_for())
    finally:
        monkeypatch.undo()
        hashing.binary_version.cache_clear()
    assert {n for n in STAGE_NAMES if base[n] != other[n]} == {"render", "stems"}
    assert other["render"]["binaries"] == {"fluidsynth": "FluidSynth runtime version 9.9.9"}


def test_code_fingerprints_follow_imports_not_a_list():
    modules, libraries = hashing.import_closure("lofi_pipeline.stages.master")
    assert "lofi_pipeline.audio.audio_io" in modules and "lofi_pipeline.stages.render" not in modules
    assert {"lofi_pipeline", "lofi_pipeline.audio", "lofi_pipeline.stages"} <= set(modules)  # packages' __init__
    assert {"pedalboard", "scipy", "pyloudnorm"} <= set(libraries)
    modules, libraries = hashing.import_closure("lofi_pipeline.stages.render")
    assert "pedalboard" not in libraries and "midi2audio" in libraries
    assert "music21" in hashing.import_closure("lofi_pipeline.stages.extract")[1]  # a function-level import


def test_keys_hash_archive_bytes_not_paths(tmp_path, quick_cfg):
    a = write_zip(tmp_path / "a.zip", {"s.mid": song_bytes(0)})
    b = tmp_path / "copy.zip"
    b.write_bytes(a.read_bytes())
    ra = Runner(quick_cfg(f'run.archive="{a}"'), build_stages(), root=ROOT)
    rb = Runner(quick_cfg(f'run.archive="{b}"'), build_stages(), root=ROOT)
    assert ra.key("intake") == rb.key("intake")
    c = write_zip(tmp_path / "c.zip", {"s.mid": song_bytes(1)})
    assert Runner(quick_cfg(f'run.archive="{c}"'), build_stages(), root=ROOT).key("intake") != ra.key("intake")


# -- freshness follows upstream outputs and re-checks a stage's own ---------------------------
def test_status_says_why_a_stage_is_stale(runner_for):
    r = runner_for()
    r.run(["encode"])
    assert r.state("encode") == (True, "up to date")
    r2 = runner_for("encode.window=8")
    assert r2.state("encode") == (False, "parameters changed: encode.window")
    assert r2.state("extract")[0]
    assert r2.state("train") == (False, "not built yet")
    r3 = runner_for("extract.onset_tolerance_ms=30")
    assert r3.state("extract") == (False, "parameters changed: extract.onset_tolerance_ms")
    assert r3.state("encode") == (False, "upstream stale: extract") and r3.key("encode") is None
    r3.run(["extract"])
    assert r3.state("encode") == (False, "upstream output changed: extract")


def test_a_rerun_that_writes_the_same_bytes_leaves_the_next_stages_fresh(runner_for):
    logs = []
    r = runner_for()
    r.run(["encode"])
    r.log = logs.append
    r.run(["extract"], force=True)
    assert logs[0].startswith("[intake] cached") and logs[1] == "[extract] running (forced)"
    logs.clear()
    r.run(["encode"])
    assert logs[-1] == f"[encode] cached ({r.key('encode')})"


@pytest.mark.slow
def test_retraining_to_the_same_weights_keeps_generate_fresh_and_new_weights_rekey_it(runner_for):
    r = runner_for()
    r.run(["generate"])
    before = r.key("generate")
    r.run(["train"], force=True)  # the same data, seed and threads: the same .keras bytes
    assert r.state("generate") == (True, "up to date") and r.key("generate") == before
    shorter = runner_for("train.max_steps=5")  # other weights (5 steps: no check of the run above), same folder
    shorter.run(["train"])
    assert shorter.state("generate") == (False, "upstream output changed: train")
    shorter.run(["generate"])
    assert shorter.key("generate") != before and shorter.state("generate")[0]


def test_a_deleted_or_edited_output_makes_its_stage_stale(runner_for):
    r = runner_for()
    r.run(["encode"])
    data = r.artifact_dir("encode") / "data.npz"
    data.unlink()
    r.forget()
    assert r.state("encode") == (False, "output missing or changed: encode/data.npz")
    assert r.plan(["encode"]) == ["encode"]
    r.run(["encode"])
    assert data.exists() and r.state("encode")[0]
    pieces = r.artifact_dir("extract") / "pieces.json"
    pieces.write_text(pieces.read_text().replace('"major"', '"minor"', 1))
    r.forget()
    assert r.state("extract") == (False, "output missing or changed: extract/pieces.json")
    assert r.state("encode") == (False, "upstream stale: extract")
    r.run(["encode"])  # extract is redone from its per-file cache and encode is found fresh
    assert r.state("encode") == (True, "up to date")


def test_a_runner_whose_root_is_not_the_working_directory(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    write_zip(project / "songs.zip", {f"s{i}.mid": song_bytes(i) for i in range(3)})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = quick_config("outputs", 'run.archive="songs.zip"')  # both relative to the root
    runner = Runner(cfg, build_stages(), root=project, log=lambda m: None)
    runner.run(["extract"])
    assert (project / "outputs" / "extract" / "pieces.json").exists()
    assert list(elsewhere.iterdir()) == []
    monkeypatch.chdir(project)
    assert Runner(cfg, build_stages(), root=project).state("extract") == (True, "up to date")


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


def test_manifest_records_parts_outputs_and_timings(runner_for):
    r = runner_for()
    r.run(["encode"])
    man = json.loads((r.artifact_dir("encode") / "manifest.json").read_text())
    assert man["class"] == "EncodeStage" and man["key"] == r.key("encode")
    pieces = artifact_digest(PIECES, r.manifest("extract")["outputs"])
    assert man["parts"]["upstream"] == {"extract/pieces.json": pieces}
    assert set(man["outputs"]) == {"encode/data.npz", "encode/split.json", "encode/vocab.json", "encode/profile.json"}
    assert "stages/encode.py" in man["parts"]["code"] and "music/token_format.py" in man["parts"]["code"]
    assert man["parts"]["params"]["run.seed"] == r.cfg.run.seed
    assert "numpy" in man["versions"] and man["timings"]["seconds"] >= 0


# -- one writer at a time -------------------------------------------------------------------------
def test_lock_refuses_a_second_writer_and_names_the_owner(tmp_path):
    with OutputsLock(tmp_path):
        with pytest.raises(LockedError, match=rf"in use by another lofi run \(pid {os.getpid()}\)"):
            with OutputsLock(tmp_path):
                pass
    with OutputsLock(tmp_path):  # released: free again
        pass


def hold_lock_elsewhere(folder, seconds: float) -> subprocess.Popen:
    """Another process that takes the outputs lock on `folder` and keeps it for `seconds`."""
    code = ("import sys, time; from lofi_pipeline.core.lock import OutputsLock; "
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


def test_file_digests_survive_a_rename_but_a_fresh_file_is_not_remembered(tmp_path, monkeypatch):
    calls = []
    real = hashing.sha256_file
    monkeypatch.setattr(hashing, "sha256_file", lambda p: calls.append(p) or real(p))
    old = tmp_path / "old.bin"
    old.write_bytes(b"settled bytes")
    os.utime(old, ns=(time.time_ns() - 10**10,) * 2)  # written ten seconds ago
    first = hashing.file_digest(old)
    old.rename(tmp_path / "renamed.bin")  # an artifact folder swapped into place
    assert hashing.file_digest(tmp_path / "renamed.bin") == first and len(calls) == 1
    fresh = tmp_path / "fresh.bin"
    fresh.write_bytes(b"new bytes")
    hashing.file_digest(fresh)
    fresh.write_bytes(b"NEW bytes")  # same size, and likely the same coarse mtime
    assert hashing.file_digest(fresh) == hashing.sha256_bytes(b"NEW bytes") and len(calls) == 3
    assert hashing.file_digest(tmp_path / "missing.bin") is None


def test_linking_stages_takes_built_ones_whole_and_names_one_that_is_not_built(tmp_path):
    source, target = tmp_path / "run", tmp_path / "second"
    (source / "encode").mkdir(parents=True)
    (source / "encode" / "data.npz").write_bytes(b"events")
    (source / "encode" / STAGE_MANIFEST).write_text("{}")
    link_stages(source, target, ["encode"])
    assert (target / "encode" / "data.npz").stat().st_ino == (source / "encode" / "data.npz").stat().st_ino
    link_stages(source, target, ["encode"])  # the same manifest: left as it is
    assert sorted(p.name for p in target.iterdir()) == ["encode"]
    (source / "train").mkdir()  # begun, never committed
    with pytest.raises(StageError, match="train: not built"):
        link_stages(source, target, ["train"])
    assert not (target / "train").exists()
