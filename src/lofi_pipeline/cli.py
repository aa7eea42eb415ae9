"""`lofi`: run the pipeline's stages, see what is fresh, clean up, evaluate, serve the web app.
It is long because every subcommand's parser, options and help text live here, in the one
place `lofi --help` is read from."""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import signal
import sys
from pathlib import Path

from .core.config import SPEC, ConfigError, config_file_text, default_of, load_config
from .core.errors import StageError
from .core.lock import LockedError, OutputsLock
from .core.runner import Runner
from .pipeline import STAGE_NAMES, build_stages, stages_through

CONFIG_FILE = "lofi.toml"

EPILOG = """\
stages, in order: intake -> extract -> encode -> train -> generate -> drums -> arrange -> render -> master
  -> stems -> export
Asking for a stage first runs whatever is stale before it, as make does; fresh stages print "cached".

examples:
  lofi all                                   the whole pipeline on dataset/default.zip
  lofi all --archive ~/midi/jazz.zip         the same on your own archive
  lofi extract encode --profile quick        a tiny smoke run of the first stages
  lofi master export --set master.preset=dusty   re-master only; nothing upstream re-runs
  lofi render --midi song.mid                render any MIDI file, no model needed
  lofi preview 2 --set master.preset=dusty   hear track 2 re-mastered in seconds (outputs/preview/)
  lofi export --set export.stems=true        also a 24-bit WAV per part in outputs/daw/, for a DAW
  lofi status                                what is fresh, what is stale and why
  lofi evaluate a.zip b.zip                  the pipeline on each archive, one table of results
  lofi all --set run.executor=ray --set run.ray_address=HEAD:6379
                                             the same on a Ray cluster, to the same bytes (README)
"""


