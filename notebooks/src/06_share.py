# %% [markdown]
# # 6 · Share: model card, Hub, pipeline and demo
#
# **What this stage does.** It writes a model card (base model, dataset, language, results, training
# settings), pushes the model to the Hub when you are logged in, or else writes an export folder, and then
# loads the model with `pipeline("automatic-speech-recognition")` to transcribe a test clip and a recording
# longer than Whisper's 30 s window. In Colab it offers a small Gradio demo.
#
# **Why.** A model is only useful once someone else can load it: the card says what it is and how well it
# works, and `pipeline` is how people will use it.
#
# <!-- notebook-only -->
# **Needs:** `prepared/` from [02_preprocess.ipynb](02_preprocess.ipynb) (test clips), `model/` from
# [04_train.ipynb](04_train.ipynb), `results.json` and `predictions.json` from
# [05_evaluate.ipynb](05_evaluate.ipynb); a Hub token to push (see [00_hub_login.ipynb](00_hub_login.ipynb)).
# **Makes:** a Hub repository, or `export/` in the workspace. **Runtime:** a CPU runtime is enough (the pipeline
# uses the GPU when there is one). **Time on a free Colab T4:** about 3 minutes: the set-up cell and uploading
# about 1 GB (estimates), and no T4 quota on a CPU runtime ([the unit's
# budget](../docs/benchmarks.md#the-units-budget)).
# <!-- /notebook-only -->
# <!-- workshop-only -->
# **In the workshop:** about 2 minutes (an estimate), most of it uploading about 1 GB; with the token from stage 0, or
# an export folder without one.
# <!-- /workshop-only -->
#
# **In the course:** [Sharing Your Model](https://huggingface.co/learn/audio-course/chapter5/fine-tuning#sharing-your-model),
# [Build a demo with Gradio](https://huggingface.co/learn/audio-course/chapter5/demo)
# · **In the blog post:** [Building a Demo](https://huggingface.co/blog/fine-tune-whisper#building-a-demo)

# %% tags=["setup"]
from helpers.notebook.session import setup

config = setup()

# %% [markdown] tags=["notebook-only"]
# ## The Hub token, in this runtime
#
# In Colab each notebook has its own runtime, so a login made in 00 is gone here. A Colab secret named
# `HF_TOKEN` works in every notebook; otherwise log in again below (or skip it: the model is then exported
# to the workspace, ready to push later).

# %% tags=["notebook-only"]
from helpers.notebook.session import login

login()

# %% [markdown]
# ## The model card
#
# It names the metrics the way every notebook does: `wer` is the course's normalised WER, `wer_words` ours
# with the vowel marks kept (words whole), `wer_ortho` the raw text; and how the model was trained: full fine-tuning, or
# LoRA with its rank and modules, the share of parameters trained and the adapter's size.

# %%
from pathlib import Path

from helpers.evaluation import read_results
from helpers.extras.sharing import course_model_card
from helpers.notebook.session import saved_path, who_am_i

model_dir, results = saved_path("model"), read_results(saved_path("results"))
user = who_am_i()  # None without a (valid) token or without network
repo_id = f"{user}/{Path(config.output_dir).name}" if user else Path(config.output_dir).name
# Base model, data, language, the fine-tuned scores, the training settings and how it trained (full, or LoRA:
# rank, modules, the share of parameters trained); the same card `python -m helpers run --push-to` publishes.
adapter_dir = saved_path("adapter") if config.peft else None
card = course_model_card(config, repo_id, results["finetuned"], model_dir, adapter_dir)
print(card.content)

# %% [markdown]
# ## Push, or export
#
# Logged in: the model (saved locally first) and its card go to `repo_id` on the Hub; if the push fails,
# the local copy stays and the message says how to retry. Not logged in: the same files go into an
# export folder in the workspace, ready to upload later (`python -m helpers push --model-dir ... --repo-id ...`).

# %%
from helpers.extras.sharing import export_model, push_model
from helpers.notebook.session import artifact_path

if user:
    card.save(str(model_dir / "README.md"))
    print(push_model(model_dir, repo_id))
    model_source = repo_id
else:
    model_source = str(export_model(model_dir, card, artifact_path("export") / repo_id))
    print(f"Not logged in: pushing skipped; the model and its card are in {model_source}")

# %% [markdown]
# ## Use it with `pipeline`
#
# The same one line anyone would use (with your Hub id once pushed):

