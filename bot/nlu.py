"""Intent recognition over Rasa-format training data: embedding nearest neighbour."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bot.ports import Encoder


@dataclass(frozen=True)
class IntentPrediction:
    intent: str | None  # None: no intent is sure enough (Rasa's nlu_fallback)
    confidence: float
    ranking: tuple[tuple[str, float], ...] = ()  # best first, whatever the threshold

    @property
    def best_guess(self) -> tuple[str | None, float]:
        """The top-ranked intent and its confidence, even below the threshold."""
        return self.ranking[0] if self.ranking else (None, 0.0)


class NearestNeighbourIntentClassifier:
    """Predicts the intent of the most similar training example, if similar enough."""

    def __init__(self, encoder: Encoder, examples: dict[str, list[str]], threshold: float) -> None:
        self._threshold = threshold
        self._intents = list(examples)
        self._labels = np.array([self._intents.index(intent) for intent, texts in examples.items() for _ in texts])
        self._matrix = encoder.encode([text for texts in examples.values() for text in texts])

    def predict(self, vector: np.ndarray, ranking: int = 5) -> IntentPrediction:
        """Classify one unit-length query vector."""
        scores = self._matrix @ vector
        per_intent = np.full(len(self._intents), -1.0)
        np.maximum.at(per_intent, self._labels, scores)
        order = np.argsort(-per_intent)[:ranking]
        ranked = tuple((self._intents[i], round(float(per_intent[i]), 4)) for i in order)
        intent, confidence = ranked[0]
        return IntentPrediction(intent if confidence >= self._threshold else None, confidence, ranked)
