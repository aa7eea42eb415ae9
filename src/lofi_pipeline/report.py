"""outputs/report.html: one static page to see and hear a run (no network, relative links)."""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from . import atomic
from .encode import load_encoded, piece_sequences
from .errors import StageError
from .events import PITCH_NAMES
from .music_checks import CHECKS
from .runner import Runner
from .stats import DURATION_BINS_BEATS, copied_share, corpus_stats, histogram_distance, longest_copied_run, ngrams

STAT_ROWS = [("pitch_class_entropy", "pitch-class entropy (bits)"),
             ("scale_consistency", "scale consistency"), ("polyphony", "polyphony (pitches)"),
             ("empty_beat_rate", "empty-beat rate"), ("groove_consistency", "groove consistency"),
             ("self_repetition", "self-repetition (16-event blocks)")]


def _read(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def _sequences(encode_dir: Path):
    """The vocabulary, then the train and the test pieces as lists of event rows (tuples)."""
    vocab, arrays, _ = load_encoded(encode_dir)
    rows = [(split, [tuple(r) for r in ids.tolist()]) for split, ids in piece_sequences(arrays)]
    return vocab, [r for s, r in rows if s == "train"], [r for s, r in rows if s == "test"]


def music_statistics(runner: Runner) -> dict | None:
    gen = _read(runner.artifact_dir("generate") / "tracks.json")
    if gen is None or not (runner.artifact_dir("encode") / "data.npz").exists():
        return None
    from .generate import self_repetition
    vocab, train, test = _sequences(runner.artifact_dir("encode"))
    grid = gen["grid"]

    def events(rows):
        return vocab.decode_events(rows)[0]
    generated = [[tuple(r) for r in t["ids"][t["primer_events"]:]] for t in gen["tracks"]]
    g = corpus_stats([events(s) for s in generated], grid)
    d = corpus_stats([events(s) for s in test], grid)
    g["self_repetition"] = float(np.mean([self_repetition(s) for s in generated]))
    d["self_repetition"] = float(np.mean([self_repetition(s) for s in test]))
    grams = ngrams(train, 16)
    g["longest_copied_run"] = longest_copied_run(generated, train)
    d["longest_copied_run"] = longest_copied_run(test, train)
    g["copied_16_event_share"] = float(np.mean([copied_share(s, grams) for s in generated]))
    d["copied_16_event_share"] = float(np.mean([copied_share(s, grams) for s in test]))
    return {"generated": g, "test": d,
            "pitch_class_distance": histogram_distance(g["pitch_class_histogram"], d["pitch_class_histogram"]),
            "duration_distance": histogram_distance(g["duration_histogram"], d["duration_histogram"]),
            "tracks": len(generated), "test_pieces": len(test)}


def plot_statistics(stats: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), dpi=100)
    for ax, key, labels, title in (
            (axes[0], "pitch_class_histogram", PITCH_NAMES, "pitch classes (C major / A minor reference)"),
            (axes[1], "duration_histogram", [f"{b:.2g}" for b in DURATION_BINS_BEATS],
             "melody-note durations (beats, up to)")):
        n = len(stats["generated"][key])
        x = np.arange(n)
        ax.bar(x - 0.2, stats["test"][key], 0.4, label="test pieces")
        ax.bar(x + 0.2, stats["generated"][key], 0.4, label="generated")
        ax.set_xticks(x, labels[:n], fontsize=7, rotation=45 if n > 12 else 0)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


CSS = """body{font:15px/1.5 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;
background:#faf7f2}h1{font-weight:600}section{margin:2em 0}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:.25em .7em;text-align:right}th{background:#eee}td:first-child{text-align:left}
.track{background:#fff;border:1px solid #ddd;border-radius:8px;padding:1em;margin:1em 0}
.track img,.wide{max-width:100%}audio{width:100%}.meta{color:#666}.warn{color:#a30;font-weight:600}"""

CHECK_SCRIPT = """window.addEventListener('load',function(){var imgs=[].slice.call(document.images);
document.body.dataset.imagesTotal=imgs.length;
document.body.dataset.imagesLoaded=imgs.filter(function(i){return i.complete&&i.naturalWidth>0}).length;});"""


def music_checks_section(generated: dict) -> str:
    """Each track's figures beside the training pieces' range; a warning for each one outside."""
    data = generated["data"]
    ranges, q = data["ranges"], data["quantile"]
    header = ["", *CHECKS.values(), "takes"]
    rows = [[f"training pieces ({data['pieces']}), {q:.0%}-{1 - q:.0%} range",
             *("{:.2f} - {:.2f}".format(*ranges[k]) for k in CHECKS), ""]]
    warnings = []
    for t in generated["tracks"]:
        failed, outside = t["checks"]["failed"], t["checks"]["outside"]
        rows.append([f"track {t['index']}" + (" (flagged)" if failed else ""),
                     *(f"{t['checks']['figures'][k]:.2f}" + (" outside" if k in outside else "") for k in CHECKS),
                     t["draws"]])
        if failed:
            warnings.append(f"<p class=warn>Warning: track {t['index']} is outside the data's range after "
                            f"{t['draws']} takes: {html.escape('; '.join(failed))}.</p>")
    return ("<section><h2>Music checks</h2><p>Figures that catch a bad take, measured the same way on each "
            "track and on every training piece. A take outside the range is drawn again (up to "
            "<code>generate.redraws</code> times); one still outside is kept and flagged here. "
            f"{data['pieces_inside']:.0%} of the training pieces themselves are inside every range.</p>"
            + "".join(warnings) + _table(header, rows) + "</section>")


