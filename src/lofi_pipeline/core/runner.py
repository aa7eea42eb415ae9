"""The stage runner: cache keys, plans, artifact folders, manifests and output checks.

A stage declares the artifacts it takes (files of upstream stages) and gives (files in its
own folder). Its key hashes what can change its output, never paths or times (as DVC does):
- its code: the source bytes of its module and of every package module it imports, the
  versions of the libraries those import, of Python, and of the programs it runs;
- its parameters: exactly the config keys it reads (`reads`), which are also all it can see;
- its external inputs: the bytes of the archive, SoundFont, primer or MIDI files it reads;
- the artifacts it takes: the digests of those upstream files, not the upstream keys.
So a retrained model re-keys everything after it, a re-run that writes the same bytes leaves
the stages after it fresh, and a new file an upstream stage writes re-keys only the stages
that take it. Every manifest lists its outputs with their digests; a stage whose output files
are missing or changed is stale, and one that writes a file it did not declare fails.
It is long because keys, freshness and running are one piece: each needs the others' rules.
"""
from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from tqdm import tqdm

from . import atomic
from .config import RUNTIME, Config, ParamView, field_role, keys_set_with
from .errors import StageError
from .hashing import binary_version, code_fingerprint, file_digest, hash_json, library_versions
from .lock import OutputsLock
from .parallel import NO_SHARED, Executor

RUNNER_PATHS = (".cache", ".tmp")
STAGE_MANIFEST = "manifest.json"  # written last, when a stage commits: a stage folder with one is built
# Fault-injection tests set this to a stage's name: the runner then holds that stage, its
# outputs written, just before it commits them, and waits there to be killed.
PAUSE_ENV = "LOFI_PAUSE_BEFORE_COMMIT"


@dataclass(frozen=True)
class Artifact:
    """Files a stage writes in its folder: one name, or a pattern ("track_*.mid")."""
    stage: str
    pattern: str

    def __str__(self) -> str:
        return f"{self.stage}/{self.pattern}"

    def matches(self, relative: str) -> bool:
        return fnmatch.fnmatchcase(relative, self.pattern)


@dataclass
class StageContext:
    stage: str
    params: ParamView
    root: Path
    out_dir: Path
    sources: dict[Artifact, Path]
    outputs_root: Path
    cache_dir: Path
    key: str
    code_key: str
    executor: Executor
    log: Callable[[str], None] = print
    extra_outputs: list[Path] = field(default_factory=list)

    def path(self, relative: str) -> Path:
        """A path from the config, resolved against the project root (never the working directory)."""
        return self.root / Path(relative).expanduser()

    def source(self, artifact: Artifact) -> Path:
        """The folder holding an artifact this stage takes (its catalog reader reads it there)."""
        if artifact not in self.sources:
            raise StageError(f"stage {self.stage} reads {artifact} without taking it: add it to the stage's "
                             "`takes` so that it is part of the stage's key")
        return self.sources[artifact]

    def record_output(self, path: Path) -> None:
        """Declare a file written outside the stage's folder (under the outputs root)."""
        self.extra_outputs.append(Path(path))

    def fan_out(self, fn: Callable, jobs: Iterable, *, total: int, unit: str = "track", workers: int = 1,
                shared: Any = NO_SHARED, cpus: float = 1.0, gpus: float = 0.0) -> Iterator:
        """fn(job), or fn(shared, job), for each job on the run's executor (local processes or
        Ray tasks), the results in job order as they come, with a progress bar."""
        executor = Executor(self.executor.kind, workers, self.executor.ray_address)
        with tqdm(total=total, desc=self.stage, unit=unit, disable=None) as bar:
            for result in executor.map(fn, jobs, shared=shared, cpus=cpus, gpus=gpus):
                bar.update()
                yield result


