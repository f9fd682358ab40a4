# %% [markdown]
# # 2 · Preprocess: 16 kHz audio, labels and filters
#
# **What this stage does.** It decodes every clip and resamples it to 16 kHz, tokenises every transcript
# into label ids, drops what Whisper cannot learn from (and counts why), plots what Whisper will see, and
# saves the prepared splits with a report.
#
# **Why.** Whisper's encoder takes exactly 30 s of 16 kHz audio as an 80 × 3000 log-mel spectrogram; its
# decoder attends to at most 448 label tokens. Longer clips would be cut mid-sentence and longer labels
# cannot be trained on, so they are filtered out before training, not discovered during it.
#
# <!-- notebook-only -->
# **Needs:** `loaded/` from [01_load.ipynb](01_load.ipynb). **Makes:** `prepared/` and `report.json` in the workspace.
# **Runtime:** a CPU runtime is enough. **Time on a free Colab T4:** about 2 minutes: the set-up cell, then about 1
# minute of preprocessing for the whole release on two CPU cores (measured), and no T4 quota on a CPU runtime ([the
# unit's budget](../docs/benchmarks.md#the-units-budget)).
# <!-- /notebook-only -->
# <!-- workshop-only -->
# **In the workshop:** about a minute for the short run's clips on Colab's two CPU cores.
# <!-- /workshop-only -->
#
# **In the course:** [Feature Extractor, Tokenizer and Processor](https://huggingface.co/learn/audio-course/chapter5/fine-tuning#feature-extractor-tokenizer-and-processor),
# [Pre-Process the Data](https://huggingface.co/learn/audio-course/chapter5/fine-tuning#pre-process-the-data)
# · **In the blog post:** [Prepare Feature Extractor, Tokenizer and Data](https://huggingface.co/blog/fine-tune-whisper#prepare-feature-extractor-tokenizer-and-data)

# %% tags=["setup"]
from helpers.notebook.session import setup

config = setup()

# %%
from helpers.notebook.session import load_from_workspace

loaded = load_from_workspace("loaded")
loaded

# %% [markdown]
# ## The processor, and why "sinhalese"
#
# The processor is Whisper's feature extractor (audio to log-mel) and tokenizer (text to label ids). The
# tokenizer starts every label with Whisper's prefix tokens: start of transcript, **language**, task, no
# timestamps. Dhivehi is not one of Whisper's 99 languages, so, like the course, we name its closest
# relative that is: Sinhala (`"sinhalese"`), the language of Sri Lanka, which shares Dhivehi's ancestry and
# its way of writing vowels as marks on consonants. Fine-tuning then teaches Whisper Dhivehi *through* the
# Sinhala token.
#
# Expect the zero-shot model (05) to answer in another script: Dhivehi is written in Thaana, and a model
# told "Sinhala" that has never heard Dhivehi writes Sinhala letters, or even Latin ones. Nearly every word
# is then wrong, and insertions push the course's zero-shot WER over 100 %.

# %%
from transformers import WhisperConfig

from helpers.model import load_processor

processor = load_processor(config.model, config.language, config.task)  # WhisperProcessor + prefix tokens
max_tokens = WhisperConfig.from_pretrained(config.model).max_target_positions  # 448 for every Whisper
ids = processor.tokenizer(loaded["train"][0]["sentence"]).input_ids
print(f"language {config.language!r}, task {config.task!r}: {len(ids)} label ids, starting "
      f"{processor.tokenizer.convert_ids_to_tokens(ids[:4])}; at most {max_tokens}")

# %% [markdown]
# ## Resampling
#
# Common Voice ships 48 kHz MP3s; Whisper was trained on 16 kHz. We decode with `soundfile` and resample
# with `soxr` (a band-limited, high-quality resampler):

# %%
import io

import soundfile as sf

from helpers.audio import SAMPLING_RATE, load_audio

clip = loaded["train"][0]["audio"]
info = sf.info(io.BytesIO(clip["bytes"]))
wave = load_audio(clip)
print(f"stored: {info.samplerate} Hz, {info.channels} channel(s), {info.frames} samples -> "
      f"Whisper gets {len(wave)} samples at {SAMPLING_RATE} Hz ({len(wave) / SAMPLING_RATE:.2f} s)")

# %% [markdown]
# ## The preparation function
#
# The course writes one function per example, maps it over the dataset, then filters long clips:
#
# ```python
# def prepare_dataset(example):
#     audio = example["audio"]
#     example = processor(audio=audio["array"], sampling_rate=audio["sampling_rate"], text=example["sentence"])
#     example["input_length"] = len(audio["array"]) / audio["sampling_rate"]
#     return example
#
# common_voice = common_voice.map(prepare_dataset, remove_columns=common_voice.column_names["train"], num_proc=2)
# common_voice["train"] = common_voice["train"].filter(lambda length: length < 30.0, input_columns=["input_length"])
# ```
#
# Ours has the course's name and shape, one example in and audio and label ids out, with the filters
# inside, each dropped clip keeping its reason. Two things differ. It stores the 16 kHz audio (as lossless
# FLAC) rather than the course's 80 × 3000 float32 log-mel matrix, 960 KB per clip however short: the
# collator (03) computes the log-mel features for a whole batch at once. And the sentences are tokenised
# beforehand, all at once, in one call of the fast tokenizer: the example comes with its `labels`.
#
# Here it is, yours to change: `load_audio` decodes and resamples to 16 kHz (the course's
# `cast_column(Audio(sampling_rate=16000))`), `duration > MAX_AUDIO_SECONDS` is the course's 30 s filter,
# `len(label_ids) > max_label_tokens` drops labels longer than the decoder attends to, and a kept clip
# returns its 16 kHz audio as FLAC with its label ids. Edit the cell and run it: the cells below, one clip
# and then every clip, run your version.

