"""The `switchboard` command."""

from __future__ import annotations

import getpass
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import click

from bot.errors import SwitchboardError, Unavailable
from switchboard.settings import Settings

if TYPE_CHECKING:
    from bot.analytics.reports import Csat, Report, Times
    from bot.messages import Customer
    from bot.stores.conversations import ConversationStore
    from bot.stores.database import Database
    from handoff.agents import AgentDirectory


def _count(n: int, word: str) -> str:
    """ "1 question", "2 questions"."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SwitchboardError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def main() -> None:
    """Switchboard: a chatbot-first customer-service layer."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # faiss reports at INFO how it probed for CPU features; only its problems matter here.
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    logging.getLogger("bm25s").setLevel(logging.WARNING)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option("--project", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A Rasa project directory (domain, data/, endpoints.yml, credentials.yml); "
                   "also SWITCHBOARD_PROJECT_DIR.")
def run(host: str, port: int, project: Path | None) -> None:
    """Serve Switchboard: web chat, Rasa REST channel and agent console."""
    import os

    if project is not None:
        os.environ["SWITCHBOARD_PROJECT_DIR"] = str(project.resolve())  # the index build below reads it too

    from switchboard.server import SwitchboardServer

    settings = _ready_settings()
    public = settings.public_url.startswith("https://")
    with _directory() as directory:
        # A demo admin whose password is printed is for trying Switchboard out, never for a public service.
        demo_login = None if public else directory.ensure_demo_agent()
        no_agents = not directory.list()

    base = f"http://{host}:{port}"
    click.echo("")
    click.echo(f"  Switchboard is starting on {base}")
    click.echo(f"    web chat:       {base}/")
    click.echo(f"    agent console:  {base}/console/")
    click.echo(f"    Rasa REST:      {base}/webhooks/rest/webhook")
    if demo_login:
        email, password = demo_login
        click.echo(f"    demo agent:     {email} / {password}   (shown only this once; for trying Switchboard "
                   "out: none is made when SWITCHBOARD_PUBLIC_URL is https)")
    elif public and no_agents:
        click.echo("    no agents yet:  create an admin with `switchboard agents add EMAIL --role admin`")
    click.echo("")
    SwitchboardServer(settings, host, port).run()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option("--processes", default=2, show_default=True, type=click.IntRange(1, 64),
              help="Server processes (each loads the models).")
def web(host: str, port: int, processes: int) -> None:
    """Serve HTTP only (web chat, webhooks, console); `switchboard worker` processes answer the messages.
    Needs SWITCHBOARD_REDIS_URL, shared with the workers."""
    from switchboard.server import SwitchboardServer

    settings = _ready_settings()
    if not settings.redis_url:
        raise click.ClickException("`switchboard web` tells the workers about new messages over Redis: set "
                                   "SWITCHBOARD_REDIS_URL (the same for every web and worker process)")
    with _store():
        pass  # the schema is checked before any process forks
    click.echo(f"Switchboard web: {processes} processes on http://{host}:{port}/ (the workers answer)")
    SwitchboardServer(settings, host, port, processes=processes, role="web").run()


