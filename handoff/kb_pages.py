"""The console's knowledge-base pages for editors: articles, test a question, publish, history, gaps."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from markdown_it import MarkdownIt
from werkzeug.wrappers import Response

from bot.errors import NotFound, SwitchboardError
from bot.gaps import GapCluster
from bot.outcome import Outcome
from bot.ports import AgentStore
from handoff.auth import require_agent
from kb_index.articles import KNOWN_CHANNELS
from kb_index.editing import ArticleDraft, ArticleFiles
from kb_index.publisher import KnowledgeBasePublisher

EDITOR_ROLES = ("editor", "admin")


def create_kb_blueprint(agents: AgentStore, files: ArticleFiles, publisher: KnowledgeBasePublisher,
                        preview: Callable[[str, str], Outcome], gaps: Callable[[], list[GapCluster]]) -> Blueprint:
    """Build the `/console/kb` pages around the given collaborators."""
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
                            request.form.get("audience", "customers"))

    @kb.get("/")
    @editor
    def articles() -> str:
        query = request.args.get("q", "").strip().lower()
        found = [a for a in files.articles()
                 if not query or query in f"{a.article_id} {a.title} {' '.join(a.tags)} {a.body}".lower()]
        return render_template("console/kb_articles.html", articles=found, query=query,
                               unpublished=publisher.unpublished(), live=publisher.live())

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
        flash(f"Deleted {article_id}. Publish to remove it from the bot's answers.")
        return redirect(url_for("kb.articles"))

    @kb.get("/test")
    @editor
    def test_question() -> str:
        question = request.args.get("q", "").strip()[:1000]
        by_channel = {channel: preview(question, channel) for channel in KNOWN_CHANNELS} if question else {}
        outcome = by_channel.get("web")
        tried = next((data for kind, data in outcome.events if kind == "kb_answer"), None) if outcome else None
        return render_template("console/kb_test.html", question=question, outcome=outcome, tried=tried,
                               by_channel=by_channel)

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
        try:
            publisher.rollback(name)
            flash(f"{name} is live again.")
        except SwitchboardError as exc:
            flash(str(exc))
        return redirect(url_for("kb.versions"))

    @kb.get("/gaps")
    @editor
    def gap_report() -> str:
        return render_template("console/kb_gaps.html", clusters=gaps()[:50])

    return kb
