import dataclasses
import io

import mido
import numpy as np
import pytest

from helpers import ROOT, timed_rows
from lofi_pipeline.core.config import load_config
from lofi_pipeline.music.arrangement import arrange_track
from lofi_pipeline.music.checks import DataProfile
from lofi_pipeline.music.harmonise import voice_chord
from lofi_pipeline.music.humanise import humanise, played_swing, swing_beats
from lofi_pipeline.music.parts import Part
from lofi_pipeline.music.token_format import tokens_to_events

TOKENS = timed_rows([("12", "0", "maj", "-", "-", "2"), ("6", "-", "-", "72", "6", "2"),
                     ("6", "-", "-", "74", "6", "2"), ("12", "5", "maj", "-", "-", "2"),
                     ("<unk>", "-", "-", "-", "-", "2"), ("24", "7", "maj", "-", "-", "2"),
                     ("4", "-", "-", "67", "4", "2"), ("4", "-", "-", "69", "4", "2"),
                     ("4", "-", "-", "71", "4", "2"), ("24", "0", "maj", "-", "-", "2")] * 6)
SECTIONS = [["intro", 0, 2], ["A", 2, 6]]  # an intro of two bars, then the band


def cfg(*overrides):
    return load_config(ROOT / "lofi.toml", None, list(overrides)).arrange


def arranged(seed=5, bars=8, *overrides):
    sections = [["intro", 0, 2], ["A", 2, bars - 2]]
    return arrange_track(TOKENS, 12, bars, seed, cfg(*overrides), "Test", sections=sections)


def test_decoding_drops_unknown_tokens_and_counts_them():
    events, dropped = tokens_to_events(TOKENS[:6])
    assert dropped == 1 and len(events) == 5
    assert [e.onset for e in events] == [0, 12, 18, 24, 36]


def test_the_keys_and_bass_play_the_generated_root_and_quality():
    """C6 and Am7 share their notes; a generated C6 is voiced from C, and the bass plays C."""
    c6 = timed_rows([("48", "0", "6", "-", "-", "2"), ("48", "9", "m7", "-", "-", "2")] * 4)
    _, parts, _ = arrange_track(c6, 12, 8, 5, cfg('arrange.key="C"'), "Test")
    bass = sorted((round(s), p % 12) for s, _, p, _ in parts[2].notes if round(s) % 4 == 0 and abs(s - round(s)) < 0.1)
    assert [pc for _, pc in bass[:4]] == [0, 9, 0, 9]  # C6, then Am7: two harmonies, each from its root
    lowest = {round(s): min(p for s2, _, p, _ in parts[0].notes if abs(s2 - s) < 0.2) for s, _, _, _ in parts[0].notes}
    assert lowest[0] % 12 == 0 and lowest[4] % 12 == 9


def test_chord_helpers():
    assert voice_chord([0, 4, 7], 0, extensions=True) == sorted(voice_chord([0, 4, 7], 0, True))
    assert {p % 12 for p in voice_chord([0, 4, 7], 0, True)} == {0, 2, 4, 7, 11}
    assert {p % 12 for p in voice_chord([9, 0, 4], 9, True)} == {9, 0, 4, 7, 11}
    assert swing_beats(0.5, 0.6) == pytest.approx(0.6) and swing_beats(1.0, 0.6) == 1.0


def test_every_part_is_there_on_its_channel_with_a_lofi_tempo():
    data, parts, info = arranged()
    mf = mido.MidiFile(file=io.BytesIO(data))
    channels = {m.channel for t in mf.tracks for m in t if m.type == "note_on"}
    assert {0, 1, 2, 9} <= channels
    programs = {m.channel: m.program for t in mf.tracks for m in t if m.type == "program_change"}
    assert programs[0] == 4 and programs[9] == 32 and programs[2] == 33
    tempo = [m for m in mf.tracks[0] if m.type == "set_tempo"][0]
    assert 70 <= info["tempo_bpm"] <= 90 and round(mido.tempo2bpm(tempo.tempo)) == info["tempo_bpm"]
    assert all(info["notes_per_part"][p] > 0 for p in ("Keys", "Bass", "Drums", "Lead"))


def test_drums_are_boom_bap_with_a_fill_at_the_phrase_end():
    _, parts, _ = arranged(5, 12, "arrange.swing=0.5", "arrange.humanize_ms=0")
    drums = next(p for p in parts if p.name == "Drums")
    snares = [round(s, 2) for s, _, pitch, _ in drums.notes if pitch == 38]
    assert 8 + 1 in snares and 8 + 3 in snares  # backbeat in bar 3 (after a 2-bar intro)
    toms = [s for s, _, pitch, _ in drums.notes if pitch in (45, 47)]
    assert toms and all(39 <= s < 40 for s in toms)  # the fill ends the 8th bar after the intro


def test_length_and_rhythmic_variety():
    data, parts, info = arranged(bars=8)
    mf = mido.MidiFile(file=io.BytesIO(data))
    assert mf.length == pytest.approx(8 * 4 * 60 / info["tempo_bpm"], abs=0.3)
    durations = {round(d, 2) for p in parts for _, d, _, _ in p.notes}
    assert len(durations) > 3


