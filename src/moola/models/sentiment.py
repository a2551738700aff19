"""Sentiment scorers: texts (or GDELT tone) in, a score in [-1, 1] and a confidence out.

One contract, ``Scorer.score(texts) -> (values, confidence)``: ``values`` in [-1, 1]
(negative to positive), ``confidence`` in [0, 1] (how much the scorer trusts each value;
0 for an empty text). Three scorers:

- ``ToneScorer``: GDELT's own V2Tone, computed by GDELT on the full article, so always
  available and the primary signal. It needs no text: ``score_tone(tone, word_count)``
  maps the tone (in practice -10..+10, theoretically -100..+100) to ``tanh(tone /
  scale)`` and the confidence to ``1 - exp(-word_count / words)`` (a 20-word snippet's
  tone is noisier than a 1,000-word article's).
- ``LexiconScorer``: VADER (``vaderSentiment``, a dictionary shipped in the package):
  the compound score as the value, the share of non-neutral words as the confidence.
- ``TransformerScorer``: a sequence classifier such as FinBERT (``ProsusAI/finbert``)
  loaded with ``transformers`` from a local directory, never from the network
  (``local_files_only=True``): value = P(positive) - P(negative), confidence = the top
  class probability. A directory without config, weights or tokenizer is refused with the
  list of files to put there (``missing_model_files``).

GDELT records carry no article text: the text the lexicon and transformer scorers see is
built from the record's quotations, themes and names (``moola.data.sources.gdelt.
record_texts``), which is much less than the article. ``create_scorer(name, ...)`` is the
one place a scorer name becomes a scorer.

torch and transformers are imported only here and only when a transformer scorer is
built, so reading GDELT files and computing features never load them.
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moola.core.devices import select_device
from moola.core.errors import ConfigError
from moola.core.hashing import sha256_file, sha256_json

__all__ = [
    "SCORERS",
    "LexiconScorer",
    "Scorer",
    "ToneScorer",
    "TransformerScorer",
    "create_scorer",
    "missing_model_files",
]

SCORERS: tuple[str, ...] = ("tone", "lexicon", "transformer")
_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
_TOKENIZER = ("tokenizer.json", "vocab.txt")
# The FinBERT files a user downloads (https://huggingface.co/ProsusAI/finbert).
FINBERT_FILES = (
    "config.json, model.safetensors (or pytorch_model.bin), vocab.txt, tokenizer_config.json"
)


class Scorer(ABC):
    """Base of every scorer: ``name``, ``score(texts)`` and ``describe()`` (manifest facts)."""

    name: str = ""

    @abstractmethod
    def score(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(values, confidence)``: float64 arrays as long as ``texts``, values in [-1, 1],
        confidence in [0, 1]."""

    def describe(self) -> dict[str, Any]:
        """What identifies this scorer's output (name, parameters, model hash)."""
        return {"scorer": self.name}


