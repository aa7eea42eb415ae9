"""A track's form, as a produced lo-fi track has one: sections built from an N-bar loop (intro,
A, A', B, A'', ..., outro). A letter's first section plays a new loop and then that loop again,
varied; a primed letter (A', A'') comes back to that letter's loop, varied; the intro plays the
opening bars of the first loop, the outro its opening bars again, varied."""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..core.errors import StageError

# The auto form cycles through these letters, one section each: the song form AABA, then a
# second bridge.
AUTO_LETTERS = ("A", "A", "B", "A", "C", "A", "B", "A")
LOOPING_SHARE = 0.5  # the data loops where its loopier pieces repeat a loop's harmony at least this often
LOFI_LOOP_BARS = (2, 4, 8)
LABEL = re.compile(r"^(intro|outro|[A-Z]'*)(?::(\d+))?$")


@dataclass(frozen=True)
class Section:
    label: str  # "intro", "outro", or a letter with primes: "A", "A'", "B"
    start: int  # its first bar (the track's bars count from 0)
    bars: int

    @property
    def letter(self) -> str | None:
        return None if self.label in ("intro", "outro") else self.label.rstrip("'")

    @property
    def end(self) -> int:
        return self.start + self.bars


def form_string(sections: list[Section]) -> str:
    """'intro 2 | A 8 | A' 8 | B 8 | A'' 8 | outro 4'"""
    return " | ".join(f"{s.label} {s.bars}" for s in sections)


def intro_bars(loop_bars: int) -> int:
    """An intro is half a loop, at least a bar and at most 4: a quote, not a section."""
    return min(max(1, loop_bars // 2), 4)


def loop_length(data_loop_bars: int, data_repeat_share: float) -> int:
    """A track's loop, in bars: the data's where its pieces loop (2, 4 or 8 bars: a one-bar loop
    is played as two), else 4. Lo-fi is loop music whatever it learned from."""
    if data_repeat_share < LOOPING_SHARE:
        return 4
    return min(max(data_loop_bars, LOFI_LOOP_BARS[0]), LOFI_LOOP_BARS[-1])


def variation_share(setting: str | float, data_repeat_share: float) -> float:
    """The share of a repeated loop's bars drawn afresh: none for "loop" (the harmony repeats,
    the melody varies), as often as the data's loopier pieces do not repeat for "data", or the
    number given."""
    if setting == "loop":
        return 0.0
    if setting == "data":
        return 1.0 - data_repeat_share
    return float(setting)


def _placed(labelled: list[tuple[str, int]]) -> list[Section]:
    sections, start = [], 0
    for label, bars in labelled:
        sections.append(Section(label, start, bars))
        start += bars
    return sections


def auto_form(bars: int, loop_bars: int) -> list[Section]:
    """An intro (`intro_bars`), sections of two loops each (AABA, then a second bridge), and an
    outro of a loop and whatever bars are left; a track too short for that is one section."""
    n = loop_bars
    intro = intro_bars(n)
    loops = (bars - intro - n) // n
    if loops < 2:
        return [Section("A", 0, bars)]
    sizes = [2] * (loops // 2)
    sizes[-1] += loops % 2  # an odd loop goes to the last section
    seen: dict[str, int] = {}
    labelled = [("intro", intro)]
    for k, size in enumerate(sizes):
        letter = AUTO_LETTERS[k % len(AUTO_LETTERS)]
        labelled.append((letter + "'" * seen.get(letter, 0), size * n))
        seen[letter] = seen.get(letter, 0) + 1
    labelled.append(("outro", bars - intro - loops * n))
    return _placed(labelled)


def parse_form(form: str, loop_bars: int) -> list[Section]:
    """Sections from a form such as "intro A A' B A' outro" or "intro:2 A:8 B:8 A':8 outro:4"
    (bars default to `intro_bars` for the intro, a loop for the outro and two loops otherwise)."""
    labelled, first_seen = [], set()
    for token in form.split():
        match = LABEL.match(token)
        if not match:
            raise StageError(f"config key generate.form: {token!r} is not intro, outro or a letter with primes "
                             "(A, A', B...), each with an optional :BARS")
        label, bars = match.group(1), match.group(2)
        default = {"intro": intro_bars(loop_bars), "outro": loop_bars}.get(label, 2 * loop_bars)
        letter = label.rstrip("'")
        if label not in ("intro", "outro"):
            if label != letter and letter not in first_seen:
                raise StageError(f"config key generate.form: {label} comes back to {letter}, which has not "
                                 "played yet")
            first_seen.add(letter)
        labelled.append((label, int(bars) if bars else default))
    if not first_seen:
        raise StageError(f"config key generate.form: {form!r} has no section of its own (A, B, ...)")
    if any(bars < 1 for _, bars in labelled):
        raise StageError(f"config key generate.form: {form!r} has a section of no bars")
    return _placed(labelled)


def plan_form(form: str, bars: int, loop_bars: int) -> list[Section]:
    """The sections of one track: `form` is "auto" (from the track's length in bars) or a form."""
    return auto_form(bars, loop_bars) if form == "auto" else parse_form(form, loop_bars)