def test_same_seed_same_bytes_other_seed_other_music():
    assert arranged(seed=1)[0] == arranged(seed=1)[0]
    assert arranged(seed=1)[0] != arranged(seed=2)[0]


def test_swing_and_humanising_move_offbeats():
    _, straight, _ = arranged(3, 8, "arrange.swing=0.5", "arrange.humanize_ms=0", "arrange.velocity_jitter=0")
    _, swung, _ = arranged(3, 8, "arrange.swing=0.62", "arrange.humanize_ms=0", "arrange.velocity_jitter=0")
    def hats(parts):
        return [s for s, _, p, _ in parts[3].notes if p == 42]
    off_straight = [s % 1 for s in hats(straight) if abs(s % 1 - 0.5) < 0.2]
    off_swung = [s % 1 for s in hats(swung) if abs(s % 1 - 0.6) < 0.2]
    assert np.allclose(off_straight, 0.5) and np.allclose(off_swung, 0.62)


def test_arranged_file_opens_in_music21_and_pretty_midi(tmp_path):
    import pretty_midi
    from music21 import converter
    data, _, _ = arranged()
    path = tmp_path / "t.mid"
    path.write_bytes(data)
    pm = pretty_midi.PrettyMIDI(str(path))
    assert any(i.is_drum for i in pm.instruments) and len(pm.instruments) >= 4
    score = converter.parse(str(path))
    assert len(score.parts) >= 3


def test_a_fixed_key_is_honoured():
    _, _, info = arranged(4, 8, 'arrange.key="Eb"')
    assert info["key"] in ("Eb", "Ebm")


def keys_chords(parts):
    """(start, pitch-class set) of each chord the keys strike, in order."""
    by_start = {}
    for start, _, pitch, _ in parts[0].notes:
        by_start.setdefault(round(start), set()).add(pitch % 12)
    return sorted(by_start.items())