class ToneScorer(Scorer):
    """GDELT tone, scaled to [-1, 1] (see the module docstring); needs no text.

    ``scale``: the tone that maps to tanh(1) = 0.76; ``words``: the word count at which
    confidence reaches 1 - 1/e.
    """

    name = "tone"

    def __init__(self, *, scale: float = 5.0, words: float = 250.0) -> None:
        if not (scale > 0 and words > 0):
            raise ConfigError(
                f"ToneScorer: scale and words must be positive, got {scale} and {words}."
            )
        self.scale = float(scale)
        self.words = float(words)

    def score(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        raise ConfigError(
            "The tone scorer reads GDELT's tone numbers, not text: call "
            "score_tone(tone, word_count), or pick the lexicon or transformer scorer for text.",
            param="scorer",
        )

    def score_tone(
        self, tone: np.ndarray | Sequence[float], word_count: np.ndarray | Sequence[float]
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(tanh(tone / scale), 1 - exp(-word_count / words))``; NaN tone -> (0, 0)."""
        tone = np.asarray(tone, dtype=np.float64)
        count = np.asarray(word_count, dtype=np.float64)
        if tone.shape != count.shape:
            raise ConfigError(
                f"score_tone: {tone.shape[0]} tone values but {count.shape[0]} word counts."
            )
        known = np.isfinite(tone) & np.isfinite(count)
        values = np.where(known, np.tanh(np.where(known, tone, 0.0) / self.scale), 0.0)
        confidence = np.where(known, 1.0 - np.exp(-np.clip(count, 0, None) / self.words), 0.0)
        return values, confidence

    def describe(self) -> dict[str, Any]:
        return {"scorer": self.name, "scale": self.scale, "words": self.words}


class LexiconScorer(Scorer):
    """VADER's compound score; confidence = 1 - VADER's neutral share (0 for empty text)."""

    name = "lexicon"

    def __init__(self) -> None:
        try:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        except ImportError:
            raise ConfigError(
                "The lexicon scorer needs vaderSentiment: pip install 'moola[sentiment]'.",
                param="scorer",
            ) from None
        self._analyzer = SentimentIntensityAnalyzer()

    def score(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        values = np.zeros(len(texts))
        confidence = np.zeros(len(texts))
        for i, text in enumerate(texts):
            if not str(text).strip():
                continue
            scores = self._analyzer.polarity_scores(str(text))
            values[i] = scores["compound"]
            confidence[i] = 1.0 - scores["neu"]
        return np.clip(values, -1.0, 1.0), np.clip(confidence, 0.0, 1.0)

    def describe(self) -> dict[str, Any]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            release = version("vaderSentiment")
        except PackageNotFoundError:  # pragma: no cover - imported, so installed
            release = "unknown"
        return {"scorer": self.name, "lexicon": "vader", "version": release}


def missing_model_files(directory: str | Path) -> list[str]:
    """What a local transformer directory lacks: ``config.json``, weights, a tokenizer."""
    path = Path(directory)
    if not path.is_dir():
        return [f"the directory itself ({path} does not exist)"]
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not any((path / name).is_file() for name in _WEIGHTS):
        missing.append("model weights (model.safetensors or pytorch_model.bin)")
    if not any((path / name).is_file() for name in _TOKENIZER):
        missing.append("a tokenizer (vocab.txt or tokenizer.json, with tokenizer_config.json)")
    return missing


class TransformerScorer(Scorer):
    """A local sequence-classification model with positive/negative(/neutral) labels.

    ``model_dir``: a directory as ``save_pretrained`` writes it (FinBERT: download
    ``ProsusAI/finbert`` once, e.g. ``huggingface-cli download ProsusAI/finbert
    --local-dir DIR`` on a machine with internet, and copy DIR here). ``batch_size`` texts
    go through the model at a time, each cut to ``max_length`` tokens, on ``device``
    (``moola.core.devices.select_device``: ``cpu``, ``cuda``, ``mps`` or ``auto``). Nothing
    is ever downloaded: loading uses ``local_files_only=True``.
    """

    name = "transformer"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        batch_size: int = 32,
        max_length: int = 128,
        device: str = "cpu",
    ) -> None:
        self.model_dir = Path(model_dir).expanduser()
        missing = missing_model_files(self.model_dir)
        if missing:
            raise ConfigError(
                f"The transformer scorer's model directory {self.model_dir} lacks "
                f"{'; '.join(missing)}. Put a sentiment classifier saved with "
                f"save_pretrained there, e.g. FinBERT's files ({FINBERT_FILES}) from "
                "https://huggingface.co/ProsusAI/finbert (e.g. huggingface_hub's "
                "snapshot_download('ProsusAI/finbert', local_dir=DIR) on a machine with "
                "internet, then copy DIR here). moola never downloads weights.",
                param="model_dir",
            )
        if batch_size < 1 or max_length < 8:
            raise ConfigError(
                f"batch_size must be >= 1 and max_length >= 8, got {batch_size}, {max_length}."
            )
        self.batch_size = int(batch_size)
        self.max_length = int(max_length)
        try:
            import torch  # noqa: F401
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError:
            raise ConfigError(
                "The transformer scorer needs torch and transformers: "
                "pip install 'moola[sentiment]'.",
                param="scorer",
            ) from None
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
            self._model = AutoModelForSequenceClassification.from_pretrained(
                self.model_dir, local_files_only=True
            )
        except (OSError, ValueError, KeyError) as error:
            raise ConfigError(
                f"Could not load a sequence-classification model from {self.model_dir}: "
                f"{str(error).splitlines()[0]}. The directory must hold a model saved with "
                "save_pretrained (config.json with an architecture ending in "
                "ForSequenceClassification, its weights and its tokenizer files).",
                param="model_dir",
            ) from None
        self.device = select_device(device)
        self._model.to(self.device).eval()
        self._positive, self._negative = self._label_ids()

    def _label_ids(self) -> tuple[int, int]:
        labels = {int(i): str(label).lower() for i, label in self._model.config.id2label.items()}
        by_name = {label: i for i, label in labels.items()}
        if "positive" not in by_name or "negative" not in by_name:
            raise ConfigError(
                f"The model in {self.model_dir} has labels {sorted(labels.values())}; a "
                "sentiment scorer needs 'positive' and 'negative' (FinBERT has positive, "
                "negative, neutral). Set id2label in its config.json or use another model.",
                param="model_dir",
            )
        return by_name["positive"], by_name["negative"]

    def score(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        import torch

        values = np.zeros(len(texts))
        confidence = np.zeros(len(texts))
        present = [i for i, text in enumerate(texts) if str(text).strip()]
        with torch.no_grad():
            for start in range(0, len(present), self.batch_size):
                chunk = present[start : start + self.batch_size]
                batch = self._tokenizer(
                    [str(texts[i]) for i in chunk],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                logits = self._model(**batch).logits  # (B, n_labels)
                proba = torch.softmax(logits.float(), dim=-1).cpu().numpy().astype(np.float64)
                values[chunk] = proba[:, self._positive] - proba[:, self._negative]
                confidence[chunk] = proba.max(axis=1)
        return np.clip(values, -1.0, 1.0), np.clip(confidence, 0.0, 1.0)

    def describe(self) -> dict[str, Any]:
        files = sorted(
            p.name
            for p in self.model_dir.iterdir()
            if p.is_file() and (p.suffix in (".json", ".txt", ".bin", ".safetensors", ".model"))
        )
        hashes = {name: sha256_file(self.model_dir / name) for name in files}
        return {
            "scorer": self.name,
            "model_dir": str(self.model_dir.resolve()),
            "model_hash": sha256_json(hashes),
            "files": hashes,
            "labels": {str(k): str(v) for k, v in sorted(self._model.config.id2label.items())},
            "max_length": self.max_length,
            "device": str(self.device),
        }


def create_scorer(name: str, *, model_dir: str | Path | None = None, **options: Any) -> Scorer:
    """The scorer called ``name`` (one of ``SCORERS``); ``model_dir`` for ``transformer``."""
    key = str(name).strip().lower()
    if key not in SCORERS:
        close = difflib.get_close_matches(key, SCORERS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"Unknown scorer {name!r}.{hint} Scorers: {', '.join(SCORERS)}.", param="scorer"
        )
    if key == "transformer":
        if model_dir is None:
            raise ConfigError(
                "The transformer scorer reads a local model: give model_dir, the directory "
                f"holding e.g. FinBERT's files ({FINBERT_FILES}).",
                param="model_dir",
            )
        return TransformerScorer(model_dir, **options)
    if model_dir is not None:
        raise ConfigError(
            f"model_dir is for the transformer scorer; the {key} scorer takes none.",
            param="model_dir",
        )
    return ToneScorer(**options) if key == "tone" else LexiconScorer(**options)
