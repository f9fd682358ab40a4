"""The gpu tier (``pytest -m gpu``): the t4 profile's code path on a CUDA GPU, at the course's settings.

CI has no GPU, so this is skipped there (and reported as skipped, which ``CI=true`` allows for this tier
only). On a CUDA machine it trains a model shaped exactly like whisper-small (random weights, real
config: d_model 768, 12 + 12 layers, 12 heads, ffn 3072, 80 mels, the real 51,865-token multilingual
vocabulary) for a few steps on the bundled corpus with the t4 profile's settings: batch 16, fp16, gradient
checkpointing, generation up to 225 tokens. It goes through the same functions as ``python -m helpers
run`` and notebooks 04/05 (``load_model_and_processor``, ``cli.load_and_prepare``, ``build_trainer``,
``train``, ``evaluate_model``) and checks that

* training ran on CUDA under fp16 autocast with a gradient scaler, with gradient checkpointing really
  recomputing activations (each checkpointed layer runs forward twice per step);
* evaluation during training and afterwards generated from features on CUDA, fp16 for the final pass;
* peak GPU memory (``torch.cuda.max_memory_allocated``) stayed under 15 GB: a T4 has 16 GB (15 GiB usable);
* the fast evaluation path (``fast=True``) compiles the decoder step and keeps the eager path's greedy ids;
* ``--peft lora``, with and without ``--load-in-8bit``, trains, merges and scores (greedy and beams) on CUDA.

Random weights give the same shapes, memory and kernels as the real checkpoint, and need no download.
Peak memory can differ by card: attention kernels differ (no FlashAttention on a T4), so a figure from
another GPU is an estimate of a T4's, not a measurement of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers.config import BUNDLED_CORPUS

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the gpu tier: pytest -m gpu)"),
]

# openai/whisper-small's config.json, but for the weights, which are random.
WHISPER_SMALL = dict(
    d_model=768,
    encoder_layers=12,
    decoder_layers=12,
    encoder_attention_heads=12,
    decoder_attention_heads=12,
    encoder_ffn_dim=3072,
    decoder_ffn_dim=3072,
    num_mel_bins=80,
    vocab_size=51865,
    max_source_positions=1500,
    max_target_positions=448,
)
PEAK_LIMIT_BYTES = 15 * 10**9  # 15 GB, under a T4's 16 GB (15 GiB after the CUDA context)
STEPS = 6  # enough for the gradient scaler to get past its first overflowing steps
EVAL_EVERY = 3  # two evaluations and two checkpoints during training, as every save needs a WER
TEST_CLIPS = 8


def build_whisper_small_shaped(folder: Path) -> Path:
    """Save a randomly initialised model with whisper-small's config, tokenizer and generation config."""
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    from tools.smoke_model import build_whisper_tokenizer, whisper_generation_config

    tokenizer = build_whisper_tokenizer()  # the real multilingual vocabulary, from openai-whisper's ranks
    assert len(tokenizer) == WHISPER_SMALL["vocab_size"]
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = WhisperConfig(**WHISPER_SMALL, pad_token_id=eos, bos_token_id=eos, eos_token_id=eos,
                           decoder_start_token_id=tokenizer.convert_tokens_to_ids("<|startoftranscript|>"))
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = whisper_generation_config(tokenizer)
    assert 240e6 < sum(p.numel() for p in model.parameters()) < 245e6  # whisper-small: 241.7 M parameters
    model.save_pretrained(folder)
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def t4_run(tmp_path_factory):
    """Train and evaluate through the t4 profile's path; return what was observed on the way."""
    from transformers import WhisperForConditionalGeneration

    from helpers.cli import load_and_prepare
    from helpers.config import get_config
    from helpers.evaluation import evaluate_model
    from helpers.model import load_model_and_processor
    from helpers.training import build_trainer, train

    work = tmp_path_factory.mktemp("gpu")
    model_dir = build_whisper_small_shaped(work / "whisper-small-shaped")
    config = get_config("t4", model=str(model_dir), data=str(BUNDLED_CORPUS), output_dir=str(work / "run"),
                        max_steps=STEPS, eval_steps=EVAL_EVERY, save_steps=EVAL_EVERY, logging_steps=1,
                        max_test_samples=TEST_CLIPS)
    # The course's settings stay the profile's: only run length and the test split's size are changed.
    assert (config.train_batch_size, config.fp16, config.gradient_checkpointing) == (16, True, True)
    assert config.generation_max_length == 225

    model, processor = load_model_and_processor(config.model, config.language, config.task)
    prepared, _ = load_and_prepare(config, processor, Path(config.output_dir))

    seen = {"train_calls": 0, "train_autocast": set(), "train_devices": set(), "train_dtypes": set(),
            "generate": []}
    layer = model.model.encoder.layers[0].fc1

    def on_forward(module, inputs, output):
        if module.training:  # a training step; gradient checkpointing's recomputation counts too
            seen["train_calls"] += 1
            seen["train_autocast"].add(torch.is_autocast_enabled("cuda"))
            seen["train_devices"].add(inputs[0].device.type)
            seen["train_dtypes"].add(output.dtype)

    layer.register_forward_hook(on_forward)
    generate = WhisperForConditionalGeneration.generate

    def spy_generate(self, *args, **kwargs):
        features = kwargs.get("input_features", args[0] if args else None)
        seen["generate"].append((features.device.type, features.dtype, next(self.parameters()).device.type))
        return generate(self, *args, **kwargs)

    before = layer.weight.detach().cpu().clone()
    torch.cuda.reset_peak_memory_stats()
    mp = pytest.MonkeyPatch()
    mp.setattr(WhisperForConditionalGeneration, "generate", spy_generate)
    try:
        trainer = build_trainer(model, processor, prepared, config, config.output_dir)
        train(trainer, resume=False)
        seen["in_training_generate"] = list(seen["generate"])
        seen["trained_on"] = next(trainer.model.parameters()).device.type
        seen["checkpointing"] = trainer.model.is_gradient_checkpointing
        seen["weights_changed"] = not torch.equal(before, layer.weight.detach().cpu())
        seen["scaler"] = getattr(trainer.accelerator, "scaler", None)
        seen["mixed_precision"] = trainer.accelerator.mixed_precision
        seen["generate"].clear()
        result = evaluate_model(trainer.model, processor, prepared["test"], config.eval_batch_size,
                                config.generation_max_length, fp16=config.fp16)
    finally:
        mp.undo()
    seen["final_generate"] = list(seen["generate"])
    seen["peak_allocated"] = torch.cuda.max_memory_allocated()
    seen["peak_reserved"] = torch.cuda.max_memory_reserved()
    seen["device_name"] = torch.cuda.get_device_name(0)
    seen.update(trainer=trainer, result=result, config=config, prepared=prepared)
    print(json.dumps({"gpu": seen["device_name"], "peak_allocated_gb": round(seen["peak_allocated"] / 1e9, 2),
                      "peak_reserved_gb": round(seen["peak_reserved"] / 1e9, 2), "steps": STEPS,
                      "batch": config.train_batch_size}))
    return seen


