# %% [markdown]
# # 1 · Load Common Voice Dhivehi
#
# **What this stage does.** It finds the newest Common Voice Dhivehi release, loads it into a
# `DatasetDict` with a `train` split (Common Voice's train + dev, as in the course, but for a `validation`
# slice of 300 dev clips that chooses the best checkpoint in 04) and a held-out `test` split, each with only
# the `audio` and `sentence` columns, shows a few rows, plays a clip, and saves the splits in the workspace.
#
# **Why.** Dhivehi is a low-resource language Whisper was not trained on: the course shows that 500
# steps of fine-tuning on about 7 hours of it take the normalised WER from over 100 % to about 14 %.
#
# <!-- notebook-only -->
# **Needs:** nothing (logging in with [00_hub_login.ipynb](00_hub_login.ipynb) is optional); for the real run, a free
# Mozilla Data Collective account and API key (steps below). **Makes:** `loaded/` in the workspace. **Runtime:** a CPU
# runtime is enough. **Time on a free Colab T4:** about 4 minutes: the set-up cell and downloading the release and
# copying its clips (estimates), and no T4 quota on a CPU runtime ([the unit's
# budget](../docs/benchmarks.md#the-units-budget)).
# <!-- /notebook-only -->
# <!-- workshop-only -->
# **In the workshop:** about 3 minutes (an estimate), most of it downloading the release and copying its clips into the
# workspace. Learners without an MDC key set `DATA = "bundled"` above the set-up cell (see *The day before*).
# <!-- /workshop-only -->
#
# **In the course:** [Load Dataset](https://huggingface.co/learn/audio-course/chapter5/fine-tuning#load-dataset)
# · **In the blog post:** [Load Dataset](https://huggingface.co/blog/fine-tune-whisper#load-dataset)

# %% tags=["setup"]
from helpers.notebook.session import setup

config = setup()

# %% [markdown]
# ## Where Common Voice lives now
#
# The course loads Common Voice 13 from the Hugging Face Hub:
#
# ```python
# common_voice["train"] = load_dataset("mozilla-foundation/common_voice_13_0", "dv", split="train+validation")
# ```
#
# That no longer works: Common Voice **left the Hub in October 2025**, and Mozilla publishes it on the
# [Mozilla Data Collective](https://mozilladatacollective.com) (MDC). To get it:
#
# 1. Create a free account at <https://mozilladatacollective.com>.
# 2. Open the newest *Common Voice Scripted Speech* release for Dhivehi (the next cell finds it and prints
#    its name and id), read its terms and accept them: downloads are refused until you do.
# 3. Create an API key on the [API page](https://mozilladatacollective.com/api-reference).
# 4. In Colab, open the key icon in the left bar, add a secret named `MDC_API_KEY` with the key as its
#    value, and allow this notebook to read it. (Elsewhere: an environment variable or a `.env` file.)
# 5. Run the cells below. The archive is downloaded and unpacked on this runtime's own disk, not on Drive
#    (tens of thousands of MP3s would fill it); this notebook copies the clips into the workspace on Drive.
#
# **Today's release is not the course's CV13.** It has more clips and speakers and other test sentences,
# so your figures will be near the course's, not equal to them.
#
# The catalogue needs no account: this is how the `t4` profile's source, `common-voice:dv`, finds the
# newest release.

# %%
from helpers.data import DataSourceError
from helpers.notebook.session import find_common_voice

try:
    release = find_common_voice("dv")  # the MDC's public catalogue: name, version, size, licence, id
    print(release.describe())
except DataSourceError as error:
    print(error)  # offline, for instance; the smoke profile does not need it

