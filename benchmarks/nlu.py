"""Intent classification benchmarks: quality on the few-shot sets in data/nlu_eval, and the time
`switchboard nlu test` takes on 15,000 training and 5,000 test examples.

The large set is generated (150 intents from actions x objects, in templated phrasings with
noise); it measures time and memory, not quality, since templated text is easy to classify.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bot.dialogue.nlu import OUT_OF_SCOPE, IntentClassifier
from bot.dialogue.nlu_evaluation import NluReport, evaluate, nearest_neighbour_accuracy
from bot.dialogue.training_data import load_nlu
from kb_index.encoder import DEFAULT_MODEL, load_encoder
from kb_index.tuning import ContrastiveTuner

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT / "data" / "nlu_eval"

_ACTIONS = ["cancel", "track", "return", "exchange", "repair", "change", "pay for", "find", "review", "insure",
            "upgrade", "renew", "transfer", "split", "reserve"]
_OBJECTS = ["order", "tent", "jacket", "gift card", "subscription", "rental bike", "boots", "booking",
            "kayak course", "invoice"]
_TEMPLATES = ["I want to {a} my {o}", "how can I {a} the {o}", "please {a} {o}", "{a} {o}",
              "is it possible to {a} my {o}?", "can you help me {a} a {o}", "I need to {a} this {o} today",
              "where do I {a} my {o}", "help, trying to {a} the {o}", "would like to {a} one {o}",
              "what's the way to {a} an {o}", "{o}: {a} it", "could someone {a} my {o} for me",
              "I'd love to {a} the {o} I have", "{a} the {o} please, asap"]
_PREFIXES = ["", "", "hi, ", "hello ", "hey there, ", "good morning, ", "sorry, "]
_SUFFIXES = ["", "", " thanks", " please", "!", "?", " asap", " thank you"]
_OUT_OF_SCOPE = ["what's the weather in {c}", "tell me a joke about {c}", "best restaurants in {c}",
                 "flights to {c} tomorrow", "how many people live in {c}", "what time is it in {c}"]
_CITIES = ["Paris", "Oslo", "Lima", "Rome", "Tokyo", "Cairo", "Quito", "Perth", "Riga", "Dakar"]


@dataclass(frozen=True)
class QualityResult:
    test_set: str
    classifier: str
    in_scope_accuracy: float
    report: NluReport | None   # None: the baseline, which rejects nothing
    train_seconds: float


@dataclass(frozen=True)
class ScaleResult:
    train: int
    test: int
    seconds: float
    peak_rss_mb: float
    accuracy: float


def _noisy(text: str, rng: random.Random) -> str:
    text = rng.choice(_PREFIXES) + text + rng.choice(_SUFFIXES)
    if rng.random() < 0.2 and len(text) > 8:  # a typo: one letter dropped
        at = rng.randrange(1, len(text) - 1)
        text = text[:at] + text[at + 1:]
    return text


def generate(train_per_intent: int = 100, test_per_intent: int = 33, seed: int = 0) -> tuple[str, str]:
    """Rasa NLU files with 150 intents: 15,000 training and about 5,000 test examples."""
    rng = random.Random(seed)
    train: dict[str, list[str]] = {}
    test: dict[str, list[str]] = {}
    for action in _ACTIONS:
        for obj in _OBJECTS:
            intent = f"{action.replace(' ', '_')}_{obj.replace(' ', '_')}"
            texts = [_noisy(rng.choice(_TEMPLATES).format(a=action, o=obj), rng)
                     for _ in range(train_per_intent + test_per_intent)]
            train[intent], test[intent] = texts[:train_per_intent], texts[train_per_intent:]
    test[OUT_OF_SCOPE] = [_noisy(rng.choice(_OUT_OF_SCOPE).format(c=rng.choice(_CITIES)), rng) for _ in range(50)]
    return _rasa(train), _rasa(test)


def _rasa(intents: dict[str, list[str]]) -> str:
    lines = ['version: "3.1"', "nlu:"]
    for intent, texts in intents.items():
        lines += [f"- intent: {intent}", "  examples: |", *(f"    - {json.dumps(t)[1:-1]}" for t in texts)]
    return "\n".join(lines) + "\n"


def quality() -> list[QualityResult]:
    """On the fine-grained set (dev and test splits) and the older 30-intent set: nearest neighbour on the
    shared encoder (the few-shot baseline), and the logistic regression on the shared and on the tuned
    encoder."""
    encoder = load_encoder(DEFAULT_MODEL, ROOT / "var" / "kb_index" / "onnx", "auto")
    results = []
    for train_file, tests in ((EVAL / "fine" / "train.yml", (("fine-grained, dev", EVAL / "fine" / "dev.yml"),
                                                            ("fine-grained, test", EVAL / "fine" / "test.yml"))),
                              (EVAL / "train.yml", (("30 intents", EVAL / "test.yml"),))):
        train = load_nlu(train_file).examples
        train_vectors = encoder.encode([e.text for e in train])
        with tempfile.TemporaryDirectory() as cache:
            classifiers = []
            for name, tuner in (("shared encoder", None),
                                ("tuned encoder", ContrastiveTuner(DEFAULT_MODEL, Path(cache), "auto"))):
                started = time.monotonic()
                classifiers.append((name, IntentClassifier(encoder, train, tuner=tuner), time.monotonic() - started))
            for set_name, test_file in tests:
                test = load_nlu(test_file).examples
                texts = [e.text for e in test]
                vectors = encoder.encode(texts)
                baseline = nearest_neighbour_accuracy(train, train_vectors, test, vectors)
                results.append(QualityResult(set_name, "nearest neighbour, shared encoder", baseline, None, 0.0))
                for name, classifier, seconds in classifiers:
                    report = evaluate(test, classifier.predict_batch(texts, vectors), classifier.threshold)
                    results.append(QualityResult(set_name, f"logistic regression, {name}", report.in_scope_accuracy,
                                                 report, seconds))
    return results


def scale() -> ScaleResult:
    """Time the real command on the generated 15,000 / 5,000 example files."""
    train_text, test_text = generate()
    with tempfile.TemporaryDirectory() as tmp:
        train, test = Path(tmp) / "train.yml", Path(tmp) / "test.yml"
        train.write_text(train_text, encoding="utf-8")
        test.write_text(test_text, encoding="utf-8")
        command = [sys.executable, "-m", "switchboard", "nlu", "test", "--train", str(train), "--test", str(test),
                   "--json"]
        started = time.monotonic()
        # Through a fresh parent, so the peak memory is the command's own, not an earlier benchmark's.
        done = subprocess.run([sys.executable, "-c", _MEASURE, *command], cwd=ROOT, check=True, capture_output=True,
                              text=True)
        seconds = time.monotonic() - started
    measured = json.loads(done.stdout)
    report = measured["report"]
    return ScaleResult(report["train_examples"], report["test_examples"], seconds, measured["peak_kb"] / 1024,
                       report["accuracy"])


_MEASURE = """
import json, resource, subprocess, sys
done = subprocess.run(sys.argv[1:], check=True, capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"report": json.loads(done.stdout), "peak_kb": peak}))
"""


def report(results: list[QualityResult], big: ScaleResult) -> str:
    lines = [
        "## Intent classification",
        "",
        "10-shot sets of `data/nlu_eval`: the fine-grained one (55 close intents, 15 out-of-scope training "
        "examples; dev and test 220 in-scope messages each and 24 and 25 out-of-scope; tuned on dev only) and the "
        "older 30-intent one (20 out-of-scope training examples; 360 in-scope and 40 out-of-scope test messages). "
        "In-scope accuracy counts a rejected in-scope message as wrong; nearest neighbour rejects nothing.",
        "",
        "| test set | classifier | in-scope accuracy | had nothing been rejected | out of scope rejected | "
        "training s |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        r = result.report
        if r is None:
            lines.append(f"| {result.test_set} | {result.classifier} | {result.in_scope_accuracy:.3f} | | | |")
            continue
        lines.append(f"| {result.test_set} | {result.classifier} | {r.in_scope_accuracy:.3f} | "
                     f"{r.top_guess_accuracy:.3f} | {r.out_of_scope_rejected} of {r.out_of_scope_examples} | "
                     f"{result.train_seconds:.0f} |")
    lines += [
        "",
        f"Scale: `switchboard nlu test` on {big.train:,} generated training and {big.test:,} test examples "
        f"(150 intents) took {big.seconds:.0f} s end to end, model load included, peak memory "
        f"{big.peak_rss_mb:.0f} MB (accuracy {big.accuracy:.3f} on templated text, which says little).",
    ]
    return "\n".join(lines)


def run() -> tuple[list[QualityResult], ScaleResult]:
    return quality(), scale()


if __name__ == "__main__":
    q, s = run()
    print(report(q, s))
