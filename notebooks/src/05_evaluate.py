# %% [markdown]
# # 5 · Evaluate: zero-shot against fine-tuned
#
# **What this stage does.** It transcribes the same test split with the base model (zero-shot) and with
# the fine-tuned model, using the same generation settings, and compares four error rates in a table and a
# chart, beside the course's figures. Then it shows why one of them misleads on Thaana and which test
# clips the model gets most wrong.
#
# **Why.** A WER on its own says little: the comparison with the model you started from, on the same
# clips, tells you what fine-tuning bought.
#
# **The test split scores the fine-tuned model here, once.** As the course, 04 trained 500 steps and kept
# step 500's model: the course evaluates once, at step 500, so it chooses nothing, and neither does the real
# run here (its one evaluation in 04 was on the `validation` slice of dev). No test clip was trained on or
# used to choose, so the fine-tuned WER below is a fair estimate for new recordings, comparable with the
# course's 14.1 %: the same greedy decoding, up to 225 tokens, on every test clip.
#
# <!-- notebook-only -->
# **Needs:** `prepared/` from [02_preprocess.ipynb](02_preprocess.ipynb) and `model/` from
# [04_train.ipynb](04_train.ipynb). **Makes:** `baseline.json`, `results.json` and `predictions.json` in the
# workspace. **Runtime: a GPU** (Runtime > Change runtime type > T4 GPU). **Time on a free Colab T4:** about 5-14
# minutes: the set-up cell, the zero-shot pass on 400 test clips and the fine-tuned greedy pass on all 2,212 (14 if
# every decoder step is as slow as eager decoding on the GPUs measured; the fast path is meant to avoid that),
# projected by [the unit's budget](../docs/benchmarks.md#the-units-budget) from the course's 45 T4 minutes (not yet
# timed on a T4); 5 beams, opt-in, add about as long again as the greedy pass. The zero-shot pass is reused from
# `baseline.json` when you run this again.
# <!-- /notebook-only -->
# <!-- workshop-only -->
# **In the workshop:** one to three minutes (the unit's budget): the zero-shot score computed in stage 4 is
# reused; the fine-tuned model is scored greedily on the short run's test clips.
# <!-- /workshop-only -->
#
# **In the course:** [Evaluation Metrics](https://huggingface.co/learn/audio-course/chapter5/fine-tuning#evaluation-metrics),
# [Evaluation metrics for ASR](https://huggingface.co/learn/audio-course/chapter5/evaluation)
# · **In the blog post:** [Evaluation Metrics](https://huggingface.co/blog/fine-tune-whisper#evaluation-metrics)

# %% tags=["setup"]
from helpers.notebook.session import setup

config = setup(needs_gpu=True)

# %% [markdown]
# ## The scoring code
#
# Both models go through the same two functions, shown here once. `transcribe_ids` batches the test clips
# and generates with the model's own generation config (language and task set when it was loaded, at most
# `generation_max_length` tokens, greedy) on the GPU in fp16; `transcribe` decodes its ids without special
# tokens. On a GPU the decoder keeps one static KV cache for the whole pass, which lets transformers compile
# each decoder step into CUDA graphs: the same transcripts, in a fraction of the time (the first line each
# pass prints says which way it decodes, and why).
# `wer_scores` compares the transcripts with the references using jiwer, as the course's
# `evaluate.load("wer")` does, after three treatments of the text.

# %%
from helpers.evaluation import transcribe_ids
from helpers.notebook.display import show_source

show_source(transcribe_ids, marks={
    "order.sort(": "clips of similar length together, so a batch stops generating together",
    "generation.max_length, generation.num_beams =": "the model's own settings, at most generation_max_length",
    "features, cache = static.pad(features)": "the fast path: one static cache, every batch the same size",
    "model.generate(": "greedy decoding on the GPU in fp16 (the CPU in fp32)",
})

# %%
from helpers.metrics import wer_scores

show_source(wer_scores, marks={
    "keep = scored_pairs(": "pairs whose reference is empty are left out, as the course does",
    '"wer_ortho": _rate(': "the raw text: case and punctuation count",
    '"wer": _rate(': "the course's normalised WER: after Whisper's BasicTextNormalizer",
    '"wer_words": _rate(': "ours: case and punctuation off, vowel marks kept, words whole",
})

# %%
from helpers.evaluation import describe_zero_shot, evaluate_model, evaluate_once, evaluate_zero_shot, evaluation_key
from helpers.model import load_model_and_processor, load_processor
from helpers.notebook.session import load_from_workspace, saved_path

test = load_from_workspace("prepared")["test"]
fine_tuned_dir = saved_path("model")


def score(model_id, num_beams=1):  # load a model, transcribe the test split (GPU, fp16 when there is one), score it
    model, processor = load_model_and_processor(model_id, config.language, config.task)
    return evaluate_model(model, processor, test, config.eval_batch_size, config.generation_max_length,
                          num_beams=num_beams, fast=config.fast_generate, fp16=config.fp16)