class Stage:
    """A pipeline step. Subclasses set `name`, `takes`, `gives`, `reads`, `help` and fill `run`.

    `takes` are the upstream artifacts the stage reads and `gives` the files it writes in its
    own folder (both from the catalog). `reads` names the config sections or `section.key`s
    the stage may read: `run` sees them, and nothing else, through `ctx.params`. `binaries` are
    programs whose `--version` is part of the key. `owns` are paths under the outputs root that
    the stage writes besides its own folder (for `lofi clean`)."""

    name = ""
    takes: tuple[Artifact, ...] = ()
    gives: tuple[Artifact, ...] = ()
    reads: tuple[str, ...] = ()
    binaries: tuple[str, ...] = ()
    owns: tuple[str, ...] = ()
    help = ""

    def inputs(self, params: ParamView) -> tuple[Artifact, ...]:
        """The artifacts this run of the stage takes (a setting may leave some out)."""
        return self.takes

    def external_inputs(self, params: ParamView, root: Path) -> dict[str, str]:
        """Digests of files outside the pipeline that this stage reads."""
        return {}

    def check(self, params: ParamView, root: Path) -> None:
        """Fail fast, before any upstream work, if this stage cannot possibly run."""

    def run(self, ctx: StageContext) -> dict:
        raise NotImplementedError

    def deliver(self, ctx: StageContext) -> None:
        """Work done on every run once the stage is fresh (copies that are not artifacts)."""


def artifact_digest(artifact: Artifact, outputs: dict[str, str]) -> str:
    """The digest of an artifact's files, from its stage's manifest (name -> digest)."""
    prefix = f"{artifact.stage}/"
    return hash_json(sorted((rel, d) for rel, d in outputs.items()
                            if rel.startswith(prefix) and artifact.matches(rel[len(prefix):])))[:16]


