# %% [markdown]
# # 4 · Train
#
# **What this stage does.** It writes out the course's `Seq2SeqTrainingArguments` and `Seq2SeqTrainer`
# with this run's values, fine-tunes Whisper on the prepared training split, measures the WER on the
# validation clips at the end of training, keeps checkpoints, saves the model, and plots the loss and WER.
#
# **Why.** This is the fine-tuning itself. On a free Colab T4 the course's 500 steps and evaluation take about
# 45 minutes (here, with SDPA attention, about 29 for the steps), long enough for a disconnect; so the trainer
# saves every 100 steps, a small copy of each save goes to Drive, and running this stage again resumes from
# the last one.
#
# <!-- notebook-only -->
# **Needs:** `prepared/` from [02_preprocess.ipynb](02_preprocess.ipynb). **Makes:** `training/` (the small copies of
# the checkpoints) and `model/` (the fine-tuned model and processor) in the workspace. **Runtime: a GPU** (Runtime >
# Change runtime type > T4 GPU). **Time on a free Colab T4:** about 22-30 minutes: the set-up cell, 500 steps and one
# evaluation of 300 validation clips, projected by [the unit's budget](../docs/benchmarks.md#the-units-budget) from
# the course's 45 T4 minutes for its 500 steps and evaluation (not yet timed on a T4).
# <!-- /notebook-only -->
# <!-- workshop-only -->
# **In the workshop:** the zero-shot score first (about a minute), so the baseline is on screen while
# the model trains; then 200 steps with two evaluations of 100 clips (about 12 minutes with `SHORT_RUN`).
# <!-- /workshop-only -->
#
# **In the course:** [Define the Training Configuration](https://huggingface.co/learn/audio-course/chapter5/fine-tuning#define-the-training-configuration),
# [Training](https://huggingface.co/learn/audio-course/chapter5/fine-tuning#training)
# · **In the blog post:** [Define the Training Configuration](https://huggingface.co/blog/fine-tune-whisper#define-the-training-configuration)

# %% tags=["setup"]
from helpers.notebook.session import setup

config = setup(needs_gpu=True)

# %% [markdown]
# ## The training arguments
#
# The course writes them out like this (with `push_to_hub=True`, which 06 replaces by a separate,
# token-safe push):
#
# ```python
# training_args = Seq2SeqTrainingArguments(
#     output_dir="./whisper-small-dv", per_device_train_batch_size=16, gradient_accumulation_steps=1,
#     learning_rate=1e-5, lr_scheduler_type="constant_with_warmup", warmup_steps=50, max_steps=500,
#     gradient_checkpointing=True, fp16=True, fp16_full_eval=True, evaluation_strategy="steps",
#     per_device_eval_batch_size=16, predict_with_generate=True, generation_max_length=225,
#     save_steps=500, eval_steps=500, logging_steps=25, report_to=["tensorboard"],
#     load_best_model_at_end=True, metric_for_best_model="wer", greater_is_better=False, push_to_hub=True,
# )
# ```
#
# Below, the same call with today's names (`eval_strategy`, `activation_checkpointing`) and this run's
# values from the profile (`config`). One value differs from the course: it saves once, at step 500, so a
# disconnect at step 450 would lose everything; we save every 100 steps. A save for a disconnect needs no
# evaluation, so the trainer still evaluates once, at step 500, as the course does.
#
# **Why evaluate on a validation slice.** The course evaluates once, at step 500, on `common_voice["test"]`:
# with one evaluation, `load_best_model_at_end` has nothing to choose between, so it keeps step 500's model
# and its WER on test is a fair score. A choice would only come with more evaluations, and ours would come
# only because we save more often: had each of our saves been evaluated, picking the lowest WER among them on
# test would let the test clips choose the model they then score, which flatters it. So whatever is evaluated
# during training here uses the `validation` split, 300 clips of Common Voice's dev split held out in 01
# (the course trains on all of dev, so we train on a few hundred clips fewer), and 05 scores the final model
# on the test split once. In the real run the one evaluation at step 500 chooses nothing either
# (`load_best_model_at_end` is off: transformers needs every save evaluated to choose among them); it
# shows the validation WER at the end of training, as the course's table shows its WER at step 500.
#
# **Where a save goes, and what it costs.** A whisper-small checkpoint holds the fp32 weights (0.97 GB) and
# AdamW's two moments (1.93 GB): about 2.9 GB. Five of them written to Drive would be about 15 GB, and the
# ones `save_total_limit` deletes stay in Drive's bin, counting against the free 15 GB for 30 days. So the
# trainer saves its checkpoints on the runtime's own disk (`output_dir` below; free, and gone after a
# disconnect), and after each save a callback, `CheckpointMirror`, copies to `training/` on Drive what a new
# runtime needs to go on: the weights in fp16 (0.48 GB), the step, the learning-rate schedule and the random
# state, but not AdamW's moments. Five copies and the final model (fp32, 0.97 GB) write about 3.4 GB to
# Drive in all, deleted copies included. After a disconnect, training resumes from the newest copy, its
# moments starting again from zero (what that costs is in docs/checkpoints-and-drive.md).
#
# **The offline run** (profile `offline`, the default of `scripts/run_notebooks.py`) fine-tunes OpenAI's
# real multilingual whisper-base on the 63 bundled Sinhala clips, on 2 CPU cores, with the course's recipe,
# and differs from the T4 run only in values, each one a lever on CPU time. Whisper's encoder reads 30 s of
# padded audio whatever the clip's length, about 1.75 CPU-seconds a clip for base, so the cost is counted in
# encoder passes: `freeze_encoder=True` trains the decoder only (no encoder backward: a step costs about
# 2.6x less; distil-whisper trains this way too), which is enough for the decoder to learn to write Sinhala
# script; 20 steps of 4 clips, since Adam's step does not grow with the batch; one evaluation, at the end;
# 8 test clips and `generation_max_length=48` (the longest bundled transcript is 47 tokens), since the
# zero-shot model loops to the limit. What each lever saves: docs/offline-run.md.