@main.command()
@click.option("--metrics-port", type=click.IntRange(1, 65535),
              help="Serve this worker's /metrics on this port (behind SWITCHBOARD_METRICS_TOKEN).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              help="Interface for --metrics-port (0.0.0.0 for a scraper on another host).")
def worker(metrics_port: int | None, metrics_host: str) -> None:
    """Answer stored messages and send replies, beside `switchboard web`; run as many as you like, on any
    host that reaches the same store and Redis. Stops cleanly on SIGTERM or Ctrl-C."""
    from switchboard.worker import run_worker

    settings = _ready_settings()
    try:
        run_worker(settings, metrics=(metrics_host, metrics_port) if metrics_port else None)
    except SwitchboardError as exc:
        raise click.ClickException(str(exc)) from exc


def _ready_settings() -> Settings:
    """The settings, checked, with the knowledge-base index built if there is none (or it is too old)."""
    import json

    from kb_index.snapshot import current_snapshot
    from switchboard.app import check_settings, serves_other_languages

    settings = _settings()
    try:
        check_settings(settings)
    except SwitchboardError as exc:
        raise click.ClickException(str(exc)) from exc
    live = current_snapshot(settings.index_dir)
    if not settings.kb_dir.is_dir():
        click.echo(f"No knowledge base at {settings.kb_dir}: the bot answers from its rules and intents only.")
    elif live is not None and serves_other_languages(settings):
        try:
            built_for_languages = json.loads((live / "manifest.json").read_text(encoding="utf-8")).get("multilingual")
        except (OSError, ValueError):
            built_for_languages = None
        if not built_for_languages:
            click.echo(f"The knowledge-base index predates answers in {settings.languages}; rebuilding it.")
            live = None
    if live is None and settings.kb_dir.is_dir():
        click.echo(f"Building the knowledge-base index in {settings.index_dir} from {settings.kb_dir}.")
        # In a child process, so the model never loads in the server's parent before it forks.
        if subprocess.run([sys.executable, "-m", "switchboard", "kb", "build"], check=False).returncode:
            raise click.ClickException("the knowledge-base build failed; see the messages above")
    return settings


@main.group()
def kb() -> None:
    """Manage the knowledge base."""


@kb.command("build")
@click.option("--source", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory of Markdown articles [default: SWITCHBOARD_KB_DIR].")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Index directory [default: SWITCHBOARD_INDEX_DIR].")
@click.option("--author", default=getpass.getuser, show_default="the current user",
              help="Who publishes, recorded in the version history.")
def kb_build(source: Path | None, out: Path | None, author: str) -> None:
    """Build a new index snapshot and make it live; the live one stays if the build fails."""
    import dataclasses

    from kb_index.encoder import load_encoder
    from kb_index.snapshot import BuildOptions, build_snapshot
    from switchboard.app import multilingual_model

    settings = _settings()
    source = source or settings.kb_dir
    out = out or settings.index_dir
    try:
        click.echo(f"Loading the embedding model {settings.model} ...")
        encoder = load_encoder(settings.model, out / "onnx", settings.encoder)
        multilingual = multilingual_model(dataclasses.replace(settings, index_dir=out), threads=0)  # every core
        if multilingual is not None:
            click.echo(f"Loading the multilingual encoder for {settings.languages} ...")
        build_snapshot(source, out, encoder, model=settings.model, author=author, progress=True, report=click.echo,
                       options=BuildOptions(hnsw_min_chunks=settings.hnsw_min_chunks), multilingual=multilingual)
    except SwitchboardError as exc:
        raise click.ClickException(str(exc)) from exc
    if out == settings.index_dir:
        _announce_kb(settings)


def _announce_kb(settings: Settings) -> None:
    """Tell the running processes of a deployment that shares a Redis that another snapshot is live (each
    notices it on its next search anyway; this makes every host read it at once)."""
    if not settings.redis_url:
        return
    from bot.notifier import announce
    from kb_index.retriever import KB_PUBLISHED
    from switchboard.app import changes_channel

    if not announce(settings.redis_url, changes_channel(settings), KB_PUBLISHED):
        # The snapshot is live all the same: the servers find it on their next search.
        click.echo("warning: the new snapshot could not be announced over Redis; servers pick it up on their "
                   "next search", err=True)


@kb.command("eval")
@click.option("--questions", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=Path("data/kb_eval/dev.csv"), show_default=True,
              help="CSV with columns question, expected_article_id (empty: should not answer).")
@click.option("--min-score", type=float, default=None,
              help="Score to answer outright [default: SWITCHBOARD_KB_MIN_SCORE].")
@click.option("--json", "as_json", is_flag=True, help="Print the report, with each question's decision, as JSON.")
def kb_eval(questions: Path, min_score: float | None, as_json: bool) -> None:
    """Measure answers on a question set: what the bot would answer, offer as choices or decline, and
    the decision thresholds this set would suggest (calibrate on a dev split, report on a test split)."""
    import dataclasses
    import json

    from bot.dialogue.kb_decision import KbAction, policy_spec
    from kb_index.encoder import load_encoder
    from kb_index.evaluation import (
        calibrate,
        calibrate_policy,
        decisions,
        is_right,
        load_cases,
        report_decisions,
        run_cases,
        score,
    )
    from kb_index.retriever import HybridRetriever
    from switchboard.app import kb_policy, language_detector, multilingual_model, other_language_policies

    settings = _settings()
    try:
        others = other_language_policies(settings)
        cases = load_cases(questions)
        encoder = load_encoder(settings.model, settings.index_dir / "onnx", settings.encoder)
        retriever = HybridRetriever(settings.index_dir, encoder, multilingual=multilingual_model(settings))
        results = run_cases(retriever, cases, languages=language_detector(settings))
    except SwitchboardError as exc:
        raise click.ClickException(str(exc)) from exc
    known = {chunk.article_id for chunk in retriever.snapshot.chunks}
    unknown = sorted({c.expected for c in cases if c.expected is not None} - known)
    if unknown:
        click.echo(f"warning: {questions} expects articles the index does not have (always counted wrong): "
                   f"{', '.join(unknown)}", err=True)
    policy = kb_policy(settings)
    if min_score is not None:
        policy = dataclasses.replace(policy, answer_score=min_score)
    languages = {r.language for r in results if r.multilingual}
    other = bool(results) and all(r.multilingual for r in results)
    language = str(languages.pop()) if other and len(languages) == 1 else "*"
    if other:
        click.echo("Every question is in another language than English: matched by the multilingual encoder "
                   "and decided by its policy (SWITCHBOARD_KB_OTHER_LANGUAGES)", err=True)
        policy = others.get(None if language == "*" else language)
    report = score(results, policy.answer_score)
    decided = report_decisions(results, policy, others)
    made = decisions(results, policy, others)
    suggested = calibrate_policy(results)
    if as_json:
        click.echo(json.dumps({
            **report.as_dict(), "suggested_threshold": calibrate(results), "decisions": decided.as_dict(),
            "policy": dataclasses.asdict(policy), "suggested_policy": dataclasses.asdict(suggested),
            "results": [{"question": r.question, "expected": r.expected, "top": r.ranked[:3],
                         "score": round(r.score, 4), "decision": d.action.value, "articles": list(d.article_ids),
                         "right": is_right(r, d), "language": r.language, "multilingual": r.multilingual}
                        for r, d in zip(results, made, strict=True)]}, indent=2))
        return
    click.echo(f"{report.questions} questions ({report.answerable} answerable) from {questions}")
    click.echo(f"  hit@1               {report.hit_at_1:.3f}")
    click.echo(f"  hit@3               {report.hit_at_3:.3f}")
    click.echo(f"  MRR                 {report.mrr:.3f}")
    click.echo(f"Decisions (answer at {policy.answer_score:.2f} with a lead of {policy.answer_margin:.2f}; choices "
               f"from {policy.choice_score:.2f} within {policy.choice_window:.2f} of the best):")
    click.echo(f"  answered            {decided.answered}, right {decided.answered_right} "
               f"(precision {decided.answer_precision:.3f})")
    click.echo(f"  offered choices     {decided.offered}, the right article among them {decided.offered_right}")
    click.echo(f"  reached             {decided.reach:.3f} of the answerable (answered right, or among the choices)")
    click.echo(f"  declined            {decided.declined_unanswerable} of {decided.unanswerable} unanswerable "
               f"({decided.decline_rate:.3f})")
    failures = [(r, d) for r, d in zip(results, made, strict=True) if not is_right(r, d)]
    if failures:
        click.echo(f"Failures ({len(failures)}):")
        for r, d in failures:
            got = "declined" if d.action == KbAction.DECLINE else f"{d.action.value} {', '.join(d.article_ids)}"
            click.echo(f"  {r.question!r}: expected {r.expected or 'decline'}, got {got} (best {r.score:.2f})")
    click.echo(f"Suggested on this set: answer at {suggested.answer_score:.3g} with a lead of "
               f"{suggested.answer_margin:.3g}, choices from {suggested.choice_score:.3g} within "
               f"{suggested.choice_window:.3g}; calibrate on a dev split only.")
    if other:
        click.echo(f"  SWITCHBOARD_KB_OTHER_LANGUAGES={language}={policy_spec(suggested)}")
    else:
        click.echo(f"  SWITCHBOARD_KB_MIN_SCORE={suggested.answer_score:g} SWITCHBOARD_KB_ANSWER_MARGIN="
                   f"{suggested.answer_margin:g} SWITCHBOARD_KB_CHOICE_SCORE={suggested.choice_score:g} "
                   f"SWITCHBOARD_KB_CHOICE_WINDOW={suggested.choice_window:g}")


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

    settings = _settings()
    started = time.perf_counter()
    try:
        _, nlu_data = load_dialogue(settings, lambda warning: click.echo(f"  {warning}", err=True))
        click.echo(f"Training intents on {_count(len(nlu_data.examples), 'example')} of "
                   f"{_count(len(nlu_data.by_intent()), 'intent')} from {settings.nlu_path} ...")
        encoder, classifier = server_encoder(settings)
        if classifier is None:  # not on ONNX Runtime, or on the shared encoder: as build_engine trains it
            trained_classifier(settings, encoder, nlu_data.examples)
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
    from bot.dialogue.nlu_evaluation import evaluate, nearest_neighbour_accuracy
    from bot.dialogue.training_data import load_nlu
    from kb_index.encoder import ProgressEncoder, load_encoder
    from kb_index.multilingual import load_multilingual
    from switchboard.app import intent_tuner

    settings = _settings()
    if intent_encoder in ("tuned", "shared"):
        settings = dataclasses.replace(settings, intent_encoder=intent_encoder)
    started = time.monotonic()

    def stage(name: str) -> None:
        encoder.stage = name
        click.echo(f"{name} ...", err=True)

    try:
        train = load_nlu(train_file, lambda warning: click.echo(f"warning: {warning}", err=True))
        test = load_nlu(test_file, lambda warning: click.echo(f"warning: {warning}", err=True))
        if intent_encoder == "multilingual":
            encoder = ProgressEncoder(load_multilingual(settings.index_dir / "onnx").queries)
            classifier = IntentClassifier(encoder, train.examples, OTHER_LANGUAGE_INTENTS, progress=stage)
        else:
            encoder = ProgressEncoder(load_encoder(settings.model, settings.index_dir / "onnx", settings.encoder))
            classifier = IntentClassifier(encoder, train.examples, progress=stage, tuner=intent_tuner(settings, stage))
        stage("encoding test examples")
        texts = [e.text for e in test.examples]
        vectors = encoder.encode(texts)
        predictions = classifier.predict_batch(texts, vectors)
        stage("nearest-neighbour baseline (on the shared encoder)")
        baseline = nearest_neighbour_accuracy(train.examples, encoder.encode([e.text for e in train.examples]),
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
                               "train_examples": len(train.examples),
                               "test_examples": len(test.examples), "seconds": round(seconds, 1)}, indent=2))
        return
    click.echo(f"Trained on {len(train.examples)} examples of {len(classifier.intents)} intents "
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


@main.group()
def agents() -> None:
    """Agent accounts: add, list, disable, reset passwords."""


class _Disposable(Protocol):
    def dispose(self) -> None: ...


Opened = TypeVar("Opened", bound=_Disposable)


@contextmanager
def _opened(opener: Callable[[str], Opened]) -> Iterator[Opened]:
    """What `opener` makes of the configured store's URL, disposed of afterwards; errors become clear messages."""
    url = _settings().store_url
    try:
        opened = opener(url)
    except SwitchboardError as exc:
        raise click.ClickException(_store_error(exc, url)) from exc
    try:
        yield opened
    except SwitchboardError as exc:
        raise click.ClickException(_store_error(exc, url)) from exc
    finally:
        opened.dispose()


def _store() -> AbstractContextManager[ConversationStore]:
    """The configured store (its schema checked)."""
    from bot.stores import open_store

    return _opened(open_store)


def _store_error(exc: SwitchboardError, url: str) -> str:
    return f"{exc} [{url}]" if isinstance(exc, Unavailable) else str(exc)


@main.group()
def db() -> None:
    """The store's database: its schema version, and upgrading it to this release's."""


def _database() -> AbstractContextManager[Database]:
    """The configured store's database, its schema not checked."""
    from bot.stores.database import open_database

    return _opened(open_database)


@db.command("upgrade")
def db_upgrade() -> None:
    """Bring the store's database to this release's schema, in one transaction (back it up first).
    Running it again does nothing."""
    from bot.stores import schema

    with _database() as database:
        click.echo(f"Upgrading {database} to schema version {schema.LATEST}.")
        before, after = schema.upgrade(database, progress=lambda step: click.echo(f"  applying {step}"))
    if before is None:
        click.echo(f"Created the store's tables (schema version {after}).")
    elif before == after:
        click.echo(f"Already at schema version {after}: nothing to do.")
    else:
        click.echo(f"Upgraded from schema version {before} to {after}.")


@db.command("version")
def db_version() -> None:
    """Print the store's schema version and the one this release needs."""
    from bot.stores import schema

    with _database() as database, database.snapshot() as connection:
        version = schema.version_of(connection, database)
    held = "no tables yet" if version is None else f"schema version {version}"
    click.echo(f"{database}: {held}; this Switchboard needs version {schema.LATEST}.")


@contextmanager
def _directory() -> Iterator[AgentDirectory]:
    """The agent directory on the configured store."""
    from handoff.agents import AgentDirectory

    with _store() as store:
        yield AgentDirectory(store)


def _read_password(from_stdin: bool) -> tuple[str, bool]:
    """The password from stdin (first line), or a generated one; and whether it was generated."""
    from handoff.agents import AgentDirectory

    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n"), False
    return AgentDirectory.new_password(), True


@agents.command("add")
@click.argument("email")
@click.option("--name", default="", help="Shown to colleagues [default: the part of the email before @].")
@click.option("--role", type=click.Choice(["agent", "editor", "manager", "admin"]), default="agent", show_default=True,
              help="agent: queue and tickets; editor: also the knowledge base; manager: also the reports; "
                   "admin: everything.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input instead of "
                                                     "generating one.")
def agents_add(email: str, name: str, role: str, password_stdin: bool) -> None:
    """Create an agent account; prints the generated password once."""
    password, generated = _read_password(password_stdin)
    with _directory() as directory:
        agent = directory.add(email, name, role, password)
    click.echo(f"Added {agent.email} ({agent.name}, {agent.role}).")
    if generated:
        click.echo(f"Password: {password}   (shown only now; stored hashed)")


@agents.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the accounts as JSON.")
def agents_list(as_json: bool) -> None:
    """List agent accounts."""
    import json

    from bot.messages import utcnow

    with _directory() as directory:
        accounts = directory.list()
    now = utcnow()
    if as_json:
        click.echo(json.dumps([{"email": a.email, "name": a.name, "role": a.role, "active": a.active,
                                "status": a.availability(now),
                                "last_seen_at": a.last_seen_at.isoformat() if a.last_seen_at else None}
                               for a in accounts], indent=2))
        return
    if not accounts:
        click.echo("No agent accounts yet; add one with `switchboard agents add EMAIL`.")
        return
    click.echo(f"{'EMAIL':40} {'ROLE':7} {'STATUS':16} NAME")
    for agent in accounts:
        click.echo(f"{agent.email:40} {agent.role:7} {agent.availability(now):16} {agent.name}")


@agents.command("disable")
@click.argument("email")
def agents_disable(email: str) -> None:
    """Disable an account: signed out at once, sign-in refused; the history stays."""
    with _directory() as directory:
        agent = directory.disable(email)
    click.echo(f"Disabled {agent.email}.")


@agents.command("enable")
@click.argument("email")
def agents_enable(email: str) -> None:
    """Enable a disabled account again."""
    with _directory() as directory:
        agent = directory.enable(email)
    click.echo(f"Enabled {agent.email}.")


@agents.command("reset-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input.")
def agents_reset_password(email: str, password_stdin: bool) -> None:
    """Give an agent a new password."""
    password, generated = _read_password(password_stdin)
    with _directory() as directory:
        agent = directory.reset_password(email, password)
    click.echo(f"New password set for {agent.email}.")
    if generated:
        click.echo(f"Password: {password}   (shown only now; stored hashed)")


@main.group()
def telegram() -> None:
    """Telegram: connect the bot to this Switchboard."""


@telegram.command("set-webhook")
def telegram_set_webhook() -> None:
    """Tell Telegram to send updates to SWITCHBOARD_PUBLIC_URL/webhooks/telegram with the secret token."""
    from telegram.error import TelegramError

    from connectors.telegram import TelegramClient

    settings = _settings()
    missing = [name for name, value in (("SWITCHBOARD_TELEGRAM_TOKEN", settings.telegram_token),
                                        ("SWITCHBOARD_TELEGRAM_WEBHOOK_SECRET", settings.telegram_webhook_secret))
               if not value]
    if missing:
        raise click.ClickException(f"set {' and '.join(missing)} first")
    if not settings.public_url.startswith("https://"):
        raise click.ClickException(f"Telegram sends webhooks only to HTTPS; SWITCHBOARD_PUBLIC_URL is "
                                   f"{settings.public_url}")
    url = settings.public_url.rstrip("/") + "/webhooks/telegram"
    client = TelegramClient(settings.telegram_token, settings.telegram_api_url)
    try:
        client.call(client.bot.set_webhook(url=url, secret_token=settings.telegram_webhook_secret,
                                           allowed_updates=["message", "callback_query"]))
    except TelegramError as exc:
        raise click.ClickException(f"Telegram refused the webhook: {exc.message}") from exc
    finally:
        client.close()
    click.echo(f"Telegram sends this bot's updates to {url} now.")


@kb.command("lint")
@click.option("--source", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Directory of Markdown articles [default: SWITCHBOARD_KB_DIR].")
def kb_lint(source: Path | None) -> None:
    """Check the articles: front matter, ids, titles, empty and very long articles."""
    from kb_index.lint import lint_kb

    source = source or _settings().kb_dir
    if not source.is_dir():
        raise click.ClickException(f"{source} is not a directory; set SWITCHBOARD_KB_DIR or pass --source")
    problems = lint_kb(source)
    for problem in problems:
        click.echo(str(problem))
    errors = sum(1 for p in problems if p.severity == "error")
    click.echo(f"{len(list(source.rglob('*.md')))} articles checked: {errors} errors, "
               f"{len(problems) - errors} warnings")
    if errors:
        sys.exit(1)


@kb.command("gaps")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1), help="Groups to show.")
@click.option("--similarity", default=0.6, show_default=True, type=click.FloatRange(0, 1),
              help="How alike (cosine) English questions must be to share a group (other languages: 0.9, on "
                   "the multilingual encoder's scale).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def kb_gaps(limit: int, similarity: float, as_json: bool) -> None:
    """Questions the bot could not answer, grouped by meaning: what to write next."""
    import json
    from dataclasses import asdict

    from bot.analytics.gaps import cluster_gaps, collect_gaps
    from bot.stores import open_store
    from kb_index.encoder import load_encoder
    from switchboard.app import multilingual_model

    settings = _settings()
    store = open_store(settings.store_url)
    questions = collect_gaps(store, handled=store.handled_gaps())
    if not questions:
        click.echo("No unanswered questions yet.")
        return
    encoder = load_encoder(settings.model, settings.index_dir / "onnx", settings.encoder)
    multilingual = multilingual_model(settings)
    clusters = cluster_gaps(questions, encoder, similarity,
                            other_languages=multilingual.queries if multilingual is not None else None)
    if as_json:
        click.echo(json.dumps([asdict(c) for c in clusters[:limit]], indent=2, ensure_ascii=False))
        return
    conversations = len({q.conversation_id for q in questions})
    click.echo(f"{_count(len(questions), 'unanswered question')} from {_count(conversations, 'conversation')}, "
               f"{_count(len(clusters), 'group')}; the largest first:")
    for n, cluster in enumerate(clusters[:limit], start=1):
        reasons = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in cluster.reasons.items())
        language = f" [{cluster.language}]" if cluster.language else ""
        click.echo(f"\n{n}. {cluster.representative!r}{language}  ({_count(cluster.size, 'question')}: {reasons})")
        for example in cluster.examples[1:]:
            click.echo(f"     also: {example!r}")