MELODY_ONLY = timed_rows([("12", "0", "maj", "64", "12", "2")] + [
    ("12", "-", "-", str(60 + (3 * i) % 12 + (i // 4) % 3 * 2), "12", "2") for i in range(1, 64)])
DATA = DataProfile(pieces=10, quantile=0.025, ranges={}, pieces_inside=1.0, context_events=None, melody_share=0.6,
                   has_chords=True, hold_limit_ticks=96)


def test_a_long_melody_only_stretch_still_gets_moving_harmony():
    """A chord, then 16 bars of melody alone: the keys must not hold that chord for 16 bars."""
    cfg_ = cfg("arrange.swing=0.5", "arrange.humanize_ms=0")
    _, parts, info = arrange_track(MELODY_ONLY, 12, 16, 5, cfg_, "Test", DATA)
    chords = keys_chords(parts)
    starts = [s for s, _ in chords] + [64]
    assert max(b - a for a, b in zip(starts, starts[1:])) <= 8  # never past the data's 2-bar limit
    assert len({frozenset(pcs) for _, pcs in chords}) >= 3
    assert info["harmonised_bars"] == 15 and info["harmony_changes"] == len(chords)
    bass_roots = {pitch % 12 for _, _, pitch, _ in parts[2].notes}
    assert len(bass_roots) >= 3  # the bass follows the keys
    longer = dataclasses.replace(DATA, hold_limit_ticks=48 * 20)
    _, _, before = arrange_track(MELODY_ONLY, 12, 16, 5, cfg_, "Test", longer)
    assert before["harmonised_bars"] == 0 and before["harmony_changes"] == 1  # no limit reached: one chord


def test_the_lead_plays_the_learned_melody_where_the_data_has_one():
    _, parts, info = arrange_track(MELODY_ONLY, 12, 16, 5, cfg("arrange.swing=0.5", "arrange.humanize_ms=0"),
                                   "Test", DATA, [["intro", 0, 2], ["A", 2, 14]])
    assert info["lead"] == "learned melody"
    # Every melody note from where the lead joins (halfway through the 2-bar intro), on its beat.
    assert [round(start, 6) for start, _, _, _ in parts[1].notes] == list(range(4, 64))
    chords_only = [row[:5] + ("-", "-", "2") for row in TOKENS]
    _, _, info = arrange_track(chords_only, 12, 8, 5, cfg(), "Test", DATA)
    assert info["lead"] == "chord tones (this take has no melody)"
    _, _, info = arrange_track(TOKENS, 12, 8, 5, cfg(), "Test", dataclasses.replace(DATA, melody_share=0.0))
    assert info["lead"] == "chord tones (the data has no melody)"


def test_where_a_take_leaves_the_melody_out_for_bars_the_lead_plays_chord_tones_there():
    tune = [("12", "0", "maj", "64", "12", "2")] + [("12", "-", "-", str(62 + i % 5), "12", "2") for i in range(7)]
    chords = [("48", str(r), "maj", "-", "-", "2") for r in (5, 7, 9, 0, 5, 7)]
    _, parts, info = arrange_track(timed_rows(tune + chords), 12, 8, 5,
                                   cfg("arrange.swing=0.5", "arrange.humanize_ms=0"),
                                   "Test", DATA)
    assert info["lead"] == "learned melody, chord tones in 6 bars without it"
    lead_bars = {int(start // 4) for start, _, _, _ in parts[1].notes}
    assert {1} <= lead_bars and len(lead_bars & set(range(2, 8))) >= 3


@pytest.mark.parametrize("metre, bar_beats", [("4/4", 4), ("3/4", 3)])
def test_the_midi_follows_the_form_and_the_metre(metre, bar_beats):
    """intro 2 | A 4 | A' 4 | outro 2: the file lasts those 12 bars in the take's metre, the drums
    play from the first A to the outro and fill into each new section, the bass rests in the
    intro and outro, and the file's time signature is the take's."""
    rows = timed_rows([("12", "0", "maj", "72", "12", "2"), ("12", "-", "-", "74", "12", "2")] * 72, metre)
    sections = [["intro", 0, 2], ["A", 2, 4], ["A'", 6, 4], ["outro", 10, 2]]
    data, parts, info = arrange_track(rows, 12, None, 3, cfg("arrange.swing=0.5", "arrange.humanize_ms=0"), "Test",
                                      DATA, sections, 4)
    mf = mido.MidiFile(file=io.BytesIO(data))
    seconds_per_bar = bar_beats * 60 / info["tempo_bpm"]
    assert info["bars"] == 12 and mf.length == pytest.approx(12 * seconds_per_bar, abs=0.3)
    (signature,) = [m for m in mf.tracks[0] if m.type == "time_signature"]
    assert f"{signature.numerator}/{signature.denominator}" == metre == info["metre"]
    drum_bars = {int(s // bar_beats) for s, _, _, _ in parts[3].notes}
    assert drum_bars == set(range(2, 10))
    toms = {int(s // bar_beats) for s, _, p, _ in parts[3].notes if p in (45, 47)}
    assert toms == {5, 9}  # into A' and into the outro
    assert {int(s // bar_beats) for s, _, _, _ in parts[2].notes} <= set(range(2, 10))


def test_the_midi_file_shows_a_daw_its_parts_sections_and_chords():
    """Named tracks, a key signature, a marker where each section starts, and a chord-symbol
    track that lists the arranged harmony (transposed to the track's key) without sounding."""
    data, parts, info = arranged(5, 8, 'arrange.key="D"')
    mf = mido.MidiFile(file=io.BytesIO(data))
    names = [next(m.name for m in t if m.type == "track_name") for t in mf.tracks]
    assert names == ["Test", "Keys", "Lead", "Bass", "Drums", "Chords"]
    conductor = mf.tracks[0]
    assert [m.key for m in conductor if m.type == "key_signature"] == [info["key"]] and info["key"] == "D"
    ticks, markers = 0, []
    for m in conductor:
        ticks += m.time
        if m.type == "marker":
            markers.append((ticks / mf.ticks_per_beat, m.text))
    assert markers == [(0.0, "intro"), (8.0, "A")]  # the A section starts at bar 3 of 4/4
    chords = mf.tracks[-1]
    assert not [m for m in chords if not m.is_meta]  # the chord track sounds nothing
    symbols = [m.text for m in chords if m.type == "text"]
    assert len(symbols) == info["harmony_changes"] and symbols[0] == "D"  # the source's C, in D
    assert set(symbols) <= {"D", "G", "A", "Em", "Bm", "F#m"}
    conductor_end = sum(m.time for m in conductor) / mf.ticks_per_beat * 60 / info["tempo_bpm"]
    assert conductor_end == pytest.approx(8 * 4 * 60 / info["tempo_bpm"])  # the file lasts its 8 bars


@pytest.mark.parametrize("played", [0.5, 0.55, 0.62])
def test_a_drummer_who_swings_is_not_swung_twice(played):
    """The learned drums carry their drummer's feel: swung to the setting on average, whatever
    the drummer played; parts without their own timing get the setting's warp as before."""
    hats = [b + f for b in range(8) for f in (0.0, played)]
    drums = Part("Drums", 9, 0, performed=True)
    drums.notes = [(t, 0.1, 42, 80) for t in hats]
    keys = Part("Keys", 0, 0)
    keys.notes = [(b + f, 0.25, 60, 80) for b in range(8) for f in (0.0, 0.5)]
    humanise([drums, keys], 90.0, 0.58, 0.0, 0, np.random.default_rng(0))
    assert played_swing([n[0] for n in drums.notes]) == pytest.approx(0.58, abs=1e-6)
    assert played_swing([n[0] for n in keys.notes]) == pytest.approx(0.58, abs=1e-6)
    assert all(n[0] % 1.0 == pytest.approx(0.0, abs=1e-9) or n[0] % 1.0 > 0.5 for n in drums.notes)
