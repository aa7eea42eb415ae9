"""`lofi evaluate ARCHIVE...`: the whole pipeline on each archive, each in its own outputs
folder, then one table of what was kept, folded and scored, how the tracks fare on the music
checks, and what each stage took; the same as JSON beside it."""
from __future__ import annotations

import re
from pathlib import Path

from ..core import atomic
from ..core.runner import Runner
from ..model.rate_matching import PRIMER_EVENTS
from ..model.takes import holding_both, primer_wants
from ..music.checks import CHECKS, loop_repeat_share
from ..music.rates import RATES, outside, rates
from ..music.realism import realism
from ..stages import catalog


def _steps_cell(r: dict) -> str:
    experts = r["calibration"].get("step_experts")
    if not experts:
        return "-"
    return "; ".join(f"{f} {e['fitted_weight']:g}, drawn at {e['weight']:g} ({e['dev_nll_without']:.3f} / "
                     f"{e['dev_nll']:.3f})" for f, e in experts.items())


ROWS_NLL = ("ensemble", "scratch ensemble", "base alone", "best member", "n-gram", "unigram")


def slug(archive: Path, taken: set[str]) -> str:
    """A folder name for an archive: its name without the extension, unique among `taken`."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", archive.stem if archive.suffix else archive.name) or "archive"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


REALISM_SEGMENTS = 40  # distinct generated segments the realism figure wants at least
REALISM_TRACKS = 16  # and tracks, so that its folds (whole tracks each) hold several
MORE_TAKES_AT_MOST = 16  # takes made for the figure alone, beyond the run's tracks


def realism_of(encoded, profile, takes: list[catalog.Take]) -> dict:
    """The classifier two-sample test of the run's takes (and any made for the figure alone) against
    the held-out pieces of the tracks' kind (with chords and a melody where the data has both: each
    track has a melody; docs/model.md); "every_piece", the same against every held-out piece."""
    decode = encoded.vocab.decode_events
    pieces = [ids for split in ("dev", "test") for ids in encoded.sequences(split)]
    like = holding_both(pieces, PRIMER_EVENTS, primer_wants(encoded.vocab, profile)) or pieces
    generated = [decode(t.ids)[0] for t in takes]
    every = realism(generated, [decode(ids)[0] for ids in pieces])
    figure = every if len(like) == len(pieces) else realism(generated, [decode(ids)[0] for ids in like])
    return {**figure, "real_pieces": len(like), "held_out_pieces": len(pieces), "every_piece": every}


def distinct_segments(takes: list[catalog.Take], vocab) -> int:
    return realism([vocab.decode_events(t.ids)[0] for t in takes], [])["generated_segments"]


def rates_of(vocab, profile, takes: list[catalog.Take]) -> dict:
    """Every rate of music/rates.py for each track beside the training pieces' range."""
    ranges = profile.rate_ranges
    tracks = [rates(vocab.decode_events(t.ids)[0], vocab.velocity_bins) for t in takes]
    return {"ranges": ranges, "tracks": [{k: None if v is None else round(v, 4) for k, v in r.items()} for r in tracks],
            "outside": [outside(r, ranges) for r in tracks]}


def a_section_repeats(take: catalog.Take, vocab) -> float | None:
    """The share of A-section bars (A, A', ...) whose harmony repeats the bar a loop earlier in
    the same section."""
    sections = [(start, start + bars) for label, start, bars in take.sections if label.rstrip("'") == "A"]
    if not sections:
        return None
    return loop_repeat_share(vocab.decode_events(take.ids)[0], take.loop_bars, sections)


# The real drums the generated drums are told apart from: GMD's test beats in the styles lo-fi
# draws on (groove.LOFI_STYLES), at its tempos (the drum model never trained on them).
DRUM_TEMPO_BPM = (60, 100)


