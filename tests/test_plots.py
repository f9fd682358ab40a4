"""The notebooks' plots, drawn from real features and real-shaped trainer logs, checked by what they draw."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from helpers.audio import load_audio, to_int16  # noqa: E402
from helpers.notebook.plots import (  # noqa: E402
    plot_lengths,
    plot_log_mel,
    plot_metrics,
    plot_training,
    training_curves,
)
from helpers.preparation import MAX_AUDIO_SECONDS, log_mel  # noqa: E402

# The shape of Seq2SeqTrainer's state.log_history: training logs, then evaluations, then a summary.
LOG_HISTORY = [
    {"loss": 10.6, "grad_norm": 2.0, "learning_rate": 0.0016, "epoch": 0.56, "step": 5},
    {"loss": 9.8, "grad_norm": 2.0, "learning_rate": 0.0018, "epoch": 1.11, "step": 10},
    {"eval_loss": 9.1, "eval_wer_ortho": 120.0, "eval_wer_words": 110.0, "eval_wer": 90.0, "eval_cer_words": 80.0,
     "eval_n": 24, "eval_runtime": 3.0, "epoch": 1.11, "step": 10},
    {"loss": 7.7, "grad_norm": 2.5, "learning_rate": 0.0014, "epoch": 2.22, "step": 20},
    {"eval_loss": 6.5, "eval_wer_ortho": 95.0, "eval_wer_words": 90.0, "eval_wer": 70.0, "eval_cer_words": 50.0,
     "eval_n": 24, "eval_runtime": 3.0, "epoch": 2.22, "step": 20},
    {"train_runtime": 100.0, "train_loss": 8.0, "epoch": 2.22, "step": 20},
]


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def _no_open_figures():
    plt.close("all")
    yield
    # Every plot is returned closed, so an inline backend shows it once (as the cell's value), not twice.
    assert plt.get_fignums() == []


def test_log_mel_plot_shows_the_clip_over_30_seconds(corpus, processor):
    clip = sorted((corpus / "clips").glob("*.mp3"))[0]
    wave = load_audio(str(clip))
    features = log_mel(to_int16(wave), processor.feature_extractor)
    duration = len(wave) / 16_000
    fig = plot_log_mel(features, duration=duration)
    image_ax = fig.axes[0]
    image = image_ax.get_images()[0]
    assert image.get_array().shape == (80, 3000)
    assert image.get_extent() == [0, 30.0, 0, 80]  # 100 frames per second: the full 30-s window
    (line,) = image_ax.get_lines()
    assert line.get_xdata()[0] == pytest.approx(duration)
    assert len(fig.axes) == 2  # the spectrogram and its colour bar
    assert _png(fig).startswith(b"\x89PNG")


def test_length_histograms_count_every_clip_and_draw_both_limits():
    durations = [1.5, 4.0, 7.2, 12.0, 31.0]
    label_lengths = [20, 35, 60, 450]
    fig = plot_lengths(durations, label_lengths)
    left, right = fig.axes
    assert sum(p.get_height() for p in left.patches) == len(durations)
    assert sum(p.get_height() for p in right.patches) == len(label_lengths)
    assert left.get_lines()[0].get_xdata()[0] == MAX_AUDIO_SECONDS
    assert right.get_lines()[0].get_xdata()[0] == 448
    assert "1 over" in left.get_legend().get_texts()[0].get_text()
    assert "1 over" in right.get_legend().get_texts()[0].get_text()
    assert left.get_xlim()[1] >= 31.0 and right.get_xlim()[1] >= 450


def test_training_curves_follow_the_log_history():
    series = training_curves(LOG_HISTORY)
    assert series["loss"] == ([5, 10, 20], [10.6, 9.8, 7.7])
    assert series["eval_wer_words"] == ([10, 20], [110.0, 90.0])
    assert "train_loss" not in series  # the end-of-training summary is not a point on the curve
    fig = plot_training(LOG_HISTORY)
    loss_ax, wer_ax = fig.axes
    assert {line.get_label() for line in loss_ax.get_lines()} == {"training loss", "test loss"}
    lines = {line.get_label(): list(line.get_ydata()) for line in wer_ax.get_lines()}
    assert lines["wer_words (words whole; picks the checkpoint)"] == [110.0, 90.0]
    assert lines["wer (the course's normaliser)"] == [90.0, 70.0]
    assert len(lines) == 4


def test_training_plot_needs_a_loss():
    with pytest.raises(ValueError, match="logging_steps"):
        plot_training([{"train_runtime": 1.0, "step": 0}])


def test_metrics_bars_have_one_bar_per_model_and_metric_with_its_value():
    results = {"zero-shot": {"wer_ortho": 480.0, "wer_words": 470.5, "wer": 350.0, "cer_words": 1800.0, "n": 24},
               "fine-tuned": {"wer_ortho": 98.0, "wer_words": 96.25, "wer": 80.0, "cer_words": 60.0, "n": 24}}
    fig = plot_metrics(results)
    ax = fig.axes[0]
    heights = [round(p.get_height(), 2) for p in ax.patches]
    assert heights == [480.0, 350.0, 470.5, 1800.0, 98.0, 80.0, 96.25, 60.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["wer_ortho", "wer", "wer_words", "cer_words"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["zero-shot", "fine-tuned"]
    assert "96.2" in {t.get_text() for t in ax.texts}
    assert np.isfinite(ax.get_ylim()[1])
