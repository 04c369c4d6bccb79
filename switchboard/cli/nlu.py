"""`switchboard train` and `switchboard nlu test`: the intent classifiers."""

from __future__ import annotations

from pathlib import Path

import click

from bot.errors import SwitchboardError
from switchboard.cli.base import load_settings, main, plural


@main.command()
@click.option("--project", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A Rasa project directory; also SWITCHBOARD_PROJECT_DIR.")
def train(project: Path | None) -> None:
    """Train the intent classifiers now and keep them, so that the server starts without training.

    A server trains them at start when its examples, encoder or settings changed since they were kept.
    """
    import os
    import time

    if project is not None:
        os.environ["SWITCHBOARD_PROJECT_DIR"] = str(project.resolve())
    from switchboard.app import (
        classifier_cache,
        load_dialogue,
        other_languages_classifier,
        server_encoder,
        trained_classifier,
    )

    settings = load_settings()
    started = time.perf_counter()
    try:
        _, nlu_data = load_dialogue(settings, lambda warning: click.echo(f"  {warning}", err=True))
        others = len(nlu_data.examples) - len(nlu_data.english_examples)
        click.echo(f"Training intents on {plural(len(nlu_data.examples), 'example')} of "
                   f"{plural(len(nlu_data.by_intent()), 'intent')} from {settings.nlu_path}"
                   f"{f' ({others} in other languages than English)' if others else ''} ...")
        encoder, classifier = server_encoder(settings)
        if classifier is None:  # not on ONNX Runtime, or on the shared encoder: as build_engine trains it
            trained_classifier(settings, encoder, nlu_data.english_examples)
        other_languages_classifier(settings, nlu_data.examples)
    except SwitchboardError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Kept in {classifier_cache(settings)} ({time.perf_counter() - started:.1f} s); a server with the "
               "same examples and settings starts without training.")


@main.group()
def nlu() -> None:
    """Intent classification: measure it on your own data."""


@nlu.command("test")
@click.option("--train", "train_file", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Rasa NLU file to train on.")
@click.option("--test", "test_file", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Rasa NLU file to test on; intent out_of_scope marks messages that should be rejected.")
@click.option("--json", "as_json", is_flag=True, help="Print the report, with every prediction, as JSON.")
@click.option("--confusions", default=10, show_default=True, type=click.IntRange(0),
              help="How many of the most confused intent pairs to list.")
@click.option("--intent-encoder", type=click.Choice(["tuned", "shared", "multilingual"]), default=None,
              help="Tune a copy of the encoder on the training file, or use the KB's [default: "
                   "SWITCHBOARD_INTENT_ENCODER, tuned]; multilingual: the classifier of messages in other "
                   "languages than English.")
def nlu_test(train_file: Path, test_file: Path, as_json: bool, confusions: int, intent_encoder: str | None) -> None:
    """Train the intent classifier on one file and test it on another."""
    import dataclasses
    import json
    import time

    from bot.dialogue.nlu import OTHER_LANGUAGE_INTENTS, IntentClassifier
    from bot.dialogue.nlu_evaluation import evaluate, nearest_neighbour_accuracy, without_test_messages
    from bot.dialogue.training_data import load_nlu
    from kb_index.encoder import ProgressEncoder, load_encoder
    from kb_index.multilingual import load_multilingual
    from switchboard.app import intent_tuner

    settings = load_settings()
    if intent_encoder in ("tuned", "shared"):
        settings = dataclasses.replace(settings, intent_encoder=intent_encoder)
    started = time.monotonic()

    def stage(name: str) -> None:
        encoder.stage = name
        click.echo(f"{name} ...", err=True)

    try:
        train = load_nlu(train_file, lambda warning: click.echo(f"warning: {warning}", err=True))
        test = load_nlu(test_file, lambda warning: click.echo(f"warning: {warning}", err=True))
        # As a server trains them: the classifier of other languages on every example, the English one on the
        # English examples; neither on a message of the test file.
        multilingual = intent_encoder == "multilingual"
        examples, left_out = without_test_messages(train.examples if multilingual else train.english_examples,
                                                   test.examples)
        if left_out:
            click.echo(f"{plural(len(left_out), 'training example')} left out: the test file has the same message "
                       f"({', '.join(repr(e.text) for e in left_out[:5])}{', ...' if len(left_out) > 5 else ''})",
                       err=True)
        if multilingual:
            encoder = ProgressEncoder(load_multilingual(settings.index_dir / "onnx").queries)
            classifier = IntentClassifier(encoder, examples, OTHER_LANGUAGE_INTENTS, progress=stage)
        else:
            encoder = ProgressEncoder(load_encoder(settings.model, settings.index_dir / "onnx", settings.encoder))
            classifier = IntentClassifier(encoder, examples, progress=stage, tuner=intent_tuner(settings, stage))
        stage("encoding test examples")
        texts = [e.text for e in test.examples]
        vectors = encoder.encode(texts)
        predictions = classifier.predict_batch(texts, vectors)
        stage("nearest-neighbour baseline (on the shared encoder)")
        baseline = nearest_neighbour_accuracy(examples, encoder.encode([e.text for e in examples]),
                                              test.examples, vectors)
    except SwitchboardError as exc:
        raise click.ClickException(str(exc)) from exc
    unknown = sorted({e.intent for e in test.examples} - set(classifier.intents) - {"out_of_scope"})
    if unknown:
        click.echo(f"warning: {test_file} has intents the training file lacks, always wrong: {', '.join(unknown)}",
                   err=True)
    report = evaluate(test.examples, predictions, classifier.threshold, confusions)
    seconds = time.monotonic() - started
    which = "multilingual" if intent_encoder == "multilingual" else "tuned" if classifier.tuned else "shared"
    if as_json:
        click.echo(json.dumps({**report.as_json(), "nearest_neighbour_accuracy": baseline,
                               "intent_encoder": which,
                               "train_examples": len(examples), "left_out": [e.text for e in left_out],
                               "test_examples": len(test.examples), "seconds": round(seconds, 1)}, indent=2))
        return
    click.echo(f"Trained on {len(examples)} examples of {len(classifier.intents)} intents "
               f"({which} encoder), tested on {len(test.examples)} in "
               f"{seconds:.0f} s; rejection threshold {report.threshold:.3f}")
    click.echo(f"  accuracy            {report.accuracy:.3f}")
    click.echo(f"  in-scope accuracy   {report.in_scope_accuracy:.3f}  ({report.top_guess_accuracy:.3f} had nothing "
               "been rejected)")
    click.echo(f"  nearest neighbour   {baseline:.3f}  (in scope, the same embeddings, no rejection: the baseline)")
    click.echo(f"  macro F1            {report.macro_f1:.3f}")
    if report.out_of_scope_examples:
        click.echo(f"  out of scope        {report.out_of_scope_rejected} of {report.out_of_scope_examples} "
                   "rejected (predicted nlu_fallback)")
    click.echo("")
    width = max((len(score.intent) for score in report.intents), default=6)
    click.echo(f"  {'intent':{width}}  precision  recall     F1  support")
    for score in report.intents:
        click.echo(f"  {score.intent:{width}}  {score.precision:9.3f}  {score.recall:6.3f}  {score.f1:5.3f}  "
                   f"{score.support:7d}")
    if report.confusions:
        click.echo("")
        click.echo("  Most confused (intent -> predicted):")
        for intent, predicted, count in report.confusions:
            click.echo(f"  {count:5d}  {intent} -> {predicted}")
