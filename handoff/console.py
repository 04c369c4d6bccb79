"""The agent console: sign in, the queue, a ticket with its transcript, and actions on it."""

from __future__ import annotations

from collections.abc import Callable

from flask import (
    Blueprint,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response

from bot.errors import SwitchboardError
from bot.messages import Agent, ConversationStatus
from bot.ports import AgentStore, ConversationStore
from handoff.agents import AgentDirectory
from handoff.api import CsatQuestion
from handoff.auth import require_agent


def create_console_blueprint(conversations: ConversationStore, agents: AgentStore,
                             directory: AgentDirectory, *, max_text_length: int,
                             csat_question: CsatQuestion = lambda: None) -> Blueprint:
    """Build the `/console` pages around the given collaborators."""
    console = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
                        static_folder="static", static_url_path="/static")

    signed_in = require_agent(agents)

    @console.route("/login", methods=["GET", "POST"])
    def login() -> Response | str:
        if request.method == "POST":
            agent = directory.authenticate(request.form.get("email", ""), request.form.get("password", ""))
            if agent is not None:
                session.clear()
                session["agent_id"] = agent.agent_id
                target = request.args.get("next", "")
                # Only paths of this console: never an open redirect.
                if not target.startswith("/console/") or target.startswith("//"):
                    target = url_for("console.queue")
                return redirect(target)
            flash("Wrong email or password.")
        return render_template("console/login.html")

    @console.post("/logout")
    def logout() -> Response:
        session.clear()
        return redirect(url_for("console.login"))

    @console.get("/")
    @signed_in
    def queue() -> str:
        agent: Agent = g.agent
        open_ones = conversations.list_conversations([ConversationStatus.QUEUED, ConversationStatus.ASSIGNED])
        return render_template(
            "console/queue.html",
            queued=[c for c in open_ones if c.status == ConversationStatus.QUEUED],
            mine=[c for c in open_ones if c.assignee_id == agent.agent_id],
            others=[c for c in open_ones if c.status == ConversationStatus.ASSIGNED
                    and c.assignee_id != agent.agent_id],
        )

    @console.get("/conversations/<conversation_id>")
    @signed_in
    def ticket(conversation_id: str) -> str:
        try:
            conversation = conversations.get_conversation(conversation_id)
        except SwitchboardError:
            abort(404)
        assignee = agents.get_agent(conversation.assignee_id) if conversation.assignee_id else None
        return render_template(
            "console/ticket.html",
            conversation=conversation,
            customer=conversations.get_customer(conversation.customer_id),
            transcript=conversations.transcript(conversation_id),
            deliveries={entry.reply_id: entry for entry in conversations.outbox_of(conversation_id)},
            assignee=assignee,
            max_text_length=max_text_length,
        )

    def act(conversation_id: str, action: Callable[[], object], done: str) -> Response:
        try:
            action()
            flash(done)
        except SwitchboardError as exc:
            if exc.status == 404:
                abort(404)
            flash(str(exc))
        return redirect(url_for("console.ticket", conversation_id=conversation_id))

    @console.post("/conversations/<conversation_id>/claim")
    @signed_in
    def claim(conversation_id: str) -> Response:
        return act(conversation_id, lambda: conversations.claim(conversation_id, g.agent.agent_id),
                   "You hold this conversation now; the bot stays silent.")

    @console.post("/conversations/<conversation_id>/reply")
    @signed_in
    def reply(conversation_id: str) -> Response:
        text = request.form.get("text", "").strip()
        if not text or len(text) > max_text_length:
            flash(f"Write a reply of 1 to {max_text_length} characters.")
            return redirect(url_for("console.ticket", conversation_id=conversation_id))
        return act(conversation_id, lambda: conversations.agent_reply(conversation_id, g.agent.agent_id, text),
                   "Reply sent.")

    @console.post("/conversations/<conversation_id>/return")
    @signed_in
    def return_to_bot(conversation_id: str) -> Response:
        return act(conversation_id, lambda: conversations.return_to_bot(conversation_id, g.agent.agent_id),
                   "The bot answers this conversation again.")

    @console.post("/conversations/<conversation_id>/close")
    @signed_in
    def close(conversation_id: str) -> Response:
        return act(conversation_id, lambda: conversations.close_conversation(
            conversation_id, g.agent.agent_id, admin=g.agent.role == "admin", csat_question=csat_question()),
            "Conversation closed; the customer is asked to rate it.")

    return console