def test_training_ran_on_cuda_in_fp16_with_checkpointing(t4_run):
    assert t4_run["trainer"].state.global_step == STEPS
    assert t4_run["trained_on"] == "cuda" and t4_run["train_devices"] == {"cuda"}
    # fp16 mixed precision: autocast makes the linear layers compute in half precision, and a gradient
    # scaler guards the fp16 gradients against underflow.
    assert t4_run["mixed_precision"] == "fp16"
    assert t4_run["train_autocast"] == {True} and t4_run["train_dtypes"] == {torch.float16}
    assert t4_run["scaler"] is not None and t4_run["scaler"].is_enabled()
    # Gradient checkpointing recomputes each layer's forward pass during the backward pass.
    assert t4_run["checkpointing"]
    assert t4_run["train_calls"] == 2 * STEPS, t4_run["train_calls"]
    log = t4_run["trainer"].state.log_history
    losses = [entry["loss"] for entry in log if "loss" in entry]
    assert len(losses) == STEPS and all(0 < loss < 100 for loss in losses)  # finite: no fp16 overflow in the loss
    # The scaler skips a step whose fp16 gradients overflowed; some steps must have been taken.
    assert any(0 < entry["grad_norm"] < float("inf") for entry in log if "grad_norm" in entry)
    assert t4_run["weights_changed"]


def test_checkpoints_hold_the_scaler_and_a_wer(t4_run):
    output_dir = Path(t4_run["config"].output_dir)
    for step in range(EVAL_EVERY, STEPS + 1, EVAL_EVERY):
        assert (output_dir / f"checkpoint-{step}" / "scaler.pt").is_file()
    evaluations = [entry for entry in t4_run["trainer"].state.log_history if "eval_wer_words" in entry]
    assert [entry["step"] for entry in evaluations] == list(range(EVAL_EVERY, STEPS + 1, EVAL_EVERY))
    assert t4_run["trainer"].state.best_model_checkpoint is not None