def _common(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("run options")
    g.add_argument("--config", metavar="TOML",
                   help="config file (default: ./lofi.toml if there is one); relative paths in it, and the "
                        "outputs folder, are taken from its folder")
    g.add_argument("--profile", help="config profile: default, quick, ... (see lofi.toml)")
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config key, e.g. --set generate.temperature=0.8 (repeatable)")
    g.add_argument("--archive", metavar="PATH", help="zip or folder of MIDI files (run.archive)")
    g.add_argument("--midi", metavar="PATH",
                   help="render: a MIDI file or folder to render instead of the arrange artifact")
    g.add_argument("--outputs", metavar="DIR", help="artifact folder (run.outputs, default outputs)")
    g.add_argument("--force", action="store_true", help="re-run the named stages even if cached")
    g.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="if another run holds outputs/, wait this long for it (default: refuse)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lofi", description="Turn a zip of MIDI files into a playlist of lo-fi tracks.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, run_options: bool = True, **kwargs) -> argparse.ArgumentParser:
        """A subcommand, with the run options (config, profile, --set, ...) unless it runs nothing."""
        made = sub.add_parser(name, **kwargs)
        if run_options:
            _common(made)
        return made

    stages = build_stages()
    for stage in stages:
        p = command(stage.name, help=stage.help, description=f"{stage.name}: {stage.help}. "
                    "Stale stages before it run first.")
        p.add_argument("more", nargs="*", metavar="STAGE",
                       help="further stages to run in the same call")
    command("all", help="run every stage, then write the report")
    p = command("evaluate", help="run the pipeline on each archive and print one table of the results",
                description="Run every stage on each archive, each in its own folder under "
                "OUTPUTS/evaluate/, and print one table: files kept and skipped, unknown share, the "
                "test-split NLL of the ensemble, the same ensemble trained from scratch (when it "
                "fine-tunes the base: a second train in OUTPUTS/evaluate/NAME/scratch/), the base "
                "alone, the best member and the baselines, the music checks of every track against "
                "the training pieces, the realism figure, and stage times (also written as "
                "OUTPUTS/evaluate/evaluation.json).")
    p.add_argument("archives", nargs="*", metavar="ARCHIVE",
                   help="zips or folders of MIDI files (default: run.archive, i.e. dataset/default.zip)")
    command("config", run_options=False,
            help="print a config file with every key at its default (lofi config > lofi.toml)")
    p = command("status", help="show which artifacts are fresh or stale, and why")
    p.add_argument("--json", action="store_true", help="as JSON: each stage's state, why and time, and "
                   "which stages each config key re-runs (what the web app shows)")
    p = command("preview", help="one track of the run made again for new options, in seconds, into "
                "outputs/preview/", description="Make track TRACK of the run again for these options, "
                "without touching the run's artifacts: re-mastered when only render or master settings "
                "changed, else made alone from the trained models (e.g. --set generate.retakes=[2] for a "
                "new take of track 2). It is the MP3 that `lofi all` with the same options exports for "
                "that track. Prints `preview: FILE` (under the outputs folder).")
    p.add_argument("track", type=int, metavar="TRACK", help="the track's number (1 for the first)")
    command("report", help="write outputs/report.html from the built artifacts")
    command("clean", help="remove what the pipeline wrote under outputs/")
    p = command("base", help="pre-train the base ensemble that train fine-tunes (slow: make base)",
                description="Build the base corpus from music21's corpus (none of the default set's "
                "works), train the ensemble on it from scratch with the \"base\" profile, and write the "
                "members' weights and a manifest of how they were built to the base folder.")
    p.add_argument("--to", metavar="DIR", help="where to write the base (default: train.base, i.e. the shipped one)")
    p = command("base-drums", help="pre-train the base drum model on the Groove MIDI Dataset (make base-drums)",
                description="Read the Groove MIDI Dataset (dataset/groove/groove_midi.zip, CC BY 4.0), train "
                "the drum members on its train split (beats and fills, 4/4, 60-130 BPM; early stopping on its "
                "validation split), score them on its test split against a drum n-gram and unigram, and write "
                "their weights and a manifest to the base drum folder (drums.base).")
    p.add_argument("--to", metavar="DIR", help="where to write it (default: drums.base, i.e. the shipped one)")
    p.add_argument("--corpus", metavar="ZIP", help="the Groove MIDI Dataset's zip (default: the vendored one)")
    p = command("serve", help="a local web app: start a run, watch it, listen, tweak, download",
                description="Serve the web app on http://HOST:PORT/ (127.0.0.1 unless --host says "
                "otherwise). Every run it starts is `lofi all` with these options and the page's choices.")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; anything else lets the network in)")
    p = command("dataset", run_options=False,
                help="build the default set (run.archive's default) from music21's corpus, offline")
    p.add_argument("--out", default=default_of("run.archive"), help="where to write the zip (default: %(default)s)")
    p.add_argument("--limit", type=int, default=0, help="only the first N corpus pieces")
    p.add_argument("--workers", type=int, default=default_of("extract.workers"),
                   help="parallel processes (default: extract.workers, %(default)s)")
    return parser


def config_file(args) -> Path | None:
    """The config file asked for (it must exist), else ./lofi.toml if there is one."""
    if args.config:
        return Path(args.config)
    return Path(CONFIG_FILE) if Path(CONFIG_FILE).is_file() else None


def project_root(args) -> Path:
    """Paths in the config (archive, outputs, SoundFont, primer) are relative to the config
    file's folder, or to the working directory when there is no file."""
    path = config_file(args)
    return (path.parent if path is not None else Path.cwd()).resolve()


def _config(args):
    overrides = list(args.overrides)
    # Paths typed on the command line are the shell's, relative to the working directory.
    for option, key in (("archive", "run.archive"), ("outputs", "run.outputs"), ("midi", "render.midi")):
        if getattr(args, option, None):
            overrides.append(f"{key}={json.dumps(str(Path(getattr(args, option)).expanduser().resolve()))}")
    return load_config(config_file(args), args.profile, overrides)


