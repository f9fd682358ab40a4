"""LoRA (``helpers.extras.lora``, ``--peft lora``): only the adapter trains, it learns, a killed run resumes, and
the merged model is a plain Whisper that transcribes exactly as the adapter-wrapped one.

Learning is measured on OpenAI's real tiny.en (``tools/pretrained_whisper.py``) with English clips: LoRA
freezes every base weight, and the random smoke model's frozen embeddings and feed-forward layers leave
its adapters too little to work with (measured: loss 10.86 -> 9.67 in 60 steps of 8 clips, at the smoke
recipe's 5e-3; full fine-tuning reaches 0.3x in the same steps). Resuming and the CLI's files use the smoke
model, which is fast.
"""

from __future__ import annotations

import io
import json
import os
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch

from helpers.cli import main
from helpers.config import SMOKE_MODEL_DIR, get_config
from helpers.extras.lora import (
    apply_lora,
    load_base_in_8bit,
    merge_and_save,
    trainable_share,
    training_method,
)
from helpers.runtime.errors import CourseError
from helpers.training import checkpoint_is_complete
from tests.support import ONE_THREAD, kill_after_first_checkpoint, pretrained_model

CLIPS, STEPS, MAX_TOKENS = 2, 8, 48  # tiny.en learning run: 2 English clips, 8 steps of the LoRA recipe
UNSEEN = 4  # English test clips, for comparing the merged model with the adapter on clips it did not learn
MAX_STEPS = 6  # the smoke CLI runs


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny_en() -> Path:
    return pretrained_model("tiny.en")


# --- what trains -----------------------------------------------------------------------------------------


def _lora_parameters(model: torch.nn.Module, rank: int, targets: tuple[str, ...]) -> int:
    """r * (in + out) for every Linear whose name ends in a target: A is r x in, B is out x r."""
    return sum(rank * (m.in_features + m.out_features) for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] in targets)


def test_only_the_adapter_is_trainable():
    from transformers import WhisperForConditionalGeneration

    base = WhisperForConditionalGeneration.from_pretrained(SMOKE_MODEL_DIR)
    expected = _lora_parameters(base, 8, ("q_proj", "v_proj"))
    total_before = sum(p.numel() for p in base.parameters())
    model = apply_lora(base, rank=8, alpha=16, target_modules="q_proj, v_proj")
    trainable, total, share = trainable_share(model)
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    # 2 encoder self-attention + 2 decoder self- and 2 cross-attention blocks, q and v each: 12 x 8 x (128 + 128)
    assert trainable == expected == 24_576
    assert total == total_before + trainable and share == pytest.approx(trainable / total)
    assert names and all(".lora_A." in n or ".lora_B." in n for n in names)
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in names} == {"q_proj", "v_proj"}


def test_wrong_settings_are_refused_in_one_sentence():
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(SMOKE_MODEL_DIR)
    with pytest.raises(CourseError, match="no module named query"):
        apply_lora(model, target_modules="query,v_proj")
    with pytest.raises(CourseError, match="at least 1"):
        apply_lora(model, rank=0)
    if not torch.cuda.is_available():
        with pytest.raises(CourseError, match="need a CUDA GPU"):
            load_base_in_8bit(str(SMOKE_MODEL_DIR))


def test_gradient_checkpointing_still_trains_the_encoder_adapters(processor, prepared):
    """Re-entrant checkpointing (what prepare_model_for_kbit_training asks for) gives a block whose inputs do not
    require grad no gradient: without the input hooks the encoder's adapters would never learn."""
    from transformers import WhisperForConditionalGeneration

    from helpers.collator import DataCollatorSpeechSeq2SeqWithPadding

    model = apply_lora(WhisperForConditionalGeneration.from_pretrained(SMOKE_MODEL_DIR), rank=4,
                       gradient_checkpointing=True)
    model.config.use_cache = False
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": True})
    model.train()
    collator = DataCollatorSpeechSeq2SeqWithPadding(processor, model.config.decoder_start_token_id)
    batch = collator([prepared[1]["train"][i] for i in range(2)])
    model(**batch).loss.backward()
    # lora_B starts at zero, so lora_A's gradient is zero too: B's tells whether the gradient arrived.
    grads = {n: p.grad for n, p in model.named_parameters() if ".lora_B." in n}
    encoder = [n for n in grads if ".encoder." in n]
    assert len(encoder) == 4 and len(grads) == 12
    missing = [n for n, g in grads.items() if g is None or not g.abs().sum() > 0]
    assert not missing, f"no gradient reached {missing}"


