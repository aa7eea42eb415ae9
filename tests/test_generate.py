import numpy as np
import pytest

from helpers import ROOT, midi_bytes, performed_song, timed_rows
from lofi_pipeline.core.errors import StageError
from lofi_pipeline.core.runner import Runner
from lofi_pipeline.model.compose import Composer, compose
from lofi_pipeline.model.ensemble import EnsembleSampler
from lofi_pipeline.model.form import Section, auto_form, form_string, parse_form
from lofi_pipeline.model.members import model_inputs
from lofi_pipeline.model.redraws import draw_takes, round_draws, take_report
from lofi_pipeline.model.sampling import FieldSampler, sample_value
from lofi_pipeline.model.takes import dev_primer, holding_both, primer_from_midi, track_seed
from lofi_pipeline.music.checks import data_profile, loop_repeat_share
from lofi_pipeline.music.statistics import self_repetition
from lofi_pipeline.music.token_format import FIELDS, PAD, TARGETS, UNK, Vocabulary
from lofi_pipeline.pipeline import build_stages
from lofi_pipeline.stages.catalog import read_encoded, read_ensemble, read_profile, read_takes

SETTINGS = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "repetition_penalty": 1.0, "repetition_window": 0,
            "fields": {}}


def trained_parts(runner):
    """The vocabulary, the encoded arrays and the members of a trained run."""
    encoded = read_encoded(runner.artifact_dir("encode"))
    models, _, _ = read_ensemble(runner.artifact_dir("train"), encoded.vocab)
    return encoded.vocab, encoded.arrays, models


def test_sampling_never_draws_specials_and_honours_top_k_and_top_p():
    probs = np.array([0.5, 0.3, 0.1, 0.06, 0.04])
    rng = np.random.default_rng(0)
    draws = [sample_value(probs, rng, 1.0, 0, 1.0) for _ in range(300)]
    assert PAD not in draws and UNK not in draws and set(draws) == {2, 3, 4}
    assert {sample_value(probs, rng, 1.0, 1, 1.0) for _ in range(50)} == {2}
    assert {sample_value(probs, rng, 1.0, 0, 0.5) for _ in range(50)} == {2}
    assert {sample_value(probs, rng, 0.05, 0, 1.0) for _ in range(50)} == {2}


def test_repetition_penalty_moves_mass_away_from_recent_events():
    probs = np.array([0, 0, 0.6, 0.4])
    rng = np.random.default_rng(1)
    plain = np.mean([sample_value(probs, rng, 1.0, 0, 1.0) == 2 for _ in range(400)])
    penalised = np.mean([sample_value(probs, rng, 1.0, 0, 1.0, recent=(np.array([2]), 4.0)) == 2
                         for _ in range(400)])
    assert penalised < plain - 0.2


def test_sampling_is_a_pure_function_of_the_seed():
    probs = np.random.default_rng(3).dirichlet(np.ones(40))
    a = [sample_value(probs, np.random.default_rng(9), 0.9, 10, 0.9) for _ in range(5)]
    b = [sample_value(probs, np.random.default_rng(9), 0.9, 10, 0.9) for _ in range(5)]
    assert a == b
    assert track_seed(1, 0) != track_seed(1, 1) and track_seed(1, 0) == track_seed(1, 0)
    radio = {track_seed(1, i, d, "radio") for i in range(1, 200) for d in (0, 1)}
    assert len(radio) == 398 and not radio & {track_seed(1, i, d) for i in range(1, 200) for d in (0, 1)}


def test_self_repetition_sees_loops():
    assert self_repetition([[1, 2], [3, 4]] * 8, size=2) == 1.0
    assert self_repetition([[i, i] for i in range(64)], size=16) == 0.0


