"""The drum model, trained for real (small budgets): it learns an archive's one pattern and
plays it back; the form puts fills, the drop and the ending where the sections say."""
import numpy as np
import pytest

from helpers import groove_file, groove_zip
from lofi_pipeline.commands.pretrain import pretrain_drums
from lofi_pipeline.core.errors import StageError
from lofi_pipeline.corpora.groove import LOFI_STYLES, read_groove
from lofi_pipeline.model import drum_model
from lofi_pipeline.model.drum_part import BarPlayer, drum_part
from lofi_pipeline.model.ensemble import compiled_sampler
from lofi_pipeline.music.drum_format import CLASSES, DRUM_FIELDS, DRUM_TARGETS, DrumBar, DrumHit, DrumVocabulary
from lofi_pipeline.music.drum_stats import drum_checks
from lofi_pipeline.stages.drums import base_drummers

KICK, SNARE, HAT = (CLASSES.index(c) for c in ("kick", "snare", "closed_hat"))
# One bar of boom-bap: kick on 1 and the "and" of 3, snare on 2 and 4, 8th hats.
PATTERN = tuple(sorted([DrumHit(s, HAT, 2, 3) for s in range(0, 16, 2)]
                       + [DrumHit(0, KICK, 4, 3), DrumHit(10, KICK, 3, 3), DrumHit(4, SNARE, 4, 4),
                          DrumHit(12, SNARE, 4, 4)]))


@pytest.fixture(scope="module")
def one_pattern_models(tmp_path_factory):
    """The shipped base fine-tuned on an archive whose drums play one bar over and over."""
    vocab = DrumVocabulary()
    pieces = [vocab.encode([DrumBar(PATTERN)] * 8, "4/4", 80.0 + k) for k in range(6)]
    data = drum_model.split_data({"train": pieces[:5], "dev": pieces[5:]})
    budget = {"batch_size": 32, "check_every": 40, "checks": 4, "patience": 4, "dev_windows": 0,
              "inits": drum_model.base_files(drum_model.SHIPPED)}
    return drum_model.train(data, tmp_path_factory.mktemp("drums"), budget, 3e-3, log=lambda *_: None)


def _player(models, seed=0, temperature=0.3):
    sampler = compiled_sampler(models, "mean", None, 1, fields=DRUM_FIELDS, targets=DRUM_TARGETS)
    return BarPlayer(sampler, DrumVocabulary(), "4/4", 84.0, np.random.default_rng(seed), temperature)


def test_a_model_trained_on_one_pattern_plays_it_back(one_pattern_models):
    player = _player(one_pattern_models)
    for _ in range(2):
        player.remember(DrumBar(PATTERN))
    played = [player.draw("groove") for _ in range(4)]
    assert sum(bar.hits == PATTERN for bar in played) >= 3, [bar.hits for bar in played]


def test_fills_the_drop_and_the_ending_fall_where_the_form_says(one_pattern_models):
    sections = [("intro", 0, 2), ("A", 2, 4), ("A'", 6, 4), ("B", 10, 4), ("A''", 14, 4), ("outro", 18, 2)]
    bars, stats = drum_part(_player(one_pattern_models, temperature=1.0), sections, 2, 0.5)
    assert len(bars) == 20
    assert bars[0].hits == () and all(CLASSES[h.instrument] in ("closed_hat", "ride", "side_stick", "open_hat")
                                      for h in bars[1].hits)
    fills = [i for i, b in enumerate(bars) if b.role == "fill"]
    assert fills == [5, 9, 17]  # the last bar of each section but the one before the last A
    assert bars[13].hits == () and stats["drop_bars"] == 1  # the drop
    assert {(h.step, CLASSES[h.instrument]) for h in bars[18].hits} == {(0, "kick"), (0, "crash")}
    assert bars[19].hits == ()
    for start in (6, 10, 14):  # a new section opens on a crash
        assert any(h.step == 0 and CLASSES[h.instrument] == "crash" for h in bars[start].hits)
    assert bars[3].hits == bars[7].hits  # the loop's second bar, played again in A'
    assert drum_checks(bars, 2) == []


