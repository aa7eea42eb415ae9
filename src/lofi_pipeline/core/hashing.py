"""Digests for cache keys: file and folder bytes, JSON values, and a module's code.

A stage's code fingerprint is computed, never typed: the source bytes of its module and of
every package module it imports (transitively), plus the versions of the third-party
distributions those modules import and of Python itself.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

PACKAGE = __name__.split(".")[0]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_DIGESTS: dict[tuple, str] = {}
_RACY_NS = 1_000_000_000


def file_digest(path: Path) -> str | None:
    """sha256 of a file, or None when there is none. Remembered while the file keeps its
    device, inode, size and mtime, so a renamed artifact folder or an input read again after
    every stage is not hashed twice."""
    try:
        st = Path(path).stat()
    except FileNotFoundError:
        return None
    token = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if token in _DIGESTS:
        return _DIGESTS[token]
    digest = sha256_file(path)
    # Timestamps are coarse: a file written within the last second could be rewritten, same
    # size, without its mtime moving (git's "racily clean" case), so it is not remembered yet.
    if time.time_ns() - st.st_mtime_ns > _RACY_NS:
        _DIGESTS[token] = digest
    return digest


def hash_json(obj) -> str:
    return sha256_bytes(json.dumps(obj, sort_keys=True, default=str).encode())


def folder_digest(path: Path) -> str:
    """Names (relative) and bytes of every regular file below `path`; links are not followed."""
    items = []
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        dirnames.sort()
        for fname in sorted(filenames):
            full = Path(dirpath) / fname
            if full.is_file() and not full.is_symlink():
                items.append((full.relative_to(path).as_posix(), file_digest(full)))
    return hash_json(items)


def path_digest(path: Path) -> str:
    """The content digest of a file or a folder; 'missing' when there is neither."""
    if path.is_dir():
        return folder_digest(path)
    return (file_digest(path) if path.is_file() else None) or "missing"


PACKAGE_DIR = Path(__file__).resolve().parents[1]


def _module_file(module: str) -> Path | None:
    """The source file of a package module, found on disk (importing nothing)."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py") if len(parts) > 1 else None, base / "__init__.py"):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def _is_package_module(module: str) -> bool:
    return _module_file(module) is not None


@functools.lru_cache(maxsize=None)
def direct_imports(module: str) -> tuple[frozenset[str], frozenset[str]]:
    """(package modules, third-party top-level names) that `module` imports anywhere in its
    source, function-level imports included."""
    path = _module_file(module)
    tree = ast.parse(path.read_bytes(), str(path))
    base = module.rpartition(".")[0] if path.name != "__init__.py" else module
    own, foreign = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.rsplit(".", node.level - 1)[0] if node.level > 1 else base
                stem = f"{anchor}.{node.module}" if node.module else anchor
            else:
                stem = node.module
            # `from . import atomic` names a module; `from .x import y` names an attribute of x.
            names = [stem] + [f"{stem}.{alias.name}" for alias in node.names
                              if _is_package_module(f"{stem}.{alias.name}")]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top == PACKAGE:
                if _is_package_module(name):
                    own.add(name)
            elif top not in sys.stdlib_module_names and top != "__future__":
                foreign.add(top)
    # Importing a submodule runs its packages' __init__ modules first.
    own |= {".".join(m.split(".")[:k]) for m in [module, *own] for k in range(1, m.count(".") + 1)}
    own.discard(module)
    return frozenset(own), frozenset(foreign)


@functools.lru_cache(maxsize=None)
def import_closure(module: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(package modules, third-party top-level names) reachable from `module`, sorted."""
    seen, foreign, todo = {module}, set(), [module]
    while todo:
        own, lib = direct_imports(todo.pop())
        foreign |= lib
        for m in own - seen:
            seen.add(m)
            todo.append(m)
    return tuple(sorted(seen)), tuple(sorted(foreign))


@functools.lru_cache(maxsize=None)
def _distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def library_versions(top_level_names) -> dict[str, str]:
    """Installed versions of the distributions behind import names, plus Python's."""
    versions = {"python": platform.python_version()}
    for name in top_level_names:
        for dist in _distributions().get(name, [name]):
            try:
                versions[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                versions[dist] = "not installed"
    return versions


def source_name(module: str) -> str:
    """A package module's file, relative to the package: 'stages/master.py', 'core/__init__.py'."""
    return _module_file(module).relative_to(PACKAGE_DIR).as_posix()


def code_fingerprint(module: str) -> dict:
    """{'sources': {file: sha256}, 'libraries': {distribution: version}} of `module`'s import closure."""
    modules, foreign = import_closure(module)
    return {"sources": {source_name(m): file_digest(_module_file(m)) for m in modules},
            "libraries": library_versions(foreign)}


@functools.lru_cache(maxsize=None)
def binary_version(program: str) -> str:
    """The first line that `program --version` prints, or 'missing'."""
    try:
        proc = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "missing"
    lines = (proc.stdout or proc.stderr).strip().splitlines()
    return lines[0].strip() if lines else f"exit {proc.returncode}"
