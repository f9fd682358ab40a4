"""The private APIs of other libraries that helpers/runtime/trainer_internals.py lists (beside the Trainer's three,
tests/test_trainer_internals.py) still exist and still do what we rely on. A release that changes one fails
here, naming it, rather than in a learner's notebook or in CI's scheduling (scripts/try_newest.sh runs this file
first)."""

from __future__ import annotations

import inspect
import subprocess
import sys
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset, load_from_disk
from transformers import TrainerState

from helpers.config import REPO_ROOT, SMOKE_MODEL_DIR, get_config
from helpers.evaluation import StaticDecoding
from helpers.model import load_model_and_processor
from helpers.runtime.checkpoints import STATE, checkpoint_is_complete
from helpers.training import build_trainer


@contextmanager
def private_api(name: str, user: str):
    """A missing or re-shaped private name becomes one sentence saying what changed and who uses it."""
    try:
        yield
    except (AttributeError, TypeError, KeyError) as error:
        pytest.fail(f"{name} changed ({type(error).__name__}: {error}); {user} relies on it: adapt it there "
                    "(the list is in helpers/runtime/trainer_internals.py) before moving the pins.")


def test_a_datasets_fingerprint_names_its_content_and_history(tmp_path):
    """helpers.preparation.prepare_split keys its cache on ``Dataset._fingerprint``: the same rows through the
    same steps must give the same key, other rows another, and a saved copy keeps it."""
    with private_api("datasets.Dataset._fingerprint", "helpers.preparation._fingerprint"):
        dataset = Dataset.from_dict({"sentence": ["a", "b", "c"]})
        assert isinstance(dataset._fingerprint, str) and dataset._fingerprint
        assert dataset.select([0, 1])._fingerprint == dataset.select([0, 1])._fingerprint
        assert dataset.select([0, 1])._fingerprint != dataset.select([1, 2])._fingerprint != dataset._fingerprint
        dataset.save_to_disk(str(tmp_path / "saved"))  # 02 reads what 01 saved, once per run of 02
        dataset.select([2]).save_to_disk(str(tmp_path / "other"))
        loaded = load_from_disk(str(tmp_path / "saved"))
        assert loaded._fingerprint == load_from_disk(str(tmp_path / "saved"))._fingerprint  # a re-run reuses the cache
        assert loaded._fingerprint != load_from_disk(str(tmp_path / "other"))._fingerprint


def test_a_modules_forward_hooks_are_in_its_forward_hooks_dict():
    """helpers.extras.lora.make_inputs_require_grad reads ``conv1._forward_hooks`` to see whether transformers'
    ``enable_input_require_grads`` hooked Whisper's first convolution already."""
    model, _ = load_model_and_processor(str(SMOKE_MODEL_DIR), "sinhalese", "transcribe")
    conv1 = model.model.encoder.conv1
    with private_api("torch.nn.Module._forward_hooks", "helpers.extras.lora.make_inputs_require_grad"):
        assert not conv1._forward_hooks
        handle = conv1.register_forward_hook(lambda module, inputs, output: None)
        assert list(conv1._forward_hooks.values()) and len(conv1._forward_hooks) == 1
        handle.remove()
        assert not conv1._forward_hooks


def test_ipython_shows_a_course_error_through_showtraceback():
    """helpers.runtime.colab.short_course_errors hands IPython's ``_showtraceback`` the one-line error; in a real
    shell the cell's error is that line, with no traceback above it."""
    from IPython.core.interactiveshell import InteractiveShell
    from ipykernel.zmqshell import ZMQInteractiveShell

    for shell in (InteractiveShell, ZMQInteractiveShell):  # a terminal's, and the notebook kernel's
        with private_api(f"{shell.__name__}._showtraceback", "helpers.runtime.colab.short_course_errors"):
            assert list(inspect.signature(shell._showtraceback).parameters) == ["self", "etype", "evalue", "stb"]
    code = ("from IPython.core.interactiveshell import InteractiveShell\n"
            "shell = InteractiveShell.instance()\n"
            "from helpers.runtime.colab import short_course_errors\n"
            "short_course_errors()\n"
            "shell.run_cell('from helpers.runtime.errors import CourseError\\n"
            "raise CourseError(\"Run 01 first.\")')\n")
    shown = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                           check=False)
    out = shown.stdout + shown.stderr
    assert "CourseError: Run 01 first." in out and "Traceback" not in out and "raise CourseError" not in out, out


class Worker:
    """What pytest-xdist's scheduler sees of a worker process: it is sent test indexes, and told to stop."""

    def __init__(self, name: str):
        self.sent, self.done, self.gateway, self.shutting_down = [], set(), SimpleNamespace(id=name), False

    def send_runtest_some(self, indexes):
        self.sent += indexes

    def shutdown(self):
        self.shutting_down = True