def cmd_status(runner: Runner, as_json: bool = False) -> int:
    if as_json:
        stages = [{"name": n, "fresh": runner.state(n)[0], "why": runner.state(n)[1],
                   "seconds": (runner.manifest(n) or {}).get("timings", {}).get("seconds")} for n in runner.order]
        rekeys = {f"{s}.{k}": runner.rekeyed_by(f"{s}.{k}") for s in SPEC for k in SPEC[s]}
        print(json.dumps({"stages": stages, "rekeys": rekeys}))
        return 0
    rows = []
    for name in runner.order:
        fresh, why = runner.state(name)
        man = runner.manifest(name) or {}
        secs = man.get("timings", {}).get("seconds")
        # A stage after a stale one has no key yet: it depends on what that one will write.
        rows.append((name, "fresh" if fresh else "stale", runner.key(name) or "(after upstream)",
                     f"{secs:.1f}s" if secs is not None else "-", why))
    print(f"{'stage':<9} {'state':<6} {'key':<17} {'took':>8}  why")
    for r in rows:
        print(f"{r[0]:<9} {r[1]:<6} {r[2]:<17} {r[3]:>8}  {r[4]}")
    return 0


def cmd_clean(runner: Runner, wait: float) -> int:
    out = runner.outputs
    if not out.exists():
        print(f"nothing to clean: {out}/ does not exist")
        return 0
    from .reporting.report import REPORT_PATHS
    from .stages.preview import PREVIEW
    from .web.jobs import SERVE_PATHS
    with OutputsLock(out, wait):
        removed = []
        for name in [*runner.owned_paths(), *REPORT_PATHS, PREVIEW, *SERVE_PATHS]:
            path = out / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            else:
                continue
            removed.append(name)
    (out / ".lock").unlink(missing_ok=True)
    print(f"removed from {out}/: {', '.join(removed) or 'nothing'}")
    return 0


def cmd_preview(runner: Runner, track: int, wait: float) -> int:
    from .stages.preview import preview_track
    with OutputsLock(runner.outputs, wait):
        made = preview_track(runner, track)
    print(f"preview: {made['file']} (track {track}, {made['how']} in {made['seconds']} s)")
    return 0


def cmd_report(runner: Runner, wait: float) -> Path:
    from .reporting.report import write_report
    with OutputsLock(runner.outputs, wait):
        return write_report(runner)


def cmd_evaluate(args) -> int:
    from .commands.evaluate import scratch_figures, slug, summarise, write_evaluation
    base = _config(args)
    folder = project_root(args) / base.run.outputs / "evaluate"
    from .stages.intake import archive_path
    archives = args.archives or [str(archive_path(base, project_root(args)))]
    missing = [a for a in archives if not Path(a).exists()]
    if missing:
        raise StageError(f"archive {missing[0]}: not found (give zips or folders of MIDI files)")
    results, taken = [], set()
    for archive in archives:
        outputs = folder / slug(Path(archive), taken)
        print(f"== {archive} -> {outputs}")
        args.archive, args.outputs = archive, str(outputs)
        runner = Runner(_config(args), build_stages(), project_root(args))
        runner.run(STAGE_NAMES[-1:], force=args.force, wait_s=args.wait)
        cmd_report(runner, args.wait)
        scratch = None
        if runner.cfg.train.init == "base":  # what the base buys: the same run from scratch, through train
            scratch = scratch_figures(train_from_scratch(args, runner, outputs / "scratch"))
        results.append(summarise(runner, archive, scratch, *takes_for_realism(args, runner, outputs / "realism")))
    path, table = write_evaluation(results, folder)
    print(f"\n{table}\n\nwritten: {path} (and evaluation.txt); each archive's report.html is in its folder")
    return 0


