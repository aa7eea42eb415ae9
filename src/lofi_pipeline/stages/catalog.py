"""The stage contracts: every artifact a stage writes, with a typed writer and reader for each.

A stage declares the artifacts it `takes` and `gives`; the runner keys it on the digests of
what it takes and checks that it wrote exactly what it gives. Nothing else opens another
stage's files: stages, the report and `lofi evaluate` read them through the readers here.
The per-track record (index, title, seed, key, tempo, ...) is written once, by arrange, and
read by everything after it. The module is long on purpose: every contract in one place.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

from ..audio.playlist import slug
from ..core import atomic
from ..core.errors import StageError
from ..core.hashing import sha256_bytes
from ..core.runner import STAGE_MANIFEST, Artifact
from ..model.form import Section, form_string
from ..music.checks import DataProfile
from ..music.piece import Piece
from ..music.token_format import FIELDS, TARGETS, Vocabulary

SPLITS = ("train", "dev", "test")
R = TypeVar("R")


def _artifacts(stage: str, *patterns: str) -> tuple[Artifact, ...]:
    return tuple(Artifact(stage, p) for p in patterns)


# Each stage's artifacts, one line per stage.
SOURCE_MIDI, SOURCE_FILES = _artifacts("intake", "midi/*.mid", "files.json")
(PIECES,) = _artifacts("extract", "pieces.json")
VOCABULARY, SEQUENCES, SPLIT, PROFILE = _artifacts("encode", "vocab.json", "data.npz", "split.json", "profile.json")
MEMBERS, ENSEMBLE, MODEL_VOCABULARY, METRICS, METRICS_TABLE = _artifacts(
    "train", "members/*.keras", "members.json", "vocab.json", "metrics.json", "metrics.txt")
(TAKES,) = _artifacts("generate", "takes.json")
(DRUM_PARTS,) = _artifacts("drums", "drum_parts.json")
TRACKS, ARRANGED_MIDI = _artifacts("arrange", "tracks.json", "track_*.mid")
RENDERS, RENDERED = _artifacts("render", "renders.json", "*.wav")
MASTERS, MASTERED = _artifacts("master", "masters.json", "*.wav")
STEMS, STEM_FILES = _artifacts("stems", "stems.json", "*bpm*")  # sample-library names carry the tempo
(EXPORTS,) = _artifacts("export", "exports.json")


def built(outputs: Path, stage: str) -> bool:
    """Whether the outputs folder holds a built `stage` (its manifest is there)."""
    return (Path(outputs) / stage / STAGE_MANIFEST).is_file()


def link_stages(source: Path, target: Path, stages) -> None:
    """The artifacts of `stages` in the outputs folder `source`, into the outputs folder `target`,
    so that a runner there finds them fresh (the same bytes give the same keys): hard links
    (artifacts are never changed in place), each stage linked into a temporary folder and
    swapped in whole (a stop half-way leaves no stage that looks built and is not), a stage
    whose manifest is already the same left as it is. For a second run from the first's models:
    the radio, a one-track preview, `lofi evaluate`'s scratch training and extra takes."""
    for stage in stages:
        made, there = Path(source) / stage, Path(target) / stage
        if not built(source, stage):
            raise StageError(f"{made}: not built, so there is nothing to take from it; run `lofi {stage}` there first")
        manifest = STAGE_MANIFEST
        if built(target, stage) and (there / manifest).read_bytes() == (made / manifest).read_bytes():
            continue
        Path(target).mkdir(parents=True, exist_ok=True)
        tmp = Path(target) / f".{stage}.linking"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(made, tmp, symlinks=True, copy_function=atomic.link_or_copy)
        atomic.replace_dir(tmp, there)


def _write(path: Path, obj) -> None:
    atomic.write_json(path, obj)


def _read(folder: Path, artifact: Artifact):
    path = Path(folder) / artifact.pattern
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise StageError(f"{path} is missing: run `lofi {artifact.stage}`") from None


def _records(cls, rows: list[dict]) -> list:
    known = {f.name for f in fields(cls)}
    return [cls(**{k: v for k, v in row.items() if k in known}) for row in rows]


