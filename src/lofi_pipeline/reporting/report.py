"""outputs/report.html: one static page to see and hear a run (no network, relative links).
Figures are drawn here (plots.py), once per content: a file named by a digest of what it shows.
It is long because the page has one section per thing a run makes (tracks, checks and rates,
statistics, drums, models), each a few lines of HTML around the artifact it reads."""
from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np

from ..core import atomic
from ..core.errors import StageError
from ..core.hashing import hash_json, sha256_bytes
from ..core.runner import Runner
from ..music.checks import CHECKS
from ..music.piece import GRID
from ..music.rates import RATES
from ..music.statistics import compare
from ..music.token_format import TARGETS, bar_ticks
from ..stages import catalog
from . import plots

STAT_ROWS = [("pitch_class_entropy", "pitch-class entropy (bits)"),
             ("scale_consistency", "scale consistency"), ("polyphony", "polyphony (pitches)"),
             ("empty_beat_rate", "empty-beat rate"), ("groove_consistency", "groove consistency"),
             ("self_repetition", "self-repetition (16-event blocks)")]
# The statistics compare the tracks with the dev pieces: the test pieces are for the reported scores.
REFERENCE_SPLIT = "dev"


def music_statistics(runner: Runner) -> dict | None:
    """Generated tracks (without their primers) against the reference pieces, statistic by statistic."""
    if runner.manifest("generate") is None or runner.manifest("encode") is None:
        return None
    takes = catalog.read_takes(runner.artifact_dir("generate"))
    encoded = catalog.read_encoded(runner.artifact_dir("encode"))

    def rows(ids):
        return [tuple(r) for r in ids.tolist()]
    generated = [[tuple(r) for r in t.ids] for t in takes.tracks]  # the primer is no part of a take
    stats = compare(generated, [rows(s) for s in encoded.sequences(REFERENCE_SPLIT)],
                    [rows(s) for s in encoded.sequences("train")],
                    lambda r: encoded.vocab.decode_events(r)[0], takes.grid)
    return {**stats, "reference_label": f"{REFERENCE_SPLIT} pieces"}


def section_marks(record: catalog.TrackRecord) -> list[tuple[float, str]]:
    """(seconds, label) where each section of a track starts, from its form and tempo."""
    seconds_per_bar = bar_ticks(record.metre) / GRID * 60.0 / record.tempo_bpm
    marks, bar = [], 0
    for part in filter(None, record.form.split(" | ")):
        label, bars = part.rsplit(" ", 1)
        marks.append((round(bar * seconds_per_bar, 3), label))
        bar += int(bars)
    return marks


def _figure(folder: Path, kind: str, content: object, draw) -> str:
    """A figure's path under the outputs root, drawn only when no file shows this content yet."""
    digest = sha256_bytes(content) if isinstance(content, bytes) else hash_json(content)
    path = folder / f"{kind}-{digest[:16]}.png"
    if not path.exists():
        atomic.write_bytes(path, draw())
    return f"{folder.name}/{path.name}"


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


CSS = """body{font:15px/1.5 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;
background:#faf7f2}h1{font-weight:600}section{margin:2em 0}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:.25em .7em;text-align:right}th{background:#eee}td:first-child{text-align:left}
.track{background:#fff;border:1px solid #ddd;border-radius:8px;padding:1em;margin:1em 0}
.track img,.wide{max-width:100%}audio{width:100%}.meta{color:#666}.warn{color:#a30;font-weight:600}
.form{font-family:ui-monospace,monospace;color:#333}"""

CHECK_SCRIPT = """window.addEventListener('load',function(){var imgs=[].slice.call(document.images);
document.body.dataset.imagesTotal=imgs.length;
document.body.dataset.imagesLoaded=imgs.filter(function(i){return i.complete&&i.naturalWidth>0}).length;});"""


def figure_text(value) -> str:
    """A check's figure as the tables show it ("-": the track cannot have one)."""
    return "-" if value is None else f"{value:.2f}"


def _range_cells(keys: list[str], ranges: dict) -> list[str]:
    return ["{:.2f} - {:.2f}".format(*ranges[k]) for k in keys]


def _figure_cells(keys: list[str], figures: dict, outside: list[str]) -> list[str]:
    """A track's figures for `keys`, each marked where it falls outside the data's range."""
    return [figure_text(figures.get(k)) + (" outside" if k in outside else "") for k in keys]


