"""The step experts: the steps counted from the training melodies and chord roots, a field's
distribution reshaped without moving the chance of a value, the weight fitted on dev (near 0
where the model already knows the steps), and the sampler drawing with it."""
from dataclasses import replace

import numpy as np

from lofi_pipeline.core.config import GenerateConfig
from lofi_pipeline.model import step_experts
from lofi_pipeline.model.calibration import sampling_settings
from lofi_pipeline.model.sampling import FieldSampler
from lofi_pipeline.music.token_format import FIELDS, NONE, PAD, UNK, Vocabulary

VOCAB = Vocabulary.closed(4)
PITCH = FIELDS.index("pitch")
NUMBERS = step_experts.numbers(VOCAB, "pitch")
ROOTS = step_experts.numbers(VOCAB, "root")
STEP_SHARES = {0: 0.15, 1: 0.2, -1: 0.2, 2: 0.15, -2: 0.15, 4: 0.05, -4: 0.05, 7: 0.025, -7: 0.025}


def pitch_id(p: int) -> int:
    return VOCAB.index["pitch"][str(p)]


def walk(rng, notes: int, start: int = 67) -> list[int]:
    """A melody moving by STEP_SHARES, kept between 55 and 79."""
    steps, shares = list(STEP_SHARES), list(STEP_SHARES.values())
    out = [start]
    for _ in range(notes - 1):
        nxt = out[-1] + steps[rng.choice(len(steps), p=shares)]
        out.append(nxt if 55 <= nxt <= 79 else out[-1])
    return out


def rows(pitches: list[int | None]) -> np.ndarray:
    """Event rows holding these melody pitches (None: an event with no note); the other fields stay 0."""
    out = np.zeros((len(pitches), len(FIELDS)), np.int64)
    out[:, PITCH] = [VOCAB.index["pitch"][NONE] if p is None else pitch_id(p) for p in pitches]
    return out


def test_the_steps_are_counted_from_the_melodies_and_a_piece_without_one_gives_none():
    rng = np.random.default_rng(0)
    pieces = [rows(walk(rng, 200)) for _ in range(5)]
    steps = np.exp(step_experts.fit_steps(pieces, VOCAB, "pitch"))
    assert abs(steps.sum() - 1) < 1e-4
    assert steps[step_experts.MAX_STEP + 1] > 0.15 and steps[step_experts.MAX_STEP + 3] < 0.02
    assert step_experts.fit_steps([rows([None] * 50)], VOCAB, "pitch") is None
    # Notes apart count as a step from one to the next, whatever events without a note lie between.
    apart = np.exp(step_experts.fit_steps([rows([60, None, None, 72])], VOCAB, "pitch"))
    assert apart[step_experts.MAX_STEP + 12] == apart.max()


def test_the_expert_reshapes_which_note_but_not_the_chance_of_one():
    rng = np.random.default_rng(1)
    steps = step_experts.fit_steps([rows(walk(rng, 2000))], VOCAB, "pitch")
    p = rng.dirichlet(np.ones(len(NUMBERS)), size=3)
    p[:, [PAD, UNK]] = 0
    p /= p.sum(axis=1, keepdims=True)
    previous = step_experts.previous_values(np.stack([rows([64, None]), rows([None, 67]), rows([None, None])]), NUMBERS,
                                            "pitch")
    assert previous.tolist() == [64, 67, -1]
    q = step_experts.reweigh(p, previous, steps, 1.0, NUMBERS, "pitch")
    note = NUMBERS >= 0
    assert np.allclose(q.sum(axis=1), 1) and np.allclose((q * note).sum(1), (p * note).sum(1))
    assert np.allclose(q[:, ~note], p[:, ~note]) and np.allclose(q[2], p[2])  # no previous note: as it was
    near = note & (np.abs(NUMBERS - 64) <= 2)
    assert q[0, near].sum() > 3 * p[0, near].sum()


