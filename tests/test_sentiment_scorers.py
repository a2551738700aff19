"""Sentiment scorers: GDELT tone, the VADER lexicon, and a local transformer exercised end to
end with a tiny randomly initialised BERT classifier and a WordPiece vocabulary written here
(no network, no downloaded weights)."""

from __future__ import annotations

import numpy as np
import pytest

from moola.core.errors import ConfigError
from moola.models.sentiment import (
    LexiconScorer,
    ToneScorer,
    create_scorer,
    missing_model_files,
)

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "rates", "inflation", "growth"]
WORDS += ["strong", "weak", "the", "is", "high", "low", "##s", "bank"]


def tiny_classifier(directory, *, labels=("positive", "negative", "neutral"), favour=0):
    """A 1-layer, 16-wide BertForSequenceClassification saved with its tokenizer; the
    classifier bias makes label ``favour`` win every text by a wide margin."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    tokenizer = BertTokenizer(str(directory / "vocab.txt"))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(WORDS),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.bias.zero_()
        model.classifier.bias[favour] = 8.0
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_tone_scales_into_minus_one_one_with_word_count_confidence():
    scorer = ToneScorer()
    values, confidence = scorer.score_tone([-3.2, 0.0, 2.5, 40.0, np.nan], [541, 10, 812, 5, 100])
    assert values[0] < 0 < values[2] and values[1] == 0.0
    assert np.all(np.abs(values) <= 1.0)
    assert values[3] == pytest.approx(1.0, abs=1e-3)  # an extreme tone saturates
    assert confidence[2] > confidence[0] > confidence[1] > 0  # more words, more confidence
    assert (values[4], confidence[4]) == (0.0, 0.0)  # unknown tone: neutral, no confidence
    with pytest.raises(ConfigError, match="score_tone"):
        scorer.score(["text"])


def test_lexicon_scores_sign_and_empty_text():
    values, confidence = LexiconScorer().score(
        ["Growth is strong and markets rally", "A terrible crisis and default fears", "", "  "]
    )
    assert values[0] > 0.3 and values[1] < -0.3
    assert values[2] == values[3] == 0.0 and confidence[2] == confidence[3] == 0.0
    assert np.all((confidence >= 0) & (confidence <= 1))


def test_transformer_scores_through_a_local_tiny_bert(tmp_path):
    positive = create_scorer("transformer", model_dir=tiny_classifier(tmp_path / "pos"))
    texts = ["rates is high", "", "growth strong weak bank"]
    values, confidence = positive.score(texts)
    assert values[0] > 0.99 and values[2] > 0.99  # the bias favours "positive"
    assert (values[1], confidence[1]) == (0.0, 0.0)  # empty text is not sent to the model
    assert confidence[0] > 0.99
    negative = create_scorer("transformer", model_dir=tiny_classifier(tmp_path / "neg", favour=1))
    assert np.all(negative.score(texts)[0][[0, 2]] < -0.99)
    # batches of one give the same scores (padding does not change a text's score)
    single = create_scorer("transformer", model_dir=tmp_path / "pos", batch_size=1)
    np.testing.assert_allclose(single.score(texts)[0], values, atol=1e-6)
    described = positive.describe()
    assert described["model_hash"].startswith("sha256:") and "config.json" in described["files"]
    assert described["labels"] == {"0": "positive", "1": "negative", "2": "neutral"}


def test_transformer_label_order_is_read_from_the_config(tmp_path):
    """FinBERT-style label names in another order: the value still follows the names."""
    directory = tiny_classifier(
        tmp_path / "m", labels=("neutral", "negative", "positive"), favour=2
    )
    values, _ = create_scorer("transformer", model_dir=directory).score(["rates is high"])
    assert values[0] > 0.99


def test_an_empty_model_directory_says_what_to_put_there(tmp_path):
    (tmp_path / "finbert").mkdir()
    with pytest.raises(ConfigError) as caught:
        create_scorer("transformer", model_dir=tmp_path / "finbert")
    message = str(caught.value)
    for needed in ("config.json", "model.safetensors", "vocab.txt", "ProsusAI/finbert"):
        assert needed in message
    assert str(tmp_path / "finbert") in message
    assert missing_model_files(tmp_path / "nowhere") == [
        f"the directory itself ({tmp_path / 'nowhere'} does not exist)"
    ]


def test_weights_missing_beside_a_config_are_named(tmp_path):
    directory = tiny_classifier(tmp_path / "m")
    (directory / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match=r"lacks model weights"):
        create_scorer("transformer", model_dir=directory)


def test_a_model_without_sentiment_labels_is_refused(tmp_path):
    directory = tiny_classifier(tmp_path / "m", labels=("cat", "dog"), favour=0)
    with pytest.raises(ConfigError, match=r"labels \['cat', 'dog'\].*'positive' and 'negative'"):
        create_scorer("transformer", model_dir=directory)


def test_a_model_of_another_architecture_is_refused(tmp_path):
    """A config.json that is no sequence classifier: a clear error naming the directory."""
    directory = tiny_classifier(tmp_path / "m")
    (directory / "config.json").write_text('{"model_type": "not-a-model"}')
    with pytest.raises(ConfigError, match=r"Could not load a sequence-classification model"):
        create_scorer("transformer", model_dir=directory)


def test_create_scorer_names_and_options():
    with pytest.raises(ConfigError, match="Did you mean 'lexicon'"):
        create_scorer("lexicom")
    with pytest.raises(ConfigError, match="model_dir"):
        create_scorer("transformer")
    with pytest.raises(ConfigError, match="takes none"):
        create_scorer("tone", model_dir="/tmp")
    assert create_scorer("tone").describe()["scorer"] == "tone"


def test_the_transformer_runs_on_the_device_asked_for(tmp_path):
    import torch

    from moola.core.errors import DeviceError

    directory = tiny_classifier(tmp_path / "m")
    scorer = create_scorer("transformer", model_dir=directory, device="cpu")
    assert scorer.describe()["device"] == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="'cuda' was requested"):
            create_scorer("transformer", model_dir=directory, device="cuda")
    else:  # the same scores on the GPU, within float32 rounding
        gpu = create_scorer("transformer", model_dir=directory, device="cuda")
        texts = ["rates is high", "growth strong weak bank"]
        np.testing.assert_allclose(gpu.score(texts)[0], scorer.score(texts)[0], atol=1e-5)
