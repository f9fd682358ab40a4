"""The notebooks' plots: a log-mel spectrogram, length histograms with Whisper's limits, training curves
and a metrics bar chart.

Each function returns a closed matplotlib ``Figure``: a notebook shows it exactly once by leaving it as
the cell's last value (or with ``display(fig)``), and tests can save it without a screen.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from helpers.metrics import SCORE_NAMES
from helpers.preparation import MAX_AUDIO_SECONDS

MEL_FRAMES_PER_SECOND = 100  # Whisper's feature extractor: hop of 160 samples at 16 kHz
MAX_LABEL_TOKENS = 448  # whisper's max_target_positions: the decoder cannot attend further
METRICS = SCORE_NAMES  # the bars' order: the course's two, then ours


def _done(fig: Figure) -> Figure:
    fig.tight_layout()
    plt.close(fig)  # the notebook displays the returned figure once; pyplot must not show it again
    return fig


def plot_log_mel(features: np.ndarray, duration: float | None = None, title: str = "Log-mel spectrogram") -> Figure:
    """Whisper's (80, 3000) log-mel input: every clip is padded to 30 s; a line marks where speech ends."""
    features = np.asarray(features)
    seconds = features.shape[-1] / MEL_FRAMES_PER_SECOND
    fig, ax = plt.subplots(figsize=(10, 3.2))
    image = ax.imshow(features, origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, features.shape[0]))
    if duration is not None:
        ax.axvline(duration, color="cyan", linestyle="--", linewidth=1.2, label=f"end of clip ({duration:.1f} s)")
        ax.legend(loc="upper right")
    ax.set(title=title, xlabel="time (s): padded to 30 s", ylabel="mel bin")
    fig.colorbar(image, ax=ax, label="log-mel (scaled)")
    return _done(fig)


def _histogram(ax, values: Sequence[float], cutoff: float, title: str, xlabel: str, unit: str) -> None:
    values = np.asarray(list(values), dtype=float)
    top = max(cutoff * 1.08, float(values.max(initial=0)) * 1.05)
    ax.hist(values, bins=np.linspace(0, top, 40), color="#4c72b0", edgecolor="white")
    over = int((values > cutoff).sum())
    ax.axvline(cutoff, color="#c44e52", linestyle="--", linewidth=1.5,
               label=f"limit {cutoff:g} {unit}: {over} over")
    ax.set(title=title, xlabel=xlabel, ylabel="clips", xlim=(0, top))
    ax.legend(loc="upper right")


def plot_lengths(
    durations: Iterable[float],
    label_lengths: Iterable[int],
    max_seconds: float = MAX_AUDIO_SECONDS,
    max_tokens: int = MAX_LABEL_TOKENS,
) -> Figure:
    """Histograms of clip durations and label lengths, with Whisper's 30 s and 448-token cut-offs drawn."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.4))
    _histogram(left, list(durations), max_seconds, "Clip durations", "seconds", "s")
    _histogram(right, list(label_lengths), max_tokens, "Label lengths (with prefix tokens)", "tokens", "tokens")
    return _done(fig)


def training_curves(log_history: Sequence[Mapping]) -> dict[str, tuple[list[int], list[float]]]:
    """Series from ``trainer.state.log_history``: name -> (steps, values), for the loss and the metrics."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for entry in log_history:
        for key in ("loss", "eval_loss", *(f"eval_{name}" for name in SCORE_NAMES)):
            if key in entry and "step" in entry:
                steps, values = series.setdefault(key, ([], []))
                steps.append(int(entry["step"]))
                values.append(float(entry[key]))
    return series


def plot_training(log_history: Sequence[Mapping]) -> Figure:
    """Training and evaluation loss, and evaluation WER/CER, against the optimizer step."""
    series = training_curves(log_history)
    if "loss" not in series and "eval_loss" not in series:
        raise ValueError("the log history holds no loss: train for at least logging_steps steps")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.4))
    names = {"loss": "training loss", "eval_loss": "test loss", "eval_wer_ortho": "wer_ortho (raw text)",
             "eval_wer": "wer (the course's normaliser)", "eval_wer_words": "wer_words (words whole; picks the "
             "checkpoint)", "eval_cer_words": "cer_words"}
    for key, ax in (("loss", left), ("eval_loss", left), *((f"eval_{name}", right) for name in SCORE_NAMES)):
        if key in series:
            steps, values = series[key]
            ax.plot(steps, values, marker="o" if len(steps) < 20 else None, label=names[key])
    left.set(title="Loss", xlabel="step", ylabel="cross-entropy")
    right.set(title="Error rates on the test split", xlabel="step", ylabel="%")
    for ax in (left, right):
        if ax.lines:
            ax.legend()
        ax.grid(alpha=0.3)
    return _done(fig)


def plot_metrics(results: Mapping[str, Mapping[str, float]], metrics: Sequence[str] = METRICS) -> Figure:
    """Grouped bars: one group per metric, one bar per model (e.g. zero-shot vs fine-tuned), values on top."""
    fig, ax = plt.subplots(figsize=(9, 3.6))
    x = np.arange(len(metrics))
    width = 0.8 / max(1, len(results))
    for i, (name, scores) in enumerate(results.items()):
        values = [float(scores.get(m, np.nan)) for m in metrics]
        bars = ax.bar(x + (i - (len(results) - 1) / 2) * width, values, width, label=name)
        ax.bar_label(bars, labels=[f"{v:.1f}" for v in values], fontsize=8, padding=2)
    ax.set_xticks(x, metrics)
    ax.set(title="Error rates on the test split (lower is better)", ylabel="%")
    ax.margins(y=0.15)
    ax.legend()
    return _done(fig)