# What the report writes under the outputs root (`lofi clean` removes these too).
REPORT_PATHS = ("report", "report.html")


def write_report(runner: Runner) -> Path:
    out = runner.outputs
    exports = _read(runner.artifact_dir("export") / "exports.json")
    if exports is None:
        raise StageError(f"{out}/export has no exported tracks yet; run `lofi all` first")
    folder = out / "report"
    folder.mkdir(parents=True, exist_ok=True)
    arrange_tracks = _read(runner.artifact_dir("arrange") / "tracks.json") or {"tracks": []}
    arranged = {t["title"]: t for t in arrange_tracks["tracks"]}
    generated = _read(runner.artifact_dir("generate") / "tracks.json")
    parts = [f"<h1>{html.escape(runner.cfg.run.name)}</h1>",
             f"<p class=meta>profile <b>{runner.cfg.profile}</b>, seed {runner.cfg.run.seed}; "
             f"playlist: <a href='playlist.m3u8'>playlist.m3u8</a></p>", "<section><h2>Tracks</h2>"]
    for e in exports["exports"]:
        arr = arranged.get(e["title"], {})
        roll = f"<img src='arrange/{arr['piano_roll']}' alt='piano roll of {html.escape(e['title'])}'>" \
            if arr.get("piano_roll") else ""
        how = f"; lead: {arr['lead']}" if arr.get("lead") else ""
        if arr.get("harmonised_bars"):
            how += f"; {arr['harmonised_bars']:g} bars harmonised from the melody"
        parts.append(f"<div class=track><h3>{html.escape(e['title'])}</h3>"
                     f"<p class=meta>key {html.escape(str(e.get('key', '?')))}, "
                     f"{e.get('tempo_bpm', '?')} BPM, {e['seconds']:.0f} s, seed {e.get('seed', '?')}"
                     f"{html.escape(how)}</p>"
                     f"<audio controls preload=none src='{html.escape(e['file'])}'></audio>{roll}</div>")
    parts.append("</section>")
    if generated and generated.get("data"):
        parts.append(music_checks_section(generated))
    train = _read(runner.artifact_dir("train") / "metrics.json")
    if train:
        fields = list(next(iter(train["test"].values()))["fields"])
        rows = [[n, f"{m['nll']:.3f}"] + [f"{m['fields'][f]['nll']:.3f} / {m['fields'][f]['top1']:.2f}"
                                          for f in fields] for n, m in train["test"].items()]
        parts.append(f"<section><h2>Model</h2><p>Next-event prediction on the {train['test_events']} events of "
                     "the test pieces, which nothing else looks at (NLL in nats; an event's NLL is the sum "
                     "of its fields'; lower is better; per field: NLL / top-1).</p>"
                     + _table(["model", "NLL per event"] + fields, rows)
                     + "<img class=wide src='train/curves.png' alt='learning curves'></section>")
    stats = music_statistics(runner)
    if stats:
        atomic.write_json(folder / "stats.json", stats)
        plot_statistics(stats, folder / "stats.png")
        g, d = stats["generated"], stats["test"]
        rows = [[label, f"{g[k]:.3f}", f"{d[k]:.3f}"] for k, label in STAT_ROWS]
        rows += [["pitch-class histogram distance (TV)", f"{stats['pitch_class_distance']:.3f}", "0"],
                 ["duration histogram distance (TV)", f"{stats['duration_distance']:.3f}", "0"],
                 ["longest run copied from training (events)", g["longest_copied_run"], d["longest_copied_run"]],
                 ["16-event runs found in training", f"{g['copied_16_event_share']:.1%}",
                  f"{d['copied_16_event_share']:.1%}"]]
        parts.append("<section><h2>Music statistics</h2><p>Generated tracks against the test pieces: "
                     "closer to the data's values is better. A model that copies its training pieces shows "
                     "long copied runs.</p>" + _table(["statistic", "generated", "test pieces"], rows)
                     + "<img class=wide src='report/stats.png' alt='histograms'>"
                     "<p><a href='report/stats.json'>stats.json</a></p></section>")
    intake = runner.manifest("intake") or {}
    extract = runner.manifest("extract") or {}
    encode = runner.manifest("encode") or {}
    if intake:
        s, x, en = intake.get("stats", {}), extract.get("stats", {}), encode.get("stats", {})
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
        parts.append("<section><h2>Dataset</h2>" + _table(["", "value"], rows) + "</section>")
    timings = [[n, f"{(runner.manifest(n) or {}).get('timings', {}).get('seconds', 0):.1f} s"]
               for n in runner.order if runner.manifest(n)]
    parts.append("<section><h2>Stage times</h2>" + _table(["stage", "last run"], timings) + "</section>")
    page = (f"<!doctype html><html lang=en><meta charset=utf-8><title>{html.escape(runner.cfg.run.name)}</title>"
            f"<style>{CSS}</style><script>{CHECK_SCRIPT}</script><body>{''.join(parts)}</body></html>\n")
    path = out / "report.html"
    atomic.write_text(path, page)
    return path
