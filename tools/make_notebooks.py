"""Write the seven course notebooks in ``notebooks/`` from the cells below (the notebooks' source).

    python tools/make_notebooks.py            # rewrite notebooks/*.ipynb
    python tools/make_notebooks.py --check    # exit 1 if a committed notebook differs from this source

Generating the notebooks keeps what they share in one place: the "Open in Colab" badge and the set-up
cell come from ``helpers.notebook`` (``REPO_URL``), never typed seven times. The output is clean
(no outputs, no execution counts) with stable cell ids, so regenerating gives identical files.
Edit the cells here, not in Jupyter; ``tests/test_notebooks.py`` fails when the two disagree.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from helpers.notebook import COLAB_CHECKOUT, NOTEBOOKS, REPO_URL, colab_badge  # noqa: E402

NOTEBOOK_DIR = REPO_ROOT / "notebooks"

SETUP_TEMPLATE = f'''# Set-up. In Colab: fetch and install the course (Colab's own torch is kept). Elsewhere: nothing to install.
import sys
if "google.colab" in sys.modules:
    !git clone -q --depth 1 {REPO_URL} {COLAB_CHECKOUT} 2>/dev/null || git -C {COLAB_CHECKOUT} pull -q
    !pip install -q -e {COLAB_CHECKOUT} && pip install -q --no-deps openai-whisper
    sys.path.insert(0, "{COLAB_CHECKOUT}")

from helpers.notebook import setup
config = setup({{args}})  # quiet logs, Drive as the workspace in Colab, the profile and recipe in use and why'''
SETUP = SETUP_TEMPLATE.format(args="")
# 04 and 05 run whisper-small: on a Colab runtime without a GPU they stop and say what to do.
SETUP_GPU = SETUP_TEMPLATE.format(args="needs_gpu=True")


def md(text: str) -> tuple[str, str]:
    return ("markdown", text.strip("\n"))


def code(text: str) -> tuple[str, str]:
    return ("code", text.strip("\n"))


def header(name: str, title: str, body: str) -> tuple[str, str]:
    """The first cell of every notebook: badge, title, what the stage does and why, what it needs."""
    return md(f"{colab_badge(name)}\n\n# {title}\n\n{body.strip()}")


SETUP_NOTE = md("""
## Set-up

Run this first. It installs the course in Colab, then prints the **profile** in use: `t4` (the course's
real run: `openai/whisper-small` on Common Voice Dhivehi, on a GPU) or `smoke` (a tiny random Whisper and
96 bundled clips: the same code path in minutes on a CPU, offline). `COURSE_PROFILE=t4` or `smoke` picks
one; without it a CUDA GPU that can reach the Hub gets `t4`. Any setting can be changed here, e.g.
`setup(max_steps=1000)`. The **workspace** is the folder where each notebook leaves its results for the
next: Google Drive in Colab, so that a disconnect loses nothing.
""")

NEXT = "**Next:** [{0}]({0})."


NOTEBOOK_CELLS: dict[str, list[tuple[str, str]]] = {
    "00_hub_login.ipynb": [
        header("00_hub_login.ipynb", "0 · Log in to the Hugging Face Hub", """
**What this stage does.** It finds your Hugging Face token, or asks for one, so that the last notebook can
push your fine-tuned model and its model card to the Hub.

**Why.** On the Hub your model gets a page, a card with its results, and can be used by anyone with one
`pipeline(...)` line. Pushing is optional: without a token every stage works the same, and the last one
writes an export folder instead.

**Needs:** nothing, this is the first stage. **Makes:** nothing in the workspace (the token stays where
`huggingface_hub` keeps it).
"""),
        SETUP_NOTE,
        code(SETUP),
        md("""
## Where the token comes from

In this order, the first one found wins:

1. the `HF_TOKEN` environment variable;
2. in Colab, a **secret** named `HF_TOKEN` (the key icon in the left bar; allow this notebook to read it);
3. a cached login (`hf auth login` in a terminal, or the widget below).