def test_field_sampler_keeps_chords_and_notes_whole_and_honours_masks_and_per_field_settings():
    vocab = Vocabulary.closed(4)
    rng = np.random.default_rng(0)
    sampler = FieldSampler(vocab, {**SETTINGS, "fields": {"pitch": {"top_k": 1}}})
    probs = {f: np.random.default_rng(i).dirichlet(np.ones(n)) for i, (f, n) in enumerate(zip(FIELDS, vocab.sizes))}
    top_pitch = 2 + int(np.argmax(probs["pitch"][2:]))
    on_the_beat = np.isin(vocab.value_table("position"), [0, 12, 24, 36])
    on_the_beat[[PAD, UNK]] = False
    rows = []
    for _ in range(200):
        row = np.zeros(len(FIELDS), np.int32)
        row[0] = vocab.index["metre"]["4/4"]
        row[1] = vocab.index["bar"]["1"]
        for field in TARGETS[1:]:
            mask = on_the_beat if field == "position" else None
            row[FIELDS.index(field)] = sampler.draw_field(field, probs[field], rng, row, np.zeros((0, len(FIELDS))),
                                                          mask)
        rows.append(row)
    events, dropped = vocab.decode_events(np.array(rows))
    assert dropped == 0 and len(events) == 200  # never a root without a quality, nor a pitch without a duration
    assert {e.position for e in events} <= {0, 12, 24, 36}
    assert {r[FIELDS.index("pitch")] for r in rows} == {top_pitch}
    assert len({r[FIELDS.index("root")] for r in rows}) > 5


def test_ensemble_combines_members_probabilities_per_field(trained):
    _, runner = trained
    vocab, data, models = trained_parts(runner)
    x, y = data["x_dev"][:4], data["y_dev"][:4]
    outs = [m.predict(model_inputs(x, y), verbose=0) for m in models]

    def probs(sampler):
        return sampler.field_probs(sampler.contexts(x), y)
    mean = probs(EnsembleSampler(models))
    product = probs(EnsembleSampler(models, "product"))
    weighted = probs(EnsembleSampler(models, "weighted", [1, 0]))
    for f in TARGETS:
        assert np.allclose(mean[f], np.mean([o[f] for o in outs], axis=0), atol=1e-5)
        # product of experts: the normalised geometric mean of the members' distributions
        log_mean = np.mean([np.log(o[f] + 1e-9) for o in outs], axis=0)
        expected = np.exp(log_mean - log_mean.max(axis=1, keepdims=True))
        assert np.allclose(product[f], expected / expected.sum(axis=1, keepdims=True), atol=1e-5)
        assert np.allclose(weighted[f], outs[0][f], atol=1e-5)


def test_a_smaller_batch_gets_the_same_distributions_as_in_the_full_one(trained):
    """Re-drawing a few tracks pads their batch to the first batch's size: rows stay the same."""
    _, runner = trained
    vocab, data, models = trained_parts(runner)
    sampler = EnsembleSampler(models)
    x, y = data["x_dev"][:4], data["y_dev"][:4]
    full = sampler.field_probs(sampler.contexts(x), y)
    part = sampler.field_probs(sampler.contexts(x[:2]), y[:2])
    for f in TARGETS:
        assert part[f].shape[0] == 2 and np.allclose(part[f], full[f][:2], atol=1e-6)


def test_models_and_a_foreign_vocabulary_do_not_mix(trained):
    _, runner = trained
    with pytest.raises(StageError, match="trained on vocabulary"):
        read_ensemble(runner.artifact_dir("train"), Vocabulary.closed(7))


def test_bad_primers_get_clear_errors(trained, tmp_path):
    _, runner = trained
    vocab = Vocabulary.load(runner.artifact_dir("train") / "vocab.json")
    with pytest.raises(StageError, match="file not found"):
        primer_from_midi(tmp_path / "missing.mid", vocab, 12)
    text = tmp_path / "notes.mid"
    text.write_text("not midi")
    with pytest.raises(StageError, match="not a MIDI file"):
        primer_from_midi(text, vocab, 12)
    long = tmp_path / "long.mid"
    long.write_bytes(performed_song(bars=8).data)
    with pytest.raises(StageError, match=r"longer than the models' window of 12"):
        primer_from_midi(long, vocab, 12)
    short = tmp_path / "short.mid"
    short.write_bytes(midi_bytes([(0, 1, 60, 80), (1, 1, 64, 80), (2, 1, 67, 80), (3, 1, 72, 80)]))
    assert primer_from_midi(short, vocab, 12).shape == (4, len(FIELDS))


