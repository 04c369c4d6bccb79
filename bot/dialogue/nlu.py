"""Intent recognition over Rasa-format training data.

A logistic regression over two views of a message: its sentence embedding (meaning) and
its character n-grams (wording, typos, product codes). The embedding comes from the shared
encoder or, given a tuner, from a copy of it tuned on the training examples
(kb_index/tuning.py), which tells close intents apart far better. Messages that fit no intent
are rejected as Rasa's `nlu_fallback`: by an `out_of_scope` class when the training data has
examples of it, and by a confidence threshold calibrated on held-out folds of the training
data (with a tuner, each fold's encoder is tuned without the fold's held-out examples, so the
threshold is not set on examples the encoder has seen).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Protocol

import numpy as np
from scipy import sparse
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from bot.dialogue.training_data import Example
from bot.errors import SwitchboardError
from bot.ports import Encoder

log = logging.getLogger(__name__)

OUT_OF_SCOPE = "out_of_scope"   # the training intent for messages no intent covers
FALLBACK = "nlu_fallback"       # what a rejected message is predicted as

Progress = Callable[[str], None]


class EncoderTuner(Protocol):
    def tuned(self, examples: Sequence[Example]) -> Encoder:
        """An encoder tuned on the examples."""
        ...

    def fold_vectors(self, train: Sequence[Example], texts: Sequence[str]) -> np.ndarray:
        """`texts` encoded by an encoder tuned on `train` alone (a calibration fold's)."""
        ...


@dataclass(frozen=True)
class IntentPrediction:
    intent: str | None  # None: no intent is sure enough (Rasa's nlu_fallback)
    confidence: float
    ranking: tuple[tuple[str, float], ...] = ()  # best first, whatever the threshold

    @property
    def best_guess(self) -> tuple[str | None, float]:
        """The top-ranked intent and its confidence, even below the threshold."""
        return self.ranking[0] if self.ranking else (None, 0.0)


@dataclass(frozen=True)
class ClassifierOptions:
    regularisation: float = 10.0   # logistic regression's C
    folds: int = 5                 # for calibrating the rejection threshold
    # Without out-of-scope examples: keep this share of correct held-out predictions.
    in_scope_recall: float = 0.95
    max_iter: int = 2000
    tuned_folds: int = 3           # fewer folds when each fold tunes an encoder: a time budget
    # Character n-grams beside the embedding: they catch wording and typos, but only in the language the
    # examples are written in; a classifier of messages in other languages reads the embedding alone.
    ngrams: bool = True
    threshold: float | None = None  # a fixed rejection threshold instead of one calibrated on folds


# Messages in other languages than English are classified on the multilingual encoder's vectors, trained on
# every example: the English ones, which e5 carries across languages ("wo ist meine Bestellung" lies near "where
# is my order"), and those written in other languages (`metadata: {language: de}`). Chosen on the dev splits of
# data/nlu_eval/lang and on the translated KB dev questions, whose intent should be the one the English bot gives
# their English original (docs/multilingual.md): character n-grams of English examples only mislead there, a weak
# regularisation keeps the few examples apart, and a fixed threshold rejects what fits no intent (folds of the
# examples say little of how sure it is of new messages in another language).
OTHER_LANGUAGE_INTENTS = ClassifierOptions(regularisation=100.0, ngrams=False, threshold=0.55)


class IntentClassifier:
    """Classifies messages into the intents of the training examples, or rejects them."""

    def __init__(self, encoder: Encoder, examples: Sequence[Example], options: ClassifierOptions | None = None,
                 progress: Progress | None = None, tuner: EncoderTuner | None = None,
                 cache: Path | None = None, encoder_name: str = "") -> None:
        """Train on `examples`, or, given a `cache` directory, reuse what was trained there on the same examples,
        options and encoder (`encoder_name` names it: its model and kind; a tuned one follows the examples)."""
        self._options = options or ClassifierOptions()
        report = progress or (lambda stage: None)
        labels = np.array([e.intent for e in examples])
        intents = set(labels) - {OUT_OF_SCOPE}
        if len(set(labels)) < 2 or not intents:
            raise SwitchboardError("intent training needs examples of at least two intents (out_of_scope counts "
                                   "as one)")
        self.tuned = tuner is not None
        if tuner is not None:
            report("tuning the encoder on the training examples")
            encoder = tuner.tuned(examples)
        self._encoder = encoder
        key = _fingerprint(examples, self._options, encoder_name, self.tuned)
        fitted = _load_fitted(cache, key) if cache is not None else None
        if fitted is None:
            fitted = self._train(examples, labels, report, tuner)
            if cache is not None:
                _save_fitted(cache, key, fitted)
        else:
            report("reusing the classifier trained on these examples before")
        self.threshold = fitted.threshold
        self.intents = sorted(intents)
        self._ngrams, model = fitted.ngrams, fitted.model
        self._classes = model.classes_
        # The fitted weights split by view, so one message is scored without sklearn's per-call overhead
        # (a live turn scores one message; `_probabilities` checks it against predict_proba in the tests).
        dimension = fitted.dimension
        self._embedding_weights = np.ascontiguousarray(model.coef_[:, :dimension].T)
        self._ngram_weights = np.ascontiguousarray(model.coef_[:, dimension:].T)
        self._bias = model.intercept_
        self._analyse = self._ngrams.build_analyzer() if self._ngrams is not None else None
        self._model = model

    def _train(self, examples: Sequence[Example], labels: np.ndarray, report: Progress,
               tuner: EncoderTuner | None) -> _Fitted:
        texts = [e.text for e in examples]
        report("encoding training examples")
        vectors = self._encoder.encode(texts)
        threshold = self._options.threshold if self._options.threshold is not None \
            else self._calibrate(examples, vectors, labels, report, tuner)
        report("training")
        ngrams, model = self._fit(texts, vectors, labels)
        return _Fitted(threshold, ngrams, model, int(vectors.shape[1]))

    def predict(self, text: str, vector: np.ndarray | None = None, ranking: int = 5) -> IntentPrediction:
        """Classify one message; `vector` is its unit-length vector from the shared encoder, if already encoded
        (a classifier with a tuned encoder encodes the message itself)."""
        if vector is None or self.tuned:
            return self.predict_batch([text], None, ranking)[0]
        return self.predict_batch([text], vector.reshape(1, -1), ranking)[0]

    def predict_batch(self, texts: Sequence[str], vectors: np.ndarray | None = None,
                      ranking: int = 5) -> list[IntentPrediction]:
        """Classify many messages at once (`vectors`: theirs from the shared encoder, if the classifier has no
        tuned one)."""
        if vectors is None or self.tuned:
            vectors = self._encoder.encode(list(texts))
        probabilities = self._probabilities(texts, vectors)
        classes = self._classes
        predictions = []
        for row in probabilities:
            order = np.argsort(-row)[:ranking]
            ranked = tuple((str(classes[i]), round(float(row[i]), 4)) for i in order if classes[i] != OUT_OF_SCOPE)
            top, confidence = str(classes[order[0]]), float(row[order[0]])
            accepted = top != OUT_OF_SCOPE and confidence >= self.threshold
            predictions.append(IntentPrediction(top if accepted else None, round(confidence, 4), ranked))
        return predictions

    def _probabilities(self, texts: Sequence[str], vectors: np.ndarray) -> np.ndarray:
        """The logistic regression's class probabilities, one row per text."""
        scores = vectors @ self._embedding_weights + self._bias
        if self._ngrams is not None and len(texts) == 1:
            scores = scores + self._ngram_scores(texts[0])[None, :]
        elif self._ngrams is not None:
            scores = scores + np.asarray(self._ngrams.transform(texts) @ self._ngram_weights)
        if scores.shape[1] == 1:  # two classes: one logistic unit
            positive = 1 / (1 + np.exp(-scores))
            return np.hstack([1 - positive, positive])
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        return scores / scores.sum(axis=1, keepdims=True)

    def _ngram_scores(self, text: str) -> np.ndarray:
        """One text's n-gram contribution: its TF-IDF row (sublinear tf, l2 norm) times the weights."""
        assert self._ngrams is not None and self._analyse is not None
        vocabulary = self._ngrams.vocabulary_
        counts = Counter(vocabulary[g] for g in self._analyse(text) if g in vocabulary)
        if not counts:
            return np.zeros(self._ngram_weights.shape[1])
        columns = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        weights = (1 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))) \
            * self._ngrams.idf_[columns]
        weights /= np.linalg.norm(weights)
        return np.asarray(weights @ self._ngram_weights[columns])

    # -- training ------------------------------------------------------------------------

    @staticmethod
    def _features(ngrams: TfidfVectorizer | None, texts: Sequence[str], vectors: np.ndarray) -> sparse.csr_matrix:
        if ngrams is None:
            return sparse.csr_matrix(vectors)
        return sparse.hstack([sparse.csr_matrix(vectors), ngrams.transform(texts)]).tocsr()

    def _fit(self, texts: Sequence[str], vectors: np.ndarray,
             labels: np.ndarray) -> tuple[TfidfVectorizer | None, LogisticRegression]:
        ngrams = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True).fit(texts) \
            if self._options.ngrams else None
        model = LogisticRegression(C=self._options.regularisation, max_iter=self._options.max_iter)
        with warnings.catch_warnings():
            # A capped number of iterations is a time budget on big training sets, not an error.
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(self._features(ngrams, texts, vectors), labels)
        return ngrams, model

    def _calibrate(self, examples: Sequence[Example], vectors: np.ndarray, labels: np.ndarray, report: Progress,
                   tuner: EncoderTuner | None) -> float:
        """The confidence below which a message is rejected, chosen on held-out folds."""
        texts = [e.text for e in examples]
        _, counts = np.unique(labels, return_counts=True)
        folds = min(self._options.tuned_folds if tuner else self._options.folds, int(counts.max()))
        if folds < 2 or counts.min() < 2:
            return 0.0 if OUT_OF_SCOPE in labels else 0.2  # too few examples to hold any out
        confidence = np.zeros(len(labels))
        predicted = np.empty(len(labels), dtype=object)
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
        texts_array = np.array(texts, dtype=object)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # classes with fewer examples than folds
            splits = list(splitter.split(vectors, labels))
        for number, (train, held_out) in enumerate(splits, 1):
            report(f"calibrating rejection (fold {number} of {folds})")
            fold_vectors = vectors
            if tuner is not None:
                fold_vectors = tuner.fold_vectors([examples[i] for i in train], texts)
            ngrams, model = self._fit(list(texts_array[train]), fold_vectors[train], labels[train])
            rows = model.predict_proba(self._features(ngrams, list(texts_array[held_out]), fold_vectors[held_out]))
            confidence[held_out] = rows.max(axis=1)
            predicted[held_out] = model.classes_[rows.argmax(axis=1)]
        in_scope = labels != OUT_OF_SCOPE
        if not in_scope.all():
            # Out-of-scope examples exist: the threshold that gets most held-out examples right.
            def correct(threshold: float) -> float:
                accepted = (confidence >= threshold) & (predicted != OUT_OF_SCOPE)
                return float(np.mean(np.where(in_scope, accepted & (predicted == labels), ~accepted)))
            return float(max(np.arange(0.0, 0.7, 0.025), key=correct))
        right = confidence[predicted == labels]
        if right.size == 0:
            return 0.0
        return float(np.quantile(right, 1 - self._options.in_scope_recall))