Create a token with *write* access at <https://huggingface.co/settings/tokens>. The token is never printed,
never written to a file of ours, and never goes into the training arguments (which are saved inside every
checkpoint): the helpers look it up only at the moment of pushing and hand it straight to
`huggingface_hub`. Never paste a token into a code cell; a committed notebook would publish it.
"""),
        code("""
from helpers.notebook import login

login()  # a token already there is used as is; otherwise, in Colab or Jupyter, the login widget appears
"""),
        md("Then check who is logged in (run this again after pasting a token into the widget):"),
        code("""
from helpers.hub import login_status

print(login_status())
"""),
        md(NEXT.format("01_load.ipynb")),
    ],
    "01_load.ipynb": [
        header("01_load.ipynb", "1 · Load Common Voice Dhivehi", """
**What this stage does.** It loads Common Voice Dhivehi into a `DatasetDict` with a `train` split
(Common Voice's train + dev, as in the course) and a held-out `test` split, each with only the `audio`
and `sentence` columns, shows a few rows, plays a clip, and saves the splits in the workspace.

**Why.** Dhivehi is a low-resource language Whisper was not trained on: the course shows that 500 steps
of fine-tuning on about 7 hours of it take the normalised WER to about 14 %.

**Needs:** nothing (logging in with `00_hub_login.ipynb` is optional). **Makes:** `loaded/` in the
workspace.
"""),
        SETUP_NOTE,
        code(SETUP),
        md("""
## Where Common Voice lives now

Common Voice **left the Hugging Face Hub in October 2025**; Mozilla publishes it on the
[Mozilla Data Collective](https://mozilladatacollective.com) (MDC). `load_common_voice` takes any of:

| source | what to pass | how to get it |
|---|---|---|
| a release folder (e.g. on Drive) | `"/content/drive/MyDrive/cv-corpus-XX/dv"` | download Dhivehi from the MDC website, unpack it (`clips/`, `train.tsv`, `dev.tsv`, `test.tsv`) |
| the MDC SDK | `"mdc:<dataset-id>"` | an API key from your MDC account in `MDC_API_KEY` (in Colab: a secret of that name), and the dataset's terms accepted on its page |
| a Hub dataset | `"owner/name"` or `"owner/name:config"` | a mirror, or your own dataset |
| an audiofolder | a folder with audio files and `metadata.csv` | your own recordings |

The `t4` profile reads `COURSE_DATA` (default `mdc:common-voice-dv`); to use another source, change
`config.data` below or start with `setup(data="...")`. The `smoke` profile loads `data/cv-mini/si`:
96 clips spoken by espeak-ng in Sinhala (the closest language espeak-ng speaks, and the language Whisper
is told to transcribe Dhivehi as), laid out exactly like a Common Voice release.
"""),
        code("""
from helpers.data import load_common_voice, subsample
from helpers.notebook import use_colab_secret

use_colab_secret("MDC_API_KEY")  # only matters for mdc: sources; the key is never printed
splits = subsample(load_common_voice(config.data, seed=config.seed), config.max_train_samples,
                   config.max_test_samples)
splits
"""),
        md("A few rows of the training split:"),
        code("""
from helpers.notebook import rows_table

rows_table(splits["train"], n=5)
"""),
        md("""
## Listen to a clip

The `audio` column is kept *undecoded* (file bytes or a path): decoding happens in our own code with
`soundfile` and `soxr`, the same in Colab, on a laptop and in CI (the `datasets` default, torchcodec,
does not load beside every torch build). Whisper hears 16 kHz mono:
"""),
        code("""
from IPython.display import Audio
from helpers.audio import SAMPLING_RATE, load_audio

example = splits["train"][0]
wave = load_audio(example["audio"])  # decoded, mono, resampled to 16 kHz
print(f"{example['sentence']}  ({len(wave) / SAMPLING_RATE:.1f} s)")
Audio(wave, rate=SAMPLING_RATE)
"""),
        md("""
## Save for the next stage

The clips' bytes are copied into the saved splits, so the workspace copy keeps working after a Colab
disconnect even when the download itself was on the (temporary) Colab disk.
"""),
        code("""
from helpers.workspace import embed_audio, save_dataset

print("Saved to", save_dataset(embed_audio(splits), "loaded"))
"""),
        md(NEXT.format("02_preprocess.ipynb")),
    ],
    "02_preprocess.ipynb": [
        header("02_preprocess.ipynb", "2 · Preprocess: 16 kHz audio, labels and filters", """
**What this stage does.** It decodes every clip and resamples it to 16 kHz, tokenises every transcript
into label ids, drops what Whisper cannot learn from (and counts why), plots what Whisper will see, and
saves the prepared splits with a report.

**Why.** Whisper's encoder takes exactly 30 s of 16 kHz audio as an 80 × 3000 log-mel spectrogram; its
decoder attends to at most 448 label tokens. Longer clips would be cut mid-sentence and longer labels
cannot be trained on, so they are filtered out before training, not discovered during it.

**Needs:** `loaded/` from [01_load.ipynb](01_load.ipynb). **Makes:** `prepared/` and `report.json` in the
workspace.
"""),
        SETUP_NOTE,
        code(SETUP),
        code("""
from datasets import load_from_disk
from helpers.workspace import require

loaded = load_from_disk(require("loaded"))
loaded
"""),
        md("""
## Resampling

Common Voice ships 48 kHz MP3s; Whisper was trained on 16 kHz. We decode with `soundfile` and resample
with `soxr` (a band-limited, high-quality resampler):
"""),
        code("""
import io
import soundfile as sf
from helpers.audio import SAMPLING_RATE, load_audio

clip = loaded["train"][0]["audio"]
info = sf.info(io.BytesIO(clip["bytes"]))
wave = load_audio(clip)
print(f"stored: {info.samplerate} Hz, {info.channels} channel(s), {info.frames} samples -> "
      f"Whisper gets {len(wave)} samples at {SAMPLING_RATE} Hz ({len(wave) / SAMPLING_RATE:.2f} s)")
"""),
        md("""
## Labels

The processor's tokenizer turns a sentence into label ids that start with Whisper's prefix tokens
(start of transcript, language, task, no timestamps) and end with `<|endoftext|>`. The labels limit is the
model's `max_target_positions`:
"""),
        code("""
from transformers import WhisperConfig
from helpers.model import load_processor

processor = load_processor(config.model, config.language, config.task)
max_tokens = WhisperConfig.from_pretrained(config.model).max_target_positions
ids = processor.tokenizer(loaded["train"][0]["sentence"]).input_ids
print(f"{len(ids)} label ids, starting {processor.tokenizer.convert_ids_to_tokens(ids[:4])}; limit {max_tokens}")
"""),
        md("""
## Prepare every clip, counting what is dropped

`prepare_dataset` decodes, resamples and tokenises in parallel worker processes and drops, with a
reason: audio over 30 s, labels over the limit, empty transcripts, and clips that are missing or not
decodable audio. It stores 16 kHz audio as 16-bit integers, not the course's 80 × 3000 float32
log-mel matrix (960 KB per clip, however short the clip): the collator computes the log-mel features
for a whole batch at once during training.
"""),
        code("""
from helpers.features import format_report, prepare_dataset

prepared, report = prepare_dataset(loaded, processor, max_label_tokens=max_tokens, num_proc=config.num_proc)
print(format_report(report))
"""),
        md("""
## What Whisper sees: a log-mel spectrogram

80 mel frequency bands, 100 frames per second, always 30 s: a shorter clip is padded with silence
(the dashed line marks where the speech ends), so the model learns to ignore the padding.
"""),
        code("""
from helpers.features import log_mel
from helpers.plots import plot_log_mel

first = prepared["train"][0]
plot_log_mel(log_mel(first["audio_16k"], processor.feature_extractor), duration=first["duration"],
             title="Log-mel features of the first training clip")
"""),
        md("""
## Durations and label lengths

Histograms of the clips that were kept, with Whisper's two limits drawn in red. Clips beyond them were
dropped above and are counted in the report.
"""),
        code("""
from helpers.plots import plot_lengths

durations = [d for split in prepared.values() for d in split["duration"]]
label_lengths = [len(ids) for split in prepared.values() for ids in split["labels"]]
plot_lengths(durations, label_lengths, max_tokens=max_tokens)
"""),
        md("## Save for the next stages"),
        code("""
from helpers.features import save_report
from helpers.notebook import disk_size
from helpers.workspace import artifact_path, save_dataset, stamp

path = save_dataset(prepared, "prepared", processor)  # stamped with this run's model, data and tokenizer
save_report(report, artifact_path("report"))
stamp("report", processor)
clips = sum(len(split) for split in prepared.values())
print(f"Saved {clips} clips to {path}: {disk_size(path) / 1e6:.1f} MB "
      f"(the course's stored features would take {clips * 80 * 3000 * 4 / 1e6:.1f} MB)")
"""),
        md(NEXT.format("03_collate.ipynb")),
    ],
    "03_collate.ipynb": [
        header("03_collate.ipynb", "3 · Collate: one real batch", """
**What this stage does.** It builds one batch exactly as the trainer will: log-mel features padded to
30 s, labels padded with `-100`, and the start token stripped from the labels. It shows each on real
token ids and text.

**Why.** The collator is where fine-tuning quietly goes wrong. Padding must be `-100` so that the loss
ignores it, and the start token must appear exactly once in what the decoder reads, or the model learns
to predict it.

**Needs:** `prepared/` from [02_preprocess.ipynb](02_preprocess.ipynb). **Makes:** nothing (the trainer
builds its batches itself); it is here to understand, and can be skipped.
"""),
        SETUP_NOTE,
        code(SETUP),
        code("""
from datasets import load_from_disk
from transformers import WhisperConfig
from helpers.collator import DataCollatorSpeechSeq2SeqWithPadding
from helpers.model import load_processor
from helpers.workspace import require

prepared = load_from_disk(require("prepared"))
processor = load_processor(config.model, config.language, config.task)
model_config = WhisperConfig.from_pretrained(config.model)  # only the configuration, not the weights
"""),
        md("## One batch of four training examples"),
        code("""
collator = DataCollatorSpeechSeq2SeqWithPadding(processor=processor,
                                                decoder_start_token_id=model_config.decoder_start_token_id)
examples = [prepared["train"][i] for i in range(4)]
batch = collator(examples)
{name: tuple(tensor.shape) for name, tensor in batch.items()}
"""),
        md("""
`input_features` is (batch, 80 mel bands, 3000 frames): every clip padded to 30 s. `labels` is as long
as the longest transcript in the batch; shorter rows are padded with `-100`, the index PyTorch's
cross-entropy ignores, so padding costs nothing in the loss:
"""),
        code("""
labels = batch["labels"]
padding = (labels == -100).sum(dim=1)
print("label ids per example:", [len(e["labels"]) for e in examples])
print("-100 padding per row: ", padding.tolist())
row = int(padding.argmax())
end = labels.shape[1] - int(padding[row])  # where the most padded row's own labels end
print(f"row {row} around its end: {labels[row, end - 3:end + 3].tolist()}  (50257 is <|endoftext|>)")
"""),
        md("""
## The start token, once

Every label row starts with `<|startoftranscript|>`. During training the model builds the decoder's input
by shifting the labels one place right and putting `decoder_start_token_id` (the same
`<|startoftranscript|>`) in front. If the labels still started with it, the decoder would read it twice
and be taught to *predict* it as the first token. So the collator strips it when every row starts with
the decoder start token.

The course's collator compares with `bos_token_id` instead, which for Whisper is `<|endoftext|>`, so its
strip never fires. Below, the same examples through both, and what the decoder reads after the model's own
shift:
"""),
        code("""
from transformers.models.whisper.modeling_whisper import shift_tokens_right
from helpers.notebook import first_tokens

def decoder_input(labels):  # what the model feeds its decoder, from the labels (model's own shift)
    return shift_tokens_right(labels, model_config.pad_token_id, model_config.decoder_start_token_id)
course = DataCollatorSpeechSeq2SeqWithPadding(processor, decoder_start_token_id=processor.tokenizer.bos_token_id)
course_labels = course(examples)["labels"]
first_tokens(processor.tokenizer, {
    "stored labels (02)": examples[0]["labels"],
    "our labels": labels[0], "our decoder input": decoder_input(labels)[0],
    "course's labels": course_labels[0], "course's decoder input": decoder_input(course_labels)[0],
})
"""),
        md("The same as text, on the longest example of the batch (special tokens shown):"),
        code("""
start, row = model_config.decoder_start_token_id, int(padding.argmin())
for name, ids in (("ours", decoder_input(labels)[row]), ("course", decoder_input(course_labels)[row])):
    print(f"{name:>6}: {processor.tokenizer.decode(ids)}")
    print(f"        starts with {int((ids[:2] == start).sum())} <|startoftranscript|> token(s)")
"""),
        md(NEXT.format("04_train.ipynb")),
    ],
    "04_train.ipynb": [
        header("04_train.ipynb", "4 · Train", """
**What this stage does.** It fine-tunes Whisper with `Seq2SeqTrainer` on the prepared training split,
evaluates the WER on the test split during training, keeps checkpoints in the workspace, saves the best
model, and plots the loss and WER curves.

**Why.** This is the fine-tuning itself. On a free Colab T4 it takes about 45 minutes for the course's
500 steps, long enough for a disconnect; so checkpoints go to Drive every 100 steps (about 9 minutes of
T4 time) and running this notebook again resumes from the last one. **Needs a GPU runtime** (Runtime >
Change runtime type > T4 GPU).

**Needs:** `prepared/` from [02_preprocess.ipynb](02_preprocess.ipynb). **Makes:** `training/`
(checkpoints, TensorBoard logs) and `model/` (the fine-tuned model and processor) in the workspace.
"""),
        SETUP_NOTE,
        code(SETUP_GPU),
        md("""
## The course's training arguments

The course writes them out (with `push_to_hub=True`, which we replace by a separate, token-safe push in
notebook 06):

```python
training_args = Seq2SeqTrainingArguments(
    output_dir="./whisper-small-dv",
    per_device_train_batch_size=16,
    gradient_accumulation_steps=1,
    learning_rate=1e-5,
    lr_scheduler_type="constant_with_warmup",
    warmup_steps=50,
    max_steps=500,
    gradient_checkpointing=True,
    fp16=True,
    fp16_full_eval=True,
    evaluation_strategy="steps",   # renamed eval_strategy in today's transformers
    per_device_eval_batch_size=16,
    predict_with_generate=True,
    generation_max_length=225,
    save_steps=500,                # we save (and evaluate) every 100 steps instead: see below
    eval_steps=500,
    logging_steps=25,
    report_to=["tensorboard"],
    load_best_model_at_end=True,
    metric_for_best_model="wer",
    greater_is_better=False,
    push_to_hub=True,
)
```

`helpers.training.training_arguments(config, ...)` builds the same from the profile, with one change. The
course saves once, at step 500: a disconnect at step 450 would lose everything. We save every 100 steps,
so a disconnect costs at most about 9 minutes of T4 time. Picking the best checkpoint needs a WER at every
save, so the trainer evaluates every 100 steps too, on a fixed, seeded subset of 300 test clips (about a
minute each time, `eval_subset_size`); notebook 05 scores the chosen model on the whole test split.

**What a save costs on Drive.** A whisper-small checkpoint holds the weights and the optimizer state:
about 3 GB. `save_total_limit=2` keeps the newest two (plus the best, when it is older), so up to about
6-9 GB; Drive's free tier has 15 GB. Files the trainer deletes go to Drive's bin, where they still count
against your quota for 30 days: empty the bin (drive.google.com > Bin) if Drive fills up.

Line by line, with this run's values:
"""),
        code("""
from helpers.notebook import explain_training_arguments
from helpers.training import training_arguments
from helpers.workspace import artifact_path

explain_training_arguments(training_arguments(config, artifact_path("training")))
"""),
        md("""
## TensorBoard

In Colab, TensorBoard opens inside the notebook and follows the run live (elsewhere, run
`tensorboard --logdir <workspace>/training` in a terminal).
"""),
        code("""
from helpers.notebook import in_colab

if in_colab():
    %load_ext tensorboard
    %tensorboard --logdir {artifact_path("training")}
"""),
        md("""
## Train, or resume after a disconnect

A checkpoint is saved every `save_steps` steps in the workspace. If Colab disconnects, reconnect, run the
set-up cell and this notebook again: `train` finds the last checkpoint and continues from its step, with
the optimizer and learning-rate schedule where they were. Set `RESUME = False` (or delete
`training/` in the workspace) to start over.
"""),
        code("""
from datasets import load_from_disk
from helpers.model import load_model_and_processor
from helpers.training import build_trainer, train
from helpers.workspace import claim, require

RESUME = True
model, processor = load_model_and_processor(config.model, config.language, config.task)
# Both checked against this run's stamp: data prepared, or checkpoints saved, by another run stop here.
prepared = load_from_disk(require("prepared", processor=processor))
claim("training", processor)
trainer = build_trainer(model, processor, prepared, config, artifact_path("training"))
train(trainer, resume=RESUME)
"""),
        md("""
## Save the model

`load_best_model_at_end` has loaded the checkpoint with the lowest WER; it is saved with its processor,
so `from_pretrained` and `pipeline` can load the folder alone.
"""),
        code("""
from helpers.notebook import best_evaluation
from helpers.workspace import stamp

model_dir = artifact_path("model")
trainer.save_model(str(model_dir))
processor.save_pretrained(str(model_dir))
stamp("model", processor)
best = best_evaluation(trainer.state.log_history, trainer.state.best_global_step)
print(f"Saved the model from step {best['step']} to {model_dir}: test WER {best['eval_wer']:.2f} % "
      f"(orthographic {best['eval_wer_ortho']:.2f} %, CER {best['eval_cer']:.2f} %)")
"""),
        md("""
## Loss and WER curves

From the trainer's log history: the training loss every `logging_steps`, the test loss and error rates
every `eval_steps`.
"""),
        code("""
from helpers.plots import plot_training

plot_training(trainer.state.log_history)
"""),
        md(NEXT.format("05_evaluate.ipynb")),
    ],
    "05_evaluate.ipynb": [
        header("05_evaluate.ipynb", "5 · Evaluate: zero-shot against fine-tuned", """
**What this stage does.** It transcribes the same test split with the base model (zero-shot) and with
the fine-tuned model, using the same generation settings, and compares four error rates in a table and a
chart. Then it shows why one of them misleads on Thaana and which test clips the model gets most wrong.

**Why.** A WER on its own says little: the comparison with the model you started from, on the same
clips, tells you what fine-tuning bought.

**Needs:** `prepared/` from [02_preprocess.ipynb](02_preprocess.ipynb) and `model/` from
[04_train.ipynb](04_train.ipynb). **Makes:** `results.json` and `predictions.json` in the workspace.
"""),
        SETUP_NOTE,
        code(SETUP_GPU),
        code("""
from datasets import load_from_disk
from helpers.evaluation import evaluate_model, evaluation_key, reuse_or_evaluate
from helpers.model import load_model_and_processor
from helpers.workspace import artifact_path, require, stamp

test = load_from_disk(require("prepared"))["test"]
fine_tuned_dir = require("model")

def score(model_id):  # load a model, transcribe the test split in batches on the GPU (fp16), score it
    model, processor = load_model_and_processor(model_id, config.language, config.task)
    return evaluate_model(model, processor, test, config.eval_batch_size, config.generation_max_length,
                          fp16=config.fp16)
"""),
        code("""
from helpers.model import load_processor

# The zero-shot score depends only on the model, the data and the generation settings: computed once, then
# reused from baseline.json when this notebook runs again (the CLI does the same).
processor = load_processor(config.model, config.language, config.task)
key = evaluation_key(config, config.model, test, processor)
zero_shot, reused = reuse_or_evaluate(artifact_path("baseline"), key, lambda: score(config.model))
stamp("baseline", processor)
print("Zero-shot score", "reused from baseline.json" if reused else "computed and saved to baseline.json")
fine_tuned = score(str(fine_tuned_dir))
"""),
        md("""
## Four error rates

* `wer_ortho`: word error rate on the raw text, punctuation and case included;
* `wer`: after our normaliser (lower case, no punctuation, combining marks kept);
* `wer_basic`: after Whisper's `BasicTextNormalizer`, as the course computes its "normalised" WER;
* `cer`: character error rate after our normaliser.
"""),
        code("""
from helpers.notebook import scores_table

results = {"zero-shot": zero_shot["scores"], "fine-tuned": fine_tuned["scores"]}
scores_table(results)
"""),
        code("""
from helpers.plots import plot_metrics

plot_metrics(results)
"""),
        md("""
## Why `BasicTextNormalizer` flatters Thaana

Thaana (Dhivehi's script) writes every vowel as a combining mark above or below its consonant, and so
does Sinhala. Whisper's `BasicTextNormalizer` replaces every combining mark with a space: each word falls
into one-letter pieces, and the "WER" it gives counts pieces, most of which are right even when the
word is wrong. That is part of why the course's 14 % normalised WER sits so far below its 64 %
orthographic WER. Our `normalize` removes case and punctuation but keeps the marks:
"""),
        code("""
from helpers.metrics import basic_normalize, normalize

for text in ("ދިވެހިރާއްޖެ ރީތި ރަށެއް.", test[0]["sentence"]):
    for name, cleaned in (("ours", normalize(text)), ("basic", basic_normalize(text))):
        print(f"{name:>5}: {len(cleaned.split()):2d} words  {cleaned}")
"""),
        md("""
## The worst examples

The fine-tuned model's three worst test clips by normalised WER, aligned word by word with jiwer:
`S` marks a substituted word, `D` a deleted one and `I` an inserted one.
"""),
        code("""
from helpers.metrics import alignment_report

print(alignment_report(fine_tuned["predictions"], fine_tuned["references"], worst=3))
"""),
        md("## Save the results"),
        code("""
from helpers.evaluation import results_record
from helpers.files import write_json

write_json(artifact_path("results"), results_record(config, zero_shot["scores"], fine_tuned["scores"]))
transcripts = {"references": fine_tuned["references"], "zero_shot": zero_shot["predictions"],
               "fine_tuned": fine_tuned["predictions"]}
write_json(artifact_path("predictions"), transcripts)
stamp("results", processor), stamp("predictions", processor)
print(f"Fine-tuned WER {fine_tuned['scores']['wer']:.2f} % (zero-shot {zero_shot['scores']['wer']:.2f} %); "
      f"saved {artifact_path('results')}")
"""),
        md(NEXT.format("06_share.ipynb")),
    ],
    "06_share.ipynb": [
        header("06_share.ipynb", "6 · Share: model card, Hub, pipeline and demo", """
**What this stage does.** It writes a model card (base model, dataset, language, results, training
settings), pushes the model to the Hub when you are logged in, or else writes an export folder, and then
loads the model with `pipeline("automatic-speech-recognition")` to transcribe a test clip. In Colab it
offers a small Gradio demo.

**Why.** A model is only useful once someone else can load it: the card says what it is and how well it
works, and `pipeline` is how people will use it.

**Needs:** `prepared/` from [02_preprocess.ipynb](02_preprocess.ipynb) (a test clip), `model/` from
[04_train.ipynb](04_train.ipynb), `results.json` and `predictions.json` from
[05_evaluate.ipynb](05_evaluate.ipynb); a login from [00_hub_login.ipynb](00_hub_login.ipynb) to push.
**Makes:** a Hub repository, or `export/` in the workspace.
"""),
        SETUP_NOTE,
        code(SETUP),
        code("""
import json
from helpers.hub import model_card, who_am_i
from pathlib import Path
from helpers.notebook import card_language, source_label, training_summary
from helpers.workspace import require

model_dir, results = require("model"), json.loads(require("results").read_text())
user = who_am_i()  # None without a (valid) token or without network
repo_id = f"{user}/{Path(config.output_dir).name}" if user else Path(config.output_dir).name
card = model_card(repo_id, base_model=source_label(config.model, keep=1), dataset_name=source_label(config.data),
                  language=card_language(config), scores=results["finetuned"], training=training_summary(config))
print(card.content)
"""),
        md("""
## Push, or export

Logged in: the model (saved locally first) and its card go to `repo_id` on the Hub; if the push fails,
the local copy stays and the message says how to retry. Not logged in: the same files go into an
export folder in the workspace, ready to upload later (`python -m helpers push --model-dir ... --repo-id ...`).
"""),
        code("""
from helpers.hub import push_model
from helpers.notebook import export_model
from helpers.workspace import artifact_path

if user:
    card.save(str(model_dir / "README.md"))
    print(push_model(model_dir, repo_id))
    model_source = repo_id
else:
    model_source = str(export_model(model_dir, card, artifact_path("export") / repo_id))
    print(f"Not logged in: pushing skipped; the model and its card are in {model_source}")
"""),
        md("""
## Use it with `pipeline`

The same one line anyone would use (with your Hub id once pushed):
"""),
        code("""
from transformers import pipeline
from helpers.device import pipeline_placement

# On the GPU in fp16 when there is one (as in 05), else on the CPU in fp32.
asr = pipeline("automatic-speech-recognition", model=model_source, **pipeline_placement(config.fp16))
asr.model.generation_config.max_length = config.generation_max_length  # as in evaluation
"""),
        code("""
from datasets import load_from_disk
from IPython.display import Audio
from helpers.audio import SAMPLING_RATE, from_int16

clip = load_from_disk(require("prepared"))["test"][0]
wave = from_int16(clip["audio_16k"])
transcripts = json.loads(require("predictions").read_text())
print("reference:     ", clip["sentence"])
print("pipeline:      ", asr({"raw": wave, "sampling_rate": SAMPLING_RATE})["text"].strip())
print("05 transcribed:", transcripts["fine_tuned"][0])
Audio(wave, rate=SAMPLING_RATE)
"""),
        md("""
## A Gradio demo (optional, Colab)

Record or upload a clip and read the transcript; Colab shows a public link for a few days. This cell does
nothing outside Colab.
"""),
        code("""
from helpers.notebook import gradio_demo, in_colab

if in_colab():
    !pip install -q gradio
    gradio_demo(asr).launch()
"""),
        md("""
**Done.** You have loaded Common Voice, prepared it, trained, evaluated and shared a fine-tuned Whisper.
For a longer run, raise `max_steps` (the course suggests 4000 with a linear learning-rate schedule), or
run the whole path from a terminal with `python -m helpers run` (see the README).
"""),
    ],
}


def build(name: str) -> nbformat.NotebookNode:
    """The clean notebook ``name``: cells from :data:`NOTEBOOK_CELLS`, stable ids, no outputs."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "colab": {"provenance": []},
        "accelerator": "GPU",
    }
    for index, (kind, source) in enumerate(NOTEBOOK_CELLS[name]):
        cell = nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
        cell.id = str(index)  # what nbstripout writes, so its hook and this generator agree
        notebook.cells.append(cell)
    nbformat.validate(notebook)
    return notebook


def render(name: str) -> str:
    """The file text of notebook ``name``, as it is committed."""
    return nbformat.writes(build(name)) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that notebooks/ matches this source")
    args = parser.parse_args(argv)
    assert tuple(NOTEBOOK_CELLS) == NOTEBOOKS, "NOTEBOOK_CELLS and helpers.notebook.NOTEBOOKS disagree"
    stale = []
    for name in NOTEBOOKS:
        path = NOTEBOOK_DIR / name
        text = render(name)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(REPO_ROOT)}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python tools/make_notebooks.py")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