# %% [markdown]
# **The zero-shot pass is cut to what it teaches.** Zero-shot Whisper writes Dhivehi in other scripts and often
# loops, repeating a phrase until the length limit: a whole pass at 225 tokens a clip would be the unit's
# longest wait for a score that sits far above 100 % either way (the course's: 167 % orthographic, 126 %
# normalised). So `evaluate_zero_shot` transcribes a seeded sample of the test split
# (`config.zero_shot_samples`: 400 of 2,212 clips in the real run, with the 95 % interval of its `wer` printed
# under it), stops a transcript once its tail repeats `config.stop_repeats` times (`RepeatedTail`, a
# transformers `StoppingCriteria`), and never lets one run past the longest reference plus
# `config.zero_shot_token_margin` tokens. The fine-tuned model below gets the course's pass, unchanged:
# greedy, up to `generation_max_length`, every test clip.

# %%
# The zero-shot score depends only on the model, the data and the generation settings: computed once, then
# reused from baseline.json when this stage runs again (the command line does the same).
processor = load_processor(config.model, config.language, config.task)
key = evaluation_key(config, config.model, test, processor)


def score_zero_shot():  # the same scoring, on a sample of the test split, stopping transcripts that loop
    model, model_processor = load_model_and_processor(config.model, config.language, config.task)
    return evaluate_zero_shot(model, model_processor, test, config)


zero_shot, reused = evaluate_once("baseline", key, score_zero_shot, processor)
print("Zero-shot score", "reused from baseline.json" if reused else "computed and saved to baseline.json")
print(describe_zero_shot(zero_shot))
fine_tuned = score(str(fine_tuned_dir))

# %% [markdown]
# ## Four error rates, named
#
# Never compare two WERs without their names: after 500 steps the course's *normalised* WER is 14 %, its
# orthographic WER 64 %, on the same transcripts.
#
# * `wer_ortho`: word error rate on the raw text, punctuation and case included (the course's `wer_ortho`);
# * `wer`: after Whisper's `BasicTextNormalizer`, the course's normalised WER (the course's `wer`);
# * `wer_words`: after our normaliser (lower case, no punctuation, combining marks kept: words stay whole);
# * `cer_words`: character error rate after our normaliser.
#
# The course's names mean the course's metrics, so the table's `wer` row compares with the course's 14 %.
# `wer_words` is the one that chose the checkpoint in 04: the course's `wer` counts the pieces
# `BasicTextNormalizer` cuts Thaana's words into (below), `wer_words` counts the words.

# %%
from IPython.display import display

from helpers.notebook.display import real_run_note, scores_table

results = {"zero-shot": zero_shot["scores"], "fine-tuned": fine_tuned["scores"]}
display(scores_table(results), real_run_note(config))

# %%
from helpers.notebook.plots import plot_metrics

plot_metrics(results)

# %% [markdown]
# ## The course's own call
#
# The course scores with `evaluate.load("wer")`, which fetches a small script from the Hub. On the same
# text (after `BasicTextNormalizer`) it must give the same number as our `wer`; offline it cannot be
# loaded, and the cell says so.

# %%
from helpers.metrics import course_evaluate_wer

course_wer, why = course_evaluate_wer(fine_tuned["predictions"], fine_tuned["references"])
if course_wer is None:
    print(why)
else:
    print(f"100 * evaluate.load('wer'): {course_wer:.2f} %; our wer: {fine_tuned['scores']['wer']:.2f} %"
          f" ({why})")

# %% [markdown]
# ## Greedy against beam search
#
# The course scores greedy decoding (one beam: `Seq2SeqTrainer`'s default and the model's generation
# config), so the fine-tuned model's greedy score above is the one to compare with the course's 14.1 %
# normalised WER (`wer`). Beam search keeps several candidate transcripts at each step and returns
# the likeliest whole one; on OpenAI's real checkpoints 5 beams nearly halved greedy WER in our CPU
# benchmark (tiny.en 33.1 -> 17.4 %, base 21.6 -> 16.1 %) at 4-5 times the CPU time.
#
# **Opt-in: `setup(needs_gpu=True, eval_num_beams=5)`.** A 5-beam pass over the test split costs about as
# long again as the greedy one, some 4-12 more minutes of a free T4 (the unit's budget, `benchmarks/budget.py`),
# so the real run leaves it off (`eval_num_beams=1`) and this cell says so; with beams set, the fine-tuned
# model is scored again on the same split, with the time each pass took.

# %%
beams = None
if config.eval_num_beams > 1:
    beams = score(str(fine_tuned_dir), num_beams=config.eval_num_beams)
    decodings = {"fine-tuned, greedy (the course's)": fine_tuned["scores"],
                 f"fine-tuned, {config.eval_num_beams} beams": beams["scores"]}
    display(scores_table(decodings))
    print(f"Greedy took {fine_tuned['seconds']:.0f} s, {config.eval_num_beams} beams {beams['seconds']:.0f} s "
          "on this machine.")
else:
    print("Beam search is off (eval_num_beams=1): set eval_num_beams=5 in the set-up cell to score it, about "
          "as long again as the greedy pass.")

