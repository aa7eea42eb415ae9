"""The stage runner: cache keys, plans, artifact folders and manifests.

A stage's key hashes its code version, its own parameters, the bytes of its external inputs
(the archive, the SoundFont) and its upstream stages' keys, never paths or times. So
changing an effect re-keys `master` and `export` and nothing upstream.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import shutil
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable

from . import atomic
from .config import Config
from .lock import OutputsLock


class StageError(RuntimeError):
    """A stage cannot go on; the message is one line saying what and where."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_json(obj) -> str:
    return sha256_bytes(json.dumps(obj, sort_keys=True, default=str).encode())


@dataclass
class StageContext:
    cfg: Config
    out_dir: Path
    inputs: dict[str, Path]
    outputs_root: Path
    cache_dir: Path
    key: str
    log: Callable[[str], None] = print
    stats: dict = field(default_factory=dict)


class Stage:
    """A pipeline step. Subclasses set `name`, `requires`, `version`, `help` and fill `run`."""

    name = ""
    requires: tuple[str, ...] = ()
    version = "1"
    help = ""

    def params(self, cfg: Config) -> dict:
        return cfg.section(self.name)

    def upstream(self, cfg: Config) -> tuple[str, ...]:
        return self.requires

    def external_inputs(self, cfg: Config, root: Path) -> dict[str, str]:
        """Digests of files outside the pipeline that this stage reads."""
        return {}

    def check(self, cfg: Config, root: Path) -> None:
        """Fail fast, before any upstream work, if this stage cannot possibly run."""

    def run(self, ctx: StageContext) -> dict:
        raise NotImplementedError


def package_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in ("lofi_pipeline", "music21", "tensorflow-cpu", "keras", "numpy", "pedalboard"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


class Runner:
    def __init__(self, cfg: Config, stages: list[Stage], root: Path = Path("."),
                 log: Callable[[str], None] = print):
        self.cfg = cfg
        self.stages = {s.name: s for s in stages}
        self.order = [s.name for s in stages]
        self.root = Path(root)
        self.outputs = self.root / cfg.run.outputs
        self.log = log
        self._keys: dict[str, str] = {}
        self._external: dict[str, dict] = {}

    # -- keys and freshness ---------------------------------------------------------
    def external(self, name: str) -> dict:
        if name not in self._external:
            self._external[name] = self.stages[name].external_inputs(self.cfg, self.root)
        return self._external[name]

    def key(self, name: str) -> str:
        if name not in self._keys:
            stage = self.stages[name]
            self._keys[name] = hash_json({
                "stage": name, "version": stage.version, "params": stage.params(self.cfg),
                "inputs": self.external(name),
                "upstream": {u: self.key(u) for u in stage.upstream(self.cfg)}})[:16]
        return self._keys[name]

    def artifact_dir(self, name: str) -> Path:
        return self.outputs / name

    def manifest(self, name: str) -> dict | None:
        path = self.artifact_dir(name) / "manifest.json"
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def state(self, name: str) -> tuple[bool, str]:
        """(fresh, why) for one stage."""
        man = self.manifest(name)
        if man is None:
            return False, "not built yet"
        if man.get("key") == self.key(name):
            return True, "up to date"
        stage = self.stages[name]
        if man.get("version") != stage.version:
            return False, f"stage code changed (v{man.get('version')} -> v{stage.version})"
        changed = [k for k, v in stage.params(self.cfg).items() if man.get("params", {}).get(k) != v]
        if changed:
            return False, "parameters changed: " + ", ".join(f"{name}.{k}" for k in changed)
        if man.get("inputs") != self.external(name):
            return False, "input files changed: " + ", ".join(self.external(name))
        ups = [u for u in stage.upstream(self.cfg) if man.get("upstream", {}).get(u) != self.key(u)]
        return False, "upstream changed: " + ", ".join(ups)

    def closure(self, targets: list[str]) -> list[str]:
        needed: set[str] = set()

        def visit(n: str) -> None:
            if n not in needed:
                needed.add(n)
                for u in self.stages[n].upstream(self.cfg):
                    visit(u)
        for t in targets:
            visit(t)
        return [n for n in self.order if n in needed]

    def plan(self, targets: list[str], force: bool = False) -> list[str]:
        forced = set(targets) if force else set()
        return [n for n in self.closure(targets) if n in forced or not self.state(n)[0]]

    # -- running ----------------------------------------------------------------------
    def run(self, targets: list[str], force: bool = False, wait_s: float = 0.0) -> dict:
        for n in self.closure(targets):
            self.stages[n].check(self.cfg, self.root)
        timings = {}
        with OutputsLock(self.outputs, wait_s):
            self._sweep_temporaries()
            todo = set(self.plan(targets, force))
            for name in self.closure(targets):
                if name not in todo:
                    self.log(f"[{name}] cached ({self.key(name)})")
                    continue
                timings[name] = self._run_stage(name)
        return timings

    def _sweep_temporaries(self) -> None:
        """Under the lock, leftovers in .tmp/ belong to runs that died: remove them."""
        shutil.rmtree(self.outputs / ".tmp", ignore_errors=True)

    def _run_stage(self, name: str) -> float:
        stage = self.stages[name]
        tmp = self.outputs / ".tmp" / name
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        ctx = StageContext(
            cfg=self.cfg, out_dir=tmp, key=self.key(name), outputs_root=self.outputs,
            inputs={u: self.artifact_dir(u) for u in stage.upstream(self.cfg)},
            cache_dir=self.outputs / ".cache" / name,
            log=lambda msg: self.log(f"[{name}] {msg}"))
        ctx.cache_dir.mkdir(parents=True, exist_ok=True)
        self.log(f"[{name}] running ({self.state(name)[1]})")
        start = time.perf_counter()
        try:
            stats = stage.run(ctx) or {}
            seconds = round(time.perf_counter() - start, 3)
            atomic.write_json(tmp / "manifest.json", {
                "stage": name, "class": type(stage).__name__, "key": ctx.key,
                "version": stage.version, "params": stage.params(self.cfg),
                "inputs": self.external(name),
                "upstream": {u: self.key(u) for u in stage.upstream(self.cfg)},
                "stats": stats, "timings": {"seconds": seconds},
                "versions": package_versions(), "profile": self.cfg.profile,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            atomic.replace_dir(tmp, self.artifact_dir(name))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            with contextlib.suppress(OSError):
                tmp.parent.rmdir()  # only if empty
        self.log(f"[{name}] done in {seconds:.1f}s")
        return seconds