@kb.command("versions")
def kb_versions() -> None:
    """List the published snapshots, newest first: when, who, what changed."""
    from kb_index.snapshot import current_snapshot, list_snapshots

    settings = _settings()
    live = current_snapshot(settings.index_dir)
    snapshots = list_snapshots(settings.index_dir)
    if not snapshots:
        raise click.ClickException(f"no snapshots in {settings.index_dir}; run `switchboard kb build`")
    for path, manifest in snapshots:
        changes = manifest.get("changes", {})
        summary = ", ".join(f"{len(ids)} {kind}" for kind, ids in changes.items() if ids) or "no article changes"
        marker = "*" if path == live else " "
        click.echo(f"{marker} {path.name}  {manifest.get('built_at', '?')}  by {manifest.get('author') or '?'}  "
                   f"{manifest.get('articles', '?')} articles  ({summary})")
        for kind, ids in changes.items():
            if ids and len(ids) <= 5:
                click.echo(f"      {kind}: {', '.join(ids)}")
    click.echo("* live")


@kb.command("rollback")
@click.argument("name")
@click.option("--keep-files", is_flag=True, help="Leave the article files as they are (the next build brings "
                                                 "them back) instead of restoring the version's.")
def kb_rollback(name: str, keep_files: bool) -> None:
    """Make an earlier snapshot live again (running servers pick it up within a search), and its
    article files the KB directory's, so the next build keeps what was rolled back to."""
    from kb_index.snapshot import rollback

    settings = _settings()
    try:
        path = rollback(settings.index_dir, name, None if keep_files else settings.kb_dir)
    except SwitchboardError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{path.name} is live again." + (
        " The article files are unchanged: the next build brings them back." if keep_files
        else f" The articles in {settings.kb_dir} are its articles again."))
    _announce_kb(settings)


