# %% [markdown]
# # 3 · Collate: one real batch
#
# **What this stage does.** It shows the data collator, the code that turns prepared examples into the
# batches the trainer feeds the model, and builds one batch exactly as the trainer will: log-mel features
# padded to 30 s, labels padded with `-100`, and the start token stripped from the labels. It shows each on
# real token ids and text.
#
# **Why.** The collator is where fine-tuning quietly goes wrong. Padding must be `-100` so that the loss
# ignores it, and the start token must appear exactly once in what the decoder reads, or the model learns
# to predict it.
#
# <!-- notebook-only -->
# **Needs:** `prepared/` from [02_preprocess.ipynb](02_preprocess.ipynb). **Makes:** nothing (the trainer builds
# its batches itself); it is here to understand, and can be skipped. **Runtime:** a CPU runtime is enough.
# **Time on a free Colab T4:** about 1 minute, the set-up cell (an estimate), and no T4 quota on a CPU runtime
# ([the unit's budget](../docs/benchmarks.md#the-units-budget)).
# <!-- /notebook-only -->
# <!-- workshop-only -->
# **In the workshop:** a minute; nothing is saved, it is here to understand.
# <!-- /workshop-only -->
#
# **In the course:** [Define a Data Collator](https://huggingface.co/learn/audio-course/chapter5/fine-tuning#define-a-data-collator)
# · **In the blog post:** [Define a Data Collator](https://huggingface.co/blog/fine-tune-whisper#define-a-data-collator)

# %% tags=["setup"]
from helpers.notebook.session import setup

config = setup()

# %%
from transformers import WhisperConfig

from helpers.model import load_processor
from helpers.notebook.session import load_from_workspace

prepared = load_from_workspace("prepared")
processor = load_processor(config.model, config.language, config.task)
model_config = WhisperConfig.from_pretrained(config.model)  # only the configuration, not the weights

# %% [markdown]
# ## The collator
#
# This is the class the trainer (04) and the evaluation (05) use, the course's
# `DataCollatorSpeechSeq2SeqWithPadding` with two changes: it computes the log-mel features of the whole
# batch from the stored 16 kHz audio (02 stored no features), and it strips the start token by comparing
# with `decoder_start_token_id`. The course compares with `tokenizer.bos_token_id`, which for Whisper is
# `<|endoftext|>`, so its strip never fires: see the course's
# [issue #85](https://github.com/huggingface/audio-transformers-course/issues/85) and below.
#
# What to look for: `extractor.pad(` stacks stored log-mel features (the course's way) as they are;
# `log_mel_batch(` computes ours for the whole batch from the 16 kHz audio; `masked_fill(` turns label
# padding into `-100`, the index the loss ignores; `== self.decoder_start_token_id` strips the start token,
# which the model adds again itself. The class is yours to change: edit the cell and run it, and the cells
# below (and 04's trainer, in the workshop) use your version.

# %%
# %load -s DataCollatorSpeechSeq2SeqWithPadding helpers/collator.py
from helpers.collator import DataCollatorSpeechSeq2SeqWithPadding

# isort: split

# %% [markdown]
# ## One batch of four training examples

# %%
collator = DataCollatorSpeechSeq2SeqWithPadding(processor=processor,
                                                decoder_start_token_id=model_config.decoder_start_token_id)
examples = [prepared["train"][i] for i in range(4)]
batch = collator(examples)
{name: tuple(tensor.shape) for name, tensor in batch.items()}

# %% [markdown]
# `input_features` is (batch, 80 mel bands, 3000 frames): every clip padded to 30 s. An `attention_mask`,
# if the batch holds one, is all ones: Whisper's encoder attends to every frame, padding included, as it was
# trained. `labels` is as long as the longest transcript in the batch; shorter rows are padded with `-100`,
# the index PyTorch's cross-entropy ignores, so padding costs nothing in the loss:

# %%
labels = batch["labels"]
padding = (labels == -100).sum(dim=1)
print("label ids per example:", [len(e["labels"]) for e in examples])
print("-100 padding per row: ", padding.tolist())
row = int(padding.argmax())
end = labels.shape[1] - int(padding[row])  # where the most padded row's own labels end
print(f"row {row} around its end: {labels[row, end - 3:end + 3].tolist()}  (50257 is <|endoftext|>)")

# %% [markdown]
# ## The start token, once
#
# Every label row starts with `<|startoftranscript|>`. During training the model builds the decoder's input
# by shifting the labels one place right and putting `decoder_start_token_id` (the same
# `<|startoftranscript|>`) in front. If the labels still started with it, the decoder would read it twice
# and be taught to *predict* it as the first token. Below, the same examples through our collator and
# through the course's comparison (`bos_token_id`), and what the decoder reads after the model's own shift:

# %%
from transformers.models.whisper.modeling_whisper import shift_tokens_right

from helpers.notebook.display import first_tokens


def decoder_input(labels):  # what the model feeds its decoder, from the labels (the model's own shift)
    return shift_tokens_right(labels, model_config.pad_token_id, model_config.decoder_start_token_id)


course = DataCollatorSpeechSeq2SeqWithPadding(processor, decoder_start_token_id=processor.tokenizer.bos_token_id)
course_labels = course(examples)["labels"]
first_tokens(processor.tokenizer, {
    "stored labels (02)": examples[0]["labels"],
    "our labels": labels[0], "our decoder input": decoder_input(labels)[0],
    "course's labels": course_labels[0], "course's decoder input": decoder_input(course_labels)[0],
})

# %% [markdown]
# The same as text, on the longest example of the batch (special tokens shown):

# %%
start, row = model_config.decoder_start_token_id, int(padding.argmin())
for name, ids in (("ours", decoder_input(labels)[row]), ("course", decoder_input(course_labels)[row])):
    print(f"{name:>6}: {processor.tokenizer.decode(ids)}")
    print(f"        starts with {int((ids[:2] == start).sum())} <|startoftranscript|> token(s)")

# %% [markdown]
# ## Try it yourself
#
# - Collate eight examples sorted by duration (`prepared["train"].sort("duration")`) and eight random
#   ones: how much `-100` padding does each batch carry?
# - Remove the strip from the collator in 04 (the same editable class), and train a few steps there
#   (`setup(needs_gpu=True, max_steps=50)`; without a GPU, `setup(needs_gpu=True, profile="cpu", max_steps=50)`):
#   what does the model learn to put first?

# %% [markdown]
# <details><summary><b>Solutions</b> (open them after trying)</summary>
#
# - **Sorted against random batches.**
#
#   ```python
#   for name, rows in (("sorted", prepared["train"].sort("duration").select(range(8))),
#                      ("random", prepared["train"].shuffle(seed=0).select(range(8)))):
#       labels = collator(list(rows))["labels"]
#       print(f"{name}: {int((labels == -100).sum())} of {labels.numel()} label slots are padding")
#   ```
#
#   Clips of similar length have transcripts of similar length, so the sorted batch carries less padding
#   (padding costs no loss, but the batch still computes it).
# - **Without the strip.** The labels then begin with `<|startoftranscript|>`, so the decoder reads it twice
#   (the course's row in the table above) and its first target is the start token itself: the model learns to
#   predict a token that generation always supplies, a wasted and misleading target in every row (course
#   issue #85).
#
# </details>