# %%
# %load -s prepare_dataset helpers/preparation.py
from helpers.preparation import prepare_dataset

# isort: split

# %% [markdown]
# Run it on one clip, its sentence tokenised as the whole split's will be:

# %%
example = {**loaded["train"][0], "labels": processor.tokenizer(loaded["train"][0]["sentence"]).input_ids}
one = prepare_dataset(example, max_label_tokens=max_tokens)
print(f"audio_16k: {len(one['audio_16k'])} bytes of FLAC; labels: {len(one['labels'])} ids; "
      f"duration: {one['duration']:.2f} s; dropped because: {one['drop_reason'] or '(kept)'}")

# %% [markdown]
# ## Prepare every clip, counting what is dropped
#
# The course maps its function over the dataset (`common_voice.map(prepare_dataset, ...)`); `prepare_splits`
# does that with the function above (`prepare=prepare_dataset`: yours, with your changes) over every split
# (train, validation and test), `num_proc` clips at a time in threads (decoding, resampling and FLAC run in
# C libraries that let threads share the cores, without the worker processes, pickling and shard files of
# `datasets.map(num_proc=...)`), writes the rows in their order with one `datasets.map`, keeps the clips
# whose reason is empty, and reports the others: audio over 30 s, labels over the limit, empty transcripts,
# transcripts with no words (only punctuation: nothing to learn, and no score could count them), and clips
# that are missing or not decodable audio. Clips dropped from the validation slice are replaced by prepared
# training clips, and the report says so. (A changed function prepares every clip again; an unchanged one
# reuses what the last run saved in the `datasets` cache.)

# %%
from helpers.preparation import format_report, prepare_splits

prepared, report = prepare_splits(loaded, processor, max_label_tokens=max_tokens, num_proc=config.num_proc,
                                  prepare=prepare_dataset)
print(format_report(report))

# %% [markdown]
# ## What Whisper sees: a log-mel spectrogram
#
# 80 mel frequency bands, 100 frames per second, always 30 s: a shorter clip is padded with silence
# (the dashed line marks where the speech ends), so the model learns to ignore the padding.

# %%
from helpers.notebook.plots import plot_log_mel
from helpers.preparation import log_mel

first = prepared["train"][0]
plot_log_mel(log_mel(first["audio_16k"], processor.feature_extractor), duration=first["duration"],
             title="Log-mel features of the first training clip")

# %% [markdown]
# ## Durations and label lengths
#
# Histograms of the clips that were kept, with Whisper's two limits drawn in red. Clips beyond them were
# dropped above and are counted in the report.

# %%
from helpers.notebook.plots import plot_lengths

durations = [d for split in prepared.values() for d in split["duration"]]
label_lengths = [len(ids) for split in prepared.values() for ids in split["labels"]]
plot_lengths(durations, label_lengths, max_tokens=max_tokens)

# %% [markdown]
# ## Save for the next stages

# %%
from helpers.notebook.display import disk_size
from helpers.notebook.session import save_to_workspace

path = save_to_workspace(prepared, "prepared", processor)  # marked as this run's: model, data and tokenizer
save_to_workspace(report, "report", processor)
clips = sum(len(split) for split in prepared.values())
print(f"Saved {clips} clips to {path}: {disk_size(path) / 1e6:.1f} MB "
      f"(the course's stored features would take {clips * 80 * 3000 * 4 / 1e6:.1f} MB)")

# %% [markdown]
# **On the real run.** In the course's CV13 no clip was over 30 s and no transcript over 448 tokens, so
# nothing was dropped; a newer release may drop a few, each listed in `report.json` with its reason.
#
# ## Try it yourself
#
# - Look at `report.json` in the workspace: listen to a dropped clip (`load_audio` on its path) and decide
#   whether the filter was right.
# - Drop very short clips too: `prepared["train"].filter(lambda d: d >= 1.0, input_columns="duration")`
#   keeps clips of a second or more. How many go?
# - Tokenise a sentence of another language (`processor.tokenizer("வணக்கம்").input_ids`): scripts Whisper
#   saw little of take many byte-level tokens per letter, which is what the 448-token limit counts.

# %% [markdown]
# <details><summary><b>Solutions</b> (open them after trying)</summary>
#
# - **A dropped clip.** `report["train"]["dropped_rows"]` lists each with its `source`, `sentence`, `reason`
#   and `why`:
#
#   ```python
#   from IPython.display import Audio
#
#   row = report["train"]["dropped_rows"][0]  # IndexError: nothing was dropped from train
#   print(row["why"], "|", row["sentence"])
#   clip = next(r["audio"] for r in loaded["train"] if r["sentence"] == row["sentence"])
#   Audio(load_audio(clip), rate=SAMPLING_RATE)  # a clip that cannot be decoded raises: why it was dropped
#   ```
# - **Short clips.**
#
#   ```python
#   kept = prepared["train"].filter(lambda d: d >= 1.0, input_columns="duration")
#   print(len(prepared["train"]) - len(kept), "of", len(prepared["train"]), "clips are under a second")
#   ```
# - **Tokens per letter.**
#
#   ```python
#   for text in ("hello world", "வணக்கம்", "ދިވެހިރާއްޖެ"):
#       ids = processor.tokenizer(text, add_special_tokens=False).input_ids
#       print(f"{text}: {len(text)} characters, {len(ids)} tokens")
#   ```
#
#   English takes about a token a word; Thaana about two tokens a letter, so a Dhivehi sentence reaches the
#   448-token limit long before a clip reaches 30 s.
#
# </details>
