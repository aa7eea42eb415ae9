"""The base ensemble: members pre-trained once on the base corpus (corpora/base_corpus.py), shipped in
the repository, and fine-tuned by each archive's train stage (train.init = "base").

A base is a folder of one .weights.h5 per member and manifest.json: the members'
architectures, the window and the whole vocabulary they fit, the digest of the code that builds
a member (model/members.py), and how they were built (the corpus's digest and what it left out,
the code's, the settings, the time, the steps, the scores). The vocabulary, the architecture and
the member code must fit the code that loads it: anything else is an error that says to rebuild it
(`make base`), never a silent mismatch.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..core import atomic
from ..core.errors import StageError
from ..core.hashing import hash_json, path_digest
from ..music.token_format import FIELDS, GIVEN, VOCAB_VERSION, Vocabulary
from .training import ARCHITECTURE, build_from_spec

SHIPPED = Path(__file__).parent / "base_ensemble"
MANIFEST = "manifest.json"
# A member's weights fit another member only with these equal.
# What the weights are and what they fit; the rest of the manifest is a record of the build.
FIT = ("vocab_version", "vocabulary", "window", "members")
# The code that builds a member from its spec: a change to it may keep every shape and still
# make other layers of the same weights (an activation, a norm, the order of two layers).
BUILDER = Path(__file__).with_name("members.py")


def builder_digest() -> str:
    return path_digest(BUILDER)[:16]


def base_folder(setting: str, root: Path) -> Path:
    """train.base: "" is the shipped base; anything else a folder, relative to the project."""
    return SHIPPED if not setting else (root / setting)


def read_manifest(folder: Path) -> dict:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise StageError(f"{folder}: no base ensemble here ({MANIFEST} missing); run `make base` to build one, "
                         "or set train.init = \"scratch\"") from None
    except json.JSONDecodeError as exc:
        raise StageError(f"{folder / MANIFEST}: not valid JSON ({exc}); run `make base` to rebuild it") from None


def weight_files(folder: Path, manifest: dict) -> list[Path]:
    return [folder / f"{m['name']}.weights.h5" for m in manifest["members"]]


def base_digest(folder: Path) -> str:
    """The weights' bytes and what they fit: part of train's key. The build record (its time)
    is not, so rebuilding a base to the same weights keeps every train stage fresh."""
    manifest = read_manifest(folder)
    files = weight_files(folder, manifest)
    missing = [f.name for f in files if not f.exists()]
    if missing:
        raise StageError(f"{folder}: base ensemble incomplete, {', '.join(missing)} missing; run `make base`")
    return hash_json({"fit": {k: manifest.get(k) for k in FIT}, **{f.name: path_digest(f) for f in files}})


def build_like(spec: dict, field_sizes: dict[str, int], window: int, name: str | None = None):
    """A member of the melody format with `spec`'s architecture (a base manifest's member entry or
    a run's spec)."""
    return build_from_spec(spec, field_sizes, window, GIVEN, name)


def misfits(manifest: dict, vocab: Vocabulary, window: int, specs: list[dict]) -> list[str]:
    """What stops these member specs from starting at the base's weights (empty: they fit)."""
    problems = []
    if manifest.get("vocab_version") != VOCAB_VERSION:
        problems.append(f"token format version {manifest.get('vocab_version')} (this code writes {VOCAB_VERSION})")
    if manifest.get("vocabulary") != vocab.fields:
        problems.append(f"vocabulary {hash_json(manifest.get('vocabulary'))[:16]} (this code and encode's settings "
                        f"give {vocab.fingerprint()}; encode.velocity_bins is {vocab.velocity_bins})")
    if manifest.get("window") != window:
        problems.append(f"window {manifest.get('window')} (encode.window is {window})")
    if manifest.get("builder") != builder_digest():
        problems.append(f"member code {manifest.get('builder')} (model/members.py is {builder_digest()} now)")
    members = manifest.get("members", [])
    for i, spec in enumerate(specs):
        base = members[i % len(members)] if members else {}
        wrong = [f"{k} {spec[k]} vs {base.get(k)}" for k in ARCHITECTURE if spec[k] != base.get(k)]
        if wrong:
            problems.append(f"{spec['name']}: " + ", ".join(wrong))
    return problems


