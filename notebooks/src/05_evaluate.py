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
# **Needs:** `prepared/` from [02_preprocess.ipynb](02_preprocess.ipynb) and `model/` from
# [04_train.ipynb](04_train.ipynb). **Makes:** `baseline.json`, `results.json` and `predictions.json` in
# the workspace. **Runtime: a GPU** (Runtime > Change runtime type > T4 GPU). **Time on a free Colab T4:**
# about 20 minutes for two passes over the test split; the zero-shot one is slower, its transcripts running
# to the length limit, and is reused from `baseline.json` when you run this again (an estimate).
#
# **In the course:** [Evaluation Metrics](https://huggingface.co/learn/audio-course/chapter5/fine-tuning#evaluation-metrics),
# [Evaluation metrics for ASR](https://huggingface.co/learn/audio-course/chapter5/evaluation)
# · **In the blog post:** [Evaluation Metrics](https://huggingface.co/blog/fine-tune-whisper#evaluation-metrics)

# %% tags=["setup"]
from helpers.colab import setup

config = setup(needs_gpu=True)

# %% [markdown]
# ## The scoring code
#
# Both models go through the same two functions, shown here once. `transcribe` batches the test clips,
# generates with the model's own generation config (language and task set when it was loaded, at most
# `generation_max_length` tokens, greedy) on the GPU in fp16, and decodes without special tokens.
# `wer_scores` compares the transcripts with the references using jiwer, as the course's
# `evaluate.load("wer")` does, after three treatments of the text.

# %%
from helpers.display import show_source
from helpers.evaluation import transcribe

show_source(transcribe, marks={
    "order.sort(": "clips of similar length together, so a batch stops generating together",
    "generation.max_length = max_length": "the generation settings: the model's own, capped at generation_max_length",
    "model.generate(": "greedy decoding on the GPU in fp16 (the CPU in fp32)",
    "batch_decode(ids, skip_special_tokens=True)": "ids to text, without the language and task tokens",
})

# %%
from helpers.metrics import wer_scores

show_source(wer_scores, marks={
    "keep = scored_pairs(": "pairs whose reference is empty are left out, as the course does",
    '"wer_ortho": _rate(': "the raw text: case and punctuation count",
    '"wer": _rate(': "our normaliser: case and punctuation off, vowel marks kept",
    '"wer_basic": _rate(': "the course's normaliser, BasicTextNormalizer",
})

# %%
from datasets import load_from_disk

from helpers.evaluation import evaluate_model, evaluation_key, reuse_or_evaluate
from helpers.model import load_model_and_processor, load_processor
from helpers.workspace import artifact_path, require, stamp

test = load_from_disk(require("prepared"))["test"]
fine_tuned_dir = require("model")


def score(model_id):  # load a model, transcribe the test split (GPU, fp16 when there is one), score it
    model, processor = load_model_and_processor(model_id, config.language, config.task)
    return evaluate_model(model, processor, test, config.eval_batch_size, config.generation_max_length,
                          fp16=config.fp16)


# %%
# The zero-shot score depends only on the model, the data and the generation settings: computed once, then
# reused from baseline.json when this notebook runs again (the command line does the same).
processor = load_processor(config.model, config.language, config.task)
key = evaluation_key(config, config.model, test, processor)
zero_shot, reused = reuse_or_evaluate(artifact_path("baseline"), key, lambda: score(config.model))
stamp("baseline", processor)
print("Zero-shot score", "reused from baseline.json" if reused else "computed and saved to baseline.json")
fine_tuned = score(str(fine_tuned_dir))

# %% [markdown]
# ## Four error rates, named
#
# Never compare two WERs without their names: after 500 steps the course's *normalised* WER is 14 %, its
# orthographic WER 64 %, on the same transcripts.
#
# * `wer_ortho`: word error rate on the raw text, punctuation and case included (the course's `wer_ortho`);
# * `wer_basic`: after Whisper's `BasicTextNormalizer`, as the course computes its normalised WER;
# * `wer`: after our normaliser (lower case, no punctuation, combining marks kept);
# * `cer`: character error rate after our normaliser.

# %%
from IPython.display import display

from helpers.display import real_run_note, scores_table

results = {"zero-shot": zero_shot["scores"], "fine-tuned": fine_tuned["scores"]}
display(scores_table(results), real_run_note(config))

# %%
from helpers.plots import plot_metrics

plot_metrics(results)

# %% [markdown]
# ## The course's own call
#
# The course scores with `evaluate.load("wer")`, which fetches a small script from the Hub. On the same
# text (after `BasicTextNormalizer`) it must give the same number as our `wer_basic`; offline it cannot be
# loaded, and the cell says so.

# %%
from helpers.metrics import course_evaluate_wer

course_wer, why = course_evaluate_wer(fine_tuned["predictions"], fine_tuned["references"])
if course_wer is None:
    print(why)
else:
    print(f"100 * evaluate.load('wer'): {course_wer:.2f} %; our wer_basic: {fine_tuned['scores']['wer_basic']:.2f} %"
          f" ({why})")

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
# The fine-tuned model's three worst test clips by our normalised WER, aligned word by word with jiwer:
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
from helpers.evaluation import predictions_record, results_record
from helpers.files import write_json

write_json(artifact_path("results"), results_record(config, zero_shot["scores"], fine_tuned["scores"]))
write_json(artifact_path("predictions"), predictions_record(zero_shot, fine_tuned))
stamp("results", processor)
stamp("predictions", processor)
print(f"Fine-tuned: wer_basic {fine_tuned['scores']['wer_basic']:.2f} %, wer {fine_tuned['scores']['wer']:.2f} % "
      f"(zero-shot {zero_shot['scores']['wer_basic']:.2f} %, {zero_shot['scores']['wer']:.2f} %); "
      f"saved {artifact_path('results')}")

# %% [markdown]
# ## Try it yourself
#
# - **Listen to the worst clips.** Change `worst` above to the second and third worst: is the reference
#   right? Is the clip noisy, cut off, or read from another sentence?
# - **Generation settings.** Score the fine-tuned model with `generation_max_length` 64 instead of 225
#   (`setup(needs_gpu=True, generation_max_length=64)`): what changes, and how long does each pass take?
# - **Another checkpoint.** `score(str(artifact_path("training") / "checkpoint-300"))` scores an earlier
#   checkpoint on the whole test split.