class Runner:
    def __init__(self, cfg: Config, stages: list[Stage], root: Path = Path("."),
                 log: Callable[[str], None] = print):
        self.cfg = cfg
        self.stages = {s.name: s for s in stages}
        self.order = [s.name for s in stages]
        self.root = Path(root).resolve()
        self.outputs = self.root / Path(cfg.run.outputs).expanduser()
        # Where fanned-out work runs is a RUNTIME choice: in no key, the same bytes either way.
        self.executor = Executor(cfg.run.executor, 1, cfg.run.ray_address)
        self.log = log
        self._memo: dict[tuple[str, str], object] = {}

    def _memoised(self, kind: str, name: str, compute):
        if (kind, name) not in self._memo:
            self._memo[(kind, name)] = compute()
        return self._memo[(kind, name)]

    def forget(self) -> None:
        """Drop remembered keys and checks (after a stage ran, or files changed)."""
        self._memo.clear()

    # -- what a key is made of ------------------------------------------------------------
    def params(self, name: str) -> ParamView:
        return self._memoised("params", name, lambda: self.cfg.view(self.stages[name].reads, name))

    def taken(self, name: str) -> tuple[Artifact, ...]:
        return self.stages[name].inputs(self.params(name))

    def upstream(self, name: str) -> tuple[str, ...]:
        """The stages whose artifacts this one takes, in pipeline order."""
        return tuple(n for n in self.order if n in {a.stage for a in self.taken(name)})

    def rekeyed_by(self, key: str) -> list[str]:
        """The stages a change of config `key` (section.key) re-runs: those that read it, unless
        it is a runtime key, and every stage after them."""
        section, _, name = key.partition(".")
        if field_role(section, name) == RUNTIME:
            return []
        keys = keys_set_with(key)
        hit = {n for n, s in self.stages.items() if section in s.reads or keys & set(s.reads)}
        for n in self.order:
            if hit & set(self.upstream(n)):
                hit.add(n)
        return [n for n in self.order if n in hit]

    def own_parts(self, name: str) -> dict:
        """Everything in a stage's key except its upstream outputs."""
        def compute():
            stage = self.stages[name]
            code = code_fingerprint(type(stage).__module__)
            # As JSON sees it, so that a manifest read back compares equal (tuples become lists).
            return json.loads(json.dumps({"stage": name, "code": code["sources"], "libraries": code["libraries"],
                    "binaries": {b: binary_version(b) for b in stage.binaries},
                    "params": self.params(name).hashed(),
                    "inputs": stage.external_inputs(self.params(name), self.root)}))
        return self._memoised("own", name, compute)

    def code_key(self, name: str) -> str:
        """Code, libraries, programs and parameters: what a per-file cache entry depends on."""
        own = self.own_parts(name)
        return hash_json({k: own[k] for k in ("stage", "code", "libraries", "binaries", "params")})[:16]

    def upstream_outputs(self, name: str) -> dict[str, str] | None:
        """Digests of the artifacts the stage takes, or None while a stage writing one is stale."""
        digests = {}
        for artifact in self.taken(name):
            if not self.state(artifact.stage)[0]:
                return None
            digests[str(artifact)] = artifact_digest(artifact, self.manifest(artifact.stage)["outputs"])
        return digests

    def key(self, name: str) -> str | None:
        """The stage's key, or None while an upstream stage is stale (its outputs are unknown)."""
        def compute():
            ups = self.upstream_outputs(name)
            return None if ups is None else hash_json({**self.own_parts(name), "upstream": ups})[:16]
        return self._memoised("key", name, compute)

    # -- freshness ---------------------------------------------------------------------------
    def artifact_dir(self, name: str) -> Path:
        return self.outputs / name

    def manifest(self, name: str) -> dict | None:
        path = self.artifact_dir(name) / STAGE_MANIFEST
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _changed_output(self, man: dict) -> str | None:
        for rel, digest in man.get("outputs", {}).items():
            if file_digest(self.outputs / rel) != digest:
                return rel
        return None

    def state(self, name: str) -> tuple[bool, str]:
        """(fresh, why) for one stage."""
        return self._memoised("state", name, lambda: self._state(name))

    def _state(self, name: str) -> tuple[bool, str]:
        man = self.manifest(name)
        if man is None:
            return False, "not built yet"
        stale_up = [u for u in self.upstream(name) if not self.state(u)[0]]
        if stale_up:
            return False, "upstream stale: " + ", ".join(stale_up)
        if man.get("key") == self.key(name):
            changed = self._changed_output(man)
            if changed:
                return False, f"output missing or changed: {changed}"
            return True, "up to date"
        own, before = self.own_parts(name), man.get("parts", {})
        code = sorted(m for m in {*own["code"], *before.get("code", {})}
                      if own["code"].get(m) != before.get("code", {}).get(m))
        if code:
            return False, "code changed: " + ", ".join(code)
        for part, label in (("libraries", "library versions changed"), ("binaries", "programs changed")):
            diff = [f"{k} {before.get(part, {}).get(k, '-')} -> {v}" for k, v in own[part].items()
                    if before.get(part, {}).get(k) != v]
            if diff:
                return False, f"{label}: " + ", ".join(diff)
        changed = [k for k in {*own["params"], *before.get("params", {})}
                   if own["params"].get(k) != before.get("params", {}).get(k)]
        if changed:
            return False, "parameters changed: " + ", ".join(sorted(changed))
        if own["inputs"] != before.get("inputs"):
            return False, "input files changed: " + ", ".join(sorted(own["inputs"]) or ["(none now)"])
        ups = sorted({a.split("/")[0] for a, d in self.upstream_outputs(name).items()
                      if before.get("upstream", {}).get(a) != d})
        return False, "upstream output changed: " + (", ".join(ups) or "?")

    def closure(self, targets: list[str]) -> list[str]:
        needed: set[str] = set()

        def visit(n: str) -> None:
            if n not in needed:
                needed.add(n)
                for u in self.upstream(n):
                    visit(u)
        for t in targets:
            visit(t)
        return [n for n in self.order if n in needed]

    def plan(self, targets: list[str], force: bool = False) -> list[str]:
        """Stages that will run as things stand; one after a re-run upstream that writes the
        same bytes as before will turn out fresh when its turn comes."""
        forced = set(targets) if force else set()
        return [n for n in self.closure(targets) if n in forced or not self.state(n)[0]]

    def owned_paths(self) -> list[str]:
        """Everything the pipeline writes under the outputs root (what `lofi clean` removes)."""
        paths = list(RUNNER_PATHS)
        for stage in self.stages.values():
            paths += [stage.name, f".{stage.name}.old", *stage.owns]
        return paths

    # -- running ------------------------------------------------------------------------------
    def run(self, targets: list[str], force: bool = False, wait_s: float = 0.0) -> dict:
        """Run what is stale among `targets` and their upstream, in order; returns seconds per stage run."""
        for n in self.closure(targets):
            self.stages[n].check(self.params(n), self.root)
        timings = {}
        with OutputsLock(self.outputs, wait_s):
            self._sweep_temporaries()
            self.forget()  # another run may have changed things before we held the lock
            for name in self.closure(targets):
                fresh, why = self.state(name)
                if fresh and not (force and name in targets):
                    self.log(f"[{name}] cached ({self.key(name)})")
                else:
                    timings[name] = self._run_stage(name, why if not fresh else "forced")
                    self.forget()
                self.stages[name].deliver(self._context(name, self.artifact_dir(name)))
        return timings

    def _sweep_temporaries(self) -> None:
        """Under the lock, leftovers in .tmp/ belong to runs that died: remove them."""
        shutil.rmtree(self.outputs / ".tmp", ignore_errors=True)

    def _context(self, name: str, out_dir: Path) -> StageContext:
        return StageContext(
            stage=name, params=self.params(name), root=self.root, out_dir=out_dir, key=self.key(name),
            code_key=self.code_key(name), outputs_root=self.outputs, executor=self.executor,
            sources={a: self.artifact_dir(a.stage) for a in self.taken(name)},
            cache_dir=self.outputs / ".cache" / name, log=lambda msg: self.log(f"[{name}] {msg}"))

    def _output_digests(self, name: str, ctx: StageContext) -> dict[str, str]:
        gives = self.stages[name].gives
        written = sorted(p.relative_to(ctx.out_dir).as_posix() for p in ctx.out_dir.rglob("*") if p.is_file())
        undeclared = [rel for rel in written if not any(a.matches(rel) for a in gives)]
        if undeclared:
            raise StageError(f"stage {name} wrote {undeclared[0]}, which is not among the artifacts it gives "
                             f"({', '.join(a.pattern for a in gives)})")
        missing = [a for a in gives if not any(a.matches(rel) for rel in written)]
        if missing:
            raise StageError(f"stage {name} did not write {missing[0]}")
        digests = {f"{name}/{rel}": file_digest(ctx.out_dir / rel) for rel in written}
        for path in ctx.extra_outputs:
            digests[path.resolve().relative_to(self.outputs.resolve()).as_posix()] = file_digest(path)
        return digests

    def _run_stage(self, name: str, why: str) -> float:
        stage = self.stages[name]
        tmp = self.outputs / ".tmp" / name
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        ctx = self._context(name, tmp)
        ctx.cache_dir.mkdir(parents=True, exist_ok=True)
        self.log(f"[{name}] running ({why})")
        start = time.perf_counter()
        try:
            stats = stage.run(ctx) or {}
            seconds = round(time.perf_counter() - start, 3)
            outputs = self._output_digests(name, ctx)
            if os.environ.get(PAUSE_ENV) == name:
                (tmp.parent / f"{name}.paused").touch()
                while True:
                    signal.pause()
            own = self.own_parts(name)
            atomic.write_json(tmp / STAGE_MANIFEST, {
                "stage": name, "class": type(stage).__name__, "key": ctx.key,
                "parts": {**own, "upstream": self.upstream_outputs(name)},
                "outputs": outputs, "outputs_digest": hash_json(outputs)[:16],
                "stats": stats, "timings": {"seconds": seconds},
                "versions": library_versions(["lofi_pipeline"]) | own["libraries"],
                "profile": self.cfg.profile, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            atomic.replace_dir(tmp, self.artifact_dir(name))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            with contextlib.suppress(OSError):
                tmp.parent.rmdir()  # only if empty
        self.log(f"[{name}] done in {seconds:.1f}s")
        return seconds