def check_fits(folder: Path, vocab: Vocabulary, window: int, specs: list[dict]) -> dict:
    """The manifest, if the base fits; otherwise a StageError that says what differs and what to do."""
    manifest = read_manifest(folder)
    problems = misfits(manifest, vocab, window, specs)
    if problems:
        raise StageError(f"the base ensemble in {folder} does not fit this run: " + "; ".join(problems)
                         + ". Use the settings it was built with, set train.init = \"scratch\", or rebuild it "
                         "(`make base`)")
    return manifest


def starting_points(folder: Path, manifest: dict, specs: list[dict]) -> dict[str, Path]:
    """Run member i starts at base member i mod the base's size."""
    files = weight_files(folder, manifest)
    return {spec["name"]: files[i % len(files)] for i, spec in enumerate(specs)}


def load_starting_points(folder: Path, manifest: dict, specs: list[dict], vocab: Vocabulary, window: int) -> list:
    """The base weights each run member started at, as Keras models (the base alone, scored)."""
    sizes = dict(zip(FIELDS, vocab.sizes))
    models = []
    for spec, weights in zip(specs, starting_points(folder, manifest, specs).values()):
        model = build_like(spec, sizes, window, name=f"base_{spec['name']}")
        model.load_weights(weights)
        models.append(model)
    return models


def write_base(folder: Path, models: list, specs: list[dict], vocab: Vocabulary, window: int, built: dict) -> None:
    """Write the base into a fresh sibling folder, then swap it in: a kill leaves the old base
    or none, never a mix, and no member of an older, larger base stays behind."""
    import keras
    tmp = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for extra in folder.glob("*.md") if folder.exists() else ():
        shutil.copy2(extra, tmp / extra.name)
    for model, spec in zip(models, specs):
        weights = model.get_weights()
        # Into a fresh member: the file then holds the layers' weights without the trained Adam
        # moments (a third of the size), and a clean session gives the same names, so the same
        # weights give the same bytes.
        keras.backend.clear_session()
        fresh = build_like(spec, dict(zip(FIELDS, vocab.sizes)), window)
        fresh.set_weights(weights)
        fresh.save_weights(tmp / f"{spec['name']}.weights.h5")
    atomic.write_json(tmp / MANIFEST, {
        "vocab_version": VOCAB_VERSION, "vocabulary": vocab.fields, "window": window, "builder": builder_digest(),
        "members": [{k: s[k] for k in ("name", "seed", *ARCHITECTURE, "dropout")} for s in specs], **built})
    atomic.replace_dir(tmp, folder)


def melody_files(folder: Path, vocab: Vocabulary) -> tuple[dict[str, bytes], str]:
    """(the base's files by name, "") when it can write melodies for this vocabulary, else ({},
    why not). Any window will do: the melody's context is cut to the base's own."""
    if not (folder / MANIFEST).exists():
        return {}, f"no base ensemble in {folder}"
    manifest = read_manifest(folder)
    if manifest.get("vocab_version") != VOCAB_VERSION or manifest.get("vocabulary") != vocab.fields:
        return {}, f"the base ensemble in {folder} has another vocabulary than this run ({vocab.fingerprint()})"
    return {p.name: p.read_bytes() for p in [folder / MANIFEST, *weight_files(folder, manifest)]}, ""


def load_base(folder: Path, vocab: Vocabulary) -> list:
    """The base's members as Keras models, each with its own architecture and the base's window."""
    manifest = read_manifest(folder)
    sizes = dict(zip(FIELDS, vocab.sizes))
    models = []
    for spec, weights in zip(manifest["members"], weight_files(folder, manifest)):
        model = build_like(spec, sizes, manifest["window"], name=f"base_{spec['name']}")
        model.load_weights(weights)
        models.append(model)
    return models