def cmd_serve(args) -> int:
    """The web app until Ctrl-C or SIGTERM; its run (if any) is stopped with it."""
    import atexit

    import uvicorn

    from .web.app import create_app
    cfg = _config(args)
    root = project_root(args)
    outputs = Runner(cfg, build_stages(), root).outputs
    base = [*(["--config", str(Path(args.config).resolve())] if args.config else []),
            *(["--profile", args.profile] if args.profile else []),
            *(["--archive", str(Path(args.archive).resolve())] if args.archive else []),
            *(x for o in args.overrides for x in ("--set", o))]
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"lofi: warning: serving on {args.host}: anyone who can reach this address can start runs "
              "and read the outputs", file=sys.stderr)

    def say(line: str) -> None:  # the terminal's log of runs, uploads, takes and the radio
        print(f"lofi serve: {line}", flush=True)
    app = create_app(root, outputs, base, int(cfg.intake.max_read_mib * 2**20), cfg.serve, say)
    say(f"http://{args.host}:{args.port}/ (outputs in {outputs}); Ctrl-C stops it")
    # Open event streams never end on their own: shut down after 2 s whatever is open, then
    # the app's shutdown stops its run and the radio (and atexit, should that be skipped).
    state = app.state.lofi
    atexit.register(state.job.stop, 10.0, True)
    atexit.register(lambda: state.radio is not None and state.radio.stop())
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=2)
    return 0


def cmd_base(args) -> int:
    from .commands.pretrain import pretrain_base
    from .corpora.dataset import DEFAULT_SET
    from .model.base import base_folder
    args.profile = args.profile or "base"
    if args.profile != "base" and not args.to:
        raise StageError(f"lofi base --profile {args.profile}: give --to DIR; only the \"base\" profile "
                         "writes the shipped base (train.base)")
    outputs = project_root(args) / _config(args).run.outputs / "base"
    corpus = outputs / "corpus.zip"
    args.archive, args.outputs = str(corpus), str(outputs)
    args.overrides = [*args.overrides, 'train.init="scratch"']  # a base starts from nothing
    runner = Runner(_config(args), build_stages(), project_root(args))
    folder = Path(args.to).resolve() if args.to else base_folder(runner.cfg.train.base, project_root(args))
    default_set = project_root(args) / DEFAULT_SET
    if not default_set.is_file():
        raise StageError(f"{DEFAULT_SET}: not found; the base leaves out its tunes, so build it first: make dataset")
    built = pretrain_base(runner, corpus, folder, default_set)
    print(f"wrote the base ensemble to {folder}: {built['corpus']['pieces']} pieces, {built['corpus']['events']} "
          f"events, test NLL {built['test_nll']['ensemble']:.3f} per event, trained in {built['train_seconds']} s")
    return 0


def cmd_base_drums(args) -> int:
    from .commands.pretrain import pretrain_drums
    from .corpora.groove import VENDORED
    from .model import drum_model
    root = project_root(args)
    cfg = _config(args)
    folder = Path(args.to).resolve() if args.to else drum_model.base_folder(cfg.drums.base, root)
    corpus = Path(args.corpus).resolve() if args.corpus else root / VENDORED
    if not corpus.is_file():
        raise StageError(f"{corpus}: the Groove MIDI Dataset's zip is not there; give --corpus ZIP")
    work = root / (args.outputs or cfg.run.outputs) / "base-drums"
    built = pretrain_drums(corpus, folder, work, cfg.train.ngram_order)
    ngram = f"{cfg.train.ngram_order}-gram"
    nll, styled = built["test_nll"], built["specialised"]["test_nll"]
    print(f"wrote the base drum model to {folder}: {built['corpus']['events']['train']} training events, then "
          f"{built['specialised']['events']['train']} in {', '.join(built['specialised']['styles'])}; test NLL per "
          f"event {nll['ensemble']:.3f} ({ngram} {nll[ngram]:.3f}, unigram {nll['unigram']:.3f}), in those styles "
          f"{styled['ensemble']:.3f} (before specialising {built['specialised']['test_nll_before']['ensemble']:.3f}, "
          f"{ngram} {styled[ngram]:.3f}); trained in {built['train_seconds']} s")
    return 0


def train_from_scratch(args, runner: Runner, outputs: Path) -> Runner:
    """The same run with train.init = "scratch", in `outputs`, through train; it starts from a copy
    of the run's intake, extract and encode (linked), which it finds fresh (the same settings and inputs)."""
    from .stages import catalog
    print(f"== {args.archive} from scratch -> {outputs}")
    catalog.link_stages(runner.outputs, outputs, stages_through("encode"))
    mine = copy.copy(args)
    mine.outputs, mine.overrides = str(outputs), [*args.overrides, 'train.init="scratch"']
    alone = Runner(_config(mine), build_stages(), project_root(mine))
    alone.run(["train"], force=args.force, wait_s=args.wait)
    return alone