@main.group()
def customers() -> None:
    """Customers: list, find, import profiles, export or erase everything about a person."""


def _customer_json(customer: Customer) -> dict[str, object]:
    return {"id": customer.customer_id, "name": customer.display_name, "email": customer.email,
            "phone": customer.phone, "language": customer.language, "attributes": customer.attributes,
            "identities": [{"channel": c, "external_id": x} for c, x in customer.identities]}


def _print_customers(store: ConversationStore, found: list[Customer], as_json: bool, empty: str,
                     matched: str | None = None) -> None:
    import json

    rows: list[dict[str, Any]] = []
    for customer in found:
        conversations = store.conversations_of(customer.customer_id)
        first = min((c.created_at for c in conversations), default=None)
        last = max((c.updated_at for c in conversations), default=None)
        rows.append({**_customer_json(customer), "conversations": len(conversations),
                     "first_seen": first.date().isoformat() if first else None,
                     "last_seen": last.date().isoformat() if last else None,
                     **({"matched": customer.matched_on(matched)} if matched is not None else {})})
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo(empty)
        return
    matched_title = "  MATCHED ON" if matched is not None else ""
    click.echo(f"{'ID':32}  {'NAME':20}  {'EMAIL':28}  {'FIRST SEEN':10}  {'LAST SEEN':10}  CONV.  "
               f"IDENTITIES{matched_title}")
    for row in rows:
        identities = ", ".join(f"{i['channel']}:{i['external_id']}" for i in row["identities"]) or "none"
        click.echo(f"{row['id']:32}  {row['name'] or '-':20}  {row['email'] or '-':28}  {row['first_seen'] or '-':10}  "
                   f"{row['last_seen'] or '-':10}  {row['conversations']:5}  {identities}"
                   + (f"  {row['matched']}" if matched is not None else ""))