def generate(trained, tmp_path, *overrides):
    """Run `generate` on a copy of the trained outputs; returns (tracks, log lines)."""
    cfg, runner = trained
    import shutil

    from lofi_pipeline.core.config import load_config
    out = tmp_path / "outputs"
    shutil.copytree(runner.outputs, out, ignore=shutil.ignore_patterns(".lock"))
    cfg2 = load_config(ROOT / "lofi.toml", "quick", [
        f'run.outputs="{out}"', f'run.archive="{cfg.run.archive}"', "encode.dev_share=0.2", "encode.test_share=0.2",
        "train.max_steps=80", "train.check_every=8", "train.patience=3", "train.batch_size=32", *overrides])
    logs = []
    r = Runner(cfg2, build_stages(), root=ROOT, log=logs.append)
    r.run(["generate"])
    return [vars(t) for t in read_takes(r.artifact_dir("generate")).tracks], logs


def test_generating_twice_gives_the_same_events_and_never_retrains(trained, tmp_path):
    a, logs_a = generate(trained, tmp_path / "a")
    b, logs_b = generate(trained, tmp_path / "b", 'generate.temperature="auto"')  # the default, said aloud
    for logs in (logs_a, logs_b):
        ran = [line.split("]")[0][1:] for line in logs if " running (" in line]
        assert ran == ["generate"], logs
    assert [t["ids"] for t in a] == [t["ids"] for t in b]
    assert len(a) == 2 and all(len(t["ids"]) > 4 for t in a)
    assert a[0]["ids"] != a[1]["ids"]


def composers(runner, seeds, plan, loop_bars=2, variation=0.0, melody_variation=0.5, max_events=None):
    """Composers for the trained ensemble's profile, one per seed, each primed from nothing."""
    encoded = read_encoded(runner.artifact_dir("encode"))
    profile = read_profile(runner.artifact_dir("encode"))
    return [Composer(plan, loop_bars, "4/4", encoded.vocab, np.zeros((0, len(FIELDS)), np.int32),
                     np.random.default_rng(seed), variation, melody_variation, set(profile.grid_ticks),
                     profile.hold_limit_ticks, max_events, None, profile.advances) for seed in seeds]


def composed(runner, models, *args, **kwargs):
    vocab = read_encoded(runner.artifact_dir("encode")).vocab
    tracks = composers(runner, *args, **kwargs)
    compose(EnsembleSampler(models), FieldSampler(vocab, SETTINGS), tracks, progress=False)
    return vocab, tracks


def test_different_seeds_sample_different_music_from_the_same_models(trained):
    _, runner = trained
    _, _, models = trained_parts(runner)
    plan = [Section("A", 0, 8)]

    def sample(seed):
        _, tracks = composed(runner, models, [track_seed(seed, i) for i in range(2)], plan, max_events=24)
        return [c.take().tolist() for c in tracks]
    assert sample(1) == sample(1)
    assert sample(1) != sample(2)
    assert all(len(s) == 24 for s in sample(1))


def test_generated_events_keep_the_grid_of_their_training_data(trained):
    _, runner = trained
    encoded = read_encoded(runner.artifact_dir("encode"))
    profile = read_profile(runner.artifact_dir("encode"))
    data_ticks = {e.beat_tick for ids in encoded.sequences("train") for e in encoded.vocab.decode_events(ids)[0]}
    assert set(profile.grid_ticks) <= data_ticks | {0}
    vocab, tracks = composed(runner, trained_parts(runner)[2], [1, 2, 3], auto_form(16, 2))
    for c in tracks:
        events, dropped = vocab.decode_events(c.take())
        assert dropped == 0 and len(events) > 8
        assert {e.beat_tick for e in events} <= set(profile.grid_ticks)
        assert all(e.metre == "4/4" and e.position < 48 for e in events)