def drum_realism_of(runner: Runner, takes: list[catalog.Take], parts: list[catalog.DrumPart]) -> dict:
    """The classifier two-sample test on two-bar drum segments, for the drum model's parts and,
    measured the same way on the same takes, for the pattern (arrange.drums = "pattern"): each
    read back from the notes arrange writes (swing included) against GMD's test beats. Only
    tracks in a metre the real beats have are judged (GMD is all 4/4): a 3/4 bar has no 13th to
    16th 16th, and against 4/4 beats its empty fourth beat alone would give it away. Beside them,
    the floor: GMD's own train beats in the same styles and tempos, human drummers all, told
    from its test beats the same way (the splits hold other drummers' sessions)."""
    from ..corpora.groove import VENDORED, read_groove
    from ..music.arrangement import arrange_track
    from ..music.drum_format import bars_from_hits
    from ..music.realism import drum_realism
    pieces, _ = read_groove(runner.root / VENDORED, *DRUM_TEMPO_BPM)
    real = [p.bars for p in pieces if p.split == "test" and p.beat_type == "beat" and p.lofi_style]
    profile = catalog.read_profile(runner.artifact_dir("encode"))
    grid = catalog.read_takes(runner.artifact_dir("generate")).grid
    by_index = {p.index: p for p in parts}
    metres = {p.metre for p in pieces}
    judged = [t for t in takes if t.metre in metres]
    played: dict[str, list] = {"learned": [], "pattern": []}
    for take in judged:
        for kind, drums in (("learned", by_index.get(take.index)), ("pattern", None)):
            if kind == "learned" and drums is None:
                continue
            _, band, info = arrange_track(take.tokens, grid, None, take.seed, runner.cfg.arrange, "", profile,
                                          take.sections, take.loop_bars, take.melody_by,
                                          drums.drum_bars() if drums else None)
            notes = band[3].notes
            played[kind].append(bars_from_hits([n[0] for n in notes], [n[2] for n in notes], [n[3] for n in notes],
                                               info["metre"]))
    other = len(takes) - len(judged)
    figures = {kind: {**(drum_realism(bars, real) if bars else {}), "tracks": len(bars), "left_out_for_metre": other}
               for kind, bars in played.items()}
    human = [p.bars for p in pieces if p.split == "train" and p.beat_type == "beat" and p.lofi_style]
    return {**figures, "human": {**drum_realism(human, real), "tracks": len(human), "left_out_for_metre": 0}}


def _drum_realism_cell(figures: dict, kind: str) -> str:
    figure = figures.get(kind, {})
    if not figure.get("accuracy"):
        if not figure.get("tracks") and figure.get("left_out_for_metre"):
            return f"- (all {figure['left_out_for_metre']} tracks in a metre GMD lacks)"
        return "-"
    return (f"{figure['accuracy']:.1%} +- {figure['spread']:.1%} ({figure['per_class']} segments a class from "
            f"{figure['tracks']} {'pieces' if kind == 'human' else 'tracks'}"
            + (f"; {figure['left_out_for_metre']} in a metre GMD lacks left out)" if figure.get("left_out_for_metre")
               else ")"))


def drum_scores(runner: Runner) -> dict:
    """The base drum model's test NLL on GMD's test split beside its n-gram and unigram."""
    from ..model import drum_model
    return drum_model.read_manifest(drum_model.base_folder(runner.cfg.drums.base, runner.root)).get("test_nll", {})


def scratch_figures(runner: Runner) -> dict:
    """The test NLL and train time of the same run trained from scratch (its own outputs folder)."""
    test = catalog.read_metrics(runner.artifact_dir("train"))["test"]
    return {"nll": test["ensemble"]["nll"],
            "train_seconds": round((runner.manifest("train") or {}).get("timings", {}).get("seconds", 0.0), 1)}


