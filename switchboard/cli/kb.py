"""`switchboard kb`: build, check, evaluate, version and roll back the knowledge base."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bot.errors import SwitchboardError
from switchboard.cli.base import load_settings, main, plural
from switchboard.settings import Settings

if TYPE_CHECKING:
    from bot.dialogue.kb_decision import KbPolicy
    from bot.stores.conversations import ConversationStore


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

    from kb_index.encoder import load_encoder, vectors_name
    from kb_index.snapshot import BuildOptions, build_snapshot
    from switchboard.app import check_kb_snapshots, labelled_kb_questions, multilingual_model

    settings = load_settings()
    source = source or settings.kb_dir
    out = out or settings.index_dir
    # Where hosts share no directory, what editors saved on any host and did not publish is published too.
    shared = settings.kb_snapshots == "store" and out == settings.index_dir and source == settings.kb_dir
    taken = 0
    try:
        check_kb_snapshots(settings)
        if shared:
            taken = _catch_up_edits(settings)
        click.echo(f"Loading the embedding model {settings.model} ...")
        encoder = load_encoder(settings.model, out / "onnx", settings.encoder)
        multilingual = multilingual_model(dataclasses.replace(settings, index_dir=out), threads=0)  # every core
        if multilingual is not None:
            click.echo(f"Loading the multilingual encoder for {settings.languages} ...")
        build_snapshot(source, out, encoder, model=vectors_name(settings.model, settings.encoder), author=author,
                       progress=True, report=click.echo,
                       options=BuildOptions(hnsw_min_chunks=settings.hnsw_min_chunks), multilingual=multilingual,
                       questions=labelled_kb_questions(settings))
    except SwitchboardError as exc:
        raise click.ClickException(str(exc)) from exc
    if out == settings.index_dir:
        _announce_kb(settings)
    if taken:
        _forget_edits(settings, taken)


def _catch_up_edits(settings: Settings) -> int:
    """Write the articles saved in the editor pages of any host, not yet published, into the KB directory
    (SWITCHBOARD_KB_SNAPSHOTS=store); the number of the last edit taken (0: none)."""
    from kb_index.editing import SharedEdits

    with _snapshot_store(settings, "cannot read the edits saved on the other hosts") as store:
        edits = store.kb_edits()
        taken = SharedEdits(store, settings.kb_dir).apply(edits)
    if taken:
        click.echo(f"Took {plural(len(edits), 'edit')} saved in the editor pages and not yet published.")
    return taken


def _forget_edits(settings: Settings, through: int | None = None) -> None:
    """The edits a publish took (up to number `through`), or a rollback undid (all), leave the store."""
    with _snapshot_store(settings, "the snapshot is live, but the store still holds the editor pages' unpublished "
                                   "edits it replaced") as store:
        store.forget_kb_edits(through)


@contextmanager
def _snapshot_store(settings: Settings, failing: str) -> Iterator[ConversationStore]:
    """The store that ships snapshots between hosts (SWITCHBOARD_KB_SNAPSHOTS=store); `failing` says what
    did not happen when it cannot be opened."""
    from bot.stores import open_store

    try:
        store = open_store(settings.store_url)
    except SwitchboardError as exc:
        raise click.ClickException(f"{failing}: {exc}") from exc
    try:
        yield store
    finally:
        store.dispose()


def _announce_kb(settings: Settings) -> None:
    """Tell the running processes of a deployment that shares a Redis that another snapshot is live (each
    notices it on its next search anyway; this makes every host read it at once), packing it into the store
    first where hosts share no directory (SWITCHBOARD_KB_SNAPSHOTS=store)."""
    if settings.kb_snapshots == "store":
        from kb_index.shipping import share
        from kb_index.snapshot import BuildOptions

        with _snapshot_store(settings, "the snapshot is live here but not shared with the other hosts") as store:
            click.echo(f"Shared {share(store, settings.index_dir, BuildOptions().keep_snapshots)} with the other "
                       "hosts through the store.")
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
@click.option("--questions", type=click.Path(dir_okay=False, exists=True, path_type=Path), multiple=True,
              default=(Path("data/kb_eval/dev.csv"), Path("data/kb_eval/dev2.csv")), show_default=True,
              help="CSV with columns question, expected_article_id (empty: should not answer); repeat it to "
                   "measure several files as one set.")
@click.option("--min-score", type=float, default=None,
              help="Score to answer outright [default: SWITCHBOARD_KB_MIN_SCORE].")
@click.option("--json", "as_json", is_flag=True, help="Print the report, with each question's decision, as JSON.")
@click.option("--held-out", is_flag=True,
              help="Measure the labelled questions the build learns from (SWITCHBOARD_KB_QUESTIONS) out of fold: "
                   "each part by a snapshot built from the others (a few builds; see docs/kb-quality.md).")
@click.option("--declines", type=click.FloatRange(0, 1), default=0.8, show_default=True,
              help="The share of unanswerable questions the suggested thresholds decline at least; ask for more than "
                   "new questions need (out of fold, the sample shop's languages declined 6 points more than on "
                   "test).")
@click.pass_context
def kb_eval(ctx: click.Context, questions: tuple[Path, ...], min_score: float | None, as_json: bool,
            held_out: bool, declines: float) -> None:
    """Measure answers on a question set: what the bot would answer, offer as choices or decline, and
    the decision thresholds this set would suggest (calibrate on a dev split, report on a test split)."""
    import dataclasses
    import json
    import tempfile

    from bot.dialogue.kb_decision import KbAction, policy_spec
    from kb_index.encoder import load_encoder, vectors_name
    from kb_index.evaluation import (
        calibrate,
        calibrate_policy,
        decisions,
        is_right,
        load_cases,
        run_cases,
        score,
        tally_by_language,
        tally_decisions,
    )
    from kb_index.held_out import score_held_out
    from kb_index.query_tuning import labelled_files
    from kb_index.retriever import HybridRetriever
    from switchboard.app import kb_policy, language_detector, multilingual_model, other_language_policies

    settings = load_settings()
    if held_out and ctx.get_parameter_source("questions") != click.core.ParameterSource.DEFAULT:
        raise click.UsageError("--held-out measures the labelled questions of SWITCHBOARD_KB_QUESTIONS; "
                               "leave out --questions")
    try:
        others = other_language_policies(settings)
        encoder = load_encoder(settings.model, settings.index_dir / "onnx", settings.encoder)
        multilingual = multilingual_model(settings, threads=0)  # every core, as a build
        if held_out:
            if not settings.kb_questions.strip():
                raise SwitchboardError("--held-out needs labelled questions: set SWITCHBOARD_KB_QUESTIONS to "
                                       "their CSV files")
            files = labelled_files(settings.kb_questions)
            with tempfile.TemporaryDirectory(prefix="switchboard-held-out-") as workdir:
                results, retriever = score_held_out(
                    settings.kb_dir, Path(workdir), encoder, files,
                    model=vectors_name(settings.model, settings.encoder), multilingual=multilingual,
                    languages=language_detector(settings), report=lambda line: click.echo(line, err=True))
            named = (f"the {len(files)} files of SWITCHBOARD_KB_QUESTIONS "
                     f"({', '.join(sorted({path.name for path in files}))}), out of fold")
        else:
            cases = [case for path in questions for case in load_cases(path)]
            retriever = HybridRetriever(settings.index_dir, encoder, multilingual=multilingual)
            results = run_cases(retriever, cases, languages=language_detector(settings))
            named = ", ".join(str(path) for path in questions)
    except SwitchboardError as exc:
        raise click.ClickException(str(exc)) from exc
    known = {chunk.article_id for chunk in retriever.snapshot.chunks}
    unknown = sorted({r.expected for r in results if r.expected is not None} - known)
    if unknown:
        click.echo(f"warning: {named} expects articles the index does not have (always counted wrong): "
                   f"{', '.join(unknown)}", err=True)
    policy = kb_policy(settings)
    if min_score is not None:
        policy = dataclasses.replace(policy, answer_score=min_score)
    matched_across = [r for r in results if r.multilingual]
    languages = {r.language for r in matched_across}
    other = bool(results) and len(matched_across) == len(results)
    language = str(next(iter(languages))) if len(languages) == 1 else "*"
    # Where the build tuned the multilingual encoder's questions to the KB, their scores have a policy of their own.
    tuned = any(r.passages[0].tuned for r in matched_across if r.passages)
    tuned_on = int(retriever.snapshot.manifest.get("tuned_on") or 0)
    if held_out:
        click.echo("Each question was scored by a snapshot that learnt from the other folds' labelled questions, not "
                   "from it: a measure of new questions, and what to calibrate on. Leave a margin: questions unlike "
                   "any labelled one may still be declined less often (the sample shop's languages, as it ships: 87% "
                   "of their unanswerable dev questions declined here, 81% of test's): ask for it with --declines",
                   err=True)
    elif tuned:
        click.echo(f"The multilingual encoder's questions were tuned to this KB on {tuned_on} labelled questions "
                   "(SWITCHBOARD_KB_QUESTIONS) and are decided by the tuned policy; questions it was tuned on are "
                   "no measure of it (measure them with --held-out)", err=True)
    if tuned:
        language = "tuned"
    english = [r for r in results if not r.multilingual]
    taught = any(r.passages[0].tuned for r in english if r.passages)
    if taught and not held_out:
        count = int(retriever.snapshot.manifest.get("labelled_examples") or 0)
        click.echo(f"This KB was taught {count} labelled English questions as example questions "
                   "(SWITCHBOARD_KB_QUESTIONS): English questions are decided by the taught policy, and the questions "
                   "it was taught are no measure of it (measure them with --held-out)", err=True)
    if taught:
        policy = others.taught if min_score is None else dataclasses.replace(others.taught, answer_score=min_score)
        others = dataclasses.replace(others, taught=policy)
    if other:
        click.echo("Every question was matched by the multilingual encoder (it is in another language than "
                   "English, or an article is) and decided by its policy "
                   "(SWITCHBOARD_KB_OTHER_LANGUAGES)", err=True)
        policy = others.get(None if language in ("*", "tuned") else language, tuned)
    report = score(results, policy.answer_score)
    made = decisions(results, policy, others)
    decided = tally_decisions(results, made)
    by_language = tally_by_language(results, made)
    # Each encoder's scores sit on a scale of their own: a set mixing both gets a suggestion for each part.
    suggested = calibrate_policy(matched_across if other else english, min_decline_rate=declines)
    suggested_other = calibrate_policy(matched_across, min_decline_rate=declines) if matched_across and english \
        else None
    if as_json:
        click.echo(json.dumps({
            **report.as_dict(), "suggested_threshold": calibrate(results), "decisions": decided.as_dict(),
            "by_language": {code: alone.as_dict() for code, alone in by_language.items()},
            "policy": dataclasses.asdict(policy), "suggested_policy": dataclasses.asdict(suggested),
            **({"suggested_other_languages_policy": dataclasses.asdict(suggested_other)} if suggested_other else {}),
            "results": [{"question": r.question, "expected": r.expected, "top": r.ranked[:3],
                         "score": round(r.score, 4), "decision": d.action.value, "articles": list(d.article_ids),
                         "right": is_right(r, d), "language": r.language, "multilingual": r.multilingual,
                         "unknown_names": list(r.unknown_names)}
                        for r, d in zip(results, made, strict=True)]}, indent=2))
        return
    click.echo(f"{report.questions} questions ({report.answerable} answerable) from {named}")
    click.echo(f"  hit@1               {report.hit_at_1:.3f}")
    click.echo(f"  hit@3               {report.hit_at_3:.3f}")
    click.echo(f"  MRR                 {report.mrr:.3f}")
    if english and matched_across:
        click.echo(f"Decisions ({len(english)} questions matched by the English encoder: {_described(policy)}; "
                   f"{len(matched_across)} by the multilingual encoder, by SWITCHBOARD_KB_OTHER_LANGUAGES: "
                   + "; ".join(f"{code}: {_described(others.get(code, tuned), 3)}"
                               for code in sorted(map(str, languages)))
                   + "):")
    else:  # the multilingual encoder's thresholds sit close together: three digits tell them apart
        click.echo(f"Decisions ({_described(policy, 3 if other else 2)}):")
    click.echo(f"  answered            {decided.answered}, right {decided.answered_right} "
               f"(precision {decided.answer_precision:.3f})")
    click.echo(f"  offered choices     {decided.offered}, the right article among them {decided.offered_right}")
    click.echo(f"  reached             {decided.reach:.3f} of the answerable (answered right, or among the choices)")
    click.echo(f"  declined            {decided.declined_unanswerable} of {decided.unanswerable} unanswerable "
               f"({decided.decline_rate:.3f})")
    if len(by_language) > 1:
        click.echo("By language:            reached   answers right   declined")
        for code, alone in by_language.items():
            click.echo(f"  {code:<20} {alone.reach:>7.3f}   {alone.answered_right:>5} of {alone.answered:<5}  "
                       f"{alone.declined_unanswerable:>4} of {alone.unanswerable}")
    failures = [(r, d) for r, d in zip(results, made, strict=True) if not is_right(r, d)]
    if failures:
        click.echo(f"Failures ({len(failures)}):")
        for r, d in failures:
            got = "declined" if d.action == KbAction.DECLINE else f"{d.action.value} {', '.join(d.article_ids)}"
            why = f"; names the KB never mentions: {', '.join(d.unknown_names)}" if d.unknown_names else ""
            click.echo(f"  {r.question!r}: expected {r.expected or 'decline'}, got {got} (best {r.score:.2f}{why})")
    part = " for the questions the English encoder matched" if suggested_other else ""
    click.echo(f"Suggested on this set{part}, declining {declines:.0%} or more of the unanswerable questions: "
               f"{_described(suggested, 3)}; calibrate on a dev split only.")
    if other:
        click.echo(f"  SWITCHBOARD_KB_OTHER_LANGUAGES={language}={policy_spec(suggested)}")
    elif taught:
        click.echo(f"  SWITCHBOARD_KB_OTHER_LANGUAGES=taught={policy_spec(suggested)}")
    else:
        click.echo(f"  SWITCHBOARD_KB_MIN_SCORE={suggested.answer_score:g} SWITCHBOARD_KB_ANSWER_MARGIN="
                   f"{suggested.answer_margin:g} SWITCHBOARD_KB_CHOICE_SCORE={suggested.choice_score:g} "
                   f"SWITCHBOARD_KB_CHOICE_WINDOW={suggested.choice_window:g}")
    if suggested_other:
        click.echo(f"Suggested for the questions the multilingual encoder matched: {_described(suggested_other, 3)}.")
        click.echo(f"  SWITCHBOARD_KB_OTHER_LANGUAGES={language}={policy_spec(suggested_other)}")


def _described(policy: KbPolicy, digits: int = 2) -> str:
    """A decision policy in words: "answer at 0.67 with a lead of 0.06; choices from 0.56 within 0.10"."""
    def number(value: float) -> str:
        return f"{value:.{digits}g}" if digits == 3 else f"{value:.{digits}f}"
    return (f"answer at {number(policy.answer_score)} with a lead of {number(policy.answer_margin)}; choices "
            f"from {number(policy.choice_score)} within {number(policy.choice_window)} of the best")


@kb.command("lint")
@click.option("--source", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Directory of Markdown articles [default: SWITCHBOARD_KB_DIR].")
def kb_lint(source: Path | None) -> None:
    """Check the articles: front matter, ids, titles, empty and very long articles."""
    from kb_index.lint import lint_kb

    source = source or load_settings().kb_dir
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

    settings = load_settings()
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
    click.echo(f"{plural(len(questions), 'unanswered question')} from {plural(conversations, 'conversation')}, "
               f"{plural(len(clusters), 'group')}; the largest first:")
    for n, cluster in enumerate(clusters[:limit], start=1):
        reasons = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in cluster.reasons.items())
        language = f" [{cluster.language}]" if cluster.language else ""
        click.echo(f"\n{n}. {cluster.representative!r}{language}  ({plural(cluster.size, 'question')}: {reasons})")
        if cluster.names:
            click.echo(f"     declined for names the KB never mentions: {_counted(cluster.names)}; if you serve them, "
                       "mention them in an article")
        for example in cluster.examples[1:]:
            click.echo(f"     also: {example!r}")


def _counted(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} ({count})" if count > 1 else name for name, count in counts.items())


@kb.command("versions")
def kb_versions() -> None:
    """List the published snapshots, newest first: when, who, what changed."""
    from kb_index.snapshot import current_snapshot, list_snapshots

    settings = load_settings()
    live = current_snapshot(settings.index_dir)
    snapshots = list_snapshots(settings.index_dir)
    stored: list[tuple[str, str, bool]] = []
    if settings.kb_snapshots == "store":
        with _snapshot_store(settings, "cannot list the versions the other hosts published") as store:
            here = {path.name for path, _ in snapshots}
            stored = [row for row in store.stored_snapshots() if row[0] not in here]
    if not snapshots and not stored:
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
    for name, stored_at, deployed in stored:
        click.echo(f"{'+' if deployed else ' '} {name}  stored {stored_at}  in the store only: "
                   "`switchboard kb rollback` takes it from there")
    click.echo("* live" + ("; + live on the other hosts" if any(deployed for _, _, deployed in stored) else ""))


def _fetch_snapshot(settings: Settings, name: str) -> None:
    """Where hosts ship snapshots through the store, take a version this host never unpacked from there."""
    from kb_index.shipping import fetch

    with _snapshot_store(settings, f"cannot look for {name} in the store") as store:
        if not fetch(store, settings.index_dir, name):
            raise SwitchboardError(f"no snapshot {name!r} here or in the store; `switchboard kb versions` "
                                   "lists them")


@kb.command("rollback")
@click.argument("name")
@click.option("--keep-files", is_flag=True, help="Leave the article files as they are (the next build brings "
                                                 "them back) instead of restoring the version's.")
def kb_rollback(name: str, keep_files: bool) -> None:
    """Make an earlier snapshot live again (running servers pick it up within a search), and its
    article files the KB directory's, so the next build keeps what was rolled back to."""
    from kb_index.snapshot import rollback
    from switchboard.app import check_kb_snapshots

    settings = load_settings()
    try:
        check_kb_snapshots(settings)
        if settings.kb_snapshots == "store":
            _fetch_snapshot(settings, name)
        path = rollback(settings.index_dir, name, None if keep_files else settings.kb_dir)
    except SwitchboardError as exc:
        raise click.ClickException(str(exc)) from exc
    if settings.kb_snapshots == "store" and not keep_files:
        _forget_edits(settings)  # the editor pages of every host start from the version rolled back to
    click.echo(f"{path.name} is live again." + (
        " The article files are unchanged: the next build brings them back." if keep_files
        else f" The articles in {settings.kb_dir} are its articles again."))
    _announce_kb(settings)