# --- learning, on the real tiny.en ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def learned(tmp_path_factory, corpus):
    from helpers.data import load_common_voice
    from helpers.evaluation import evaluate_model
    from helpers.extras.lora import lora_from_config
    from helpers.model import load_model_and_processor
    from helpers.preparation import prepare_splits
    from helpers.training import build_trainer, train

    folder = str(_tiny_en())
    config = get_config("smoke", model=folder, language=None, task=None, peft="lora", max_steps=STEPS,
                        train_batch_size=CLIPS, eval_batch_size=CLIPS, logging_steps=1, eval_steps=STEPS,
                        save_steps=STEPS, generation_max_length=MAX_TOKENS)
    assert (config.recipe, config.learning_rate) == ("lora", 1e-3)  # the LoRA recipe itself is what learns here
    model, processor = load_model_and_processor(folder, None, None)
    splits = load_common_voice(str(corpus))
    english = {name: [i for i, s in enumerate(split["sentence"]) if s.isascii()] for name, split in splits.items()}
    ready = prepare_splits({"train": splits["train"].select(english["train"][:CLIPS]),
                             "test": splits["test"].select(english["test"][:UNSEEN])}, processor, num_proc=1)[0]
    clips = ready["train"]
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    before = evaluate_model(model, processor, clips, CLIPS, MAX_TOKENS)
    peft_model = lora_from_config(model, config)
    trainer = build_trainer(peft_model, processor, {"train": clips, "validation": clips}, config,
                            tmp_path_factory.mktemp("lora-learn"))
    train(trainer, resume=False)
    after = evaluate_model(trainer.model, processor, clips, CLIPS, MAX_TOKENS)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    print("LoRA on tiny.en, loss per step:", [round(x, 3) for x in losses], "\nzero-shot:", before["scores"],
          "\nafter LoRA:", after["scores"], "\nfor example:", before["predictions"][0], "->", after["predictions"][0],
          "|", after["references"][0])
    return trainer.model, processor, clips, base, losses, before, after, ready["test"]


def test_lora_leaves_every_base_weight_as_it_was(learned):
    model, _, _, base, _, _, _, _ = learned
    trained = dict(model.get_base_model().named_parameters())
    changed = []
    for name, before in base.items():
        # PEFT moves each targeted weight into a LoRA layer: q_proj.weight -> q_proj.base_layer.weight
        parent, leaf = name.rsplit(".", 1)
        now = trained.get(name, trained.get(f"{parent}.base_layer.{leaf}"))
        assert now is not None, name
        if not torch.equal(now, before):
            changed.append(name)
    assert not changed, f"base weights changed: {changed[:5]}"
    lora_b = [p for n, p in model.named_parameters() if ".lora_B." in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)  # all started at zero: every one learned


def test_lora_learns_the_clips(learned):
    _, _, _, _, losses, before, after, _ = learned
    assert len(losses) == STEPS
    assert sum(losses[-3:]) / 3 < 0.3 * sum(losses[:3]) / 3
    # tiny.en already transcribes espeak-ng's English fairly well; the clips it was trained on, better.
    assert after["scores"]["wer_words"] < before["scores"]["wer_words"]
    assert after["scores"]["cer_words"] < before["scores"]["cer_words"]


def _generate_ids(model, processor, rows: list[dict]) -> list[list[int]]:
    import copy

    from helpers.collator import DataCollatorSpeechSeq2SeqWithPadding

    features = DataCollatorSpeechSeq2SeqWithPadding(processor, model.config.decoder_start_token_id).features(rows)
    generation = copy.deepcopy(model.generation_config)
    generation.max_length = MAX_TOKENS
    with torch.inference_mode():
        return model.generate(input_features=features, generation_config=generation).tolist()


def test_merged_model_transcribes_exactly_as_the_adapter_does(learned, tmp_path):
    from transformers import WhisperForConditionalGeneration, pipeline

    from helpers.audio import SAMPLING_RATE, from_int16

    model, processor, clips, _, _, _, after, unseen = learned
    model.eval()
    rows = [*clips, *unseen]  # the clips it learned and English test clips it never saw
    wrapped = _generate_ids(model, processor, rows)
    assert len({tuple(ids) for ids in wrapped}) == len(rows) == CLIPS + UNSEEN  # all different, not one repeated
    lora = sum(p.numel() for n, p in model.named_parameters() if ".lora_" in n)
    merge_and_save(model, processor, tmp_path / "model", tmp_path / "adapter")
    assert not (tmp_path / "model" / "adapter_config.json").exists()
    merged = WhisperForConditionalGeneration.from_pretrained(tmp_path / "model").eval()
    assert not any("lora" in name for name, _ in merged.named_parameters())
    assert _generate_ids(merged, processor, rows) == wrapped
    # The one line anyone would use, on a folder without PEFT in it.
    asr = pipeline("automatic-speech-recognition", model=str(tmp_path / "model"), device="cpu")
    asr.model.generation_config.max_length = MAX_TOKENS
    text = asr({"raw": from_int16(clips[0]["audio_16k"]), "sampling_rate": SAMPLING_RATE})["text"].strip()
    assert text == after["predictions"][0]
    # The adapter alone: r x (in + out) per targeted layer, in float32, plus a small header.
    adapter = tmp_path / "adapter" / "adapter_model.safetensors"
    assert lora * 4 <= adapter.stat().st_size < lora * 4 + 100_000
    print(f"tiny.en adapter: {lora:,} parameters, {adapter.stat().st_size / 1e6:.2f} MB; merged model "
          f"{(tmp_path / 'model' / 'model.safetensors').stat().st_size / 1e6:.0f} MB")


