"""The shipped base ensemble: it fits the code, and train fine-tunes it (changing the weights,
reproducibly, keyed on the base's bytes) even on a tiny archive of performed loops."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers import ROOT, performed_song, write_zip
from lofi_pipeline.core.config import load_config
from lofi_pipeline.core.errors import StageError
from lofi_pipeline.core.runner import Runner
from lofi_pipeline.model import base
from lofi_pipeline.model.training import member_specs
from lofi_pipeline.music.token_format import FIELDS, VOCAB_VERSION, Vocabulary
from lofi_pipeline.pipeline import build_stages
from lofi_pipeline.stages import catalog

# A few optimiser steps of one full-size member: enough to move every weight, quick on a CPU.
FINE_TUNE = ["train.members=1", "train.max_steps=6", "train.check_every=3", "train.batch_size=32",
             "encode.dev_share=0.2", "encode.test_share=0.2", "generate.tracks=1", "generate.bars=8",
             "generate.redraws=0"]


def default_vocab_and_window():
    cfg = load_config(ROOT / "lofi.toml", None, [])
    return Vocabulary.closed(cfg.encode.velocity_bins, {"window": cfg.encode.window}), cfg.encode.window, cfg


def test_the_shipped_base_fits_the_token_format_and_the_member_code():
    vocab, window, cfg = default_vocab_and_window()
    manifest = base.read_manifest(base.SHIPPED)
    assert manifest["vocab_version"] == VOCAB_VERSION
    assert base.misfits(manifest, vocab, window, member_specs(cfg)) == []
    sizes = dict(zip(FIELDS, vocab.sizes))
    for spec, weights in zip(manifest["members"], base.weight_files(base.SHIPPED, manifest)):
        untrained = [w.copy() for w in base.build_like(spec, sizes, window).get_weights()]
        model = base.build_like(spec, sizes, window)
        model.load_weights(weights)  # raises if a layer or a shape differs from the code's
        moved = [not np.array_equal(a, b) for a, b in zip(untrained, model.get_weights())]
        assert all(moved), f"{spec['name']}: {moved.count(False)} weight arrays are still at their initial values"
    # How it was built is on record.
    assert {"corpus", "code", "settings", "built_at", "train_seconds", "test_nll"} <= set(manifest)
    assert manifest["corpus"]["digest"] and manifest["corpus"]["pieces"] > 1000


def test_a_base_that_no_longer_fits_is_an_error_that_says_to_rebuild_it(tmp_path):
    vocab, window, cfg = default_vocab_and_window()
    folder = tmp_path / "base"
    shutil.copytree(base.SHIPPED, folder)
    manifest = base.read_manifest(folder)
    manifest["vocabulary"]["pitch"] = manifest["vocabulary"]["pitch"][:-1]  # a format change
    manifest["members"][0]["lstm_units"] += 8  # a model change
    manifest["builder"] = "0" * 16  # built by other member code, whatever the shapes
    (folder / base.MANIFEST).write_text(json.dumps(manifest))
    problems = base.misfits(manifest, vocab, window, member_specs(cfg))
    assert any(p.startswith("vocabulary") for p in problems) and any("lstm_units" in p for p in problems)
    assert f"member code {'0' * 16} (model/members.py is {base.builder_digest()} now)" in problems
    with pytest.raises(StageError, match=r"make base"):
        base.check_fits(folder, vocab, window, member_specs(cfg))
    smaller = load_config(ROOT / "lofi.toml", "quick", ['train.init="base"'])
    assert any("embed_dim" in p for p in base.misfits(base.read_manifest(base.SHIPPED), vocab, window,
                                                      member_specs(smaller)))


def loops_archive(folder):
    """Ten performed 4-bar loops: a producer's smallest archive."""
    return write_zip(folder / "loops.zip", {f"loop_{i:02d}.mid": performed_song(seed=i, bars=4, transpose=i % 5).data
                                            for i in range(10)})


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory):
    """Two runs of the same tiny archive, same seed, fine-tuning the shipped base: (runners)."""
    folder = tmp_path_factory.mktemp("fine_tune")
    archive = loops_archive(folder)
    runners = []
    for name in ("first", "second"):
        cfg = load_config(ROOT / "lofi.toml", None, [f'run.archive="{archive}"', f'run.outputs="{folder / name}"',
                                                      *FINE_TUNE])
        runner = Runner(cfg, build_stages(), root=ROOT, log=lambda m: None)
        runner.run(["generate"])
        runners.append(runner)
    return folder, archive, runners