# %%
from transformers import pipeline

from helpers.notebook.session import pipeline_placement

# On the GPU in fp16 when there is one (as in 05), else on the CPU in fp32.
asr = pipeline("automatic-speech-recognition", model=model_source, **pipeline_placement(config.fp16))
asr.model.generation_config.max_length = config.generation_max_length  # as in evaluation

# %%
from IPython.display import Audio, display

from helpers.audio import SAMPLING_RATE, from_int16
from helpers.notebook.display import real_run_note
from helpers.notebook.session import load_from_workspace

test = load_from_workspace("prepared")["test"]
wave = from_int16(test[0]["audio_16k"])
transcripts = load_from_workspace("predictions")
print("reference:     ", test[0]["sentence"])
print("pipeline:      ", asr({"raw": wave, "sampling_rate": SAMPLING_RATE})["text"].strip())
print("05 transcribed:", transcripts["fine_tuned"][0])
display(Audio(wave, rate=SAMPLING_RATE), real_run_note(config, about="transcripts"))

# %% [markdown]
# ## Where people run Whisper fast: CTranslate2 (faster-whisper)
#
# Most people serve Whisper with [faster-whisper](https://github.com/SYSTRAN/faster-whisper), which runs
# CTranslate2, not transformers. `export_ctranslate2` converts the model folder (a merged LoRA model too)
# with CTranslate2's converter, its weights in float16 (half the size; `quantization="int8"`: a quarter, for
# CPUs), and adds the tokenizer and feature-extractor files faster-whisper reads. `transcribe_ct2` then
# transcribes the same test clip greedily, with the same prompt tokens as our evaluation. (On a CPU,
# CTranslate2 warns that it computes the float16 weights in float32: expected, and harmless.)

# %%
from helpers.extras.ctranslate2 import export_ctranslate2, transcribe_ct2
from helpers.notebook.session import saving_to_workspace

with saving_to_workspace("ct2") as ct2_dir:
    export_ctranslate2(model_dir, ct2_dir, quantization="float16")
print(f"CTranslate2 model in {ct2_dir}: {sum(f.stat().st_size for f in ct2_dir.iterdir()) / 1e6:.0f} MB")
print("reference:  ", test[0]["sentence"])
print("CTranslate2:", transcribe_ct2(ct2_dir, wave, config.language, config.task, config.generation_max_length))

# %% [markdown]
# Elsewhere, after `pip install faster-whisper`, the folder loads as it is (language `"si"` for this
# course's Sinhala tokens):
#
# ```python
# from faster_whisper import WhisperModel
# model = WhisperModel("ct2", device="cuda", compute_type="float16")  # or device="cpu", compute_type="int8"
# segments, info = model.transcribe("clip.mp3", language="si", beam_size=1)
# print(" ".join(segment.text for segment in segments))
# ```

# %% [markdown]
# ## Longer than 30 seconds
#
# Whisper hears 30 s at a time; a longer recording given as is would be cut. `chunk_length_s=30` makes the
# pipeline cut it into overlapping 30 s windows, transcribe them in batches and join the text. Here a
# recording of about 40 s, made of test clips joined with short silences:

# %%
from helpers.extras.sharing import long_recording

long_wave, used = long_recording([from_int16(test[i]["audio_16k"]) for i in range(min(len(test), 40))])
print(f"{len(long_wave) / SAMPLING_RATE:.1f} s: {used} test clips, one after another")
text = asr({"raw": long_wave, "sampling_rate": SAMPLING_RATE}, chunk_length_s=30, batch_size=4)["text"]
print(text.strip())
Audio(long_wave, rate=SAMPLING_RATE)

# %% [markdown]
# `return_timestamps=True` adds the start and end of each segment, for subtitles.
#
# ## A Gradio demo (optional, Colab)
#
# Record or upload a clip and read the transcript; Colab shows a public link for a few days. This cell does
# nothing outside Colab.

# %%
from helpers.extras.sharing import gradio_demo
from helpers.notebook.session import in_colab

if in_colab():
    # !pip install -q gradio
    gradio_demo(asr).launch()