# --- the CLI: checkpoints of the adapter, a kill, the saved folders --------------------------------------


def run_args(corpus: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "--profile", "smoke", "--peft", "lora", "--data", str(corpus), "--output-dir", str(out),
            "--max-steps", str(MAX_STEPS), "--save-steps", "2", "--eval-steps", "2", "--logging-steps", "1",
            "--warmup-steps", "2", "--batch-size", "2", "--max-train-samples", "4", "--max-test-samples", "2",
            "--eval-batch-size", "2", "--generation-max-length", "4", "--save-total-limit", "2", "--num-proc", "1",
            *extra]


def train_logs(out: Path) -> dict[int, dict]:
    state = json.loads((out / f"checkpoint-{MAX_STEPS}" / "trainer_state.json").read_text())
    return {entry["step"]: entry for entry in state["log_history"] if "loss" in entry}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpus):
    """An uninterrupted ``run --peft lora``, exported to CTranslate2 in float32 as well."""
    out = tmp_path_factory.mktemp("lora-reference") / "out"
    printed = io.StringIO()
    with redirect_stdout(printed):
        assert main(run_args(corpus, out, "--export-ct2", "--ct2-quantization", "none")) == 0
    return out, printed.getvalue()


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, corpus):
    """The same command SIGKILLed in a real process after its first checkpoint, then run again."""
    out = tmp_path_factory.mktemp("lora-killed") / "out"
    env = {**os.environ, "COURSE_PROFILE": "smoke", "HF_HUB_OFFLINE": "1", **ONE_THREAD}
    resume_from = kill_after_first_checkpoint(run_args(corpus, out), out, env)
    assert resume_from < MAX_STEPS and not (out / "results.json").exists()
    checkpoint = out / f"checkpoint-{resume_from}"
    # What the trainer saves for a PeftModel: the adapter, no full weights, and the folder counts as complete.
    assert (checkpoint / "adapter_model.safetensors").is_file() and not (checkpoint / "model.safetensors").exists()
    assert checkpoint_is_complete(checkpoint)
    printed = io.StringIO()
    with redirect_stdout(printed):
        code = main(run_args(corpus, out))
    return out, resume_from, code, printed.getvalue()


def test_killed_lora_run_resumes_exactly(resumed, reference):
    out, resume_from, code, printed = resumed
    assert code == 0
    assert f"Resuming from {out / f'checkpoint-{resume_from}'}" in printed
    assert printed.count("'loss'") == MAX_STEPS - resume_from  # it did not start over
    got, want = train_logs(out), train_logs(reference[0])
    assert sorted(got) == sorted(want) == list(range(1, MAX_STEPS + 1))
    for step in range(resume_from + 1, MAX_STEPS + 1):
        # A fresh adapter or optimizer would change every later loss; a restarted schedule, the learning rate.
        assert got[step]["learning_rate"] == want[step]["learning_rate"], step
        assert got[step]["loss"] == pytest.approx(want[step]["loss"], rel=1e-4), step
        assert got[step]["grad_norm"] == pytest.approx(want[step]["grad_norm"], rel=1e-3), step
    assert len({want[s]["loss"] for s in want}) == MAX_STEPS  # the adapter really trains: every loss differs