def test_xdist_schedules_by_our_split_scope(pytestconfig, monkeypatch):
    """The root conftest.py's scheduler overrides ``LoadScopeScheduling._split_scope``: a file's tests on one
    worker, and all the notebooks on one worker, in order; and it fills ``workqueue`` longest unit first."""
    from xdist.scheduler import LoadScopeScheduling

    with private_api("xdist LoadScopeScheduling._split_scope, _assign_work_unit, workqueue",
                     "conftest.py (the suite's scheduling)"):
        assert list(inspect.signature(LoadScopeScheduling._split_scope).parameters) == ["self", "nodeid"]
        assert list(inspect.signature(LoadScopeScheduling._assign_work_unit).parameters) == ["self", "node"]
        monkeypatch.setattr(pytestconfig.option, "tx", ["2*popen"])  # two workers, as pytest.ini's -n 2 asks
        scheduler = pytestconfig.hook.pytest_xdist_make_scheduler(config=pytestconfig, log=None)
        assert isinstance(scheduler, LoadScopeScheduling)
        collection = ["notebooks/00_hub_login.ipynb::00_hub_login.ipynb", "notebooks/01_load.ipynb::01_load.ipynb",
                      "notebooks/02_preprocess.ipynb::02_preprocess.ipynb", "tests/test_a.py::test_one",
                      "tests/test_a.py::test_two", "tests/test_b.py::test_three", "tests/test_c.py::test_four",
                      "tests/test_learner_paths.py::test_five", "tests/test_colab_runtime.py::test_six"]
        workers = [Worker("gw0"), Worker("gw1")]
        for worker in workers:
            scheduler.add_node(worker)
            scheduler.add_node_collection(worker, collection)
        scheduler.schedule()
        for _ in range(len(collection)):  # each worker finishes what it was sent, and is sent more
            for worker in workers:
                for index in list(worker.sent):
                    if index not in worker.done:
                        worker.done.add(index)
                        scheduler.mark_test_complete(worker, index)
        first_sent = [collection[worker.sent[0]] for worker in workers]
    assert not scheduler.has_pending
    # the longest units first (conftest.LONGEST_FIRST), though xdist would start with the units of most tests
    assert first_sent == ["notebooks/00_hub_login.ipynb::00_hub_login.ipynb", "tests/test_colab_runtime.py::test_six"]
    sent = [[collection[i] for i in worker.sent] for worker in workers]
    assert sorted(sum(sent, [])) == sorted(collection)  # every test once
    notebooks = [worker for worker in sent if any(test.startswith("notebooks/") for test in worker)]
    assert len(notebooks) == 1 and [t for t in notebooks[0] if t.startswith("notebooks/")] == collection[:3]
    # the learner's paths after the notebooks, on their worker: they go on from the notebooks' workspace
    assert notebooks[0][3] == "tests/test_learner_paths.py::test_five"
    holding_a = [worker for worker in sent if any(t.startswith("tests/test_a.py") for t in worker)]
    assert len(holding_a) == 1 and {"tests/test_a.py::test_one", "tests/test_a.py::test_two"} <= set(holding_a[0])


def test_whisper_generates_max_length_tokens_after_a_four_token_prompt():
    """helpers.evaluation.StaticDecoding sizes its cache ``max_length + PROMPT_TOKENS``: Whisper's ``generate``
    feeds the decoder its prompt (start, language, task, no timestamps) and then ``max_length`` new tokens."""
    model, _ = load_model_and_processor(str(SMOKE_MODEL_DIR), "sinhalese", "transcribe")
    generation = model.generation_config
    generation.max_length = max_length = 6
    end = generation.eos_token_id
    generation.suppress_tokens = [*(generation.suppress_tokens or []), *(end if isinstance(end, list) else [end])]
    calls = []
    hook = model.model.decoder.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(kwargs["input_ids"].shape[1]), with_kwargs=True)
    try:
        with torch.inference_mode():
            ids = model.generate(torch.zeros(1, model.config.num_mel_bins, 3000), generation_config=generation)
    finally:
        hook.remove()
    with private_api("Whisper's prompt length (StaticDecoding.PROMPT_TOKENS)", "helpers.evaluation.StaticDecoding"):
        assert ids.shape[1] == max_length  # the end-of-text token suppressed: the whole length is generated
        assert calls[0] == StaticDecoding.PROMPT_TOKENS, f"the decoder's prompt is {calls[0]} tokens now"
        assert len(calls) == max_length  # the prompt's pass gives the first token, one pass each after it


def test_the_trainer_writes_its_state_after_everything_else_in_a_checkpoint(prepared, tmp_path, monkeypatch):
    """helpers.runtime.checkpoints.checkpoint_is_complete reads a checkpoint without a whole trainer_state.json as
    a save cut short: ``Trainer._save_checkpoint`` must write the state last (and no temporary folder)."""
    _, data, _ = prepared
    small = {"train": data["train"].select(range(2)), "validation": data["validation"].select(range(2))}
    config = get_config("smoke", max_steps=1, eval_batch_size=2, generation_max_length=4)
    model, processor = load_model_and_processor(config.model, config.language, config.task)
    trainer = build_trainer(model, processor, small, config, tmp_path / "out", report_to=[], save_steps=1,
                            eval_strategy="no", load_best_model_at_end=False)
    there_before_the_state = {}
    save_to_json = TrainerState.save_to_json

    def recording(state, json_path):
        folder = tmp_path / "out" / "checkpoint-1"
        if str(json_path).startswith(str(folder)):
            there_before_the_state.update({p.name: checkpoint_is_complete(folder) for p in folder.iterdir()})
        return save_to_json(state, json_path)

    monkeypatch.setattr(TrainerState, "save_to_json", recording)  # observes the library's own write
    trainer.train()
    folder = tmp_path / "out" / "checkpoint-1"
    with private_api("Trainer._save_checkpoint's order", "helpers.runtime.checkpoints.checkpoint_is_complete"):
        assert {"model.safetensors", "optimizer.pt", "scheduler.pt"} <= set(there_before_the_state)
        assert any(name.startswith("rng_state") for name in there_before_the_state)
        assert STATE not in there_before_the_state and not any(there_before_the_state.values())  # not yet complete
        assert (folder / STATE).is_file() and checkpoint_is_complete(folder)
        assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith("tmp")]  # written in place