# %% [markdown]
# ## Why `BasicTextNormalizer` flatters Thaana
#
# Thaana (Dhivehi's script) writes every vowel as a combining mark above or below its consonant, and so
# does Sinhala. Whisper's `BasicTextNormalizer` replaces every combining mark with a space: each word falls
# into one-letter pieces, and the "WER" it gives counts pieces, most of which are right even when the
# word is wrong. That is part of why the course's 14 % normalised WER sits so far below its 64 %
# orthographic WER. Our `normalize` removes case and punctuation but keeps the marks:

# %%
from helpers.metrics import basic_normalize, normalize

for text in ("ދިވެހިރާއްޖެ ރީތި ރަށެއް.", test[0]["sentence"]):
    for name, cleaned in (("ours", normalize(text)), ("basic", basic_normalize(text))):
        print(f"{name:>5}: {len(cleaned.split()):2d} words  {cleaned}")

# %% [markdown]
# ## The worst examples
#
# The fine-tuned model's three worst test clips by `wer_words`, aligned word by word with jiwer:
# `S` marks a substituted word, `D` a deleted one and `I` an inserted one. Then listen to the worst one.

# %%
from helpers.metrics import alignment_report

print(alignment_report(fine_tuned["predictions"], fine_tuned["references"], worst=3))

# %%
import jiwer
from IPython.display import Audio

from helpers.audio import SAMPLING_RATE, from_int16
from helpers.metrics import scored_pairs

predictions, references = fine_tuned["predictions"], fine_tuned["references"]
worst = max(scored_pairs(predictions, references),
            key=lambda i: jiwer.wer(normalize(references[i]), normalize(predictions[i])))
print(f"reference: {references[worst]}\nfine-tuned: {predictions[worst]}")
Audio(from_int16(test[worst]["audio_16k"]), rate=SAMPLING_RATE)

# %% [markdown]
# ## Save the results

# %%
from helpers.evaluation import beam_search_record, predictions_record, results_record
from helpers.notebook.session import save_to_workspace

beam_search = beam_search_record(fine_tuned, beams, config.eval_num_beams) if beams else None
results_file = save_to_workspace(results_record(config, zero_shot["scores"], fine_tuned["scores"], beam_search),
                                 "results", processor)
predictions_file = save_to_workspace(predictions_record(zero_shot, fine_tuned), "predictions", processor)
print(f"Fine-tuned: wer {fine_tuned['scores']['wer']:.2f} %, wer_words {fine_tuned['scores']['wer_words']:.2f} % "
      f"(zero-shot {zero_shot['scores']['wer']:.2f} %, {zero_shot['scores']['wer_words']:.2f} %); "
      f"saved {results_file}")

# %% [markdown]
# ## Side by side: what each model wrote
#
# `predictions.json`, saved above, holds every test clip's reference and both models' transcripts, clip for
# clip. Here are the first five, each with its audio: listen, then read what Whisper wrote before fine-tuning
# and after.

# %%
import json

from helpers.notebook.display import transcripts_side_by_side

transcripts_side_by_side(json.loads(predictions_file.read_text(encoding="utf-8")), test, clips=5)

# %% [markdown]
# ## Try it yourself
#
# - **Listen to the worst clips.** Change `worst` above to the second and third worst: is the reference
#   right? Is the clip noisy, cut off, or read from another sentence?
# - **Generation settings.** Score the fine-tuned model with `generation_max_length` 64 instead of 225
#   (`setup(needs_gpu=True, generation_max_length=64)`): what changes, and how long does each pass take?
# - **Another checkpoint.** `score(str(runtime_dir("training") / "checkpoint-300"))` (import `runtime_dir`
#   from `helpers.notebook.session`) scores an earlier checkpoint kept on the runtime's disk; Drive keeps the newest
#   and the best, in fp16. Choosing among them by this table would make the test split choose again: compare
#   them on the validation split if you want to pick one.

# %% [markdown]
# <details><summary><b>Solutions</b> (open them after trying)</summary>
#
# - **The next worst clips.**
#
#   ```python
#   order = sorted(scored_pairs(predictions, references), reverse=True,
#                  key=lambda i: jiwer.wer(normalize(references[i]), normalize(predictions[i])))
#   worst = order[1]  # then order[2]; run the cell that prints and plays `worst` again
#   ```
# - **`generation_max_length=64`.** Transcripts longer than 64 tokens are cut, and Thaana takes about two
#   tokens a letter, so long sentences lose their end and the WER rises; the zero-shot pass, already stopped
#   at a repeated tail and at the longest reference, changes little. The baseline is computed again: its key
#   holds the setting.
# - **An earlier checkpoint.** Only the kept checkpoints are on the runtime's disk (the newest two and the
#   best; after a new runtime, only Drive's fp16 copies):
#
#   ```python
#   from helpers.notebook.session import runtime_dir
#
#   print(sorted(p.name for p in runtime_dir("training").glob("checkpoint-*")))
#   score(str(runtime_dir("training") / "checkpoint-100"))["scores"]  # a name from that list
#   ```
#
# </details>