def summarise(runner: Runner, archive: str, scratch: dict | None = None,
              more_takes: list[catalog.Take] | None = None, more_drums: list[catalog.DrumPart] | None = None) -> dict:
    """One archive's figures, from the manifests and artifacts of a finished run (and, for a
    fine-tuned run, those of the same run from scratch; `more_takes`, made for the realism
    figure alone)."""
    def stats(stage: str) -> dict:
        return (runner.manifest(stage) or {}).get("stats", {})
    intake, extract, encode, train = stats("intake"), stats("extract"), stats("encode"), stats("train")
    takes = catalog.read_takes(runner.artifact_dir("generate"))
    records = catalog.tracks.read(runner.artifact_dir("arrange"))
    profile = catalog.read_profile(runner.artifact_dir("encode"))
    test = catalog.read_metrics(runner.artifact_dir("train"))["test"]
    members = {k: v["nll"] for k, v in test.items() if k.startswith("member_")}
    best = min(members, key=members.get)
    ngram = next(k for k in test if k.endswith("-gram"))
    nll = {"ensemble": test["ensemble"]["nll"], "scratch ensemble": (scratch or {}).get("nll"),
           "base alone": test.get("base", {}).get("nll"), "best member": members[best],
           "n-gram": test[ngram]["nll"], "unigram": test["unigram"]["nll"]}
    encoded = catalog.read_encoded(runner.artifact_dir("encode"))
    vocab = encoded.vocab
    tracks = [{"index": t.index, "takes": t.draws, "passed": not t.flagged, "failed": t.checks["failed"],
               "outside": t.checks["outside"], "figures": t.checks["figures"], "lead": r.lead,
               "harmonised_bars": r.harmonised_bars, "form": t.form, "a_section_repeats": a_section_repeats(t, vocab)}
              for t, r in zip(takes.tracks, records)]
    return {
        "archive": archive, "outputs": str(runner.outputs),
        "files_kept": intake.get("files_kept", 0),
        "skipped": {**intake.get("skipped_by_reason", {}), **extract.get("skipped_by_reason", {})},
        "duplicates": intake.get("files_duplicate", 0), "pieces": extract.get("pieces", 0),
        "events": encode.get("events", 0), "test_events": train.get("test_events", 0),
        "unknown_share": encode.get("unknown_share", 0.0),
        "unknown_share_by_field": {k.removeprefix("unknown_share_"): v for k, v in encode.items()
                                   if k.startswith("unknown_share_")},
        "approximated": encode.get("approximated", {}),
        "nll": nll, "best_member": best, "ngram": ngram,
        "ordering_holds": nll["ensemble"] <= nll["best member"] < nll["n-gram"] < nll["unigram"],
        "calibration": train.get("calibration", {}), "dev_nll": train.get("dev_nll", {}),
        "ensemble_within_best_member": {"dev": train.get("ensemble_within_best_member_on_dev"),
                                        "test": nll["ensemble"] <= nll["best member"]},
        "rates": rates_of(vocab, profile, takes.tracks),
        "finetuned_beats_scratch": None if scratch is None else nll["ensemble"] < nll["scratch ensemble"],
        "scratch_train_seconds": (scratch or {}).get("train_seconds"), "init": train.get("init", "scratch"),
        "steps": train.get("steps", {}),
        "dropped": {k: extract.get(k, 0) for k in ("melody_notes_below_the_top", "pitches_clipped", "notes_cropped")},
        "test": test, "checks_ranges": profile.ranges, "checks_quantile": profile.quantile,
        "training_pieces_inside": profile.pieces_inside, "loop_bars": profile.loop_bars,
        "main_ticks": list(profile.main_ticks), "tracks": tracks,
        "realism": {**realism_of(encoded, profile, takes.tracks + list(more_takes or [])),
                    "tracks": len(takes.tracks) + len(more_takes or [])},
        "drum_nll": drum_scores(runner),
        "drums": [r.drums for r in records],
        "drum_realism": drum_realism_of(runner, takes.tracks + list(more_takes or []),
                                        catalog.drum_parts.read(runner.artifact_dir("drums")) + list(more_drums or []))
        if runner.manifest("drums") else {},
        "stage_seconds": {n: round((runner.manifest(n) or {}).get("timings", {}).get("seconds", 0.0), 1)
                          for n in runner.order},
    }


