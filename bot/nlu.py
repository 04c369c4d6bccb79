"""Intent recognition over Rasa-format training data: embedding nearest neighbour."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from bot.errors import SwitchboardError
from bot.ports import Encoder

# Rasa marks entities inline as [text](entity) or [text]{"entity": ...}; keep the text.
_ENTITY = re.compile(r"\[([^\]]+)\](?:\([^)]*\)|\{[^}]*\})")


def load_nlu_examples(path: Path) -> dict[str, list[str]]:
    """Read intents and their examples from a Rasa 3 `nlu.yml` file."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SwitchboardError(f"cannot read NLU data {path}: {exc}") from exc
    intents: dict[str, list[str]] = {}
    for item in document.get("nlu", []):
        if not isinstance(item, dict) or "intent" not in item:
            continue
        examples = [
            _ENTITY.sub(r"\1", line.strip()[2:].strip())
            for line in str(item.get("examples", "")).splitlines()
            if line.strip().startswith("- ")
        ]
        intents.setdefault(str(item["intent"]), []).extend(e for e in examples if e)
    if not intents:
        raise SwitchboardError(f"{path} has no intents with examples under the 'nlu' key")
    return intents


@dataclass(frozen=True)
class IntentPrediction:
    intent: str | None  # None: no intent is close enough
    confidence: float


class NearestNeighbourIntentClassifier:
    """Predicts the intent of the most similar training example, if similar enough."""

    def __init__(self, encoder: Encoder, examples: dict[str, list[str]], threshold: float) -> None:
        self._threshold = threshold
        self._labels = [intent for intent, texts in examples.items() for _ in texts]
        self._matrix = encoder.encode([text for texts in examples.values() for text in texts])

    def predict(self, vector: np.ndarray) -> IntentPrediction:
        """Classify one unit-length query vector."""
        scores = self._matrix @ vector
        best = int(np.argmax(scores))
        confidence = float(scores[best])
        if confidence < self._threshold:
            return IntentPrediction(None, confidence)
        return IntentPrediction(self._labels[best], confidence)