@dataclass(frozen=True)
class _Fitted:
    """What training produces, without the encoder: kept in the cache."""

    threshold: float
    ngrams: TfidfVectorizer | None
    model: LogisticRegression
    dimension: int


_CACHE_FORMAT = "intent-classifier-1"  # changes whenever what _Fitted holds, or how it is trained, does


def _fingerprint(examples: Sequence[Example], options: ClassifierOptions, encoder_name: str, tuned: bool) -> str:
    digest = hashlib.sha256(json.dumps([_CACHE_FORMAT, switchboard_version(), encoder_name, tuned,
                                        repr(options), [(e.text, e.intent) for e in examples]]).encode())
    return digest.hexdigest()[:24]


def switchboard_version() -> str:
    try:
        return metadata.version("switchboard")
    except metadata.PackageNotFoundError:
        return "unknown"


def _load_fitted(cache: Path, key: str) -> _Fitted | None:
    path = cache / f"{key}.pickle"
    try:
        with path.open("rb") as handle:
            # Written by this process's own code into Switchboard's var directory, never from outside.
            fitted = pickle.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as exc:
        log.warning("retraining intents: the cached classifier %s does not load (%s)", path, exc)
        return None
    return fitted if isinstance(fitted, _Fitted) else None


def _save_fitted(cache: Path, key: str, fitted: _Fitted) -> None:
    """Written whole or not at all (a temporary file renamed), so a crash never leaves half a cache."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache, suffix=".partial", delete=False) as handle:
            pickle.dump(fitted, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(handle.name, cache / f"{key}.pickle")
    except OSError as exc:
        log.warning("could not keep the trained intent classifier in %s (%s); it is trained again at the next start",
                    cache, exc)