# %% [markdown]
# **Done.** You have loaded Common Voice, prepared it, trained, evaluated and shared a fine-tuned Whisper.
#
# ## Where to go next
#
# The course ends with ways to do better than 500 steps of whisper-small. Each one is a setting here: put it
# in 04's set-up cell (then run 04, 05 and 06 again), or give the flag to `python -m helpers run`. The figures
# to aim at are the published ones for Common Voice Dhivehi's test split (the models' cards on the Hub): set
# them beside your 05 table, `wer` with `wer`.
#
# - **More steps, with a linear schedule:**
#   `setup(needs_gpu=True, max_steps=4000, lr_scheduler_type="linear", warmup_steps=500)`
#   (`--max-steps 4000 --lr-scheduler-type linear --warmup-steps 500`). whisper-small at 4,000 steps reaches
#   about 10.9 % normalised (`wer`) and 56.9 % orthographic (`wer_ortho`), against 14.1 % and 63.9 % at 500.
#   It takes eight times the T4 time: more than one session, and 04 resumes from the last copy on Drive each time.
# - **Learning rate and dropout:** `setup(needs_gpu=True, learning_rate=3e-5)`,
#   `setup(needs_gpu=True, dropout=0.1)` (`--learning-rate`, `--dropout`). The course's learning rate is 1e-5,
#   Whisper's dropout 0. Compare runs on 04's validation table (`wer_words`), never on the test split.
# - **A bigger model:** `setup(needs_gpu=True, model="openai/whisper-medium")` (`--model`). whisper-medium,
#   fully fine-tuned for 4,000 steps, reaches about 9.0 % normalised. Its weights, gradients and AdamW's moments
#   alone take about 12 GB: too much for a T4's 15 GB once activations are added, hence LoRA below.
# - **LoRA, a larger Whisper on the same T4:** `setup(needs_gpu=True, peft="lora", model="openai/whisper-medium")`
#   and `RESUME = False` in 04 (`--peft lora`; the adapter's size: `lora_rank`, `lora_alpha`, `lora_dropout`,
#   `lora_target_modules`). Only small adapter matrices train (1.44 % of whisper-small's weights); not yet
#   measured on a T4 ([LoRA and 8-bit](../docs/lora-and-8bit.md)).
# - **A normaliser that keeps Thaana's vowel marks:** nothing to set. `wer_words` and `cer_words`
#   (`helpers.metrics.normalize`) keep them, and `wer_words` chooses 04's checkpoint; the course's `wer`, after
#   `BasicTextNormalizer`, counts the pieces it cuts each word into (05).
#
# ## Try it yourself
#
# - **Your own voice.** Record a few sentences in the Gradio demo, or put recordings with a `metadata.csv`
#   in a Drive folder and fine-tune on them (01's "Try it yourself").
# - **A longer run.** Raise `max_steps` in 04 (the course suggests 4000 with a linear schedule) and push
#   the better model under another name.
# - **int8.** `export_ctranslate2(model_dir, ct2_dir.with_name("ct2-int8"), quantization="int8")` gives a model a
#   quarter the size; compare its transcripts of a few test clips with float16's.
# - **The whole path in one command**, from a terminal: `python -m helpers run` (see
#   [the one command](../docs/profiles-and-recipes.md#the-whole-path-in-one-command)).

# %% [markdown]
# <details><summary><b>Solutions</b> (open them after trying)</summary>
#
# - **Your own voice.** See 01's solution for the folder layout; start again from stage 1 with
#   `setup(data="/content/drive/MyDrive/my-recordings")` (your language in `language=`).
# - **A longer run.** In 04's set-up: `max_steps=4000, lr_scheduler_type="linear"`; then push under another
#   name: `push_model(model_dir, "<you>/whisper-small-dv-4000")` (`from helpers.extras.sharing import push_model`).
# - **int8.**
#
#   ```python
#   int8_dir = export_ctranslate2(model_dir, ct2_dir.with_name("ct2-int8"), quantization="int8")
#   for i in range(3):
#       clip = from_int16(test[i]["audio_16k"])
#       print(transcribe_ct2(int8_dir, clip, config.language, config.task, config.generation_max_length))
#       print(transcribe_ct2(ct2_dir, clip, config.language, config.task, config.generation_max_length))
#   ```
#
#   A quarter of float32's size; some transcripts change by a word or two.
# - **One command.** `python -m helpers run --data common-voice:dv --output-dir whisper-small-dv` does stages
#   1-5 (and `--push-to <you>/<name>` stage 6's push); `python -m helpers run --help` lists the options.
#
# </details>