# %% [markdown]
# ## Load the splits
#
# `config.data` is what this run loads. Any of these works, with `setup(data="...")` in the set-up cell:
#
# | source | what to pass | how to get it |
# |---|---|---|
# | the newest release for a locale | `"common-voice:dv"` (the `t4` profile's default) | the steps above |
# | one MDC dataset | `"mdc:<dataset id>"` | the id printed above, or from the dataset's page |
# | a release folder (e.g. on Drive) | `"/content/drive/MyDrive/cv-corpus-XX/dv"` | downloaded in a browser, unpacked |
# | a Hub dataset | `"owner/name"` or `"owner/name:config"` | a mirror, or your own dataset |
# | an audiofolder | a folder with audio files and `metadata.csv` | your own recordings |
#
# The `smoke` profile loads `data/cv-mini/si`: 96 clips spoken by espeak-ng in Sinhala (the closest
# language espeak-ng speaks, and the language Whisper is told to transcribe Dhivehi as), laid out exactly
# like a Common Voice release.

# %%
from helpers.data import load_common_voice, subsample

print("Loading", config.data)
# train = train + dev but for a seeded slice of dev, the validation split; test held out
splits = load_common_voice(config.data, seed=config.seed, validation_size=config.validation_size)
splits = subsample(splits, config.max_train_samples, config.max_test_samples)  # a shorter run, if asked
splits

# %% [markdown]
# The course's CV13 Dhivehi had 4,904 training clips (train + dev, about 7 hours) and 2,212 test clips
# (about 3 hours). A few rows of this run's training split:

# %%
from helpers.notebook.display import rows_table

rows_table(splits["train"], n=5)

# %% [markdown]
# ## Listen to a clip
#
# The `audio` column is kept *undecoded* (file bytes or a path): decoding happens in our own code with
# `soundfile` and `soxr`, the same in Colab, on a laptop and in CI (the `datasets` default, torchcodec,
# does not load beside every torch build). Whisper hears 16 kHz mono:

# %%
from IPython.display import Audio

from helpers.audio import SAMPLING_RATE, load_audio

example = splits["train"][0]
wave = load_audio(example["audio"])  # decoded, mono, resampled to 16 kHz
print(f"{example['sentence']}  ({len(wave) / SAMPLING_RATE:.1f} s)")
Audio(wave, rate=SAMPLING_RATE)

# %% [markdown]
# ## Save for the next stage
#
# The clips' bytes are copied into the saved splits, so the workspace copy keeps working after a Colab
# disconnect, when the download on the runtime's disk is gone.

# %%
from helpers.notebook.session import embed_audio, save_to_workspace

print("Saved to", save_to_workspace(embed_audio(splits), "loaded"))

# %% [markdown]
# ## Try it yourself
#
# - **Another language.** `find_common_voice("ta")` finds the newest Tamil release; start the course again
#   with `setup(data="common-voice:ta", language="tamil")` in the set-up cell. For a language Whisper does
#   not know, pick its closest relative among Whisper's languages, as the course does for Dhivehi.
# - **Your own recordings.** Put your clips in a Drive folder with a `metadata.csv` listing `file_name` and
#   `sentence` for each, and start with `setup(data="/content/drive/MyDrive/my-recordings")`: the same
#   code loads it as an audiofolder (10 % held out as test, and a tenth of the rest as validation).

# %% [markdown]
# <details><summary><b>Solutions</b> (open them after trying)</summary>
#
# - **Another language.**
#
#   ```python
#   print(find_common_voice("ta").describe())  # name, size, licence, id: accept its terms on the MDC page
#   ```
#
#   then start again with `setup(data="common-voice:ta", language="tamil")` (in the workshop, add
#   `language="tamil"` to the set-up cell and set `DATA = "common-voice:ta"`). Whisper has no Dhivehi, so the
#   course tells it "sinhalese", the nearest language it knows with the same kind of script.
# - **Your own recordings.** A folder on Drive with the audio files (WAV, MP3, FLAC, OGG) and a `metadata.csv`:
#
#   ```
#   file_name,sentence
#   hello.wav,Hello there.
#   weather.wav,The weather is fine today.
#   ```
#
#   `load_common_voice("/content/drive/MyDrive/my-recordings")` gives `train`, `validation` and `test` (10 %
#   held out as test, a tenth of the rest as validation); a `train/` and a `test/` folder, each with its own
#   `metadata.csv`, choose the split yourself.
#
# </details>