def test_a_fixed_loops_chords_survive_a_redrawn_melody_and_repeat_at_the_loop_length(trained):
    """variation 0: the loop's second pass keeps every chord where it was; melody_variation 1:
    each of its melody notes is drawn again (and some come out other than they were)."""
    _, runner = trained
    plan = [Section("A", 0, 4)]
    vocab, tracks = composed(runner, trained_parts(runner)[2], [5, 6], plan, loop_bars=2, variation=0.0,
                             melody_variation=1.0)
    changed, opening_on_a_chord = 0, []
    for c in tracks:
        events, _ = vocab.decode_events(c.take())
        chords = [[(e.position, e.root, e.quality) for e in events if e.bar == b and e.is_chord] for b in range(4)]
        assert chords[2] == chords[0] and chords[3] == chords[1] and any(chords)
        notes = [[(e.position, e.pitch) for e in events if e.bar == b] for b in range(4)]
        changed += notes[2] != notes[0] or notes[3] != notes[1]
        # A first pass that opens without a chord comes back under the one its last bar left
        # sounding, so the bar-by-bar harmony repeats in full only where the loop opens on one.
        if chords[0] and chords[0][0][0] == 0:
            opening_on_a_chord.append(loop_repeat_share(events, 2, [(0, 4)]))
    assert changed >= 1
    assert opening_on_a_chord and all(share == 1.0 for share in opening_on_a_chord), opening_on_a_chord


def test_a_section_comes_back_and_a_varied_bar_is_drawn_afresh(trained):
    _, runner = trained
    plan = parse_form("intro:1 A:2 B:2 A':2", 2)
    assert form_string(plan) == "intro 1 | A 2 | B 2 | A' 2" and [s.start for s in plan] == [0, 1, 3, 5]
    vocab, tracks = composed(runner, trained_parts(runner)[2], [7], plan, loop_bars=2, variation=0.0,
                             melody_variation=0.0)
    events, _ = vocab.decode_events(tracks[0].take())

    def bar(b):
        return [(e.position, e.root, e.quality, e.pitch) for e in events if e.bar == b]
    assert bar(5) == bar(1) and bar(6) == bar(2)  # A' is A again
    assert bar(0) == bar(1)  # the intro quotes the loop's opening
    assert events[-1].bar <= 6
    _, fresh = composed(runner, trained_parts(runner)[2], [7], plan, loop_bars=2, variation=1.0)
    redrawn, _ = vocab.decode_events(fresh[0].take())
    assert [e for e in redrawn if e.bar >= 5] != [e for e in redrawn if e.bar in (1, 2)]


def test_forms_are_planned_from_the_length_and_checked(trained):
    plan = auto_form(52, 4)
    assert form_string(plan) == "intro 2 | A 8 | A' 8 | B 8 | A'' 8 | C 12 | outro 6"
    assert sum(s.bars for s in plan) == 52 and form_string(auto_form(6, 4)) == "A 6"
    for bad, message in (("intro A B'", "comes back to B, which has not played yet"), ("intro outro", "no section"),
                         ("A verse", "is not intro, outro or a letter")):
        with pytest.raises(StageError, match=message):
            parse_form(bad, 4)