def test_drum_checks_say_what_is_wrong():
    bar = DrumBar(PATTERN)
    assert drum_checks([DrumBar(())] * 4, 2) == ["empty: no drum hits"]
    assert drum_checks([bar] * 4, 2) == ["never varies: every bar the same"]
    varied = [DrumBar(PATTERN[:k]) for k in range(3, 9)]
    assert drum_checks(varied, 2) == ["never repeats: no bar plays the bar 2 before it"]


def test_the_shipped_base_drum_model_fits_this_code_and_says_what_it_was_built_from():
    from helpers import ROOT
    from lofi_pipeline.core.hashing import path_digest
    manifest = drum_model.read_manifest(drum_model.SHIPPED)  # raises if the format or members changed
    assert manifest["corpus"]["digest"] == path_digest(ROOT / "dataset" / "groove" / "groove_midi.zip")
    assert manifest["corpus"]["files"]["train"] > 500 and manifest["corpus"]["left_out"]
    nll = manifest["test_nll"]
    assert nll["ensemble"] < nll["3-gram"] < nll["unigram"]
    primers = drum_model.read_primers(drum_model.SHIPPED)
    assert len(primers) == manifest["primers"]["count"] > 10
    assert all(len(bars) == drum_model.PRIMER_BARS and all(b.hits for b in bars) for _, bars in primers)


TINY_BUDGET = {"batch_size": 8, "check_every": 2, "checks": 1, "patience": 1, "dev_windows": 32}


def test_the_base_drum_model_is_trained_on_every_style_then_specialised_on_lofi_styles(tmp_path):
    corpus = groove_zip(tmp_path / "groove.zip", [
        ("hiphop", "beat", "train", groove_file(bars=4)), ("soul/groove", "fill", "train", groove_file(bars=2)),
        ("rock", "beat", "train", groove_file(bars=6)), ("rock", "beat", "validation", groove_file(bars=3)),
        ("funk", "beat", "validation", groove_file(bars=4)), ("jazz", "beat", "test", groove_file(bars=3)),
        ("latin/samba", "beat", "test", groove_file(bars=2))])
    built = pretrain_drums(corpus, tmp_path / "base", tmp_path / "work", 3, TINY_BUDGET, log=lambda *_: None)
    pieces, _ = read_groove(corpus, 60, 130)
    splits = ("train", "dev", "test")
    assert built["corpus"]["bars"] == {s: sum(len(p.bars) for p in pieces if p.split == s) for s in splits}
    specialised = built["specialised"]
    assert specialised["styles"] == list(LOFI_STYLES)
    assert specialised["bars"] == {s: sum(len(p.bars) for p in pieces if p.split == s and p.style.split("/")[0]
                                          in ("hiphop", "soul", "funk", "jazz")) for s in splits}
    assert 0 < specialised["bars"]["train"] < built["corpus"]["bars"]["train"]
    for scores in (built["test_nll"], specialised["test_nll"], specialised["test_nll_before"]):
        assert {"ensemble", "3-gram", "unigram"} <= set(scores)
    # The report compares the drums played with the styles' drummers, not the whole corpus's.
    drummers = base_drummers(drum_model.read_manifest(tmp_path / "base"))
    assert drummers["label"].endswith("hiphop, soul, funk, jazz") and drummers["backbeat"]["snare on 2 and 4"] > 0
    # The shipped members are the second phase's, started from the first's and trained on.
    first = drum_model.load([tmp_path / "work" / "all styles" / m["name"] / "best.weights.h5"
                             for m in drum_model.MEMBERS])
    shipped = drum_model.load(drum_model.base_files(tmp_path / "base"))
    assert any(not np.array_equal(a, b) for a, b in zip(first[0].get_weights(), shipped[0].get_weights()))
    # Tracks start from the lo-fi styles' validation beats alone: here the funk beat.
    funk = next(p for p in pieces if p.style == "funk")
    assert [bars for _, bars in drum_model.read_primers(tmp_path / "base")] == drum_model.primer_stretches(funk.bars, 4)


def test_a_drum_corpus_without_the_lofi_styles_is_refused_before_any_training(tmp_path):
    corpus = groove_zip(tmp_path / "groove.zip", [("rock", "beat", split, groove_file(bars=2))
                                                  for split in ("train", "validation", "test")])
    with pytest.raises(StageError, match="hiphop, soul, funk, jazz"):
        pretrain_drums(corpus, tmp_path / "base", tmp_path / "work", 3, TINY_BUDGET, log=lambda *_: None)
    assert not (tmp_path / "work").exists()