def test_the_weight_is_fitted_where_it_helps_and_near_zero_where_the_model_knows_the_steps():
    rng = np.random.default_rng(2)
    melody = walk(rng, 3001)
    steps = step_experts.fit_steps([rows(walk(np.random.default_rng(3), 5000))], VOCAB, "pitch")
    windows = np.stack([rows([None, p]) for p in melody[:-1]])  # each event's past: its previous note
    previous, targets = np.array(melody[:-1]), np.array([pitch_id(p) for p in melody[1:]])
    note = NUMBERS >= 0
    blind = np.where(note & (np.abs(NUMBERS[None, :] - previous[:, None]) <= 12), 1.0, 0.0)
    blind /= blind.sum(axis=1, keepdims=True)  # any note within an octave, alike
    fitted = step_experts.fit_weight(blind, windows, targets, steps, VOCAB, "pitch")
    assert fitted["weight"] > 0.5 and fitted["dev_nll"] < fitted["dev_nll_without"] - 0.3
    knowing = step_experts.reweigh(blind, previous, steps, 1.0, NUMBERS, "pitch")  # already the steps' shape
    assert step_experts.fit_weight(knowing, windows, targets, steps, VOCAB, "pitch")["weight"] < 0.25
    assert step_experts.fit_weight(blind, windows, targets, None, VOCAB, "pitch")["weight"] == 0.0


def test_roots_move_by_pitch_classes_and_a_chord_going_on_is_no_root():
    root_rows = np.zeros((6, len(FIELDS)), np.int64)
    root_rows[:, FIELDS.index("root")] = [VOCAB.index["root"][v] for v in ("0", NONE, "7", "0", "5", "0")]
    log_steps = step_experts.fit_steps([root_rows], VOCAB, "root")
    shares = np.exp(log_steps)
    assert len(shares) == 12 and abs(shares.sum() - 1) < 1e-4  # log-probabilities kept to 5 decimals
    assert shares[7] == shares[5] == shares.max()  # 0 -> 7 -> 0 -> 5 -> 0: up a fifth twice, up a fourth twice
    assert step_experts.previous_values(root_rows[None, :2], ROOTS, "root").tolist() == [0]


def test_the_sampler_draws_steps_with_the_expert_and_the_key_overrides_its_weight():
    rng = np.random.default_rng(4)
    steps = step_experts.fit_steps([rows(walk(rng, 3000))], VOCAB, "pitch")
    calibration = {"step_experts": {"pitch": {"steps": steps, "weight": 1.0, "fitted_weight": 0.5},
                                    "root": {"steps": None, "weight": 0.0, "fitted_weight": 0.0}}}
    generate = GenerateConfig(repetition_window=0)
    flat = np.where(NUMBERS >= 48, 1.0, 0.0)
    flat /= flat.sum()
    history = rows([64, None])

    def near_share(settings) -> float:
        sampler, draws = FieldSampler(VOCAB, settings), np.random.default_rng(5)
        pitches = [NUMBERS[sampler.draw_field("pitch", flat, draws, np.zeros(len(FIELDS), np.int64), history)]
                   for _ in range(400)]
        return float(np.mean(np.abs(np.array(pitches) - 64) <= 2))
    auto = sampling_settings(generate, calibration)
    assert set(auto["step_experts"]) == {"pitch"}  # an expert without steps is not drawn with
    off = sampling_settings(replace(generate, step_experts=0.0), calibration)
    assert off["step_experts"] == {}
    assert near_share(auto) > 0.5 > 4 * near_share(off)


def test_a_note_redrawn_between_kept_ones_leans_into_the_note_that_follows():
    """The previous note 64, the kept note after it 72: the new note is drawn near both (a step
    from 64 and a step into 72), not near 64 alone; with no note after it, near 64 alone."""
    rng = np.random.default_rng(4)
    steps = step_experts.fit_steps([rows(walk(rng, 3000))], VOCAB, "pitch")
    settings = sampling_settings(GenerateConfig(repetition_window=0, step_experts=1.0),
                                 {"step_experts": {"pitch": {"steps": steps, "weight": 1.0, "fitted_weight": 1.0}}})
    flat = np.where(NUMBERS >= 48, 1.0, 0.0)
    flat /= flat.sum()
    moved = step_experts.reweigh_towards(flat, 72, steps, 1.0, NUMBERS, "pitch")
    assert np.isclose(moved.sum(), 1.0) and moved[pitch_id(70)] > 10 * moved[pitch_id(60)]

    def drawn(following) -> np.ndarray:
        sampler, draws = FieldSampler(VOCAB, settings), np.random.default_rng(5)
        return np.array([NUMBERS[sampler.draw_field("pitch", flat, draws, np.zeros(len(FIELDS), np.int64),
                                                    rows([64]), following=following)] for _ in range(400)])
    between, after_64 = drawn(pitch_id(72)), drawn(None)
    assert np.median(np.abs(between - 72)) < np.median(np.abs(after_64 - 72)) - 2
    assert np.mean(between <= 63) < np.mean(after_64 <= 63) / 2