def test_a_dev_primer_holds_both_streams_where_the_data_has_both():
    """A pack of chord loops, some with a top line: the primer comes from a piece holding both
    streams, its first stretch with both, so a take begins with a melody as well as chords."""
    root, pitch = FIELDS.index("root"), FIELDS.index("pitch")
    none = (1, 1)

    def piece(length, chords_at, notes_at):
        ids = np.ones((length, len(FIELDS)), np.int32)
        ids[chords_at, root], ids[notes_at, pitch] = 5, 7
        return ids

    chords_only = [piece(12, [0, 4, 8], []) for _ in range(3)]
    top_line = piece(20, [0, 10], [12, 13, 14, 15])  # both streams only from event 5 on
    rng = np.random.default_rng(0)
    primers = [dev_primer([*chords_only, top_line], rng, 8, none) for _ in range(40)]
    assert all((p[:, root] != 1).any() and (p[:, pitch] != 1).any() for p in primers)
    assert {p.tobytes() for p in primers} == {top_line[5:13].tobytes()}  # the piece's first such stretch
    alone = dev_primer(chords_only, rng, 8, none)  # no piece has both: a piece's opening
    assert alone.shape == (8, len(FIELDS)) and (alone[:, root] != 1).any()
    assert len(dev_primer(chords_only, rng, 8)) == 8
    # the pieces rate matching's target and the realism figure take: those with a stretch holding both
    assert [p is top_line for p in holding_both([*chords_only, top_line], 8, none)] == [True]
    assert len(holding_both([*chords_only, top_line], 8, None)) == 4


def test_a_missing_primer_stops_before_any_work(trained, tmp_path):
    with pytest.raises(StageError, match="primer nope.mid: file not found"):
        generate(trained, tmp_path, 'generate.primer="nope.mid"')
    assert not (tmp_path / "outputs" / ".tmp").exists()


def test_no_harmony_stands_past_the_hold_limit(trained):
    """With a limit of one beat, the real ensemble must change chord at least every beat: no
    event may carry the chord past it, and the event at the limit must strike another chord."""
    _, runner = trained
    vocab = read_encoded(runner.artifact_dir("encode")).vocab
    tracks = composers(runner, [3, 4], [Section("A", 0, 4)], loop_bars=4, max_events=40)
    for c in tracks:
        c.hold_limit = 12
    compose(EnsembleSampler(trained_parts(runner)[2]), FieldSampler(vocab, SETTINGS), tracks, progress=False)
    for c in tracks:
        events, _ = vocab.decode_events(c.take())
        changes = [e.onset for e in events if e.is_chord] + [events[-1].onset]
        assert max(b - a for a, b in zip(changes, changes[1:])) <= 12


def take_rows(rows):
    """Ids of rows given as (ticks to the next event, root, quality, pitch, duration, velocity) strings."""
    return Vocabulary.closed(4).encode(timed_rows(rows))


def degenerate(rows: int = 200) -> np.ndarray:
    """One event repeated: a stuck 32nd-note melody note over no chord."""
    return take_rows([("1", "-", "-", "60", "1", "2")] * rows)