class RecordFile(Generic[R]):
    """An artifact that is a list of records of one dataclass, one per track or file."""

    def __init__(self, artifact: Artifact, cls: type[R]):
        self.artifact, self.cls = artifact, cls

    def write(self, out_dir: Path, records: list[R]) -> None:
        _write(out_dir / self.artifact.pattern, {"records": [asdict(r) for r in records]})

    def read(self, folder: Path) -> list[R]:
        return _records(self.cls, _read(folder, self.artifact)["records"])


# -- intake --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceFile:
    """A kept MIDI file: its name in the archive, its content hash and where intake stored it."""
    name: str
    sha256: str
    file: str
    bytes: int


@dataclass
class Intake:
    files: list[SourceFile]
    skipped: list[dict]
    duplicates: list[dict]


def write_intake(out_dir: Path, blobs: list, skipped: list[tuple[str, str]],
                 duplicates: list[tuple[str, str]]) -> list[SourceFile]:
    """Kept files under content-hash names (nothing an entry's name says decides where a file
    goes), and the listing."""
    (out_dir / "midi").mkdir()
    files = []
    for blob in blobs:
        stored = f"midi/{blob.sha[:20]}.mid"
        (out_dir / stored).write_bytes(blob.data)
        files.append(SourceFile(blob.name, blob.sha, stored, len(blob.data)))
    _write(out_dir / SOURCE_FILES.pattern, {
        "files": [asdict(f) for f in files], "skipped": [{"name": n, "reason": r} for n, r in skipped],
        "duplicates": [{"name": n, "same_as": s} for n, s in duplicates]})
    return files


def read_intake(folder: Path) -> Intake:
    data = _read(folder, SOURCE_FILES)
    return Intake(_records(SourceFile, data["files"]), data["skipped"], data["duplicates"])


# -- extract -------------------------------------------------------------------------------------
def write_pieces(out_dir: Path, pieces: list[dict], skipped: list[dict]) -> None:
    """Pieces as Piece.to_json() dicts (what the per-file cache holds), and the files skipped."""
    _write(out_dir / PIECES.pattern, {"pieces": pieces, "skipped": skipped})


def read_pieces(folder: Path) -> tuple[list[Piece], list[dict]]:
    data = _read(folder, PIECES)
    return [Piece.from_json(p) for p in data["pieces"]], data["skipped"]


# -- encode --------------------------------------------------------------------------------------
@dataclass
class Encoded:
    """The encode artifact: the vocabulary, every piece's events as ids with its split, and the
    training windows of each split (x: (n, window, fields), y: (n, fields))."""
    vocab: Vocabulary
    arrays: dict[str, np.ndarray]
    pieces: list[dict]

    @property
    def window(self) -> int:
        return int(self.arrays["x_train"].shape[1])

    def sequences(self, split: str | None = None) -> list[np.ndarray]:
        """Each piece's event ids, in the artifact's order (only one split's, if given)."""
        a = self.arrays
        starts = np.concatenate([[0], np.cumsum(a["lengths"])[:-1]])
        return [a["ids"][s:s + n] for side, s, n in zip(a["split"], starts, a["lengths"])
                if split is None or SPLITS[side] == split]


def write_encoded(out_dir: Path, vocab: Vocabulary, arrays: dict[str, np.ndarray], pieces: list[dict]) -> None:
    vocab.save(out_dir / VOCABULARY.pattern)
    with atomic.atomic_path(out_dir / SEQUENCES.pattern) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    _write(out_dir / SPLIT.pattern, {"pieces": pieces})


def read_encoded(folder: Path) -> Encoded:
    folder = Path(folder)
    return Encoded(Vocabulary.load(folder / VOCABULARY.pattern), dict(np.load(folder / SEQUENCES.pattern)),
                   _read(folder, SPLIT)["pieces"])


def write_profile(out_dir: Path, profile: DataProfile) -> None:
    _write(out_dir / PROFILE.pattern, profile.to_json())


def read_profile(folder: Path) -> DataProfile:
    return DataProfile.from_json(_read(folder, PROFILE))


# -- train ---------------------------------------------------------------------------------------
def write_member(out_dir: Path, name: str, data: bytes) -> Path:
    """One member's .keras bytes; returns the file (Keras loads models from files)."""
    path = out_dir / "members" / f"{name}.keras"
    atomic.write_bytes(path, data)
    return path


