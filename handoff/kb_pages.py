"""The console's knowledge-base pages for editors: articles, test a question, publish, history, gaps."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from markdown_it import MarkdownIt
from werkzeug.wrappers import Response

from bot.analytics.gaps import GapCluster, gap_key
from bot.errors import Conflict, NotFound, SwitchboardError
from bot.outcome import Outcome
from bot.ports import AgentStore
from handoff.auth import require_agent
from kb_index.articles import KNOWN_CHANNELS, Article
from kb_index.editing import ArticleDraft, ArticleFiles
from kb_index.publisher import KnowledgeBasePublisher

EDITOR_ROLES = ("editor", "admin")


def translation_coverage(articles: Sequence[Article], languages: Sequence[str]) -> dict[str, tuple[list[str],
                                                                                               list[str]]]:
    """For each original article: the languages it is in, and those of `languages` it still lacks."""
    have: dict[str, list[str]] = {a.article_id: [a.lang or "en"] for a in articles if not a.translation_of}
    for article in articles:
        if article.translation_of in have:
            have[article.translation_of].append(article.lang)
    order = {code: place for place, code in enumerate(languages)}
    return {article_id: (sorted(found, key=lambda code: order.get(code, len(order))),
                         [code for code in languages if code not in found])
            for article_id, found in have.items()}


def same_answers(by_channel: dict[str, Outcome]) -> list[tuple[list[str], Outcome]]:
    """The channels grouped by the answer they get (texts and buttons), in channel order: one row when
    every channel gets the same."""
    groups: dict[tuple[object, ...], tuple[list[str], Outcome]] = {}
    for channel, outcome in by_channel.items():
        key = tuple((reply.text, reply.buttons) for reply in outcome.replies)
        groups.setdefault(key, ([], outcome))[0].append(channel)
    return list(groups.values())


def create_kb_blueprint(agents: AgentStore, files: ArticleFiles, publisher: KnowledgeBasePublisher,
                        preview: Callable[[str, str], Outcome],
                        gaps: Callable[[datetime | None, datetime | None], list[GapCluster]],
                        handle_gaps: Callable[[Sequence[str], str, str | None, str], None],
                        languages: Sequence[str] = ("en",),
                        preview_draft: Callable[[], Callable[[str, str], Outcome]] | None = None) -> Blueprint:
    """Build the `/console/kb` pages around the given collaborators. `preview` answers a question from the
    live index; `preview_draft()` gives the same over the working copy (unpublished edits included)."""
    kb = Blueprint("kb", __name__, url_prefix="/console/kb", template_folder="templates")
    editor = require_agent(agents, EDITOR_ROLES)
    # Raw HTML in an article is shown as text, never run: articles are customer-facing content.
    markdown = MarkdownIt("commonmark", {"html": False})

    def listed(field: str) -> tuple[str, ...]:
        return tuple(t.strip() for t in request.form.get(field, "").split(",") if t.strip())

    def draft_from_form(article_id: str) -> ArticleDraft:
        return ArticleDraft(article_id.strip(), request.form.get("title", ""), request.form.get("url", "").strip(),
                            listed("tags"), request.form.get("body", "").replace("\r\n", "\n"),
                            request.form.get("lang", "").strip(), listed("channels"),
                            request.form.get("audience", "customers"),
                            tuple(q.strip() for q in request.form.get("questions", "").splitlines() if q.strip()),
                            request.form.get("translation_of", "").strip())

    @kb.get("/")
    @editor
    def articles() -> str:
        query = request.args.get("q", "").strip().lower()
        every = files.articles()
        found = [a for a in every
                 if not query or query in f"{a.article_id} {a.title} {' '.join(a.tags)} {a.body}".lower()]
        return render_template("console/kb_articles.html", articles=found, query=query,
                               unpublished=publisher.unpublished(), live=publisher.live(),
                               coverage=translation_coverage(every, languages))

    @kb.route("/new", methods=["GET", "POST"])
    @editor
    def new() -> str | Response:
        draft = ArticleDraft("", "", "", (), "")
        if request.method == "POST":
            draft = draft_from_form(request.form.get("article_id", ""))
            if request.form.get("action") != "preview":
                try:
                    files.create(draft)
                    flash(f"Saved {draft.article_id}. Publish to make it live.")
                    return redirect(url_for("kb.edit", article_id=draft.article_id))
                except SwitchboardError as exc:
                    flash(str(exc))
        return render_template("console/kb_edit.html", draft=draft, creating=True, channels=KNOWN_CHANNELS,
                               preview=markdown.render(draft.body) if draft.body else "")

    @kb.route("/articles/<article_id>", methods=["GET", "POST"])
    @editor
    def edit(article_id: str) -> str | Response:
        try:
            article = files.get(article_id)
        except NotFound:
            abort(404)
        draft = ArticleDraft.of(article)
        if request.method == "POST":
            draft = draft_from_form(article_id)
            if request.form.get("action") != "preview":
                try:
                    files.update(article_id, draft)
                    flash("Saved. Publish to make it live.")
                    return redirect(url_for("kb.edit", article_id=article_id))
                except SwitchboardError as exc:
                    flash(str(exc))
        return render_template("console/kb_edit.html", draft=draft, creating=False, channels=KNOWN_CHANNELS,
                               preview=markdown.render(draft.body))

    @kb.post("/articles/<article_id>/delete")
    @editor
    def delete(article_id: str) -> Response:
        try:
            files.delete(article_id)
        except NotFound:
            abort(404)
        except Conflict as exc:
            flash(f"Not deleted: {exc}")
            return redirect(url_for("kb.articles"))
        flash(f"Deleted {article_id}. Publish to remove it from the bot's answers.")
        return redirect(url_for("kb.articles"))

    @kb.get("/test")
    @editor
    def test_question() -> str:
        question = request.args.get("q", "").strip()[:1000]
        draft = request.args.get("against") == "draft" and preview_draft is not None
        by_channel: dict[str, Outcome] = {}
        try:
            if question:
                ask = preview_draft() if draft and preview_draft is not None else preview
                by_channel = {channel: ask(question, channel) for channel in KNOWN_CHANNELS}
        except SwitchboardError as exc:  # a working copy that does not build says why
            flash(f"The working copy cannot be tested: {exc}")
        outcome = by_channel.get("web")
        tried = next((data for kind, data in outcome.events if kind == "kb_answer"), None) if outcome else None
        return render_template("console/kb_test.html", question=question, outcome=outcome, tried=tried,
                               answers=same_answers(by_channel), draft=draft,
                               can_test_draft=preview_draft is not None,
                               unpublished=any(publisher.unpublished().values()) if preview_draft else False)

    @kb.post("/publish")
    @editor
    def publish() -> Response:
        try:
            snapshot = publisher.publish(author=g.agent.email)
            flash(f"Published {snapshot.name}; the bot answers from it now.")
        except SwitchboardError as exc:
            flash(f"Not published: {exc}")
        return redirect(url_for("kb.articles"))

    @kb.get("/versions")
    @editor
    def versions() -> str:
        return render_template("console/kb_versions.html", versions=publisher.versions(), live=publisher.live())

    @kb.post("/versions/<name>/rollback")
    @editor
    def rollback(name: str) -> Response:
        restore = request.form.get("restore", "files") != "none"
        try:
            publisher.rollback(name, restore_files=restore)
            flash(f"{name} is live again, and its articles are back in the editor." if restore else
                  f"{name} is live again. The articles being edited are unchanged: the next publish brings them back.")
        except SwitchboardError as exc:
            flash(str(exc))
        return redirect(url_for("kb.versions"))

    @kb.get("/versions/<name>/changes")
    @editor
    def version_changes(name: str) -> str | Response:
        try:
            previous, changes = publisher.diff(name)
        except SwitchboardError as exc:
            flash(str(exc))
            return redirect(url_for("kb.versions"))
        return render_template("console/kb_diff.html", name=name, previous=previous, changes=changes)

    def day(name: str) -> datetime | None:
        raw = request.args.get(name, "").strip()
        try:
            return datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=UTC) if raw else None
        except ValueError:
            flash(f"{raw!r} is not a date like 2026-12-01; showing every day.")
            return None

    @kb.get("/gaps")
    @editor
    def gap_report() -> str:
        since, until = day("from"), day("to")
        clusters = gaps(since, until + timedelta(days=1) if until else None)[:50]
        return render_template("console/kb_gaps.html", clusters=clusters, since=request.args.get("from", ""),
                               until=request.args.get("to", ""),
                               articles=sorted(files.articles(), key=lambda a: a.title.lower()))

    @kb.post("/gaps/answer")
    @editor
    def answer_gap() -> Response:
        """The group's first question becomes an example question of the article, published at once;
        the whole group leaves the report."""
        questions = [q for q in request.form.getlist("question") if q.strip()]
        article_id = request.form.get("article_id", "")
        if not questions:
            flash("No question to answer.")
            return redirect(url_for("kb.gap_report"))
        try:
            article = files.get(article_id)
            draft = ArticleDraft.of(article)
            files.update(article_id, replace(draft, questions=tuple(dict.fromkeys((*draft.questions, questions[0])))))
            publisher.publish(author=g.agent.email)
        except NotFound:
            flash(f"No article {article_id!r}.")
            return redirect(url_for("kb.gap_report"))
        except SwitchboardError as exc:
            flash(f"Not published: {exc}")
            return redirect(url_for("kb.gap_report"))
        handle_gaps([gap_key(q) for q in questions], "answered", article_id, g.agent.agent_id)
        flash(f"“{questions[0]}” is an example question of “{article.title}” now, and published.")
        return redirect(url_for("kb.gap_report"))

    @kb.post("/gaps/dismiss")
    @editor
    def dismiss_gap() -> Response:
        """Noise (chit-chat, names, order follow-ups): the group leaves the report."""
        questions = [q for q in request.form.getlist("question") if q.strip()]
        handle_gaps([gap_key(q) for q in questions], "dismissed", None, g.agent.agent_id)
        flash(f"Dismissed {len(questions)} question{'' if len(questions) == 1 else 's'}.")
        return redirect(url_for("kb.gap_report"))

    return kb


def create_no_kb_blueprint(agents: AgentStore, kb_dir: Path) -> Blueprint:
    """`/console/kb` where the deployment has no knowledge base (a Rasa project without `kb/`): its pages
    say so and how to start one, instead of failing on a directory that is not there."""
    kb = Blueprint("kb", __name__, url_prefix="/console/kb", template_folder="templates")
    editor = require_agent(agents, EDITOR_ROLES)

    @kb.get("/", defaults={"rest": ""})
    @kb.get("/<path:rest>")
    @editor
    def articles(rest: str) -> tuple[str, int]:
        return render_template("console/kb_none.html", kb_dir=kb_dir), 404

    @kb.get("/gaps")
    @editor
    def gap_report() -> tuple[str, int]:
        return articles("gaps")

    return kb
