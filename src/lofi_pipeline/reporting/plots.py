"""The figures a person looks at: a track's piano roll, the members' learning curves, and the
music statistics' histograms. Each returns PNG bytes (matplotlib, no display)."""
from __future__ import annotations

import io

import numpy as np

from ..music.drum_format import CLASSES, drum_class
from ..music.midi_io import read_with_symusic
from ..music.piece import PITCH_NAMES
from ..music.statistics import DURATION_BINS_BEATS


def _figure(width: float, height: float, columns: int = 1):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt.subplots(1, columns, figsize=(width, height), dpi=100)


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def piano_roll(midi: bytes, title: str, marks: list[tuple[float, str]] = ()) -> bytes:
    """Every pitched track of a MIDI file as bars over time (seconds), and below it a kit lane:
    each drum hit on its class's row, so a fill, the drop and a groove's repeats show; a line
    and a label where each of `marks` (seconds, label: the sections) starts."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    raw = read_with_symusic(midi)
    seconds_per_tick = 60.0 / (raw.tempos[0, 1] if len(raw.tempos) else 120.0) / raw.ticks_per_beat
    tracks = [t for t in raw.tracks if len(t.notes)]
    kit = [t for t in tracks if t.is_drum]
    fig, (ax, lane) = plt.subplots(2, 1, figsize=(11, 5.6), dpi=100, sharex=True,
                                   gridspec_kw={"height_ratios": [3, 1.3]})
    for i, track in enumerate(tracks):
        onset, duration, pitch = track.notes[:, 0], track.notes[:, 1], track.notes[:, 2]
        if track.is_drum:
            rows = np.array([CLASSES.index(drum_class(int(p)) or "other") for p in pitch])
            lane.scatter(onset * seconds_per_tick, rows, s=6 + track.notes[:, 3] / 8, color=f"C{i}", marker="|")
            continue
        ax.barh(pitch, np.maximum(duration * seconds_per_tick, 0.03), left=onset * seconds_per_tick, height=0.8,
                color=f"C{i}", alpha=0.8, label=track.name or f"track {i + 1}")
    for seconds, label in marks:
        for axis in (ax, lane):
            axis.axvline(seconds, color="#555", linewidth=0.8, linestyle=":")
        ax.text(seconds, 1.0, f" {label}", transform=ax.get_xaxis_transform(), va="bottom", fontsize=8)
    ax.set_ylabel("MIDI pitch")
    ax.set_title(title, pad=14 if marks else 6)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize=8, ncol=4)
    ax.grid(alpha=0.2)
    lane.set_yticks(range(len(CLASSES)), [c.replace("_", " ") for c in CLASSES], fontsize=7)
    lane.set_ylim(-0.6, len(CLASSES) - 0.4)
    lane.set_ylabel("kit" if kit else "kit (no drums)", fontsize=8)
    lane.set_xlabel("seconds")
    lane.grid(alpha=0.2)
    return _png(fig)


def learning_curves(histories: dict[str, list[dict]]) -> bytes:
    """Train (dashed) and dev (solid) loss at each dev check, one colour per member."""
    fig, ax = _figure(8, 4.5)
    for i, (name, rows) in enumerate(histories.items()):
        epochs = [r["epoch"] + 1 for r in rows]
        ax.plot(epochs, [r["loss"] for r in rows], "--", color=f"C{i}", label=f"{name} train")
        ax.plot(epochs, [r["val_loss"] for r in rows], "-", color=f"C{i}", label=f"{name} dev")
    ax.set_xlabel("dev check (every train.check_every optimiser steps)")
    ax.set_ylabel("loss (NLL per event, all fields, nats)")
    ax.set_title("Learning curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def statistics_histograms(stats: dict) -> bytes:
    """Pitch-class and melody-duration histograms, generated beside the reference pieces."""
    fig, axes = _figure(11, 3.4, columns=2)
    for ax, key, labels, title in (
            (axes[0], "pitch_class_histogram", PITCH_NAMES, "pitch classes (C major / A minor reference)"),
            (axes[1], "duration_histogram", [f"{b:.2g}" for b in DURATION_BINS_BEATS],
             "melody-note durations (beats, up to)")):
        n = len(stats["generated"][key])
        x = np.arange(n)
        ax.bar(x - 0.2, stats["reference"][key], 0.4, label=stats["reference_label"])
        ax.bar(x + 0.2, stats["generated"][key], 0.4, label="generated")
        ax.set_xticks(x, labels[:n], fontsize=7, rotation=45 if n > 12 else 0)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    return _png(fig)