@pytest.mark.slow
def test_fine_tuning_a_tiny_archive_moves_the_weights_reproducibly_and_generates(fine_tuned):
    _, _, (first, second) = fine_tuned
    members = sorted((first.artifact_dir("train") / "members").iterdir())
    assert [p.read_bytes() for p in members] == [p.read_bytes() for p in
                                                 sorted((second.artifact_dir("train") / "members").iterdir())]
    encoded = catalog.read_encoded(first.artifact_dir("encode"))
    models, _, info = catalog.read_ensemble(first.artifact_dir("train"), encoded.vocab)
    manifest = base.read_manifest(base.SHIPPED)
    start = base.build_like(manifest["members"][0], dict(zip(FIELDS, encoded.vocab.sizes)), encoded.window)
    start.load_weights(base.weight_files(base.SHIPPED, manifest)[0])
    moved = [not np.array_equal(a, b) for a, b in zip(start.get_weights(), models[0].get_weights())]
    assert all(moved), f"{moved.count(False)} of {len(moved)} weight arrays did not move"
    # ... and they moved from the shipped weights, not from anywhere: six steps stay close to them.
    pairs = [(a, b) for a, b in zip(start.get_weights(), models[0].get_weights()) if a.size > 1000]
    drift = [float(np.abs(a - b).mean() / np.abs(a).mean()) for a, b in pairs]
    assert max(drift) < 0.05, drift  # from scratch it would be of the order of the weights themselves
    metrics = catalog.read_metrics(first.artifact_dir("train"))["test"]
    assert {"member_0", "ensemble", "base", "3-gram", "unigram"} <= set(metrics)
    stats = first.manifest("train")["stats"]
    assert stats["init"] == "base" and stats["steps"] == {"member_0": 6}
    takes = catalog.read_takes(first.artifact_dir("generate"))
    assert len(takes.tracks) == 1 and len(takes.tracks[0].ids) > 8


@pytest.mark.slow
@pytest.mark.parametrize("adapt", ["upper", "heads"])
def test_fine_tuning_with_frozen_layers_leaves_them_as_the_base_has_them(fine_tuned, tmp_path, adapt):
    from lofi_pipeline.model.members import FROZEN
    _, archive, _ = fine_tuned
    cfg = load_config(ROOT / "lofi.toml", None, [f'run.archive="{archive}"', f'run.outputs="{tmp_path}"',
                                                  f'train.adapt="{adapt}"', *FINE_TUNE])
    runner = Runner(cfg, build_stages(), root=ROOT, log=lambda m: None)
    runner.run(["train"])
    encoded = catalog.read_encoded(runner.artifact_dir("encode"))
    tuned = catalog.read_ensemble(runner.artifact_dir("train"), encoded.vocab)[0][0]
    manifest = base.read_manifest(base.SHIPPED)
    start = base.build_like(manifest["members"][0], dict(zip(FIELDS, encoded.vocab.sizes)), encoded.window)
    start.load_weights(base.weight_files(base.SHIPPED, manifest)[0])
    kept, moved = [], []
    for before, after in zip(start.get_layer("trunk").layers, tuned.get_layer("trunk").layers):
        if before.get_weights():
            same = all(np.array_equal(a, b) for a, b in zip(before.get_weights(), after.get_weights()))
            (kept if before.name.startswith(FROZEN[adapt]) else moved).append((before.name, same))
    assert kept and all(same for _, same in kept), kept  # frozen: the base's weights, bit for bit
    assert not any(same for _, same in moved) and (moved or adapt == "heads"), moved  # the rest learned
    heads = [(a, b) for a, b in zip(start.get_layer("heads").get_weights(), tuned.get_layer("heads").get_weights())]
    assert not any(np.array_equal(a, b) for a, b in heads)


