"""Fixtures. The helpers they use live in helpers.py, which tests import directly."""
from __future__ import annotations

import os
import signal

import pytest

from helpers import ROOT, lofi, quick_archive, quick_config, song_bytes, write_zip

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# A suite started in the background by a shell without job control (`make test &` in a script)
# inherits SIGINT ignored, and every `lofi` it starts would too: the Ctrl-C tests would then wait
# for a run that never hears them. Answered here, the children start with it at its default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def tensorflow_threads():
    """TensorFlow takes its thread counts once per process: the ones `train` asks for by default,
    before any test builds a model (a stage asking for others in this process is an error)."""
    from lofi_pipeline.core.config import TrainConfig
    from lofi_pipeline.model.members import configure_tensorflow
    configure_tensorflow(TrainConfig().threads)


@pytest.fixture
def tiny_midi(tmp_path):
    path = tmp_path / "tiny.mid"
    path.write_bytes(song_bytes(0))
    return path


@pytest.fixture
def song_archive(tmp_path):
    return write_zip(tmp_path / "songs.zip", {f"songs/song_{i:02d}.mid": song_bytes(i) for i in range(10)})


@pytest.fixture
def quick_cfg(tmp_path):
    """The quick profile, with outputs in a temporary folder."""
    def make(*overrides):
        return quick_config(tmp_path / "outputs", *overrides)
    return make


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A real quick-profile run through `train` on ten little songs: (config, runner)."""
    from lofi_pipeline.core.runner import Runner
    from lofi_pipeline.pipeline import build_stages
    base = tmp_path_factory.mktemp("trained")
    archive = write_zip(base / "songs.zip", {f"song_{i:02d}.mid": song_bytes(i) for i in range(10)})
    cfg = quick_config(base / "outputs", f'run.archive="{archive}"', "encode.dev_share=0.2", "encode.test_share=0.2",
                       "train.max_steps=80", "train.check_every=8", "train.patience=3",
                       "train.batch_size=32")
    runner = Runner(cfg, build_stages(), root=ROOT, log=lambda m: None)
    runner.run(["train"])
    return cfg, runner


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """`lofi all` on the quick profile, locally, in a subprocess: (args, outputs, result)."""
    base = tmp_path_factory.mktemp("cli")
    archive = quick_archive(base)
    out = base / "outputs"
    args = ["--profile", "quick", "--archive", str(archive), "--outputs", str(out)]
    first = lofi("all", *args)
    return args, out, first