def takes_for_realism(args, runner: Runner, outputs: Path) -> tuple[list, list]:
    """More takes from the run's models, and their drum parts, for the realism figures alone,
    when the run's own tracks are fewer than REALISM_TRACKS or give fewer than REALISM_SEGMENTS
    distinct segments: tracks numbered after the run's (seeds of their own), in `outputs`, from
    a copy of the run's artifacts through train."""
    import numpy as np

    from .commands.evaluate import MORE_TAKES_AT_MOST, REALISM_SEGMENTS, REALISM_TRACKS, distinct_segments
    from .stages import catalog
    takes = catalog.read_takes(runner.artifact_dir("generate")).tracks
    vocab = catalog.read_encoded(runner.artifact_dir("encode")).vocab
    have = distinct_segments(takes, vocab)
    if (have >= REALISM_SEGMENTS and len(takes) >= REALISM_TRACKS) or not takes:
        return [], []
    per_track = max(1.0, have / len(takes))
    extra = min(MORE_TAKES_AT_MOST, max(REALISM_TRACKS - len(takes),
                                        int(np.ceil((REALISM_SEGMENTS - have) / per_track)) + 1))
    print(f"== {have} distinct segments from {len(takes)} tracks: {extra} more takes for the realism figure "
          f"-> {outputs}")
    catalog.link_stages(runner.outputs, outputs, stages_through("train"))
    mine = copy.copy(args)
    mine.outputs = str(outputs)
    mine.overrides = [*args.overrides, f"generate.tracks={extra}", f"generate.first_track={takes[-1].index + 1}"]
    more = Runner(_config(mine), build_stages(), project_root(mine))
    more.run(["drums"], force=args.force, wait_s=args.wait)
    return catalog.read_takes(more.artifact_dir("generate")).tracks, catalog.drum_parts.read(more.artifact_dir("drums"))


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    unknown = [m for m in getattr(args, "more", []) if m not in STAGE_NAMES]
    if unknown:
        parser.error(f"unknown stage {unknown[0]!r} (stages: {', '.join(STAGE_NAMES)})")
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        if args.command == "dataset":
            from .corpora.dataset import build_default_dataset
            man = build_default_dataset(Path(args.out), args.workers, args.limit)
            print(f"wrote {args.out}: {man['pieces']} pieces ({len(man['failed'])} failed) "
                  f"in {man['seconds']}s")
            return 0
        if args.command == "evaluate":
            return cmd_evaluate(args)
        if args.command == "base":
            return cmd_base(args)
        if args.command == "base-drums":
            return cmd_base_drums(args)
        if args.command == "serve":
            return cmd_serve(args)
        if args.command == "config":
            print(config_file_text(), end="")
            return 0
        cfg = _config(args)
        runner = Runner(cfg, build_stages(), project_root(args))
        if args.command == "status":
            return cmd_status(runner, args.json)
        if args.command == "clean":
            return cmd_clean(runner, args.wait)
        if args.command == "preview":
            return cmd_preview(runner, args.track, args.wait)
        if args.command == "report":
            print(f"report: {cmd_report(runner, args.wait)}")
            return 0
        targets = STAGE_NAMES[-1:] if args.command == "all" else [args.command, *args.more]
        runner.run(targets, force=args.force, wait_s=args.wait)
        if args.command == "all":
            report = cmd_report(runner, args.wait)
            out = runner.outputs
            print(f"\ntracks:   {out}/tracks/\nplaylist: {out}/playlist.m3u8\nreport:   {report}")
        return 0
    except ConfigError as exc:
        print(f"lofi: config error: {exc}", file=sys.stderr)
        return 2
    except LockedError as exc:
        print(f"lofi: {exc}", file=sys.stderr)
        return 75
    except StageError as exc:
        print(f"lofi: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lofi: interrupted; finished artifacts are kept, the unfinished one was discarded",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