@pytest.mark.slow
def test_train_is_keyed_on_the_bytes_of_the_base(fine_tuned, tmp_path):
    folder, archive, _ = fine_tuned
    copy = tmp_path / "base"
    shutil.copytree(base.SHIPPED, copy)

    def runner(base_setting: str) -> Runner:
        cfg = load_config(ROOT / "lofi.toml", None, [f'run.archive="{archive}"', f'run.outputs="{folder / "first"}"',
                                                      f'train.base="{base_setting}"', *FINE_TUNE])
        return Runner(cfg, build_stages(), root=ROOT, log=lambda m: None)
    assert runner(str(copy)).state("train")[0]  # the same bytes elsewhere: still fresh
    manifest = json.loads((copy / base.MANIFEST).read_text())
    manifest["built_at"] = "another time"
    (copy / base.MANIFEST).write_text(json.dumps(manifest))
    assert runner(str(copy)).state("train")[0]  # rebuilt to the same weights: still fresh
    weights = copy / "member_0.weights.h5"
    weights.write_bytes(weights.read_bytes() + b"\0")
    fresh, why = runner(str(copy)).state("train")
    assert not fresh and "input files changed" in why
    shutil.rmtree(copy)
    with pytest.raises(StageError, match=r"no base ensemble here"):
        runner(str(copy)).run(["train"])


@pytest.mark.slow
def test_evaluate_trains_the_same_run_from_scratch_from_a_copy_of_its_encoded_data(fine_tuned):
    from lofi_pipeline.cli import build_parser, train_from_scratch
    folder, archive, (first, _) = fine_tuned
    settings = [arg for item in FINE_TUNE for arg in ("--set", item)]
    args = build_parser().parse_args(["evaluate", "--config", str(ROOT / "lofi.toml"), *settings])
    args.archive, args.outputs = str(archive), str(folder / "first")
    alone = train_from_scratch(args, first, folder / "scratch")
    for stage in ("intake", "extract", "encode"):
        assert alone.manifest(stage) == first.manifest(stage)  # copied and found fresh, not redone
    stats = alone.manifest("train")["stats"]
    assert stats["init"] == "scratch" and "base" not in stats["test"]
    tuned = catalog.read_metrics(first.artifact_dir("train"))["test"]
    scratch = catalog.read_metrics(alone.artifact_dir("train"))["test"]
    assert tuned["ensemble"]["nll"] < scratch["ensemble"]["nll"]  # the base earns its place, same budget


def test_a_base_is_written_whole_and_the_same_weights_give_the_same_bytes(trained, tmp_path):
    """pretrain_base on a run whose train stage is done: it writes the base from its members."""
    from lofi_pipeline.commands.pretrain import pretrain_base
    cfg, runner = trained
    folders = [tmp_path / "one", tmp_path / "two"]
    for folder in folders:
        built = pretrain_base(runner, Path(cfg.run.archive), folder, tmp_path / "built already", log=lambda m: None)
    assert built["corpus"]["digest"] and built["steps"] and built["test_nll"]["ensemble"] > 0
    manifests = [base.read_manifest(f) for f in folders]
    assert [m["members"] for m in manifests] == [m["members"] for m in manifests[:1]] * 2
    for one, two in zip(*(base.weight_files(f, m) for f, m in zip(folders, manifests))):
        assert one.read_bytes() == two.read_bytes()
    assert base.base_digest(folders[0]) == base.base_digest(folders[1])  # the build time is not in it
    assert not list(tmp_path.glob(".*partial*"))
    vocab = catalog.read_encoded(runner.artifact_dir("encode")).vocab
    assert base.misfits(manifests[0], vocab, cfg.encode.window, member_specs(cfg)) == []
