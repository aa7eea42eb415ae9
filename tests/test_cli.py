"""The `lofi` command end to end, in subprocesses, on the quick profile."""
import json
import re
import shutil
import signal
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from helpers import ROOT, copy_run, lofi, lofi_process, metred_song, song_bytes, timed_events, wait_for, write_zip
from lofi_pipeline.audio.playlist import read_playlist
from lofi_pipeline.music.rates import RATES
from lofi_pipeline.pipeline import STAGE_NAMES
from lofi_pipeline.stages import catalog

pytestmark = pytest.mark.slow


def test_all_leaves_tracks_playlist_and_report(quick_run):
    args, out, first = quick_run
    assert f"playlist: {out}/playlist.m3u8" in first.stdout and f"report:   {out}/report.html" in first.stdout
    mp3s = sorted((out / "tracks").glob("*.mp3"))
    assert len(mp3s) == 2
    assert [p for _, p in read_playlist(out / "playlist.m3u8")] == [f"tracks/{m.name}" for m in mp3s]
    report = (out / "report.html").read_text()
    daw = re.findall(r"For a DAW: <a href='([^']+)'>the MIDI</a> and <a href='([^']+)'>", report)
    assert len(daw) == 2 and all((out / midi).is_file() and (out / folder).is_dir() for midi, folder in daw)
    stats = json.loads((out / "report" / "stats.json").read_text())
    assert set(stats["generated"]) >= {"pitch_class_entropy", "scale_consistency", "polyphony", "empty_beat_rate",
                                       "groove_consistency", "self_repetition", "longest_copied_run"}


def test_second_run_is_all_cache_hits(quick_run):
    args, out, _ = quick_run
    again = lofi("all", *args)
    lines = [line for line in again.stdout.splitlines() if line.startswith("[")]
    assert all(line.endswith(")") and " cached (" in line for line in lines) and len(lines) == len(STAGE_NAMES)
    status = lofi("status", *args).stdout
    assert status.count(" fresh ") == len(STAGE_NAMES)


def test_changing_a_sampling_setting_reruns_from_generate(quick_run, tmp_path):
    args, out = copy_run(quick_run, tmp_path)
    run = lofi("all", *args, "--set", "generate.temperature=0.7")
    ran = re.findall(r"^\[(\w+)\] running", run.stdout, re.M)
    assert ran == ["generate", "drums", "arrange", "render", "master", "stems", "export"]
    assert len(read_playlist(out / "playlist.m3u8")) == 4  # two new takes, nothing dropped


class _Sources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.audio, self.images = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "audio":
            self.audio.append(a.get("src"))
        if tag == "img":
            self.images.append(a.get("src"))