def write_ensemble(out_dir: Path, vocab: Vocabulary, window: int, specs: list[dict],
                   metrics: dict, test_events: int, histories: dict, table: str, calibration: dict) -> None:
    """What makes the members written before an ensemble: their vocabulary and specs, how they
    are combined and sampled (calibrated on dev); and the scores."""
    vocab.save(out_dir / MODEL_VOCABULARY.pattern)
    _write(out_dir / ENSEMBLE.pattern, {"window": window, "vocab_fingerprint": vocab.fingerprint(),
                                        "field_sizes": dict(zip(FIELDS, vocab.sizes)), "members": specs,
                                        "calibration": calibration})
    _write(out_dir / METRICS.pattern, {"test": metrics, "test_events": test_events, "histories": histories})
    atomic.write_text(out_dir / METRICS_TABLE.pattern, table + "\n")


def ensemble_files(folder: Path) -> dict[str, bytes]:
    """The files that make the ensemble (what a worker needs to load it elsewhere), by name."""
    info = _read(folder, ENSEMBLE)
    names = [ENSEMBLE.pattern, MODEL_VOCABULARY.pattern, *(f"members/{m['name']}.keras" for m in info["members"])]
    return {rel: (Path(folder) / rel).read_bytes() for rel in names}


def read_ensemble(folder: Path, vocab: Vocabulary | None = None):
    """(members as Keras models, their vocabulary, the ensemble's info); a vocabulary that does
    not belong to them is an error."""
    import keras
    folder = Path(folder)
    info = _read(folder, ENSEMBLE)
    saved = Vocabulary.load(folder / MODEL_VOCABULARY.pattern)
    if vocab is not None and vocab.fingerprint() != info["vocab_fingerprint"]:
        raise StageError(f"{folder}: the models were trained on vocabulary {info['vocab_fingerprint']}, "
                         f"not on the given one ({vocab.fingerprint()}); re-run `lofi train`")
    if saved.fingerprint() != info["vocab_fingerprint"]:
        raise StageError(f"{folder}/vocab.json does not belong to the models saved beside it; "
                         "re-run `lofi train --force`")
    models = [keras.saving.load_model(folder / "members" / f"{m['name']}.keras") for m in info["members"]]
    for m in models:
        sizes = {name: int(t.shape[-1]) for name, t in zip(m.output_names, m.outputs)}
        expected = {f: n for f, n in zip(FIELDS, saved.sizes) if f in TARGETS}
        if sizes != expected:
            raise StageError(f"{folder}: model {m.name} predicts fields {sizes} but the vocabulary "
                             f"has {expected}; re-run `lofi train --force`")
    return models, saved, info


def read_calibration(folder: Path) -> dict | None:
    """How the members are combined and sampled, as chosen on dev (None: models from before)."""
    return _read(folder, ENSEMBLE).get("calibration")


def read_metrics(folder: Path) -> dict:
    """{"test": {model: scores}, "test_events": n, "histories": {member: [epoch rows]}}."""
    return _read(folder, METRICS)


# -- generate ------------------------------------------------------------------------------------
@dataclass
class Take:
    """One track's chosen take: its event ids and tokens (the primer it was drawn from is context
    only, `primer_events` long, and no part of it), its metre, loop length and sections, how it
    was drawn and what the music checks said of it."""
    index: int
    seed: int
    primer_events: int
    draws: int
    checks: dict
    flagged: bool
    ids: list
    tokens: list
    self_repetition: float
    distinct_events: int
    chords: int
    melody_notes: int
    metre: str = "4/4"
    loop_bars: int = 4
    sections: list = field(default_factory=list)  # [label, first bar, bars]
    melody_by: str = "ensemble"  # or "base": the base ensemble wrote the melody over the take's harmony

    @property
    def form(self) -> str:
        """'intro 2 | A 8 | A' 8 | B 8 | A'' 8 | outro 4' ("" for a take drawn as a number of events)."""
        return form_string([Section(*s) for s in self.sections])


@dataclass
class Takes:
    grid: int
    bars: int | None
    vocab_fingerprint: str
    tracks: list[Take] = field(default_factory=list)


def write_takes(out_dir: Path, takes: Takes) -> None:
    _write(out_dir / TAKES.pattern, {**asdict(takes), "fields": list(FIELDS)})


def read_takes(folder: Path) -> Takes:
    data = _read(folder, TAKES)
    return Takes(data["grid"], data["bars"], data["vocab_fingerprint"], _records(Take, data["tracks"]))


