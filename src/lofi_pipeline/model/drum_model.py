"""The drum model: an ensemble of members of the melody's family (Conv1D -> BiLSTM -> attention,
model/members.py), smaller, over the drum format's events (music/drum_format.py); trained,
scored against a drum n-gram and unigram like for like, saved and loaded as a base.

Own members rather than drum heads on the melody ensemble: a drum bar holds three to five
times the events of a melody bar, so a shared window would see a fraction of a bar of the
harmony, and the drums could not be pre-trained on a drum corpus (the Groove MIDI Dataset has
no harmony) nor kept when an archive's melody ensemble is fine-tuned.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..core import atomic
from ..core.errors import StageError
from ..core.hashing import hash_json, path_digest
from ..music.drum_format import DRUM_FIELDS, DRUM_GIVEN, DRUM_TARGETS, END, NONE, UNK, DrumBar, DrumHit, DrumVocabulary
from .baselines import NGramModel, UnigramModel
from .ensemble import combine
from .members import model_inputs
from .scoring import apply_pairing, dev_weight, event_metrics
from .training import ARCHITECTURE, build_from_spec, make_windows, train_member

WINDOW = 64  # events: two to four bars of drums
MEMBERS = ({"name": "drums_0", "seed": 7, "kernel_size": 3, "lstm_units": 64},
           {"name": "drums_1", "seed": 8, "kernel_size": 5, "lstm_units": 48})
SHARED = {"embed_dim": 32, "conv_filters": 48, "attention_heads": 2, "dropout": 0.15}
MANIFEST = "manifest.json"
PRIMERS = "primers.json"
PRIMER_BARS = 2
SHIPPED = Path(__file__).parent / "base_drums"


def member_specs(learning_rate: float) -> list[dict]:
    return [{**SHARED, **m, "learning_rate": learning_rate} for m in MEMBERS]


def windows(sequences: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Every event a target, its WINDOW events before it the context (left-padded)."""
    seqs = [np.asarray(s, np.int32).reshape(-1, len(DRUM_FIELDS)) for s in sequences if len(s)]
    if not seqs:
        return np.zeros((0, WINDOW, len(DRUM_FIELDS)), np.int32), np.zeros((0, len(DRUM_FIELDS)), np.int32)
    return make_windows(seqs, WINDOW, 1)


def split_data(splits: dict[str, list[np.ndarray]]) -> dict:
    data = {}
    for split, seqs in splits.items():
        data[f"x_{split}"], data[f"y_{split}"] = windows(seqs)
    return data


def pairing_masks(vocab: DrumVocabulary, y: np.ndarray) -> dict[str, np.ndarray]:
    """After the true position: an end event has no instrument, level or offset; a hit has all three."""
    end = y[:, DRUM_FIELDS.index("position")] == vocab.index["position"][END]
    masks = {}
    for field in ("instrument", "velocity", "offset"):
        size = vocab.sizes[field]
        none = vocab.index[field][NONE]
        is_none = np.zeros(size, bool)
        is_none[none] = True
        real = ~is_none
        real[:2] = False
        mask = np.where(end[:, None], is_none[None, :], real[None, :])
        mask[:, UNK] |= ~end
        masks[field] = mask
    return masks


def build(spec: dict):
    return build_from_spec(spec, DrumVocabulary().sizes, WINDOW, DRUM_GIVEN)


def train(data: dict, work: Path, budget: dict, learning_rate: float, log=print) -> list:
    """The members trained in `work` (each resumable; from `budget["init"][i]` when given)."""
    models = []
    inits = budget.get("inits") or [None] * len(MEMBERS)
    for spec, init in zip(member_specs(learning_rate), inits):
        # fine-tuning on an archive's drums adapts every layer: a few bars move the whole kit
        train_member(spec, DrumVocabulary().sizes, WINDOW, data, work / spec["name"],
                     {**budget, "init": init, "adapt": "all"}, log, given=DRUM_GIVEN)
        model = build(spec)
        model.load_weights(work / spec["name"] / "best.weights.h5")
        models.append(model)
    return models