def music_checks_section(takes: catalog.Takes, profile) -> str:
    """Each track's figures beside the training pieces' range; a warning for each one outside."""
    ranges, q = profile.ranges, profile.quantile
    checked = [k for k in CHECKS if k in ranges]
    header = ["", *(CHECKS[k] for k in checked), "takes"]
    rows = [[f"training pieces ({profile.pieces}), {q:.1%}-{1 - q:.1%} range",
             *_range_cells(checked, ranges), ""]]
    warnings = []
    for t in takes.tracks:
        failed, outside = t.checks["failed"], t.checks["outside"]
        rows.append([f"track {t.index}" + (" (flagged)" if failed else ""),
                     *_figure_cells(checked, t.checks["figures"], outside), t.draws])
        if failed:
            warnings.append(f"<p class=warn>Warning: track {t.index} is outside the data's range after "
                            f"{t.draws} takes: {html.escape('; '.join(failed))}.</p>")
    return ("<section><h2>Music checks</h2><p>Figures that catch a bad take, measured the same way on each "
            "track and on every training piece: the main places in the beat are "
            f"{', '.join(str(t) for t in profile.main_ticks)} (grid ticks, 12 to a beat), the loop "
            f"{profile.loop_bars} bars, and bars repeat inside a track's sections. A take outside the range "
            "is drawn again, <code>generate.candidates</code> takes a round for up to <code>generate.redraws</code> "
            "rounds, and the first inside is kept; one still outside is kept and flagged "
            f"here. {profile.pieces_inside:.0%} of the training pieces themselves are inside every range.</p>"
            + "".join(warnings) + _table(header, rows) + _rates_table(takes, profile) + "</section>")


def _rates_table(takes: catalog.Takes, profile) -> str:
    """Each track's rates (music/rates.py) beside the training pieces' range; a take outside one
    is drawn again like one outside a check's."""
    ranges = profile.rate_ranges
    rated = [k for k in RATES if k in ranges]
    if not rated:
        return ""
    header = ["", *(RATES[k] for k in rated)]
    rows = [[f"training pieces ({profile.pieces})", *_range_cells(rated, ranges)]]
    rows += [[f"track {t.index}", *_figure_cells(rated, t.checks.get("rates", {}), t.checks["outside"])]
             for t in takes.tracks]
    return ("<p>The rates a listener hears, measured the same way (velocity, density, harmony, the "
            "melody's moves and rests):</p>" + _table(header, rows))


# What the report writes under the outputs root (`lofi clean` removes these too).
REPORT_PATHS = ("report", "report.html")


def _tracks_section(runner: Runner, folder: Path) -> str:
    exports = catalog.exports.read(runner.artifact_dir("export"))
    records = {}
    if runner.manifest("arrange") is not None and not runner.cfg.render.midi:
        records = {r.index: r for r in catalog.tracks.read(runner.artifact_dir("arrange"))}
    parts = ["<section><h2>Tracks</h2>"]
    for e in exports:
        r = records.get(e.index)
        roll, about = "", ""
        if r is not None:
            midi = (runner.artifact_dir("arrange") / catalog.midi_name(r)).read_bytes()
            title = f"{r.title}: {r.key}, {r.tempo_bpm} BPM"
            marks = section_marks(r)
            src = _figure(folder, "roll", [sha256_bytes(midi), marks], lambda: plots.piano_roll(midi, title, marks))
            roll = f"<img src='{src}' alt='piano roll of {html.escape(e.title)}'>"
            about = (f"key {r.key}, {r.metre} at {r.tempo_bpm} BPM, {e.seconds:.0f} s, seed {r.seed}; lead: {r.lead}"
                     + (f"; drums: {r.drums}" if r.drums else ""))
            form = f"<p class=form>{html.escape(r.form)}</p>" if r.form else ""
            if r.harmonised_bars:
                about += f"; {r.harmonised_bars:g} bars harmonised from the melody"
        else:
            about, form = f"{e.seconds:.0f} s", ""
        daw = ""
        if e.stems:  # the whole MIDI comes first; the folder holds the parts (and WAV stems, if made)
            wavs = sum(f.endswith(".wav") for f in e.stems)
            daw = (f"<p class=meta>For a DAW: <a href='{html.escape(e.stems[0])}'>the MIDI</a> and "
                   f"<a href='{html.escape(e.stems[0].rsplit('/', 1)[0])}/'>its folder</a> (a MIDI file per part"
                   + (f", {wavs} WAV stems" if wavs else "") + ")</p>")
        parts.append(f"<div class=track><h3>{html.escape(e.title)}</h3><p class=meta>{html.escape(about)}</p>{form}"
                     f"<audio controls preload=none src='{html.escape(e.file)}'></audio>{daw}{roll}</div>")
    return "".join(parts) + "</section>"