def test_report_loads_in_a_real_browser(quick_run, tmp_path):
    _, out, _ = quick_run
    page = out / "report.html"
    parser = _Sources()
    parser.feed(page.read_text())
    assert len(parser.audio) == 2 and all((out / s).is_file() for s in parser.audio)
    assert len(parser.images) >= 3 and all((out / s).is_file() for s in parser.images)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is installed by `make test` (make system)"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
             f"--user-data-dir={tmp_path / 'profile'}", "--allow-file-access-from-files",
             "--virtual-time-budget=5000"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    total = re.search(r'data-images-total="(\d+)"', dom)
    loaded = re.search(r'data-images-loaded="(\d+)"', dom)
    assert total and loaded and int(total.group(1)) == len(parser.images) == int(loaded.group(1))
    checks = dom[dom.index("<h2>Music checks</h2>"):]
    assert "training pieces" in checks and "<td>track 1" in checks and "<td>track 2" in checks
    rates = checks[checks.index("The rates a listener hears"):]
    assert "<th>beats with no melody note sounding</th>" in rates and rates.count("<td>track ") == 2
    assert dom.count("lead: ") == 2
    shot = tmp_path / "report.png"
    subprocess.run([chromium, *flags, "--window-size=1200,2400", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.stat().st_size > 20000


def test_errors_are_one_line_with_a_nonzero_exit(tmp_path):
    junk = tmp_path / "songs.zip"
    junk.write_bytes(b"definitely not a zip")
    proc = lofi("intake", "--archive", str(junk), "--outputs", str(tmp_path / "o"), check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"lofi: error: {junk}: not a zip archive (or truncated: no central directory)"
    bad = lofi("intake", "--set", "generate.top_p=2", check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "generate.top_p" in bad.stderr
    missing = lofi("render", "--midi", str(tmp_path / "x.mid"), "--set", 'render.soundfont="soundfonts/none.sf2"',
                   "--outputs", str(tmp_path / "o"), check=False)
    assert missing.returncode == 1 and f"SoundFont {ROOT}/soundfonts/none.sf2 not found" in missing.stderr


def test_ctrl_c_stops_cleanly_with_status_130(tmp_path):
    archive = write_zip(tmp_path / "a.zip", {f"s{i}.mid": song_bytes(i) for i in range(12)})
    out = tmp_path / "o"
    proc = lofi_process("train", "--profile", "quick", "--archive", str(archive), "--outputs", str(out),
                        "--set", "train.max_steps=5000", "--set", "train.patience=100")
    assert wait_for(lambda: any(len(h.read_text().splitlines()) >= 2  # a header and a dev check: training is on
                                for h in (out / ".cache" / "train").rglob("history.csv")), proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1].startswith("lofi: interrupted")
    assert not (out / "train").exists() and not (out / ".tmp" / "train").exists()
    assert (out / "encode" / "manifest.json").exists()  # finished stages are kept


def test_the_drums_are_learned_from_the_archive_and_the_pattern_is_there_on_request(quick_run, tmp_path):
    import mido
    args, out = copy_run(quick_run, tmp_path)
    extract = json.loads((out / "extract" / "manifest.json").read_text())["stats"]
    assert extract["pieces_with_drums"] == 12 and extract["drum_bars"] >= 32  # the quick archive's drum tracks
    parts = catalog.drum_parts.read(out / "drums")
    records = catalog.tracks.read(out / "arrange")
    assert len(parts) == 2 and all(p.source.startswith("fine-tuned on the archive's") for p in parts)
    assert [r.drums for r in records] == [p.source for p in parts]
    assert [r.tempo_bpm for r in records] == [p.tempo_bpm for p in parts]  # played at the track's tempo
    for part, record in zip(parts, records):
        midi = mido.MidiFile(out / "arrange" / catalog.midi_name(record))
        hits = sum(1 for t in midi.tracks for m in t if m.type == "note_on" and m.channel == 9 and m.velocity)
        assert hits == sum(len(h) for _, h in part.bars) > 0
    pattern = lofi("all", *args, "--set", 'arrange.drums="pattern"')
    assert ran(pattern.stdout) == ["arrange", "render", "master", "stems", "export"]  # no drum model needed
    assert all(r.drums.startswith("pattern") for r in catalog.tracks.read(out / "arrange"))


def ran(stdout: str) -> list[str]:
    return re.findall(r"^\[(\w+)\] running", stdout, re.M)


def test_editing_a_stage_source_reruns_it_and_what_its_output_changes(quick_run, tmp_path):
    args, out = copy_run(quick_run, tmp_path)
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "lofi_pipeline", src / "lofi_pipeline",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PYTHONPATH": str(src)}  # this copy of the package, ahead of the installed one
    assert lofi("status", *args, env=env).stdout.count(" fresh ") == len(STAGE_NAMES)
    master = src / "lofi_pipeline" / "stages" / "master.py"
    master.write_text(master.read_text() + "\n# a comment changes the code, not the sound\n")
    status = lofi("status", *args, env=env).stdout
    assert re.search(r"^master +stale .* code changed: stages/master\.py$", status, re.M)
    assert re.search(r"^export +stale .* upstream stale: master$", status, re.M)
    assert status.count(" fresh ") == len(STAGE_NAMES) - 2
    run = lofi("export", *args, env=env)
    assert ran(run.stdout) == ["master"] and "[export] cached" in run.stdout  # same WAV bytes
    loudness = src / "lofi_pipeline" / "audio" / "loudness.py"
    loudness.write_text(loudness.read_text().replace("MP3_MARGIN_DB = 0.5", "MP3_MARGIN_DB = 0.6"))
    run = lofi("export", *args, env=env)
    assert ran(run.stdout) == ["master", "stems", "export"]  # the stems resample with it; the MP3s are new
    shared = src / "lofi_pipeline" / "audio" / "audio_io.py"
    shared.write_text(shared.read_text() + "\n# shared by render, master, stems and export\n")
    status = lofi("status", *args, env=env).stdout
    assert re.search(r"^render +stale .* code changed: audio/audio_io\.py$", status, re.M)
    assert status.count(" fresh ") == len(STAGE_NAMES) - 4  # render, master, stems, export


def test_a_new_run_name_retitles_the_mp3s(quick_run, tmp_path):
    from mutagen.id3 import ID3
    args, out = copy_run(quick_run, tmp_path)
    run = lofi("all", *args, "--set", 'run.name="Rainy Window"')
    # The titles are in the MIDI and the tags, not in the sound: render's WAVs come out the
    # same bytes, so master (keyed on them) keeps its cache; the stems' file names carry the title.
    assert ran(run.stdout) == ["arrange", "render", "stems", "export"]
    exports = catalog.exports.read(out / "export")
    titles = [str(ID3(out / e.file)["TIT2"]) for e in exports]
    assert titles == ["Rainy Window 01", "Rainy Window 02"]
    assert {str(ID3(out / e.file)["TALB"]) for e in exports} == {"Rainy Window"}
    assert all(Path(f).name.startswith(("rainy-window-01_", "rainy-window-02_")) for e in exports for f in e.stems)


def test_a_music_library_gets_its_copies_even_when_everything_is_cached(quick_run, tmp_path):
    args, out = copy_run(quick_run, tmp_path)
    library = tmp_path / "Music" / "lofi"
    run = lofi("all", *args, "--set", f'export.playlist_dir="{library}"')
    assert ran(run.stdout) == []  # not an output setting: nothing is rebuilt
    exported = [e.file for e in catalog.exports.read(out / "export")]
    assert all((library / f).is_file() for f in exported)
    assert [p for _, p in read_playlist(library / "playlist.m3u8")] == exported
    (library / exported[0]).unlink()
    lofi("export", *args, "--set", f'export.playlist_dir="{library}"')
    assert (library / exported[0]).is_file()


def test_a_deleted_wav_makes_render_stale_and_a_run_restores_it(quick_run, tmp_path):
    args, out = copy_run(quick_run, tmp_path)
    (out / "render" / "track_01.wav").unlink()
    status = lofi("status", *args).stdout
    assert re.search(r"^render +stale .* output missing or changed: render/track_01\.wav$", status, re.M)
    run = lofi("all", *args)
    assert ran(run.stdout) == ["render"]  # the same bytes again: master and export stay cached
    assert (out / "render" / "track_01.wav").is_file()


def test_evaluate_runs_each_archive_in_its_own_folder_and_prints_one_table(quick_run, tmp_path):
    args, out, _ = quick_run
    archive = Path(args[args.index("--archive") + 1])
    evaluated = tmp_path / "outputs"
    shutil.copytree(out, evaluated / "evaluate" / "songs", ignore=shutil.ignore_patterns(".lock"))  # cached
    folder = tmp_path / "my tunes"
    folder.mkdir()
    for i in range(10):
        (folder / f"tune_{i}.mid").write_bytes(song_bytes(i + 20))
    run = lofi("evaluate", str(archive), str(folder), "--profile", "quick", "--outputs", str(evaluated))
    table = run.stdout[run.stdout.index("\narchive "):]
    assert re.search(r"^archive +songs\.zip +my tunes$", table, re.M)
    for row in ("files kept / skipped", "events not representable", "test NLL/event: ensemble",
                "test NLL/event: unigram", "ensemble <= member < n-gram < unigram", "tracks inside the data's range",
                "ensemble chosen on dev", "ensemble <= best member: dev / test", "events at the loudest velocity level",
                "melody notes per bar", "chord changes per bar", "beats with no melody note sounding",
                "A-section bars repeating the loop's harmony", "sampling temperatures (calibrated on dev)",
                "longest unchanged harmony (bars)", "harmony changes per bar", "onsets per beat",
                "distinct melody pitches per 4 bars", "train (s)", "all stages (s)", "models start from",
                "test NLL/event: scratch ensemble", "test NLL/event: base alone", "fine-tuned < scratch",
                "melody notes under the top / pitches clipped", "optimiser steps per member",
                "drum realism vs GMD test beats: GMD's train beats (human)"):
        assert re.search(rf"^ *{re.escape(row)} ", table, re.M), row
    assert re.search(r"^files kept / skipped +12 / 0 +10 / 0$", table, re.M)
    results = json.loads((evaluated / "evaluate" / "evaluation.json").read_text())["archives"]
    assert [Path(r["outputs"]).name for r in results] == ["songs", "my_tunes"]
    for r in results:
        assert set(r["approximated"]) >= {"chords_not_exact", "rest_events"}
        assert set(r["nll"]) == {"ensemble", "scratch ensemble", "base alone", "best member", "n-gram", "unigram"}
        # The quick profile trains from scratch: there is no base to compare with, and no second run.
        assert r["init"] == "scratch" and r["nll"]["scratch ensemble"] is None and r["nll"]["base alone"] is None
        assert len(r["tracks"]) == 2 and all(set(t["figures"]) == set(r["checks_ranges"]) for t in r["tracks"])
        assert (Path(r["outputs"]) / "report.html").exists()
        assert r["ensemble_within_best_member"]["dev"] is True and set(r["rates"]["ranges"]) <= set(RATES)
        assert len(r["rates"]["tracks"]) == 2
        # the quick tracks (4 bars each) give few segments: takes were made for the figure alone
        assert r["realism"]["tracks"] > 2 and (Path(r["outputs"]) / "realism" / "generate").is_dir()
        assert len(r["realism"]["per_seed"]) == (0 if r["realism"]["accuracy"] is None else 3)
    assert "[train] cached" in run.stdout and "[train] running" in run.stdout  # the first came from its cache


def test_the_realism_figure_compares_the_tracks_with_held_out_pieces_of_their_kind():
    """A pack of chord loops, half with a top line: every track has a melody, so the figure is
    taken against the held-out loops with one; against every loop (reported beside it) the
    chord-only loops give themselves away."""
    from dataclasses import replace

    from lofi_pipeline.commands.evaluate import realism_of
    from lofi_pipeline.music.checks import DataProfile
    from lofi_pipeline.music.token_format import Vocabulary
    vocab = Vocabulary.closed(4)
    rng = np.random.default_rng(3)

    def loop(melody: bool) -> np.ndarray:
        rows = []
        for bar in range(8):
            root = int(rng.choice([0, 5, 7, 9]))
            if not melody:
                first = int(rng.choice([12, 24, 36]))
                rows += [(first, root, "maj7", None, 0), (48 - first, int(rng.integers(12)), "m7", None, 0)]
                continue
            figure = ((12, 12, 12, 12), (24, 12, 12), (12, 12, 24))[rng.integers(3)]
            for k, step in enumerate(figure):
                rows.append((int(step), root if k == 0 else None, "maj7" if k == 0 else None,
                             int(rng.integers(60, 72)), int(step)))
        return vocab.encode_events(timed_events(rows))

    held_out = [loop(melody=k % 2 == 0) for k in range(24)]
    ids = np.concatenate(held_out)
    encoded = catalog.Encoded(vocab, {"ids": ids, "lengths": np.array([len(p) for p in held_out]),
                                      "split": np.array([1 + k % 2 for k in range(24)])}, [])
    takes = [catalog.Take(k, 0, 0, 1, {}, False, loop(melody=True).tolist(), [], 0.0, 0, 0, 0) for k in range(12)]
    profile = DataProfile(pieces=24, quantile=0.025, ranges={}, pieces_inside=1.0, context_events=None,
                          melody_share=0.5, has_chords=True, hold_limit_ticks=None)
    figure = realism_of(encoded, profile, takes)
    assert (figure["real_pieces"], figure["held_out_pieces"]) == (12, 24)
    assert figure["every_piece"]["real_segments"] > 1.8 * figure["real_segments"]
    assert figure["every_piece"]["accuracy"] > figure["accuracy"] + 0.1
    # where the data has no melody, every held-out piece is of the tracks' kind
    alike = realism_of(encoded, replace(profile, melody_share=0.0), takes)
    assert alike["real_pieces"] == 24 and alike["accuracy"] == alike["every_piece"]["accuracy"]


def test_the_drum_realism_row_says_why_it_has_no_figure():
    from lofi_pipeline.commands.evaluate import _drum_realism_cell
    all_in_three = {"learned": {"tracks": 0, "left_out_for_metre": 4}}
    assert _drum_realism_cell(all_in_three, "learned") == "- (all 4 tracks in a metre GMD lacks)"
    assert _drum_realism_cell({"learned": {"tracks": 0, "left_out_for_metre": 0}}, "learned") == "-"
    judged = {"learned": {"accuracy": 0.75, "spread": 0.1, "per_class": 40, "tracks": 3, "left_out_for_metre": 1}}
    assert _drum_realism_cell(judged, "learned") == ("75.0% +- 10.0% (40 segments a class from 3 tracks; "
                                                     "1 in a metre GMD lacks left out)")


def status_rows(stdout: str) -> dict[str, tuple[str, str]]:
    """{stage: (state, key)} from `lofi status`."""
    rows = [line.split() for line in stdout.splitlines()[1:] if line.strip()]
    return {r[0]: (r[1], r[2]) for r in rows}


def test_a_project_runs_alike_from_its_folder_and_from_anywhere_with_its_config(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    write_zip(project / "songs.zip", {f"s{i}.mid": song_bytes(i) for i in range(4)})
    shipped = (ROOT / "lofi.toml").read_text()
    (project / "lofi.toml").write_text(re.sub(r'^archive = "[^"]*"', 'archive = "songs.zip"', shipped, flags=re.M))
    lofi("extract", cwd=project)
    here = status_rows(lofi("status", cwd=project).stdout)
    elsewhere = status_rows(lofi("status", "--config", str(project / "lofi.toml"), cwd=tmp_path).stdout)
    assert here == elsewhere and here["extract"][0] == "fresh"
    assert not (tmp_path / "outputs").exists()  # the outputs are the project's, wherever lofi ran
    # No config file at all: the defaults, which are the shipped lofi.toml's values.
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "songs.zip").write_bytes((project / "songs.zip").read_bytes())
    assert status_rows(lofi("status", "--archive", "songs.zip", cwd=bare).stdout) == status_rows(
        lofi("status", "--archive", str(project / "songs.zip"), "--outputs", str(bare / "outputs"),
             "--config", str(ROOT / "lofi.toml"), cwd=tmp_path).stdout)
    missing = lofi("status", "--config", str(tmp_path / "nope.toml"), check=False)
    assert missing.returncode == 2 and "config file" in missing.stderr and "not found" in missing.stderr


def test_odd_metres_a_meter_change_and_one_bar_loops_train_and_generate(tmp_path):
    """Waltzes, 6/8 jigs and a piece that changes metre train and generate tracks in their own
    metres; an archive of one-bar loops, asked for 16-bar loops, says so and generates anyway."""
    songs = {f"waltz_{i}.mid": metred_song(3, 4, seed=i, bars=4 + i % 3) for i in range(8)}
    songs |= {f"jig_{i}.mid": metred_song(6, 8, seed=20 + i) for i in range(3)}
    songs["change.mid"] = metred_song(bars=6, changes_to=(3, 4))
    out = tmp_path / "odd"
    lofi("arrange", "--profile", "quick", "--archive", str(write_zip(tmp_path / "odd.zip", songs)),
         "--outputs", str(out))
    takes = catalog.read_takes(out / "generate")
    assert {t.metre for t in takes.tracks} <= {"3/4", "6/8", "4/4"} and "3/4" in {t.metre for t in takes.tracks}
    vocab = catalog.read_encoded(out / "encode").vocab
    for t, record in zip(takes.tracks, catalog.tracks.read(out / "arrange")):
        events, dropped = vocab.decode_events(t.ids)
        assert dropped == 0 and {e.metre for e in events} == {t.metre} == {record.metre}
    loops = {f"loop_{i}.mid": metred_song(bars=1, seed=i) for i in range(12)}
    run = lofi("arrange", "--profile", "quick", "--archive", str(write_zip(tmp_path / "loops.zip", loops)),
               "--outputs", str(tmp_path / "loops"), "--set", "generate.loop_bars=16")
    assert "a loop of 16 bars (generate.loop_bars) is longer than any training piece" in run.stdout
    assert len(catalog.tracks.read(tmp_path / "loops" / "arrange")) == 2