def moving(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = []
    for bar in range(8):
        root = str(int(rng.choice([0, 5, 7, 9])))
        rows.append(("12", root, "maj", str(60 + int(rng.integers(0, 12))), "12", "2"))
        rows += [("12", "-", "-", str(60 + int(rng.integers(0, 12))), "12", "2") for _ in range(3)]
    return take_rows(rows)


def test_a_degenerate_take_is_redrawn_and_one_that_stays_so_is_flagged_by_name():
    vocab = Vocabulary.closed(4)
    profile = data_profile([vocab.decode_events(moving(s))[0] for s in range(20)], 0.05, 4)

    def sample(indices, draws):  # track 1 recovers on its second take, track 2 never does
        return [{"seq": moving(100 + draw) if (i == 0 and draw) else degenerate(), "seed": draw}
                for i, draw in zip(indices, draws)]
    logs = []
    takes = draw_takes(sample, [0, 1], 3, lambda seq: take_report(seq, vocab, profile), logs.append)
    assert [t["draws"] for t in takes] == [2, 4]
    assert takes[0]["checks"]["failed"] == [] and takes[0]["seed"] == 1
    assert takes[1]["checks"]["failed"] and "short_gap_share" in takes[1]["checks"]["outside"]
    assert logs[0].startswith("track 1: take 1 fails ") and logs[0].endswith("; drawing 1 more")
    (warning,) = [line for line in logs if line.startswith("warning")]
    assert warning.startswith("warning: track 2 is outside the data's range after 4 takes: ")
    assert "share of gaps under a 16th 1.00 (data 0.00-0.00)" in warning
    assert "kept, flagged" in warning


def test_a_take_that_passes_the_checks_but_not_the_data_s_rates_is_redrawn():
    """Every note at the loudest level, where the data plays level 2: nothing the checks see,
    but a listener hears it, and a rate outside the data's range says so."""
    vocab = Vocabulary.closed(4)
    profile = data_profile([vocab.decode_events(moving(s))[0] for s in range(20)], 0.05, 4)
    passing = [s for s in range(20) if not take_report(moving(s), vocab, profile)["failed"]]
    loud = moving(passing[0])
    loud[:, FIELDS.index("velocity")] = vocab.index["velocity"]["3"]
    report = take_report(loud, vocab, profile)
    assert set(report["outside"]) == {"top_velocity_share", "mean_velocity_level"}
    assert "events at the loudest velocity level 1.00 (data 0.00-0.00)" in report["failed"]
    assert report["rates"]["top_velocity_share"] == 1.0

    def sample(indices, draws):
        return [{"seq": loud if draw == 0 else moving(passing[1]), "seed": draw} for draw in draws]
    (take,) = draw_takes(sample, [0], 3, lambda seq: take_report(seq, vocab, profile), lambda *_: None)
    assert take["draws"] == 2 and take["checks"]["failed"] == []


def test_a_failing_track_draws_several_candidates_a_round_and_keeps_the_first_inside():
    """A re-draw round draws `candidates` takes for each failing track; a track stops at its first
    round with a take inside every range, and what it keeps does not depend on other tracks."""
    vocab = Vocabulary.closed(4)
    profile = data_profile([vocab.decode_events(moving(s))[0] for s in range(20)], 0.05, 4)
    passing = {0: {0}, 1: {3, 4}, 2: set()}  # track -> its draws inside: at once, in round 1, never
    asked = []

    def sample(indices, draws):
        asked.append(list(zip(indices, draws)))
        return [{"seq": moving(100) if draw in passing[i] else degenerate(), "seed": (i, draw)}
                for i, draw in zip(indices, draws)]
    logs = []
    takes = draw_takes(sample, [0, 1, 2], 3, lambda seq: take_report(seq, vocab, profile), logs.append, candidates=4)
    assert [t["draws"] for t in takes] == [1, 5, 13]
    assert [t["seed"] for t in takes[:2]] == [(0, 0), (1, 3)] and takes[2]["checks"]["failed"]
    assert asked[1] == [(i, d) for i in (1, 2) for d in (1, 2, 3, 4)] and asked[2] == [(2, d) for d in (5, 6, 7, 8)]
    assert "track 3: 5 takes fail, the nearest " in "\n".join(logs)
    alone = draw_takes(sample, [1], 3, lambda seq: take_report(seq, vocab, profile), lambda *_: None, candidates=4)
    assert alone[0]["seed"] == takes[1]["seed"] and alone[0]["draws"] == takes[1]["draws"]
    assert [round_draws(r, 1) for r in range(3)] == [[0], [1], [2]]  # one candidate: draws numbered as rounds


def test_of_takes_failing_alike_the_one_nearest_the_data_s_ranges_is_kept():
    vocab = Vocabulary.closed(4)
    profile = data_profile([vocab.decode_events(moving(s))[0] for s in range(20)], 0.05, 4)
    passing = [s for s in range(20) if not take_report(moving(s), vocab, profile)["failed"]]

    def loud(share):  # this share of the events at the loudest level, where the data has none
        seq = moving(passing[0])
        seq[: int(len(seq) * share), FIELDS.index("velocity")] = vocab.index["velocity"]["3"]
        return seq
    takes = {0: loud(1.0), 1: loud(0.5), 2: loud(0.75)}
    reports = [take_report(seq, vocab, profile) for seq in takes.values()]
    assert [len(r["failed"]) for r in reports] == [2, 2, 2]
    assert reports[1]["miss"] < reports[2]["miss"] < reports[0]["miss"]

    def sample(indices, draws):
        return [{"seq": takes[draw], "seed": draw} for draw in draws]
    (take,) = draw_takes(sample, [0], 1, lambda seq: take_report(seq, vocab, profile), lambda *_: None, candidates=2)
    assert take["seed"] == 1 and take["draws"] == 3


def test_a_re_draw_round_wider_than_the_sampler_batch_gives_the_same_takes_however_it_is_cut(trained, tmp_path):
    """Candidates beyond the sampler's batch are sampled a batch at a time, each with its own numbers."""
    options = ("generate.tracks=3", "generate.candidates=3", "generate.redraws=1")
    one, _ = generate(trained, tmp_path / "one", *options, "generate.batch_tracks=1")
    three, _ = generate(trained, tmp_path / "three", *options, "generate.batch_tracks=3")
    assert any(t["draws"] > 1 for t in one)  # a round was sampled, wider than a batch of one
    assert [(t["seed"], t["draws"], t["ids"]) for t in one] == [(t["seed"], t["draws"], t["ids"]) for t in three]


def test_the_models_see_no_more_past_events_than_the_context(trained):
    _, runner = trained
    vocab, data, models = trained_parts(runner)
    sampler = EnsembleSampler(models)

    class Recording:  # the real sampler, keeping the windows it is shown
        window, shown = sampler.window, []

        def contexts(self, windows):
            self.shown.append((windows != PAD).all(axis=2).sum(axis=1).max())
            return sampler.contexts(windows)

        def field_probs(self, contexts, rows):
            return sampler.field_probs(contexts, rows)
    recording = Recording()
    tracks = composers(runner, [1, 2], [Section("A", 0, 8)], max_events=20)
    for c in tracks:
        c.seen = 4
    compose(recording, FieldSampler(vocab, SETTINGS), tracks, progress=False)
    assert recording.shown[:6] == [0, 1, 2, 3, 4, 4] and max(recording.shown) == 4 < sampler.window


def run_scripted(composer: Composer, vocab: Vocabulary, choose) -> list[tuple[int, int]]:
    """Drive a composer with no model: `choose(step, field)` names the token wanted, taken when
    the masks allow it, else the first value they allow (an empty mask fails the test)."""
    step = 0
    while not composer.done:
        request, row = composer.request, np.zeros(len(FIELDS), np.int32)
        for j, field in enumerate(FIELDS):
            if not request.draws(j):
                row[j] = request.fixed[j]
                continue
            allowed = np.ones(len(vocab.fields[field]), bool)
            allowed[[PAD, UNK]] = False
            for mask in (request.mask(j, row), vocab.pair_mask(field, row)):
                allowed &= True if mask is None else mask
            assert allowed.any(), f"nothing allowed for {field} at event {step}"
            wanted = vocab.index[field].get(choose(step, field))
            row[j] = wanted if wanted is not None and allowed[wanted] else int(np.flatnonzero(allowed)[0])
        composer.accept(row)
        step += 1
    return [(e.bar, e.position) for e in composer.events]


def test_a_harmony_held_past_its_limit_by_a_copied_loop_still_leaves_a_way_on():
    # The drawn loop is a note, then a C chord held a bar; played again it holds C past the
    # one-bar limit, and the new section's loop must still be drawn (it once had no bar to go to).
    vocab = Vocabulary.closed(4)

    def choose(step, field):
        chord = step > 0
        return {"bar": "1" if chord else "0", "position": "0", "root": "0" if chord else "-",
                "quality": "maj" if chord else "-", "pitch": "-" if chord else "60",
                "duration": "-" if chord else "12", "velocity": "1"}[field]
    for advances in ((0, 1), (0, 1, 2, 3, 4)):
        composer = Composer(parse_form("A:4 B:2", 2), 2, "4/4", vocab, np.zeros((0, len(FIELDS)), np.int32),
                            np.random.default_rng(0), 0.0, 0.0, {0, 6}, 48, advances=advances)
        placed = run_scripted(composer, vocab, choose)
        assert {4, 5} <= {bar for bar, _ in placed}  # B is not empty
