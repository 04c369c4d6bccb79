"""The agent console: sign in, the queue, a ticket with its transcript, and actions on it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
from bot.messages import Agent, Conversation, ConversationStatus, EventKind, utcnow
from bot.notifier import Notifier
from bot.ports import AgentStore, ConversationStore
from handoff.agents import AgentDirectory
from handoff.api import CsatQuestion
from handoff.auth import require_agent
from handoff.streams import queue_stream
from handoff.summary import summarize

VIEWS = ("overview", "unassigned", "mine", "all", "closed")
RESOLUTIONS = ("answered", "solved_by_action", "escalated", "no_reply", "spam")


@dataclass(frozen=True)
class QueueRow:
    conversation: Conversation
    customer_name: str | None
    channels: list[str]
    sentiment: float | None  # of the customer's latest rated message
    waiting_minutes: int


def create_console_blueprint(conversations: ConversationStore, agents: AgentStore,
                             directory: AgentDirectory, notifier: Notifier, *, max_text_length: int,
                             heartbeat: float = 15.0, csat_question: CsatQuestion = lambda: None) -> Blueprint:
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

    def rows(items: list[Conversation]) -> list[QueueRow]:
        now = utcnow()
        result = []
        for conversation in items:
            customer = conversations.get_customer(conversation.customer_id)
            rated = [e.data["sentiment"] for e in conversations.transcript(conversation.conversation_id)
                     if e.kind == EventKind.MESSAGE_IN and "sentiment" in e.data]
            waited = max(0, int((now - conversation.updated_at).total_seconds() // 60))
            result.append(QueueRow(conversation, customer.display_name, sorted({c for c, _ in customer.identities}),
                                   rated[-1] if rated else None, waited))
        return result

    @console.get("/")
    @signed_in
    def queue() -> str:
        agent: Agent = g.agent
        view = request.args.get("view", "overview")
        if view not in VIEWS:
            abort(404)
        open_ones = conversations.list_conversations([ConversationStatus.QUEUED, ConversationStatus.ASSIGNED])
        queued = [c for c in open_ones if c.status == ConversationStatus.QUEUED]
        lists = {
            "overview": [("Waiting for an agent", queued, "Nobody is waiting."),
                         ("Yours", [c for c in open_ones if c.assignee_id == agent.agent_id],
                          "You hold no conversations."),
                         ("Held by other agents", [c for c in open_ones if c.status == ConversationStatus.ASSIGNED
                                                   and c.assignee_id != agent.agent_id], "None.")],
            "unassigned": [("Waiting for an agent", queued, "Nobody is waiting.")],
            "mine": [("Yours", [c for c in open_ones if c.assignee_id == agent.agent_id],
                      "You hold no conversations.")],
            "all": [("Open conversations", open_ones, "None.")],
            "closed": [("Closed, latest first",
                        conversations.list_conversations([ConversationStatus.CLOSED])[::-1][:100], "None yet.")],
        }[view]
        template = "console/_queue_lists.html" if request.args.get("fragment") else "console/queue.html"
        return render_template(template, view=view, views=VIEWS, waiting=len(queued),
                               lists=[(title, rows(items), empty) for title, items, empty in lists])

    @console.post("/presence")
    @signed_in
    def presence() -> Response:
        wanted = request.form.get("presence", "")
        try:
            agents.set_presence(g.agent.agent_id, wanted)
            flash("You are online: new handoffs count on you." if wanted == "online"
                  else "You are away: customers waiting are not told to expect you.")
        except SwitchboardError as exc:
            flash(str(exc))
        return redirect(request.referrer if (request.referrer or "").startswith(request.host_url)
                        else url_for("console.queue"))

    @console.get("/stream")
    @signed_in
    def stream() -> Response:
        """Server-Sent Events: `queue` with the number waiting whenever conversations change."""

        return queue_stream(notifier, lambda: {"waiting": len(conversations.list_conversations(
            [ConversationStatus.QUEUED]))}, heartbeat)

    @console.get("/conversations/<conversation_id>")
    @signed_in
    def ticket(conversation_id: str) -> str:
        try:
            conversation = conversations.get_conversation(conversation_id)
        except SwitchboardError:
            abort(404)
        assignee = agents.get_agent(conversation.assignee_id) if conversation.assignee_id else None
        team = agents.list_agents()
        transcript = conversations.transcript(conversation_id)
        return render_template(
            "console/ticket.html",
            summary=summarize(conversation, transcript),
            past=[c for c in conversations.conversations_of(conversation.customer_id)
                  if c.conversation_id != conversation_id],
            conversation=conversation,
            customer=conversations.get_customer(conversation.customer_id),
            transcript=transcript,
            deliveries={entry.reply_id: entry for entry in conversations.outbox_of(conversation_id)},
            agent_names={a.agent_id: a.name for a in team},
            colleagues=[a for a in team if a.active and a.agent_id != g.agent.agent_id],
            resolutions=RESOLUTIONS,
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

    def form_text(what: str) -> str | None:
        """The form's `text`, or None (with a message for the agent) when it is empty or too long."""
        text = request.form.get("text", "").strip()
        if not text or len(text) > max_text_length:
            flash(f"Write a {what} of 1 to {max_text_length} characters.")
            return None
        return text

    def is_admin() -> bool:
        return bool(g.agent.role == "admin")

    @console.post("/conversations/<conversation_id>/claim")
    @signed_in
    def claim(conversation_id: str) -> Response:
        return act(conversation_id, lambda: conversations.claim(conversation_id, g.agent.agent_id),
                   "You hold this conversation now; the bot stays silent.")

    @console.post("/conversations/<conversation_id>/reply")
    @signed_in
    def reply(conversation_id: str) -> Response:
        text = form_text("reply")
        if text is None:
            return redirect(url_for("console.ticket", conversation_id=conversation_id))
        return act(conversation_id, lambda: conversations.agent_reply(conversation_id, g.agent.agent_id, text,
                                                                      admin=is_admin()), "Reply sent.")

    @console.post("/conversations/<conversation_id>/return")
    @signed_in
    def return_to_bot(conversation_id: str) -> Response:
        return act(conversation_id, lambda: conversations.return_to_bot(
            conversation_id, g.agent.agent_id, admin=is_admin()),
            "The bot answers this conversation again.")

    @console.post("/conversations/<conversation_id>/close")
    @signed_in
    def close(conversation_id: str) -> Response:
        resolution = request.form.get("resolution") if request.form.get("resolution") in RESOLUTIONS else None
        return act(conversation_id, lambda: conversations.close_conversation(
            conversation_id, g.agent.agent_id, resolution, admin=is_admin(),
            csat_question=csat_question()), "Conversation closed; the customer is asked to rate it.")

    @console.post("/conversations/<conversation_id>/note")
    @signed_in
    def note(conversation_id: str) -> Response:
        text = form_text("note")
        if text is None:
            return redirect(url_for("console.ticket", conversation_id=conversation_id))
        return act(conversation_id, lambda: conversations.add_note(conversation_id, g.agent.agent_id, text),
                   "Note added; only agents see it.")

    @console.post("/conversations/<conversation_id>/transfer")
    @signed_in
    def transfer(conversation_id: str) -> Response:
        found = agents.agent_credentials(request.form.get("agent_email", ""))
        if found is None:
            flash("Choose a colleague to transfer to.")
            return redirect(url_for("console.ticket", conversation_id=conversation_id))
        return act(conversation_id, lambda: conversations.transfer(
            conversation_id, g.agent.agent_id, found[0].agent_id, admin=is_admin()),
            f"Transferred to {found[0].name}.")

    return console
