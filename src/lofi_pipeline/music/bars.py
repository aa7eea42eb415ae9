"""Where the beats and the bar lines of a performed piece are. A performance recorded against
its file's beat can sit a 16th or an 8th off it throughout (half of POP909 does): the beat is
where the most notes strike. The file's time signatures say how long its
bars are (normalised by the token format); a file with one metre throughout is often not
aligned with its bar lines (a pickup written from tick 0, a performance recorded from
anywhere), so its downbeat is found from the music: the beat of the bar on which the harmony
changes, each change weighted by how long the new chord lasts (harmony changes on the
downbeat and holds), and the file's own bar lines when no beat stands out."""
from __future__ import annotations

import numpy as np

from .piece import GRID, ChordChange, NoteEvent
from .token_format import DEFAULT_METRE, bar_ticks, normalise_metre

OUTWEIGH = 1.1  # another downbeat must explain this much more than the file's own to replace it
LONGEST_WEIGHT_BARS = 2  # a chord held longer counts no more than one held this long


def beat_offset(onsets: np.ndarray, notes_struck: np.ndarray, step: int) -> int:
    """Grid ticks to add to every onset so that the beat falls where the most notes strike
    (onsets on the piece's grid of `step` ticks; the file's own beat unless another place in
    the beat clearly holds more)."""
    score = np.bincount((onsets % GRID) // step, weights=notes_struck, minlength=GRID // step)
    best = int(np.argmax(score))
    return (GRID - best * step) % GRID if score[best] > OUTWEIGH * score[0] else 0


def downbeat(chords: list[ChordChange], melody: list[NoteEvent], bar: int) -> int:
    """The offset (grid ticks, on a quarter-note beat, below `bar`) of the bar lines that the
    chord changes (or, with no chords, the melody notes) fall on most, weighted by length."""
    if chords:
        onsets = np.array([c.onset for c in chords])
        weights = np.minimum(np.diff(np.append(onsets, onsets[-1] + bar)), LONGEST_WEIGHT_BARS * bar)
    else:
        onsets = np.array([n.onset for n in melody])
        weights = np.array([n.duration for n in melody])
    if not len(onsets):
        return 0
    on_beat = onsets % GRID == 0
    score = np.bincount((onsets[on_beat] % bar) // GRID, weights=weights[on_beat], minlength=bar // GRID)
    best = int(np.argmax(score))
    return best * GRID if score[best] > OUTWEIGH * score[0] else 0


def metre_segments(signatures: list[tuple[int, int, int]], chords: list[ChordChange], melody: list[NoteEvent],
                   first: int) -> list[list]:
    """[start tick, metre] of each stretch of bars, the first starting at or before `first`.
    `signatures` are the file's (tick, numerator, denominator), ticks already on the piece's grid."""
    segments: list[list] = []
    for tick, numerator, denominator in sorted(signatures):
        metre, _ = normalise_metre(numerator, denominator)
        if segments and segments[-1][0] == tick:
            segments[-1][1] = metre
        elif not segments or segments[-1][1] != metre or (tick - segments[-1][0]) % bar_ticks(metre):
            # A new metre, or the same one off the running bar lines (an odd 2/4 bar in 4/4
            # music, normalised to 4/4): the bar before it is short, the bars after it true.
            segments.append([tick, metre])
    if not segments:
        segments = [[0, DEFAULT_METRE]]
    if len(segments) == 1:  # one metre: where its bars start is the music's to say
        segments[0][0] = downbeat(chords, melody, bar_ticks(segments[0][1]))
    start, metre = segments[0]
    bar = bar_ticks(metre)
    segments[0][0] = start - -(-(start - first) // bar) * bar if start > first else start
    return segments