def _model_section(runner: Runner, folder: Path) -> str:
    metrics = catalog.read_metrics(runner.artifact_dir("train"))
    fields = list(next(iter(metrics["test"].values()))["fields"])
    rows = [[n, f"{m['nll']:.3f}"] + [f"{m['fields'][f]['nll']:.3f} / {m['fields'][f]['top1']:.2f}"
                                      for f in fields] for n, m in metrics["test"].items()]
    curves = _figure(folder, "curves", metrics["histories"], lambda: plots.learning_curves(metrics["histories"]))
    start = ("The members fine-tuned the base ensemble (pre-trained on music21's corpus; the row \"base\" is "
             "it alone)." if "base" in metrics["test"] else "The members were trained from scratch.")
    return (f"<section><h2>Model</h2><p>{start} Next-event prediction on the {metrics['test_events']} events "
            "of the test pieces, which nothing else looks at (NLL in nats; an event's NLL is the sum "
            "of its fields'; lower is better; per field: NLL / top-1; every model is scored with the "
            "pairing rule the sampler draws with).</p>"
            + _table(["model", "NLL per event"] + fields, rows) + _sampling_paragraph(runner)
            + f"<img class=wide src='{curves}' alt='learning curves'></section>")


def _sampling_paragraph(runner: Runner) -> str:
    """Which combination and weights the dev pieces chose, and the temperatures drawn with."""
    c = catalog.read_calibration(runner.artifact_dir("train"))
    if not c:
        return ""
    alone = {k: v["dev_nll"] for k, v in c["candidates"].items() if k.endswith(" alone")}
    matched = c.get("rate_matching") or {}
    played = (f", then matched by playing {len(matched['trials']) - 1} variants from dev primers (the played "
              f"music's figures lie {matched['distance']:.3f} from the dev pieces', {matched['distance_as_fitted']:.3f}"
              " as fitted)") if matched else ""
    experts = c.get("step_experts") or {}
    expert = (" The step experts (how far the training melodies move from note to note, the roots from chord "
              "to chord) weigh " + ", ".join(
                  f"{e['fitted_weight']:g} in the {f} scored (its dev NLL {e['dev_nll']:.3f} against "
                  f"{e['dev_nll_without']:.3f} without) and {e['weight']:g} in the {f} drawn"
                  for f, e in experts.items() if e.get("steps")) + ".") if any(
        e.get("steps") for e in experts.values()) else ""
    return html.escape(
        f"The ensemble row is the combination the {c['dev_events']} dev events chose: {c['chosen']} "
        f"({c['combine']}, weights {', '.join(f'{w:g}' for w in c['weights'])}), dev NLL {c['dev_nll']:.3f} "
        f"against {min(alone.values()):.3f} for the best member alone." + expert
        + " Each field is drawn whole (no top-k or top-p) at a temperature fitted to the dev NLL" + played + ": "
        + ", ".join(f"{f} {c['sampling'][f]['temperature']:g}" for f in TARGETS if f in c["sampling"]) + ".").join(
        ("<p>", "</p>"))


def _statistics_section(stats: dict, folder: Path) -> str:
    atomic.write_json(folder / "stats.json", stats)
    histograms = _figure(folder, "stats", stats, lambda: plots.statistics_histograms(stats))
    g, d = stats["generated"], stats["reference"]
    rows = [[label, f"{g[k]:.3f}", f"{d[k]:.3f}"] for k, label in STAT_ROWS]
    rows += [["pitch-class histogram distance (TV)", f"{stats['pitch_class_distance']:.3f}", "0"],
             ["duration histogram distance (TV)", f"{stats['duration_distance']:.3f}", "0"],
             ["longest run copied from training (events)", g["longest_copied_run"], d["longest_copied_run"]],
             ["16-event runs found in training", f"{g['copied_16_event_share']:.1%}",
              f"{d['copied_16_event_share']:.1%}"]]
    return (f"<section><h2>Music statistics</h2><p>Generated tracks against the {stats['reference_label']}: "
            "closer to the data's values is better. A model that copies its training pieces shows "
            "long copied runs.</p>" + _table(["statistic", "generated", stats["reference_label"]], rows)
            + f"<img class=wide src='{histograms}' alt='histograms'>"
            "<p><a href='report/stats.json'>stats.json</a></p></section>")


