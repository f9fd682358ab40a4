# %% [markdown]
# # 0 · Log in to the Hugging Face Hub
#
# **What this stage does.** It finds your Hugging Face token, or asks for one, so that the last notebook
# can push your fine-tuned model and its model card to the Hub.
#
# **Why.** On the Hub your model gets a page, a card with its results, and anyone can use it with one
# `pipeline(...)` line. Pushing is optional: without a token, or offline, every stage works the same and
# the last one writes an export folder instead.
#
# <!-- notebook-only -->
# **Needs:** nothing, this is the first stage. **Makes:** nothing in the workspace (the token stays where
# `huggingface_hub` keeps it). **Runtime:** a CPU runtime is enough. **Time on a free Colab T4:** about 1 minute, the
# set-up cell (an estimate), and no T4 quota on a CPU runtime ([the unit's
# budget](../docs/benchmarks.md#the-units-budget)).
# <!-- /notebook-only -->
# <!-- workshop-only -->
# **In the workshop:** a minute. The token found here serves the whole session: stage 6 pushes with it.
# <!-- /workshop-only -->
#
# **In the course:** [Prepare Environment](https://huggingface.co/learn/audio-course/chapter5/fine-tuning#prepare-environment)
# · **In Sanchit Gandhi's blog post:** [Prepare Environment](https://huggingface.co/blog/fine-tune-whisper#prepare-environment)

# %% tags=["setup"]
from helpers.notebook.session import setup

config = setup()

# %% [markdown]
# ## Where the token comes from
#
# The course calls `notebook_login()` and pastes a token. Here the first of these that is found wins:
#
# 1. the `HF_TOKEN` environment variable;
# 2. in Colab, a **secret** named `HF_TOKEN` (the key icon in the left bar; allow this notebook to read it);
# 3. a cached login (`hf auth login` in a terminal, or the login below).
#
# <!-- notebook-only -->
# **In Colab, prefer the secret.** Each notebook runs in its own runtime, and a login made here lasts only as long as
# this runtime: `06_share` will ask again. A secret reaches every notebook.
# <!-- /notebook-only -->
# <!-- workshop-only -->
# **Prefer the secret.** A login made here lasts as long as this runtime, the whole workshop; a secret
# survives a disconnect and reaches any notebook you open later.
# <!-- /workshop-only -->
# Create a token with *write* access at <https://huggingface.co/settings/tokens>.
#
# The token is never printed, never written to a file of ours, and never goes into the training arguments
# (which are saved inside every checkpoint): the helpers look it up only when pushing and hand it straight
# to `huggingface_hub`. Never paste a token into a code cell; a shared notebook would publish it.
#
# Without a token, or with the Hub out of reach, the cell says that pushing will be skipped and goes on.

# %%
from helpers.notebook.session import login

login()  # a token already there is used as is; online without one, the course's notebook_login() appears

# %% [markdown]
# Then check who is logged in (run it again after logging in above):

# %%
from helpers.notebook.session import login_status

print(login_status())

# %% [markdown]
# ## Try it yourself
#
# - Add a Colab secret named `HF_TOKEN`, allow this notebook to read it, and run the two cells above
#   again: `login_status()` now names you without any login prompt.
# - Create a *fine-grained* token that may only write to one repository (say `whisper-small-dv`): the
#   safest kind to keep in a notebook runtime.

# %% [markdown]
# <details><summary><b>Solutions</b> (open them after trying)</summary>
#
# - **The secret.** Key icon in the left bar > *Add new secret*, name `HF_TOKEN`, the token as its value, and
#   switch *Notebook access* on (without it the runtime does not see the secret). `login()` then prints that a
#   token was found, and `login_status()` names your account.
# - **A fine-grained token.** At <https://huggingface.co/settings/tokens>: *Create new token* > *Fine-grained*;
#   under *Repositories permissions* pick the repository (create `whisper-small-dv` first with *New model*)
#   and tick write access. A push anywhere else is then refused (HTTP 403), and stage 6 says so in one sentence.
#
# </details>