# -- drums ---------------------------------------------------------------------------------------
@dataclass
class DrumPart:
    """One track's drums: every bar as [role, [[step, class, level, offset], ...]], where they
    came from, the tempo they were played at (arrange's), and what the form did."""
    index: int
    source: str
    tempo_bpm: int
    metre: str
    bars: list
    stats: dict = field(default_factory=dict)
    checks: list = field(default_factory=list)

    def drum_bars(self) -> list:
        from ..music.drum_format import DrumBar, DrumHit
        return [DrumBar(tuple(DrumHit(*h) for h in hits), role) for role, hits in self.bars]


drum_parts = RecordFile(DRUM_PARTS, DrumPart)


# -- arrange -------------------------------------------------------------------------------------
@dataclass
class TrackRecord:
    """One track, as every stage after arrange knows it. `stem` names its files (track_01.mid,
    track_01.wav); a MIDI file rendered with --midi has only an index, a stem and a title."""
    index: int
    stem: str
    title: str
    form: str = ""
    metre: str = "4/4"
    seed: int | None = None
    key: str | None = None
    tempo_bpm: int | None = None
    bars: int | None = None
    seconds: float | None = None
    lead: str | None = None
    drums: str | None = None  # where the drums came from
    harmonised_bars: float = 0.0
    harmony_changes: int = 0
    events: int = 0
    unknown_dropped: int = 0
    notes_per_part: dict = field(default_factory=dict)


def midi_name(record: TrackRecord) -> str:
    return f"{record.stem}.mid"


def track_tags(record: TrackRecord, n: int, total: int, export, run) -> dict:
    """The ID3 tags of a run's track number `n` of `total` (its preview gets the same)."""
    comment = (f"seed={record.seed if record.seed is not None else run.seed} run_seed={run.seed} "
               f"key={record.key or '?'} tempo={record.tempo_bpm or '?'}")
    return {"title": record.title, "artist": export.artist, "album": run.name, "track": n, "total": total,
            "comment": comment, "tempo_bpm": record.tempo_bpm, "key": record.key}


def mp3_name(run_name: str, index: int, data: bytes) -> str:
    """An exported MP3's name: the run's, the track's number and a digest of its bytes (never reused)."""
    return f"{slug(run_name)}-{index:02d}-{sha256_bytes(data)[:8]}.mp3"


def given_midi_files(path: Path) -> list[Path]:
    """The files `--midi PATH` (render.midi) names: the file itself, or a folder's .mid/.midi files."""
    return sorted(path.glob("*.mid*")) if path.is_dir() else [path]


# -- render, master ------------------------------------------------------------------------------
@dataclass
class Rendered:
    """One WAV render wrote: its file name, length, sample rate and sample peak."""
    file: str
    seconds: float
    sample_rate: int
    peak: float


@dataclass
class Mastered:
    """One WAV master wrote: its file name, length and rate, its loudness and true peak, and the
    seed of its vinyl-and-tape texture."""
    file: str
    seconds: float
    sample_rate: int
    lufs: float
    true_peak_db: float
    seed: int


# -- stems ---------------------------------------------------------------------------------------
@dataclass
class StemSet:
    """One track's files for a DAW, named as sample libraries name them: the whole arrangement's
    MIDI (`midi`), and per part its MIDI and, with export.stems, its WAV (`parts`: {part,
    channel, notes, midi, wav}); the vinyl-and-tape texture's WAV; the stems' length and rate,
    and the gain (dB, 0 unless they had to come down to fit 24 bits) they all carry."""
    index: int
    stem: str
    midi: str
    parts: list
    texture: str | None = None
    seconds: float | None = None
    sample_rate: int | None = None
    gain_db: float = 0.0

    def files(self) -> list[str]:
        return [self.midi, *(f for p in self.parts for f in (p["midi"], p["wav"]) if f),
                *([self.texture] if self.texture else [])]


# -- export --------------------------------------------------------------------------------------
@dataclass
class Export:
    """One MP3: its path under the outputs root, title, length and playlist line."""
    index: int
    file: str
    title: str
    seconds: float
    extinf: str
    stems: list = field(default_factory=list)  # the track's stems and MIDI files, under the outputs root


tracks = RecordFile(TRACKS, TrackRecord)
renders = RecordFile(RENDERS, Rendered)
masters = RecordFile(MASTERS, Mastered)
stem_sets = RecordFile(STEMS, StemSet)
exports = RecordFile(EXPORTS, Export)