def test_run_saves_adapter_and_a_merged_plain_whisper(reference):
    from safetensors.torch import load_file

    out, printed = reference
    assert "LoRA rank 32 (alpha 64) on q_proj, v_proj: 98,304 trainable parameters" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["finetuned"]["n"] == results["baseline"]["n"] == 2
    merged = load_file(out / "model" / "model.safetensors")
    base = load_file(SMOKE_MODEL_DIR / "model.safetensors")
    assert merged.keys() == base.keys()
    changed = sorted({k.rsplit(".", 2)[-2] for k in base if not torch.equal(merged[k], base[k])})
    assert changed == ["q_proj", "v_proj"]  # the merge wrote the adapters into their weights and nothing else
    adapter = load_file(out / "adapter" / "adapter_model.safetensors")
    assert sum(t.numel() for t in adapter.values()) == 98_304 and all("lora_" in k for k in adapter)
    assert not (out / "model" / "adapter_config.json").exists()
    best = json.loads((out / f"checkpoint-{MAX_STEPS}" / "trainer_state.json").read_text())["best_model_checkpoint"]
    # Every evaluation scores WER 100 (4 tokens of a random model), and a tie keeps the first: the best
    # checkpoint is step 2's, not the last, so load_best_model_at_end has to load an older adapter.
    assert Path(best).name == "checkpoint-2"
    best_adapter = load_file(Path(best) / "adapter_model.safetensors")
    last_adapter = load_file(out / f"checkpoint-{MAX_STEPS}" / "adapter_model.safetensors")
    assert all(torch.equal(best_adapter[k], adapter[k]) for k in adapter)  # the saved adapter is the best one
    assert not all(torch.equal(last_adapter[k], adapter[k]) for k in adapter)


def test_model_card_names_the_method_share_and_adapter_size(reference):
    from helpers.extras.sharing import model_card

    out, _ = reference
    method = training_method(out / "model", out / "adapter")
    assert method["method"].startswith("LoRA (PEFT), rank 32, alpha 64, dropout 0.05, on q_proj, v_proj")
    # The share read back from the files equals what the trained PeftModel reported: 98,304 of 7,991,936.
    assert method["trainable parameters"] == "1.23% (0.10 M of 8.0 M)"
    size = (out / "adapter" / "adapter_model.safetensors").stat().st_size
    assert method["adapter size"].startswith(f"{size / 1e6:.1f} MB")
    card = model_card("me/whisper-lora", "whisper-smoke", "cv-mini/si", "si", {"wer_words": 90.0}, {"max_steps": 6},
                      method=method).content
    assert "## Training method" in card and "rank 32" in card and "1.23%" in card and "- lora" in card
    full = training_method(SMOKE_MODEL_DIR)
    assert full["method"] == "full fine-tuning" and full["trainable parameters"].startswith("100 %")


def test_running_a_finished_lora_run_again_loads_it(reference, corpus):
    """Re-running the command (a notebook run twice, a script restarted) loads the best adapter, trains no
    step more, and merges it into the same model as before."""
    from safetensors.torch import load_file

    out, _ = reference
    before = load_file(out / "model" / "model.safetensors")
    printed = io.StringIO()
    with redirect_stdout(printed):
        assert main(run_args(corpus, out)) == 0
    assert "Training already finished at step 6" in printed.getvalue() and "'loss'" not in printed.getvalue()
    after = load_file(out / "model" / "model.safetensors")
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_lora_checkpoints_are_not_resumed_by_a_full_run(reference, corpus):
    out, _ = reference
    args = [a for a in run_args(corpus, out) if a not in ("--peft", "lora")]
    stderr = io.StringIO()
    from contextlib import redirect_stderr

    with redirect_stderr(stderr), redirect_stdout(io.StringIO()):
        assert main(args) == 2
    assert "method 'lora r=32 alpha=64 on q_proj,v_proj'" in stderr.getvalue() and "'full'" in stderr.getvalue()


def test_cli_refuses_what_cannot_work(corpus, tmp_path, capsys):
    assert main(run_args(corpus, tmp_path, "--peft", "qlora")) == 2
    assert "Unknown PEFT method 'qlora'" in capsys.readouterr().err
    args = [a for a in run_args(corpus, tmp_path) if a not in ("--peft", "lora")]
    assert main([*args, "--load-in-8bit"]) == 2
    assert "--load-in-8bit freezes the base weights: it needs --peft lora" in capsys.readouterr().err


def test_recipe_follows_the_method():
    assert get_config("t4", peft="lora").recipe == "lora"
    assert get_config("t4", peft="lora").learning_rate == 1e-3
    assert get_config("t4").learning_rate == 1e-5  # full fine-tuning keeps the course's
    assert get_config("smoke", peft="lora").recipe == "random-init"  # the random model keeps its own
    assert get_config("t4", peft="lora", learning_rate=5e-4).learning_rate == 5e-4  # yours wins


def test_without_the_lora_extra_the_cli_says_how_to_install_it(corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # as on an install without the [lora] extra
    assert main(run_args(corpus, tmp_path)) == 2  # refused before any data is read or model loaded
    assert "pip install 'whisper-course-helpers[lora]'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
