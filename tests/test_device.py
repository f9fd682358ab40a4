"""Every evaluation path runs where ``helpers.runtime.device.inference_placement`` says: CUDA in fp16 on a T4.

CUDA is simulated: availability is monkeypatched, and spies on ``Module.to`` and ``Tensor.to`` record what
was asked for, then carry it out on the CPU in fp32 (what this machine can run).
"""

from pathlib import Path

import pytest
import torch

from helpers.config import SMOKE_MODEL_DIR, get_config
from helpers.runtime import device


@pytest.fixture
def cuda_requests(monkeypatch):
    """The ``(device type, dtype)`` pairs that models and tensors were asked to move to, with CUDA simulated."""
    asked: list[tuple[str, str, torch.dtype | None]] = []
    module_to, tensor_to = torch.nn.Module.to, torch.Tensor.to

    def on_cpu(kind, original):
        def spy(self, *args, **kwargs):
            try:
                target, dtype, _, _ = torch._C._nn._parse_to(*args, **{k: v for k, v in kwargs.items() if k != "copy"})
            except (TypeError, RuntimeError):
                return original(self, *args, **kwargs)
            if target is not None and target.type == "cuda":
                asked.append((kind, target.type, dtype))
                return original(self, device="cpu", dtype=torch.float32 if dtype is not None else None)
            return original(self, *args, **kwargs)
        return spy

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.nn.Module, "to", on_cpu("model", module_to))
    monkeypatch.setattr(torch.Tensor, "to", on_cpu("tensor", tensor_to))
    return asked


def test_placement_follows_cuda_and_the_fp16_setting(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device.inference_placement(True) == (torch.device("cuda"), torch.float16)
    assert device.inference_placement(False) == (torch.device("cuda"), torch.float32)
    assert device.pipeline_placement(True) == {"device": torch.device("cuda"), "dtype": torch.float16}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.inference_placement(True) == (torch.device("cpu"), torch.float32)  # no fp16 on a CPU


def test_evaluate_model_puts_model_and_features_on_the_gpu_in_fp16(cuda_requests, prepared):
    from helpers.evaluation import evaluate_model
    from helpers.model import load_model_and_processor

    _, data, _ = prepared
    model, processor = load_model_and_processor(str(SMOKE_MODEL_DIR), "sinhalese", "transcribe")
    result = evaluate_model(model, processor, data["test"].select(range(3)), batch_size=2, max_length=4, fp16=True)
    assert result["scores"]["n"] == 3
    assert ("model", "cuda", torch.float16) in cuda_requests
    assert [r for r in cuda_requests if r[0] == "tensor" and r[2] == torch.float16], "features stayed off the GPU"
    assert next(model.parameters()).dtype == torch.float32  # the caller's weights (still to be trained) untouched


def test_the_cli_scores_both_models_with_the_runs_precision(monkeypatch, tmp_path, corpus):
    """The zero-shot and the final pass of ``python -m helpers run`` both ask for the inference placement."""
    from helpers import cli, evaluation

    calls = []
    real = evaluation.inference_placement
    monkeypatch.setattr(evaluation, "inference_placement", lambda fp16: calls.append(fp16) or real(fp16))
    config = get_config("smoke", data=str(corpus), output_dir=str(tmp_path / "out"), max_steps=1, eval_steps=1,
                        save_steps=1, train_batch_size=2, max_train_samples=2, max_test_samples=2,
                        generation_max_length=4, num_proc=1)
    config.fp16 = True  # what the t4 profile asks; on this CPU it must still come out as fp32
    results = cli.run(config, resume=False)
    assert calls == [True, True, True]  # zero-shot, then fine-tuned: greedy and with beams
    assert results["baseline"]["n"] == results["finetuned"]["n"] == 2


def test_the_notebooks_evaluate_and_transcribe_through_the_same_placement():
    sources = Path(__file__).resolve().parents[1] / "notebooks" / "src"
    assert "fp16=config.fp16)" in (sources / "05_evaluate.py").read_text(encoding="utf-8")  # both passes
    assert "**pipeline_placement(config.fp16)" in (sources / "06_share.py").read_text(encoding="utf-8")


def test_trainer_evaluate_after_training_runs_in_half_precision(prepared, tmp_path):
    """The course's ``fp16_full_eval`` halves the model when ``evaluate()`` runs outside ``train()``; the
    collator's float32 features must follow, or Whisper's first convolution stops (transformers #30673).

    fp16 evaluation needs CUDA; ``bf16_full_eval`` takes the same path on a CPU.
    """
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

    from helpers.collator import DataCollatorSpeechSeq2SeqWithPadding
    from helpers.metrics import make_compute_metrics
    from helpers.model import load_model_and_processor
    from helpers.training import CourseSeq2SeqTrainer

    _, clips, _ = prepared
    test = clips["test"].select(range(4))
    model, processor = load_model_and_processor(str(SMOKE_MODEL_DIR), "sinhalese", "transcribe")
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=4, predict_with_generate=True,
                                    generation_max_length=8, bf16_full_eval=True, use_cpu=True, report_to=[],
                                    remove_unused_columns=False)
    seen = []
    model.model.encoder.conv1.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].dtype))

    def evaluate(trainer_class):
        collator = DataCollatorSpeechSeq2SeqWithPadding(processor, model.config.decoder_start_token_id)
        trainer = trainer_class(model=model.float(), args=args, eval_dataset=test, data_collator=collator,
                                compute_metrics=make_compute_metrics(processor.tokenizer))
        return trainer.evaluate()

    with pytest.raises(RuntimeError, match="bias type"):  # the plain trainer, as the course builds it
        evaluate(Seq2SeqTrainer)
    metrics = evaluate(CourseSeq2SeqTrainer)
    assert metrics["eval_n"] == 4 and "eval_wer_words" in metrics
    assert seen and set(seen) == {torch.bfloat16}  # the encoder saw half-precision features, as the weights