# %% tags=["training-arguments"]
import torch
from transformers import Seq2SeqTrainingArguments

from helpers.notebook.session import runtime_dir

cuda = torch.cuda.is_available()  # fp16 needs a GPU; on a CPU the same run goes in fp32
training_args = Seq2SeqTrainingArguments(
    output_dir=str(runtime_dir("training")),  # the runtime's own disk: full checkpoints, not Drive (see above)
    per_device_train_batch_size=config.train_batch_size,
    gradient_accumulation_steps=config.gradient_accumulation_steps,
    learning_rate=config.learning_rate,
    lr_scheduler_type=config.lr_scheduler_type,
    warmup_steps=config.warmup_steps,
    max_steps=config.max_steps,
    activation_checkpointing=config.gradient_checkpointing,  # the course's gradient_checkpointing, renamed
    fp16=config.fp16 and cuda,
    fp16_full_eval=config.fp16 and cuda,
    eval_strategy="steps",  # the course's evaluation_strategy, renamed
    per_device_eval_batch_size=config.eval_batch_size,
    predict_with_generate=True,
    generation_max_length=config.generation_max_length,
    save_steps=config.save_steps,  # 100 on the t4 profile, not the course's 500: see above
    eval_steps=config.eval_steps,  # 500 on the t4 profile, the course's: a save needs no evaluation
    logging_steps=config.logging_steps,
    save_total_limit=config.save_total_limit,  # older checkpoints are deleted from the runtime's disk
    report_to=["tensorboard"],
    load_best_model_at_end=config.load_best_model_at_end,  # off in the real run: one evaluation chooses nothing
    metric_for_best_model="wer_words",  # the course's "wer" cuts Thaana's words at vowel marks: see below
    greater_is_better=False,
    push_to_hub=False,  # 06 pushes after a local save: no token in these arguments, pickled in every checkpoint
    remove_unused_columns=False,  # the collator needs audio_16k, which the model does not take
    dataloader_num_workers=config.dataloader_num_workers,
    seed=config.seed,
    use_cpu=not cuda,
    eval_accumulation_steps=1,  # each evaluation batch leaves the GPU at once: one batch's worth of memory
    disable_tqdm=False,  # the live progress table, while the libraries' own logs stay quiet
)

# %% [markdown]
# Each argument: the course's value (as on the course's page) beside this run's, in bold where this run's
# differs, and what it does and costs on a T4:

# %%
from helpers.notebook.display import explain_training_arguments

explain_training_arguments(training_args)