def _realism_cell(figure: dict) -> str:
    if figure["accuracy"] is None:
        return f"- ({figure['per_class']} segments a class, too few to judge)"
    seeds = " ".join(f"{a:.1%}" for a in figure["per_seed"])
    return f"{figure['accuracy']:.1%} +- {figure['spread']:.1%} (seeds: {seeds})"


def format_table(results: list[dict]) -> str:
    """Archives side by side, one row per figure."""
    rows: list[tuple[str, list[str]]] = [("archive", [Path(r["archive"]).name for r in results])]

    def add(label: str, cell) -> None:
        rows.append((label, [cell(r) for r in results]))
    add("files kept / skipped", lambda r: f"{r['files_kept']} / {sum(r['skipped'].values())}")
    for reason in sorted({k for r in results for k in r["skipped"]}):
        add(f"  skipped: {reason[:40]}", lambda r, k=reason: str(r["skipped"].get(k, 0)))
    add("pieces / events (test events)", lambda r: f"{r['pieces']} / {r['events']} ({r['test_events']})")
    add("events not representable", lambda r: f"{r['unknown_share']:.1%}")
    add("chords matched only nearly", lambda r: str(r["approximated"].get("chords_not_exact", 0)))
    add("melody notes under the top / pitches clipped", lambda r: f"{r['dropped']['melody_notes_below_the_top']} / "
        f"{r['dropped']['pitches_clipped']}")
    add("models start from", lambda r: "the base ensemble" if r["init"] == "base" else "scratch")
    for name in ROWS_NLL:
        add(f"test NLL/event: {name}", lambda r, n=name: "-" if r["nll"][n] is None else f"{r['nll'][n]:.3f}"
            + (f" ({r['best_member']})" if n == "best member" else ""))
    add("fine-tuned < scratch", lambda r: "-" if r["finetuned_beats_scratch"] is None else
        "yes" if r["finetuned_beats_scratch"] else "NO")
    add("ensemble <= member < n-gram < unigram", lambda r: "yes" if r["ordering_holds"] else "NO")
    add("ensemble chosen on dev", lambda r: "{} ({}, weights {})".format(
        r["calibration"].get("chosen", "-"), r["calibration"].get("combine", "-"),
        " ".join(f"{w:g}" for w in r["calibration"].get("weights", []))))
    add("step experts: weight fitted on dev, drawn at (the field's dev NLL without / with)", _steps_cell)
    add("dev NLL/event: ensemble / best member", lambda r: "-" if not r["dev_nll"] else "{:.3f} / {:.3f}".format(
        r["calibration"]["dev_nll"], min(v for k, v in r["dev_nll"].items() if k.endswith(" alone"))))
    add("ensemble <= best member: dev / test", lambda r: " / ".join(
        "-" if v is None else "yes" if v else "NO" for v in r["ensemble_within_best_member"].values()))
    add("sampling temperatures (calibrated on dev)", lambda r: " ".join(
        f"{f[:3]} {s['temperature']:g}" for f, s in r["calibration"].get("sampling", {}).items()) or "-")
    add("optimiser steps per member", lambda r: " ".join(str(v) for v in r["steps"].values()) or "-")
    add("training pieces inside that range", lambda r: f"{r['training_pieces_inside']:.0%}")
    add("tracks inside the data's range", lambda r: f"{sum(t['passed'] for t in r['tracks'])} of {len(r['tracks'])}"
        f" ({sum(t['takes'] - 1 for t in r['tracks'])} re-draws)")
    for key, label in CHECKS.items():
        add(f"  {label}", lambda r, k=key: ("{:.2f}-{:.2f}: ".format(*r["checks_ranges"][k]) if k in r[
            "checks_ranges"] else "(no range): ") + " ".join(
            ("-" if t["figures"].get(k) is None else f"{t['figures'][k]:.2f}") + ("!" if k in t["outside"] else "")
            for t in r["tracks"]))
    add("tracks with every rate inside the data's range", lambda r: f"{sum(not o for o in r['rates']['outside'])} "
        f"of {len(r['rates']['outside'])}")
    for key, label in RATES.items():
        add(f"  {label}", lambda r, k=key: ("{:.2f}-{:.2f}: ".format(*r["rates"]["ranges"][k]) if k in r["rates"][
            "ranges"] else "(no range): ") + " ".join(
            ("-" if t.get(k) is None else f"{t[k]:.2f}") + ("!" if k in o else "")
            for t, o in zip(r["rates"]["tracks"], r["rates"]["outside"])))
    add("A-section bars repeating the loop's harmony", lambda r: " ".join(
        "-" if t["a_section_repeats"] is None else f"{t['a_section_repeats']:.2f}" for t in r["tracks"]))
    add("loop (bars) / main places in the beat", lambda r: f"{r['loop_bars']} / ticks {r['main_ticks']}")
    add("realism: balanced accuracy, folds of whole tracks (50% = can't tell)", lambda r: _realism_cell(r["realism"]))
    add("  real side: held-out pieces with chords and a melody",
        lambda r: "{real_pieces} of {held_out_pieces}".format(**r["realism"]))
    add("  segments per class (generated / real)", lambda r: f"{r['realism']['per_class']} "
        f"({r['realism']['generated_segments']} from {r['realism']['tracks']} tracks / "
        f"{r['realism']['real_segments']})")
    for k in range(3):
        add(f"  separating feature {k + 1}", lambda r, k=k: " ".join(
            f"{name} ({w:.3f})" for name, w in r["realism"]["separating"][k:k + 1]) or "-")
    add("  realism against every held-out piece", lambda r: _realism_cell(r["realism"]["every_piece"]) + "".join(
        f"; most: {name} ({w:.3f})" for name, w in r["realism"]["every_piece"]["separating"][:1]))
    add("drum test NLL/event on GMD: model / 3-gram / unigram", lambda r: " / ".join(
        f"{r['drum_nll'].get(k, float('nan')):.3f}" for k in ("ensemble", "3-gram", "unigram")))
    add("drums from", lambda r: "; ".join(sorted(set(r["drums"]))))
    for kind, label in (("learned", "the drum model"), ("pattern", "the fixed pattern"),
                        ("human", "GMD's train beats (human)")):
        add(f"drum realism vs GMD test beats: {label}", lambda r, k=kind: _drum_realism_cell(r["drum_realism"], k))
    add("  separating drum feature", lambda r: " ".join(
        f"{name} ({w:.3f})" for name, w in r["drum_realism"].get("learned", {}).get("separating", [])[:2]) or "-")
    add("lead from the learned melody", lambda r: f"{sum(t['lead'].startswith('learned') for t in r['tracks'])} "
        f"of {len(r['tracks'])}")
    add("bars harmonised from the melody", lambda r: " ".join(f"{t['harmonised_bars']:g}" for t in r["tracks"]))
    for stage in results[0]["stage_seconds"]:
        add(f"{stage} (s)", lambda r, s=stage: f"{r['stage_seconds'][s]:.1f}")
        if stage == "train":
            add("train from scratch (s)", lambda r: "-" if r["scratch_train_seconds"] is None
                else f"{r['scratch_train_seconds']:.1f}")
    add("all stages (s)", lambda r: f"{sum(r['stage_seconds'].values()):.1f}")
    width = max(len(label) for label, _ in rows)
    cols = [max(len(row[1][i]) for row in rows) for i in range(len(results))]
    return "\n".join(f"{label:<{width}}  " + "  ".join(c.ljust(w) for c, w in zip(cells, cols)).rstrip()
                     for label, cells in rows)


def write_evaluation(results: list[dict], folder: Path) -> tuple[Path, str]:
    table = format_table(results)
    atomic.write_json(folder / "evaluation.json", {"archives": results})
    atomic.write_text(folder / "evaluation.txt", table + "\n")
    return folder / "evaluation.json", table