def _dataset_section(runner: Runner) -> str:
    s, x, en = ((runner.manifest(n) or {}).get("stats", {}) for n in ("intake", "extract", "encode"))
    skipped = {**s.get("skipped_by_reason", {}), **x.get("skipped_by_reason", {})}
    rows = [["MIDI files kept", s.get("files_kept")], ["duplicates", s.get("files_duplicate")],
            ["pieces used", x.get("pieces")], ["major / minor", f"{x.get('major')} / {x.get('minor')}"],
            ["events", en.get("events")],
            ["train / dev / test pieces", " / ".join(str(n) for n in en.get("pieces", {}).values())],
            ["near-duplicate groups", en.get("groups")],
            ["events not representable", f"{en.get('unknown_share', 0):.1%}"],
            ["chords approximated by the nearest quality",
             f"{en.get('approximated', {}).get('chords_not_exact', 0)} of {en.get('chord_changes')}"],
            ["timing moved by quantising (mean)", f"{x.get('timing_error_ms_mean', 0)} ms"]]
    rows += [[f"skipped: {r}", n] for r, n in sorted(skipped.items())]
    return "<section><h2>Dataset</h2>" + _table(["", "value"], rows) + "</section>"


def _drums_section(runner: Runner) -> str:
    """Where the drums came from, what the form did in each track, and where each class falls in
    the bar: in the data the drum model learned from and in what it played."""
    manifest = runner.manifest("drums") or {}
    stats = manifest.get("stats", {})
    if not stats.get("tracks"):
        return ""
    parts = catalog.drum_parts.read(runner.artifact_dir("drums"))
    rows = [[p.index, sum(len(h) for _, h in p.bars), p.stats.get("fills", 0), p.stats.get("varied", 0),
             p.stats.get("drop_bars", 0), "; ".join(p.checks) or "ok"] for p in parts]
    onsets = stats["onsets"]

    def where(shares: list[float] | None) -> str:
        if not shares:
            return "-"
        top = np.argsort(shares)[::-1][:4]
        return ", ".join(f"{k + 1}/16 {shares[k]:.0%}" for k in top if shares[k] > 0)
    classes = [c for c in onsets["generated"] if c in onsets["data"]] + [
        c for c in onsets["generated"] if c not in onsets["data"]]
    where_rows = [[c.replace("_", " "), where(onsets["data"].get(c)), where(onsets["generated"].get(c))]
                  for c in classes]
    head = [[k, onsets["data_backbeat"].get(k, "-"), onsets["generated_backbeat"].get(k, "-")]
            for k in ("kick on 1", "snare on 2 and 4")]
    return ("<section><h2>Drums</h2>"
            f"<p class=meta>{html.escape(stats['source'])}</p>"
            + _table(["track", "hits", "fills", "varied bars", "drop bars", "drum checks"], rows)
            + "<p>Where each class falls in the bar (its commonest 16ths, 1/16 is the downbeat): "
            f"{html.escape(onsets['data_label'])} beside the generated drums.</p>"
            + _table(["", onsets["data_label"], "generated"], head + where_rows) + "</section>")


def write_report(runner: Runner) -> Path:
    out = runner.outputs
    if runner.manifest("export") is None:
        raise StageError(f"{out}/export has no exported tracks yet; run `lofi all` first")
    folder = out / "report"
    folder.mkdir(parents=True, exist_ok=True)
    before = set(folder.iterdir())
    parts = [f"<h1>{html.escape(runner.cfg.run.name)}</h1>",
             f"<p class=meta>profile <b>{runner.cfg.profile}</b>, seed {runner.cfg.run.seed}; "
             f"playlist: <a href='playlist.m3u8'>playlist.m3u8</a></p>", _tracks_section(runner, folder)]
    if runner.manifest("generate") is not None and runner.manifest("encode") is not None:
        parts.append(music_checks_section(catalog.read_takes(runner.artifact_dir("generate")),
                                          catalog.read_profile(runner.artifact_dir("encode"))))
    if runner.manifest("drums") is not None:
        parts.append(_drums_section(runner))
    if runner.manifest("train") is not None:
        parts.append(_model_section(runner, folder))
    stats = music_statistics(runner)
    if stats:
        parts.append(_statistics_section(stats, folder))
    if runner.manifest("intake") is not None:
        parts.append(_dataset_section(runner))
    timings = [[n, f"{(runner.manifest(n) or {}).get('timings', {}).get('seconds', 0):.1f} s"]
               for n in runner.order if runner.manifest(n)]
    parts.append("<section><h2>Stage times</h2>" + _table(["stage", "last run"], timings) + "</section>")
    page = (f"<!doctype html><html lang=en><meta charset=utf-8><title>{html.escape(runner.cfg.run.name)}</title>"
            f"<style>{CSS}</style><script>{CHECK_SCRIPT}</script><body>{''.join(parts)}</body></html>\n")
    path = out / "report.html"
    atomic.write_text(path, page)
    used = {folder / "stats.json", *(out / src for src in _sources(page))}
    for stale in before - used:  # figures of an earlier run
        stale.unlink(missing_ok=True)
    return path


def _sources(page: str) -> list[str]:
    return re.findall(r"src='(report/[^']+)'", page)