# %% [markdown]
# ## `compute_metrics`
#
# During evaluation the trainer generates transcripts and hands `compute_metrics` the generated ids and
# the labels. Below is the course's function, line for line: it turns the labels' `-100` back into padding,
# decodes both, computes `wer_ortho` on the raw text, then `wer` after Whisper's `BasicTextNormalizer`, on the
# pairs whose normalised reference is not empty. The course loads `metric = evaluate.load("wer")`, which
# fetches a script from the Hub; our `metric` does the same sums with jiwer (05 shows the two agree).
#
# Then two lines of ours: `wer_words` and `cer_words`, after a normaliser that removes case and punctuation
# but keeps Thaana's vowel marks, so words stay whole. One more line of ours at the top: generated ids are
# padded with `-100` too, when a batch's rows end at different lengths.
#
# **Which one picks the checkpoint: `wer_words`**, not the course's `wer` (so `metric_for_best_model`
# above differs from the course's). `BasicTextNormalizer` turns every vowel mark into a space, cutting a
# Thaana word into one-letter pieces: its `wer` counts pieces, most of them right even when the word is
# wrong, so it can prefer a checkpoint that writes fewer whole words correctly. `wer_words` counts words,
# what a reader of the transcript sees. Both are logged at every evaluation, side by side.
#
# It is wrapped in `make_compute_metrics(tokenizer)`, which hands it the tokenizer (the course uses the
# notebook's `processor`). Yours to change: edit it and run the cell, and the trainer below calls your version
# at every evaluation.

# %%
# %load -s make_compute_metrics helpers/metrics.py
from helpers.metrics import make_compute_metrics

# isort: split

# %% [markdown]
# ## The model and the trainer
#
# The model is loaded with the language and task set on its generation config (today's API: no
# `forced_decoder_ids`). The data prepared in 02 must have this run's data, language, task and tokenizer
# (not its training method or learning rate, which do not change the data): `load_from_workspace` checks,
# and another run's data stops the notebook with one sentence instead of training on it. Checkpoints are
# checked where `RESUME` is known, in the training cell below.

# %%
from helpers.model import load_model_and_processor
from helpers.notebook.session import load_from_workspace

model, processor = load_model_and_processor(config.model, config.language, config.task, config.dropout)
if config.gradient_checkpointing:
    model.config.use_cache = False  # the course's line: the cache is useless in training, and clashes with it
if config.freeze_encoder:  # the offline and cpu profiles: only the decoder trains (see below)
    model.freeze_encoder()
prepared = load_from_workspace("prepared", processor)

# %% [markdown]
# ## Optional: LoRA, a bigger Whisper on the same T4
#
# Full fine-tuning keeps, for every weight, its gradient and two AdamW moments: about 16 bytes a parameter
# (3.9 GB for whisper-small before any activation, 12 GB for whisper-medium), which is why the course stops
# at whisper-small on a T4. LoRA freezes the model and trains two small matrices beside the attention's
# query and value projections: 1.44 % of whisper-small's parameters, an adapter of about 14 MB. Turn it on
# in the set-up cell: `setup(needs_gpu=True, peft="lora")`; for a bigger model add
# `model="openai/whisper-medium"`. Experimental, not yet run on a GPU: with `!pip install -q bitsandbytes`,
# `load_in_8bit=True` keeps the frozen weights in 8 bits. The recipe becomes LoRA's (learning rate 1e-3,
# linear decay: the adapter starts at zero); everything after this cell stays the same. Without `peft` this
# cell does nothing. When you switch between full fine-tuning and LoRA, set `RESUME = False` below: their
# checkpoints differ.

# %%
from helpers.extras.lora import lora_from_config

if config.peft:  # set in the set-up cell: setup(needs_gpu=True, peft="lora")
    model = lora_from_config(model, config)  # prints how many parameters train

# %% [markdown]
# The trainer builds its batches with the collator of 03, the course's `DataCollatorSpeechSeq2SeqWithPadding`.
# This notebook runs in a runtime of its own, so here is the class again, editable: a change made here is
# what trains.

# %%
# %load -s DataCollatorSpeechSeq2SeqWithPadding helpers/collator.py
from helpers.collator import DataCollatorSpeechSeq2SeqWithPadding

# isort: split