def _probs(model, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    out = model.predict(model_inputs(x, y), batch_size=1024, verbose=0)
    return {f: np.asarray(out[f], np.float64) for f in DRUM_TARGETS}


def score(models: list, data: dict, split: str, ngram_order: int) -> dict:
    """NLL per event (nats, the sum over the predicted fields) on one split for each member,
    their equal mean, and a per-field n-gram (weighted against the unigram on dev) and unigram,
    all under the same pairing rule."""
    vocab = DrumVocabulary()
    x, y = data[f"x_{split}"], data[f"y_{split}"]
    cols = [DRUM_FIELDS.index(f) for f in DRUM_TARGETS]
    masks = pairing_masks(vocab, y)

    def metrics(probs):
        return event_metrics(apply_pairing(probs, masks), y[:, cols], DRUM_TARGETS)
    member_probs = [_probs(m, x, y) for m in models]
    out = {f"member_{i}": metrics(p) for i, p in enumerate(member_probs)}
    out["ensemble"] = metrics(combine(member_probs, "mean", [1.0] * len(models)))
    uni, ngram = {}, {}
    dev_masks = pairing_masks(vocab, data["y_dev"])
    for f in DRUM_TARGETS:
        j, size = DRUM_FIELDS.index(f), vocab.sizes[f]
        unigram = UnigramModel(size).fit(data["y_train"][:, j])
        model = NGramModel(size, ngram_order).fit(data["x_train"][:, :, j], data["y_train"][:, j])
        w = dev_weight(model.predict(data["x_dev"][:, :, j]), unigram.predict(data["x_dev"][:, :, j]),
                       data["y_dev"][:, j], dev_masks.get(f))
        uni[f] = unigram.predict(x[:, :, j])
        ngram[f] = w * model.predict(x[:, :, j]) + (1 - w) * uni[f]
    out[f"{ngram_order}-gram"] = metrics(ngram)
    out["unigram"] = metrics(uni)
    out["events"] = int(len(y))
    return out


# -- a base of drum members ----------------------------------------------------------------------
def base_folder(setting: str, root: Path) -> Path:
    """drums.base: "" is the shipped base drum model; anything else a folder, relative to the project."""
    return SHIPPED if not setting else root / setting


def primer_stretches(bars: list[DrumBar], at_most: int) -> list[list[DrumBar]]:
    """Up to `at_most` stretches of PRIMER_BARS bars, evenly through a piece, each with hits in every bar."""
    starts = [i for i in range(len(bars) - PRIMER_BARS + 1) if all(b.hits for b in bars[i:i + PRIMER_BARS])]
    picked = [starts[round(k)] for k in np.linspace(0, len(starts) - 1, min(at_most, len(starts)))] if starts else []
    return [bars[i:i + PRIMER_BARS] for i in dict.fromkeys(picked)]


def write_base(folder: Path, models: list, built: dict, primers: list) -> None:
    """The members' weights, the primers ([bpm, bars] each) and a manifest: what they fit (the
    vocabulary, window, architecture) and how they were built."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic.write_json(folder / PRIMERS, [[bpm, [[b.role, [list(h) for h in b.hits]] for b in bars]]
                                         for bpm, bars in primers])
    for spec, model in zip(member_specs(0.0), models):
        partial = folder / f"{spec['name']}.partial.weights.h5"
        model.save_weights(partial)
        partial.replace(folder / f"{spec['name']}.weights.h5")
    fit = {"vocabulary": DrumVocabulary().config(), "window": WINDOW,
           "members": [{k: s[k] for k in ("name", "seed", *ARCHITECTURE, "dropout")} for s in member_specs(0.0)]}
    atomic.write_json(folder / MANIFEST, {**fit, **built})


def _fits(manifest: dict) -> str | None:
    if manifest.get("vocabulary") != DrumVocabulary().config():
        return "its drum vocabulary is another version"
    if manifest.get("window") != WINDOW:
        return f"its window is {manifest.get('window')}, not {WINDOW}"
    want = [{k: s[k] for k in ("name", "seed", *ARCHITECTURE, "dropout")} for s in member_specs(0.0)]
    if manifest.get("members") != want:
        return "its members' architecture is not this code's"
    return None


def read_manifest(folder: Path) -> dict:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (FileNotFoundError, NotADirectoryError):
        raise StageError(f"{folder}: no base drum model here ({MANIFEST} missing); run `make base-drums`, "
                         "or set arrange.drums = \"pattern\"") from None
    except json.JSONDecodeError as exc:
        raise StageError(f"{folder / MANIFEST}: not valid JSON ({exc}); run `make base-drums` to rebuild it") from None
    why = _fits(manifest)
    if why:
        raise StageError(f"{folder}: the base drum model does not fit this code ({why}); run `make base-drums`")
    return manifest


def base_files(folder: Path) -> list[Path]:
    read_manifest(folder)
    files = [folder / f"{m['name']}.weights.h5" for m in MEMBERS]
    missing = [f.name for f in files if not f.exists()]
    if missing:
        raise StageError(f"{folder}: base drum model incomplete, {', '.join(missing)} missing; run `make base-drums`")
    return files


def base_digest(folder: Path) -> str:
    """The weights' bytes and what they fit (not when they were built)."""
    manifest = read_manifest(folder)
    return hash_json({"fit": {k: manifest[k] for k in ("vocabulary", "window", "members")},
                      **{f.name: path_digest(f) for f in [*base_files(folder), folder / PRIMERS] if f.exists()}})


def read_primers(folder: Path) -> list[tuple[float, list[DrumBar]]]:
    """The base's primers: (tempo, bars) each."""
    try:
        rows = json.loads((folder / PRIMERS).read_text())
    except FileNotFoundError:
        raise StageError(f"{folder}: the base drum model has no {PRIMERS}; run `make base-drums`") from None
    return [(bpm, [DrumBar(tuple(DrumHit(*h) for h in hits), role) for role, hits in bars]) for bpm, bars in rows]


def load(weight_files: list[Path]) -> list:
    """Members with these weights (in MEMBERS' order)."""
    import keras
    keras.backend.clear_session()
    models = []
    for spec, path in zip(member_specs(1e-3), weight_files):
        model = build(spec)
        model.load_weights(path)
        models.append(model)
    return models