@customers.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the customers as JSON.")
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1), help="At most this many.")
def customers_list(as_json: bool, limit: int) -> None:
    """List customers, latest first, with their conversations and when they were first and last seen."""
    with _store() as store:
        _print_customers(store, store.list_customers(limit), as_json, "No customers yet.")


@customers.command("find")
@click.argument("text")
@click.option("--json", "as_json", is_flag=True, help="Print the customers as JSON.")
def customers_find(text: str, as_json: bool) -> None:
    """Find customers by name, email, phone, identity or the text of their messages; says which matched."""
    with _store() as store:
        _print_customers(store, store.find_customers(text), as_json, f"No customer matches {text!r}.", matched=text)


@customers.command("export")
@click.argument("customer_id")
def customers_export(customer_id: str) -> None:
    """Print everything held about a person as JSON (for a data access request)."""
    import json

    with _store() as store:
        click.echo(json.dumps(store.export_customer(customer_id), indent=2, ensure_ascii=False))


@customers.command("erase")
@click.argument("customer_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def customers_erase(customer_id: str, yes: bool) -> None:
    """Erase everything personal about a person; conversations stay counted, without content."""
    with _store() as store:
        customer = store.get_customer(store.current_customer(customer_id))
        if not yes:
            click.confirm(f"Erase {customer.display_name or 'this customer'} ({len(customer.identities)} "
                          f"identities) for good? This cannot be undone", abort=True)
        erased = store.erase_customer(customer_id)
    click.echo(f"Erased {_count(erased, 'customer record')}; the database was compacted.")


@customers.command("import")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
def customers_import(file: Path) -> None:
    """Create or update customers from a CSV (header row) or a JSON list: `email` and/or `phone`
    find the customer, `name` and `language` fill the profile, every other column is an attribute."""
    from switchboard.importing import clean_record, read_records

    created = updated = 0
    problems: list[str] = []
    with _store() as store:
        for where, record in read_records(file):
            try:
                _, new = store.import_customer(clean_record(record))
            except SwitchboardError as exc:
                problems.append(f"{file}: {where}: {exc}")
                continue
            created, updated = created + new, updated + (not new)
    for problem in problems:
        click.echo(problem, err=True)
    click.echo(f"Imported {created + updated} customers: {created} new, {updated} updated"
               + (f"; {len(problems)} skipped (see above)." if problems else "."))
    if problems:
        sys.exit(1)


@main.group()
def retention() -> None:
    """Transcript retention (the days are set in data/privacy.yml)."""


@retention.command("run")
@click.option("--days", type=click.IntRange(1), default=None,
              help="Purge transcripts of conversations closed more than this many days ago "
                   "[default: retention_days of the privacy file].")
def retention_run(days: int | None) -> None:
    """Blank the transcripts of conversations closed longer ago than the retention period."""
    from datetime import timedelta

    from bot.customers.privacy import load_privacy

    settings = _settings()
    try:
        days = days or load_privacy(settings.privacy_path).retention_days
    except SwitchboardError as exc:
        raise click.ClickException(str(exc)) from exc
    if not days:
        click.echo(f"Retention is off (retention_days: 0 in {settings.privacy_path}); nothing purged.")
        return
    with _store() as store:
        purged = store.purge_transcripts(timedelta(days=days))
    click.echo(f"Purged the transcripts of {_count(purged, 'conversation')} "
               f"closed more than {days} days ago.")


@main.command()
@click.option("--from", "first", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="First day (YYYY-MM-DD) of conversations started [default: six days before --to].")
@click.option("--to", "last", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Last day, included [default: today, in the report's time zone].")
@click.option("--channel", default=None, help="Only conversations started on this channel (web, sms, ...).")
@click.option("--json", "as_json", is_flag=True, help="Print every figure as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print every figure as CSV rows: figure, key, value.")
@click.option("--rebuild", is_flag=True, help="Count the rollups again from every stored event first.")
def report(first: datetime | None, last: datetime | None, channel: str | None, as_json: bool, as_csv: bool,
           rebuild: bool) -> None:
    """Containment, handoffs, response and resolution times, CSAT, agents and the KB, over a period.

    Days are counted in SWITCHBOARD_REPORT_TIMEZONE, else the handoff policy's business hours' zone, else UTC.
    """
    import csv
    import json

    from bot.analytics.reports import build_report, report_rows
    from bot.dialogue.handoff_policy import load_handoff_policy
    from switchboard.reports import report_options

    if as_json and as_csv:
        raise click.UsageError("choose one of --json and --csv")
    settings = _settings()
    try:
        policy = load_handoff_policy(settings.handoff_policy_path, lambda warning: None)
        options = report_options(settings, policy.business_hours, first.date() if first else None,
                                 last.date() if last else None, channel)
    except SwitchboardError as exc:
        raise click.ClickException(str(exc)) from exc

    def progress(done: int, total: int) -> None:
        if total > 2_000 and not (as_json or as_csv):
            click.echo(f"  counting conversations for the report: {done:,} of {total:,}", err=True)

    with _store() as store:
        if rebuild:
            store.rebuild_reports(progress)
        result = build_report(store, options, progress)
        names = {agent.agent_id: agent.name for agent in store.list_agents()}
    if as_json:
        data = result.as_dict()
        for load in data["agents"]:
            load["name"] = names.get(load["agent_id"])
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    elif as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(("figure", "key", "value"))
        writer.writerows(report_rows(result, names))
    else:
        click.echo(_report_text(result, names))


def _report_text(report: Report, names: dict[str, str]) -> str:
    from bot.analytics.reports import duration_text as took

    def rate(value: float | None) -> str:
        return "-" if value is None else f"{value:.0%}"

    def csat(value: Csat) -> str:
        if not value.asked:
            return "not asked"
        average = "-" if value.average is None else f"{value.average:.2f}"
        return f"{average} from {_count(value.responses, 'rating')} ({rate(value.response_rate)} of " \
               f"{value.asked} asked)"

    def times(value: Times) -> str:
        return f"median {took(value.median)}, p90 {took(value.p90)} ({value.count})" if value.count else "-"

    last_day = list(report.by_day)[-1] if report.by_day else ""
    first_day = next(iter(report.by_day), "")
    lines = [
        f"Switchboard report, {first_day} to {last_day}, {report.channel or 'all channels'}",
        "",
        f"Conversations          {report.conversations:,} ({report.messages:,} customer messages)",
        *(f"  {channel or '?':<20} {c['conversations']:,} ({c['messages']:,})"
          for channel, c in report.by_channel.items()),
        f"Bot containment        {rate(report.containment_rate)}: {report.contained:,} of {report.ended:,} ended "
        f"without a handoff; {report.contained_helpful:,} with \"did this help?\": yes",
        f"Handoffs               {report.handoffs:,} ({rate(report.handoff_rate)}): "
        + (", ".join(f"{reason} {n}" for reason, n in report.handoff_reasons.items()) or "none"),
        f"First response, bot    {times(report.bot_first_response)}",
        f"First response, human  {times(report.human_first_response)}",
        f"Time to resolution     {times(report.resolution_time)}",
        f"First-contact resol.   {rate(report.fcr_rate)}: {report.fcr_resolved:,} of {report.fcr_judged:,} closes "
        f"whose window is over ({report.closed:,} closed)",
        f"CSAT                   {csat(report.csat)}",
        *(f"  {label:<7} {key:<12} {csat(value)}" for label, group in (
            ("channel", report.csat_by_channel),
            ("agent", {names.get(k, k): v for k, v in report.csat_by_agent.items()}),
            ("tag", report.csat_by_resolution)) for key, value in group.items()),
        "Agents" + ("                 none" if not report.agents else ""),
        *(f"  {names.get(load.agent_id, load.agent_id):<20} {_count(load.conversations, 'conversation')}, handling "
          f"{times(load.handling)}, CSAT {csat(load.csat)}" for load in report.agents),
        f"Knowledge base         {_count(report.kb_questions, 'question')}: {report.kb_answered:,} answered "
        f"({rate(report.kb_answer_rate)}), {report.kb_choices:,} offered choices, {report.kb_declined:,} declined; "
        f"did this help: {report.kb_helpful:,} yes, {report.kb_unhelpful:,} no",
        *(f"  {article:<20} {_count(n, 'answer')}" for article, n in report.top_articles),
        *(["  unanswered most often:"] if report.top_gaps else []),
        *(f"    {question!r} ({_count(n, 'conversation')})" for question, n in report.top_gaps),
        "Undelivered replies    " + (", ".join(f"{channel} {n}" for channel, n in report.delivery_failures.items())
                                     or "none"),
    ]
    for side, counts in report.business_hours.items():
        lines.append(f"{side.replace('_', ' ').capitalize():<22} {_count(counts['conversations'], 'conversation')}, "
                     f"{counts['handoffs']:,} handed off, {counts['contained']:,} contained")
    lines += ["", "Day          conversations  messages"]
    lines += [f"{day}   {c['conversations']:>13,}  {c['messages']:>8,}" for day, c in report.by_day.items()]
    return "\n".join(lines)
