"""``dropout`` (setup(dropout=0.1), --dropout 0.1): the course's "try dropout" reaches the layers that train."""

from __future__ import annotations

import torch

from helpers.cli import _parser, config_from_args
from helpers.config import SMOKE_MODEL_DIR, describe, get_config
from helpers.model import load_model_and_processor


def test_dropout_is_set_where_whisper_reads_it_and_only_when_asked():
    model, _ = load_model_and_processor(str(SMOKE_MODEL_DIR), "sinhalese", "transcribe")
    kept = model.config.dropout
    assert model.model.encoder.dropout == model.model.decoder.layers[0].dropout == kept
    model, _ = load_model_and_processor(str(SMOKE_MODEL_DIR), "sinhalese", "transcribe", dropout=0.3)
    assert model.config.dropout == model.model.encoder.dropout == model.model.decoder.layers[0].dropout == 0.3
    features = torch.randn(1, model.config.num_mel_bins, 3000, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([[model.config.decoder_start_token_id, 5, 6, 7]])
    model.train()
    torch.manual_seed(0)
    first = model(input_features=features, labels=labels).loss
    second = model(input_features=features, labels=labels).loss
    assert first != second  # dropout draws another mask each pass
    model.eval()
    assert model(input_features=features, labels=labels).loss == model(input_features=features, labels=labels).loss


def test_the_setting_from_python_and_the_command_line():
    assert get_config("smoke").dropout is None
    config = config_from_args(_parser().parse_args(["run", "--profile", "smoke", "--dropout", "0.1"]))
    assert config.dropout == 0.1 and "dropout 0.1" in describe(config)
    assert get_config("t4", dropout=0.1).dropout == 0.1
