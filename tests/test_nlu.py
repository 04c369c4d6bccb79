"""The intent classifier and `switchboard nlu test`."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bot.dialogue.nlu import FALLBACK, IntentClassifier, IntentPrediction
from bot.dialogue.nlu_evaluation import evaluate, nearest_neighbour_accuracy
from bot.dialogue.training_data import Example, load_nlu
from bot.errors import SwitchboardError
from bot.ports import Encoder
from switchboard.cli import main
from tests.conftest import ROOT

EVAL = ROOT / "data" / "nlu_eval"


@pytest.fixture
def cli_env(tmp_path: Path, with_models: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI reads settings from the environment; give its model cache the encoders the tests exported."""
    monkeypatch.setenv("SWITCHBOARD_INDEX_DIR", str(with_models(tmp_path / "kb_index", caches=("onnx",))))
    yield


def test_nlu_test_json_reports_accuracy_and_every_prediction_in_file_order(cli_env: None) -> None:
    result = CliRunner().invoke(main, ["nlu", "test", "--train", str(EVAL / "train.yml"),
                                       "--test", str(EVAL / "test.yml"), "--json",
                                       "--intent-encoder", "shared"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    test = load_nlu(EVAL / "test.yml").examples
    assert [p["text"] for p in report["predictions"]] == [e.text for e in test]
    assert [p["intent"] for p in report["predictions"]] == [e.intent for e in test]
    assert set(report["predictions"][0]) == {"text", "intent", "predicted", "confidence"}
    right = sum(p["predicted"] == (FALLBACK if p["intent"] == "out_of_scope" else p["intent"])
                for p in report["predictions"])
    assert report["accuracy"] == round(right / len(test), 4)
    # The few-shot set is learnt well, and most out-of-scope messages are rejected.
    assert report["accuracy"] >= 0.9 and report["in_scope_accuracy"] >= 0.9
    assert report["out_of_scope_examples"] == 40 and report["out_of_scope_rejected"] >= 30
    assert report["train_examples"] == 320 and report["test_examples"] == 400
    # The classifier beats the nearest-neighbour baseline on the same embeddings.
    assert 0.8 <= report["nearest_neighbour_accuracy"] < report["in_scope_accuracy"]
    assert report["top_guess_accuracy"] >= report["in_scope_accuracy"]


def test_nlu_test_prints_per_intent_scores_and_confusions(cli_env: None) -> None:
    result = CliRunner().invoke(main, ["nlu", "test", "--train", str(EVAL / "train.yml"),
                                       "--test", str(EVAL / "test.yml"), "--confusions", "3",
                                       "--intent-encoder", "shared"])
    assert result.exit_code == 0, result.output
    assert "Trained on 320 examples of 30 intents (shared encoder), tested on 400" in result.stdout
    assert "rejected (predicted nlu_fallback)" in result.stdout
    assert "  order_status  " in result.stdout and "precision  recall     F1  support" in result.stdout
    assert len(re.findall(r"^ +\d+  \S+ -> \S+$", result.stdout, re.MULTILINE)) == 3
    assert "calibrating rejection (fold 5 of 5)" in result.stderr


def test_nlu_test_leaves_out_training_examples_the_test_file_has(cli_env: None) -> None:
    # The sample shop's examples in German include "hallo"; so does the German dev file.
    test_file = EVAL / "lang" / "de" / "dev.yml"
    result = CliRunner().invoke(main, ["nlu", "test", "--train", str(ROOT / "data" / "nlu.yml"),
                                       "--test", str(test_file), "--json", "--intent-encoder", "multilingual"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert "hallo" in report["left_out"]
    tested = {e.text.casefold() for e in load_nlu(test_file).examples}
    assert {text.casefold() for text in report["left_out"]} <= tested
    assert report["train_examples"] == len(load_nlu(ROOT / "data" / "nlu.yml").examples) - len(report["left_out"])
    assert f"{len(report['left_out'])} training examples left out: the test file has the same message" in result.stderr


def test_nearest_neighbour_baseline_takes_the_closest_in_scope_example() -> None:
    train = examples(("refund", "a"), ("greet", "b"), ("out_of_scope", "c"))
    test = examples(("refund", "x"), ("greet", "y"), ("out_of_scope", "z"))
    train_vectors = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    # "x" is nearest the out-of-scope example but counts its nearest intent; "y" is nearer "refund": wrong.
    test_vectors = np.array([[0.8, 0.6], [0.9, 0.1], [0.7, 0.7]])
    assert nearest_neighbour_accuracy(train, train_vectors, test, test_vectors) == 0.5


def test_nlu_test_explains_unusable_training_data(cli_env: None, tmp_path: Path) -> None:
    train = tmp_path / "train.yml"
    train.write_text("nlu:\n- intent: greet\n  examples: |\n    - hi\n    - hello\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["nlu", "test", "--train", str(train), "--test", str(EVAL / "test.yml")])
    assert result.exit_code == 1
    assert "needs examples of at least two intents" in result.stderr
    missing = CliRunner().invoke(main, ["nlu", "test", "--train", str(tmp_path / "nope.yml"), "--test", str(train)])
    assert missing.exit_code == 2 and "does not exist" in missing.stderr


def examples(*pairs: tuple[str, str]) -> tuple[Example, ...]:
    return tuple(Example(text, intent) for intent, text in pairs)


SMALL = examples(
    ("greet", "hi"), ("greet", "hello"), ("greet", "good morning"), ("greet", "hey there"),
    ("refund", "where is my refund"), ("refund", "I want my money back"), ("refund", "refund status"),
    ("refund", "when do I get refunded"),
    ("track", "where is my parcel"), ("track", "track my order"), ("track", "has my order shipped"),
    ("track", "tracking number please"),
)


def test_out_of_scope_examples_teach_rejection(encoder: Encoder) -> None:
    outside = examples(("out_of_scope", "what's the weather"), ("out_of_scope", "tell me a joke"),
                       ("out_of_scope", "who won the game"), ("out_of_scope", "recommend a movie"))
    classifier = IntentClassifier(encoder, SMALL + outside)
    assert classifier.intents == ["greet", "refund", "track"]
    rejected = classifier.predict("is it going to rain tomorrow")
    assert rejected.intent is None
    assert all(intent != "out_of_scope" for intent, _ in rejected.ranking)
    assert classifier.predict("could you track my package").intent == "track"


def test_without_out_of_scope_examples_a_threshold_is_calibrated(encoder: Encoder) -> None:
    classifier = IntentClassifier(encoder, SMALL)
    assert 0 < classifier.threshold < 1
    assert classifier.predict("hello!").intent == "greet"
    assert classifier.predict("hello!").confidence >= classifier.threshold


def test_a_trained_classifier_is_kept_and_reused_for_the_same_examples(encoder: Encoder, tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "classifiers"
    stages: list[str] = []
    first = IntentClassifier(encoder, SMALL, cache=cache, encoder_name="minilm", progress=stages.append)
    assert "training" in stages and len(list(cache.glob("*.pickle"))) == 1
    stages.clear()
    again = IntentClassifier(encoder, SMALL, cache=cache, encoder_name="minilm", progress=stages.append)
    assert stages == ["reusing the classifier trained on these examples before"]
    for text in ("hello!", "where is my parcel", "what's the weather"):
        assert again.predict(text) == first.predict(text)
    assert again.threshold == first.threshold
    # Other examples, another encoder: trained anew, each kept beside the others.
    IntentClassifier(encoder, SMALL[:-1], cache=cache, encoder_name="minilm")
    IntentClassifier(encoder, SMALL, cache=cache, encoder_name="another model")
    assert len(list(cache.glob("*.pickle"))) == 3
    # A damaged file is trained again, and says so.
    for path in cache.glob("*.pickle"):
        path.write_bytes(b"not a pickle")
    stages.clear()
    IntentClassifier(encoder, SMALL, cache=cache, encoder_name="minilm", progress=stages.append)
    assert "training" in stages and "does not load" in caplog.text


def test_one_intent_is_not_enough(encoder: Encoder) -> None:
    with pytest.raises(SwitchboardError, match="at least two intents"):
        IntentClassifier(encoder, examples(("greet", "hi"), ("greet", "hello")))


def test_evaluation_counts_rejections_as_right_for_out_of_scope() -> None:
    test = examples(("a", "1"), ("a", "2"), ("b", "3"), ("out_of_scope", "4"), ("out_of_scope", "5"))
    predictions = [IntentPrediction("a", 0.9), IntentPrediction("b", 0.6), IntentPrediction("b", 0.8),
                   IntentPrediction(None, 0.7), IntentPrediction("a", 0.4)]
    report = evaluate(test, predictions, threshold=0.3)
    assert report.accuracy == 0.6 and report.in_scope_accuracy == round(2 / 3, 4)
    assert report.out_of_scope_examples == 2 and report.out_of_scope_rejected == 1
    scores = {s.intent: s for s in report.intents}
    assert (scores["a"].precision, scores["a"].recall) == (0.5, 0.5)
    assert (scores["b"].precision, scores["b"].recall) == (0.5, 1.0)
    assert (scores["out_of_scope"].precision, scores["out_of_scope"].recall) == (1.0, 0.5)
    assert report.macro_f1 == round((0.5 + 2 / 3 + 2 / 3) / 3, 4)
    assert set(report.confusions) == {("a", "b", 1), ("out_of_scope", "a", 1)}
    assert report.predictions[4] == {"text": "5", "intent": "out_of_scope", "predicted": "a", "confidence": 0.4}


@pytest.mark.parametrize("two_classes", [False, True])
def test_the_fast_scoring_path_matches_the_fitted_model(encoder: Encoder, two_classes: bool) -> None:
    training = SMALL[:8] if two_classes else SMALL
    classifier = IntentClassifier(encoder, training)
    texts = ["hello there", "where's my refund??", "zzz", "track it"]
    vectors = encoder.encode(texts)
    reference = classifier._model.predict_proba(classifier._features(classifier._ngrams, texts, vectors))
    one_by_one = np.vstack([classifier._probabilities([t], vectors[i:i + 1]) for i, t in enumerate(texts)])
    np.testing.assert_allclose(one_by_one, reference, atol=1e-9)
    np.testing.assert_allclose(classifier._probabilities(texts, vectors), reference, atol=1e-9)