# %% [markdown]
# The course's `Seq2SeqTrainer(...)`, with today's `processing_class` (the course's `tokenizer=`), the
# collator and `compute_metrics` above, the validation split (not the course's test split) as the evaluation
# set, and the callback that copies each save to Drive:

# %% tags=["trainer"]
from transformers import Seq2SeqTrainer

from helpers.notebook.session import checkpoint_copies_on_drive
from helpers.training import validation_split

trainer = Seq2SeqTrainer(
    model=model,
    args=training_args,
    train_dataset=prepared["train"],
    eval_dataset=validation_split(prepared),  # the course's common_voice["test"]; here a slice of dev
    data_collator=DataCollatorSpeechSeq2SeqWithPadding(processor, model.config.decoder_start_token_id),
    compute_metrics=make_compute_metrics(processor.tokenizer),
    processing_class=processor,
    callbacks=[checkpoint_copies_on_drive(processor)],  # after each save: a small copy on Drive
)

# %% [markdown]
# What each save of this model writes, and where:

# %%
from helpers.notebook.session import describe_cost

print(describe_cost(trainer.model.num_parameters(), config.max_steps // config.save_steps))

# %% [markdown]
# ## TensorBoard
#
# In Colab, TensorBoard opens inside the notebook and follows the run live (elsewhere, run
# `tensorboard --logdir <workspace>/training` in a terminal).

# %%
from helpers.notebook.session import in_colab

if in_colab():
    # %load_ext tensorboard
    # %tensorboard --logdir {training_args.output_dir}
    print("TensorBoard shows the run as it trains; refresh it with its own button.")

# %% [markdown] tags=["workshop-only"]
# ## The baseline first
#
# Before training, the model you start from transcribes the test split: its score stays on screen while the
# model trains, and stage 5 reuses it from `baseline.json`. Expect it far above 100 % (the course's zero-shot:
# orthographic 167 %, normalised 126 %): zero-shot Whisper writes Dhivehi in other scripts, or loops.

# %% tags=["workshop-only"]
from IPython.display import display

from helpers.notebook.display import real_run_note, scores_table
from helpers.notebook.workshop import zero_shot_baseline

zero_shot = zero_shot_baseline(config, prepared["test"], processor)
display(scores_table({"zero-shot": zero_shot["scores"]}), real_run_note(config))

# %% [markdown] tags=["workshop-only"]
# **While the next cell trains** (about 12 minutes with `SHORT_RUN`), the live table and TensorBoard above
# give the class something to read:
#
# - **The loss** falls fastest in the first 50 steps, the learning-rate warm-up: ask why the course warms up
#   instead of starting at 1e-5.
# - **The evaluations** at steps 100 and 200: the course's `wer` next to our `wer_words`, and both against the baseline
#   above. Ask the class to guess the step-200 figure before it appears.
# - **A checkpoint** is saved at each evaluation, and a small copy of it goes to Drive: have a learner find
#   `training/` in the Drive tab, and say what a disconnect now costs (the steps since the last save).
# - **The training arguments** above, one by one: `fp16`, `activation_checkpointing`, the batch of 16; then
#   run `!nvidia-smi` in a scratch cell (*Insert > Scratch code cell*) to see the memory they leave free.
# - **Stage 5's question** ahead of time: why does `BasicTextNormalizer` flatter Thaana?

# %% [markdown]
# ## Train, or resume after a disconnect
#
# The course calls `trainer.train()`. `train` does the same, but first looks for the last *complete*
# checkpoint: after a disconnect, reconnect, run the set-up cell and this stage again. The new runtime's
# disk is empty, so the newest copy on Drive is brought back first; training continues from that step with
# the same learning-rate schedule, random state and order of the data, and AdamW's moments start again (a
# restarted kernel on the same runtime still has the full checkpoints, moments included, and uses them).
# A run that already finished is loaded, not trained again. Checkpoints of a run with other settings (another
# language, LoRA instead of full fine-tuning, another learning rate) are never resumed: the cell stops and says
# what differs. Set `RESUME = False` to start over: the earlier run's checkpoints, here and on Drive, are
# deleted first, so a later resume cannot continue the old run. When Drive fills up, training goes on: a
# warning names the copy that could not be written, how much it needs and where to free space. A full runtime
# disk stops training with one sentence saying the same; after freeing space, run this cell again and it
# resumes from the last complete checkpoint.

# %%
from helpers.training import train

RESUME = True
result = train(trainer, resume=RESUME)  # a TrainOutput, or None when the run had already finished

# %% [markdown]
# ## Save the model
#
# The model is the last step's (in the real run, as in the course) or, where a profile evaluates at every save
# (`load_best_model_at_end`), the checkpoint with the lowest `wer_words` on the validation slice; it is saved with
# its processor,
# so `from_pretrained` and `pipeline` can load the folder alone. After LoRA, the adapter is saved alone
# (`adapter/`, megabytes) and merged into the weights (`model/`: a plain Whisper, no PEFT needed to load
# it). `saving_to_workspace` gives the workspace's folders and, once they are written, marks them as this
# run's, so 05 and 06 never score another run's model. If Drive is full, the cell stops with one sentence
# (how much is free, where to free space) and leaves no half-written folder: free space and run this cell
# again, which saves the model still in memory without training again. Every evaluation, with the course's
# normalised WER (`wer`) beside ours (`wer_words`):

# %%
from helpers.extras.lora import merge_and_save
from helpers.notebook.display import evaluations_table, real_run_note
from helpers.notebook.session import saving_to_workspace

with saving_to_workspace("model", "adapter", processor=processor) as (model_dir, adapter_dir):
    if config.peft:  # the adapter alone, and the model with the adapter merged into its weights
        merge_and_save(trainer.model, processor, model_dir, adapter_dir)
    else:
        trainer.save_model(str(model_dir))
        processor.save_pretrained(str(model_dir))
print(f"Saved the kept model to {model_dir}")
evaluations_table(trainer.state.log_history, trainer.state.best_global_step)

# %%
real_run_note(config)

# %% [markdown]
# ## Loss and WER curves
#
# From the trainer's log history: the training loss every `logging_steps`, the validation loss and error
# rates every `eval_steps`.

# %%
from helpers.notebook.plots import plot_training

plot_training(trainer.state.log_history)

# %% [markdown]
# ## Try it yourself
#
# - **A learning-rate sweep.** Set `setup(needs_gpu=True, learning_rate=3e-5)` in the set-up cell and
#   `RESUME = False`, run again and compare the evaluations table; try `1e-6` too. Too high, and the WER
#   goes *up* after a few hundred steps. To see that curve, add `eval_steps=100` (five evaluations of the
#   300 validation clips instead of one: about 4 more minutes of a T4, the unit's budget); with an evaluation
#   at every save, `load_best_model_at_end=True` can then keep the best of them, chosen on validation.
# - **A longer run.** `setup(needs_gpu=True, max_steps=1000, lr_scheduler_type="linear")`: with
#   `RESUME = True` it continues from step 500. The course suggests 4000 steps with a linear decay.
# - **LoRA.** `setup(needs_gpu=True, peft="lora")` and `RESUME = False`: compare the evaluations table and
#   the time per step with full fine-tuning; then try `lora_rank=8`, or
#   `lora_target_modules="q_proj,k_proj,v_proj,out_proj"`.
# - **Memory.** Run `!nvidia-smi` during training; then halve `train_batch_size` and double
#   `gradient_accumulation_steps` (the same effective batch) and compare.

# %% [markdown]
# <details><summary><b>Solutions</b> (open them after trying)</summary>
#
# - **Learning rate.** At 3e-5 the WER usually falls faster early; watch whether it turns up at the later
#   evaluations, the sign of a rate too high for 500 steps. At 1e-6 the model barely moves from the
#   zero-shot score in 500 steps. The course's 1e-5 is a safe middle for whisper-small.
# - **A longer run.** It resumes at step 500 with the schedule now linear to 1000; the evaluations table
#   gains a row at step 1000 (at 600-1000 with `eval_steps=100`). A longer run helps most when the WER was still
#   falling at step 500.
# - **LoRA.** The set-up prints about 3.5 M trainable parameters of 242 M (1.44 %); checkpoints shrink from
#   about 3 GB to tens of MB, and the WER after the same steps is usually somewhat higher than full
#   fine-tuning's (not measured here on Dhivehi).
# - **Memory.** `!nvidia-smi` shows the memory the run holds; batch 8 with accumulation 2 holds less (the
#   activations of 8 clips, not 16) and takes about as long per effective step, with the same updates.
#
# </details>