def test_evaluation_ran_on_cuda(t4_run):
    # During training, the trainer's own evaluation generates with the model where it trains.
    assert t4_run["in_training_generate"] and {call[0] for call in t4_run["in_training_generate"]} == {"cuda"}
    assert {call[2] for call in t4_run["in_training_generate"]} == {"cuda"}
    # Afterwards, the test split is scored on the GPU in fp16, as the course's fp16_full_eval.
    assert t4_run["final_generate"]
    assert set(t4_run["final_generate"]) == {("cuda", torch.float16, "cuda")}
    scores = t4_run["result"]["scores"]
    assert scores["n"] == len(t4_run["prepared"]["test"]) == TEST_CLIPS


def test_peak_gpu_memory_fits_a_t4(t4_run):
    assert t4_run["peak_allocated"] < PEAK_LIMIT_BYTES, (
        f"{t4_run['peak_allocated'] / 1e9:.2f} GB allocated at peak on {t4_run['device_name']}")


# The fast evaluation path and LoRA over 8-bit weights (issue 20), on the same whisper-small shape.


@pytest.fixture(scope="module")
def small_shaped(tmp_path_factory) -> Path:
    return build_whisper_small_shaped(tmp_path_factory.mktemp("fast") / "whisper-small-shaped")


def test_the_fast_path_compiles_the_decoder_step_and_keeps_greedy_ids(small_shaped, prepared):
    """On CUDA, ``fast=True`` decodes with one static cache and transformers compiles the step (CUDA graphs);
    greedy ids must equal the eager path's on every clip, in the fp16 the evaluation runs in.

    Random weights give near-uniform logits, whose top two tokens can swap under any change of summation
    order; the output embedding is scaled up (logits spread like a trained model's) so that the comparison
    tests the cache and the graphs, not fp16 rounding between two near-equal logits.
    """
    from helpers.evaluation import transcribe_ids
    from helpers.model import load_model_and_processor
    from helpers.runtime.device import model_for_inference

    model, processor = load_model_and_processor(str(small_shaped), "sinhalese", "transcribe")
    with torch.no_grad():
        model.model.decoder.embed_tokens.weight.mul_(20)
    runner = model_for_inference(model, fp16=True)
    test = prepared[1]["test"].select(range(12))
    compiling = []
    hook = runner.model.decoder.register_forward_hook(lambda *_: compiling.append(torch.compiler.is_compiling()))
    try:
        eager = transcribe_ids(runner, processor, test, batch_size=8, max_length=60, fast=False)
        assert not any(compiling)
        fast = transcribe_ids(runner, processor, test, batch_size=8, max_length=60, fast=True)
        again = transcribe_ids(runner, processor, test, batch_size=8, max_length=60, fast=True)  # graphs replayed
    finally:
        hook.remove()
    assert any(compiling), "transformers did not compile the decoder step of the static-cache generate"
    assert fast == eager and again == eager
    assert all(eager)  # every clip generated something: equal because empty would prove nothing


@pytest.mark.parametrize("eight_bit", [False, True], ids=["lora-fp16", "lora-int8"])
def test_lora_through_the_cli_trains_merges_and_scores_on_cuda(small_shaped, tmp_path, eight_bit):
    """``python -m helpers run --peft lora [--load-in-8bit]``'s path on a GPU: train, merge, score (greedy, beams).

    The fp16 case also forces the fast path (too few batches to be chosen here): the Trainer's evaluations of
    the adapter-wrapped model under autocast, and the merged model's greedy and beam passes, all compiled.
    """
    if eight_bit:
        pytest.importorskip("bitsandbytes", reason="--load-in-8bit needs bitsandbytes (pip install bitsandbytes)")
    from helpers.cli import run
    from helpers.config import get_config
    from helpers.extras.lora import training_method

    config = get_config("t4", model=str(small_shaped), data=str(BUNDLED_CORPUS), output_dir=str(tmp_path / "run"),
                        max_steps=4, eval_steps=2, save_steps=2, logging_steps=1, max_test_samples=TEST_CLIPS,
                        peft="lora", load_in_8bit=eight_bit, eval_num_beams=2, generation_max_length=40,
                        fast_generate=not eight_bit)  # the fp16 case: static cache in training's evaluations too
    torch.cuda.reset_peak_memory_stats()
    results = run(config, resume=False)
    peak = torch.cuda.max_memory_reserved()
    print(json.dumps({"lora_8bit": eight_bit, "peak_reserved_gb": round(peak / 1e9, 2)}))
    assert results["finetuned"]["n"] == TEST_CLIPS
    assert results["finetuned_beam_search"]["num_beams"] == 2
    assert results["finetuned_beam_search"]["scores"]["n"] == TEST_CLIPS
    out = Path(config.output_dir)
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "model" / "model.safetensors").is_file()  # merged: a plain Whisper folder
    assert "LoRA" in json.dumps(training_method(out / "model", out / "adapter"))
    assert peak < PEAK_LIMIT_BYTES
