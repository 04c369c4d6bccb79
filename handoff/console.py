"""The agent console: sign in, the queue, a ticket with its transcript, and actions on it."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

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
from markupsafe import Markup, escape
from werkzeug.wrappers import Response

from bot.errors import SwitchboardError
from bot.messages import Agent, Conversation, ConversationStatus, Customer, Event, EventKind, OutboxEntry, utcnow
from bot.notifier import Notifier
from bot.ports import AgentStore, ConversationStore
from connectors.streams import StreamSlots
from handoff.agents import AgentDirectory
from handoff.api import LIVE_MINUTES, CustomerNotice, conversations_in
from handoff.assist import ReplyAssistant, suggestion_text
from handoff.auth import require_agent
from handoff.streams import change_stream
from handoff.summary import latest_question, summarize

VIEWS = ("overview", "unassigned", "mine", "bot", "all", "closed")
RESOLUTIONS = ("answered", "solved_by_action", "escalated", "no_reply", "spam")
SNOOZE_HOURS = ("1", "4", "24", "72")


@dataclass(frozen=True)
class QueueRow:
    conversation: Conversation
    customer_name: str | None
    channels: list[str]
    sentiment: float | None  # the lowest of the customer's rated messages: earlier frustration shows
    latest_sentiment: float | None
    waiting_minutes: int
    assignee_name: str | None  # who holds it, or (closed) who handled it


_LINK = re.compile(r"(https?://[^\s<>\"']+[^\s<>\"'.,;:!?)\]])")


@dataclass(frozen=True)
class ReplyTarget:
    """An identity of the customer a reply can go to."""

    channel: str
    external_id: str

    @property
    def value(self) -> str:
        return f"{self.channel}:{self.external_id}"

    @property
    def label(self) -> str:
        # A web chat's id is a random session id: meaningless to an agent.
        return "web chat" if self.channel == "web" else f"{self.channel} {self.external_id}"


def ticket_state(conversation: Conversation, transcript: list[Event], outbox: list[OutboxEntry]) -> dict[str, Any]:
    """What the ticket page shows that can change: the page compares it to decide what to reload."""
    return {"status": conversation.status.value, "assignee": conversation.assignee_id,
            "seq": transcript[-1].seq if transcript else 0,
            "deliveries": " ".join(f"{e.status}/{e.receipt}" for e in outbox)}


def create_console_blueprint(conversations: ConversationStore, agents: AgentStore,
                             directory: AgentDirectory, notifier: Notifier, assistant: ReplyAssistant, *,
                             max_text_length: int, reply_channels: frozenset[str], streams: StreamSlots,
                             sign_in_hours: int, floods: Callable[[], list[str]] = list,
                             notice: CustomerNotice = lambda response, conversation_id: None) -> Blueprint:
    """Build the `/console` pages around the given collaborators.

    `reply_channels` are the channels replies can reach in this deployment (an agent may pick
    any identity of the customer on one of them).
    """
    console = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
                        static_folder="static", static_url_path="/static")

    signed_in = require_agent(agents)

    @console.app_template_filter("linkify")
    def linkify(text: str) -> Markup:
        """The text escaped, with its web links clickable (opened in a new tab, without a referrer)."""
        parts = _LINK.split(text)
        return Markup("").join(
            Markup('<a href="{0}" target="_blank" rel="noopener noreferrer">{0}</a>').format(part) if i % 2
            else escape(part) for i, part in enumerate(parts))

    @console.route("/login", methods=["GET", "POST"])
    def login() -> Response | str:
        if request.method == "POST":
            agent = directory.authenticate(request.form.get("email", ""), request.form.get("password", ""))
            if agent is not None:
                session.clear()
                session["sign_in"], _ = directory.sign_in(agent, sign_in_hours)
                target = request.args.get("next", "")
                # Only paths of this console: never an open redirect.
                if not target.startswith("/console/") or target.startswith("//"):
                    target = url_for("console.queue")
                return redirect(target)
            flash("Wrong email or password.")
            # The email stays filled in; only the password is typed again.
            return render_template("console/login.html", email=request.form.get("email", "")[:320])
        return render_template("console/login.html")

    @console.post("/logout")
    def logout() -> Response:
        token = session.get("sign_in")
        if isinstance(token, str):
            directory.sign_out(token)  # a copy of the cookie stops working too
        session.clear()
        return redirect(url_for("console.login"))

    def rows(items: list[Conversation]) -> list[QueueRow]:
        now = utcnow()
        names = {a.agent_id: a.name for a in agents.list_agents()} if any(c.assignee_id for c in items) else {}
        result = []
        for conversation in items:
            customer = conversations.get_customer(conversation.customer_id)
            rated = [e.data["sentiment"] for e in conversations.transcript(conversation.conversation_id)
                     if e.kind == EventKind.MESSAGE_IN and "sentiment" in e.data]
            waited = max(0, int((now - conversation.updated_at).total_seconds() // 60))
            result.append(QueueRow(conversation, customer.display_name, sorted({c for c, _ in customer.identities}),
                                   min(rated) if rated else None, rated[-1] if rated else None, waited,
                                   names.get(conversation.assignee_id or "")))
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
        def section(title: str, name: str, empty: str) -> tuple[str, list[Conversation], str]:
            return title, conversations_in(conversations, name, agent), empty

        # Only the view asked for is read: the page reloads on every change of the queue.
        shown: dict[str, Callable[[], list[tuple[str, list[Conversation], str]]]] = {
            "overview": lambda: [("Waiting for an agent", queued, "Nobody is waiting."),
                                 section("Yours", "mine", "You hold no conversations."),
                                 ("Held by other agents", [c for c in open_ones
                                                           if c.status == ConversationStatus.ASSIGNED
                                                           and c.assignee_id != agent.agent_id], "None.")],
            "unassigned": lambda: [("Waiting for an agent", queued, "Nobody is waiting.")],
            "mine": lambda: [section("Yours", "mine", "You hold no conversations."),
                             section("Snoozed: back when the time is up or the customer writes", "snoozed", "None.")],
            "bot": lambda: [section(f"With the bot now (a message in the last {LIVE_MINUTES} minutes); open one to "
                                    "step in", "bot", "Nobody is chatting with the bot.")],
            "all": lambda: [section("Open conversations: with the bot, waiting or held", "all", "None.")],
            "closed": lambda: [section("Closed, latest first", "closed", "None yet.")],
        }
        lists = shown[view]()
        template = "console/_queue_lists.html" if request.args.get("fragment") else "console/queue.html"
        flooding = [conversations.get_conversation(c) for c in floods()]
        return render_template(template, view=view, views=VIEWS, waiting=len(queued), flooding=flooding,
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

        return change_stream(notifier, lambda: {"waiting": len(conversations.list_conversations(
            [ConversationStatus.QUEUED]))}, streams, f"console:{g.agent.agent_id}:queue")

    def is_admin() -> bool:
        return bool(g.agent.role == "admin")

    def conversation_or_404(conversation_id: str) -> Conversation:
        try:
            return conversations.get_conversation(conversation_id)
        except SwitchboardError:
            abort(404)

    def reply_targets(conversation: Conversation, customer: Customer) -> list[ReplyTarget]:
        """The customer's reachable identities, the one they last wrote from first."""
        last = ReplyTarget(conversation.last_channel, conversation.last_external_id)
        others = [ReplyTarget(c, x) for c, x in customer.identities if c in reply_channels]
        return [last, *(target for target in others if target != last)]

    def live_parts(conversation: Conversation, customer: Customer, team: list[Agent]) -> dict[str, Any]:
        """What the transcript area of a ticket shows; rendered for the page and for its live reloads.
        Suggestions and canned responses only for an agent who can reply (a search each)."""
        transcript = conversations.transcript(conversation.conversation_id)
        outbox = conversations.outbox_of(conversation.conversation_id)
        can_reply = conversation.status == ConversationStatus.ASSIGNED \
            and (conversation.assignee_id == g.agent.agent_id or is_admin())
        canned, canned_error = assistant.canned() if can_reply else ((), None)
        return {
            "conversation": conversation,
            "transcript": transcript,
            "state": ticket_state(conversation, transcript, outbox),
            "deliveries": {entry.reply_id: entry for entry in outbox},
            "agent_names": {a.agent_id: a.name for a in team},
            # A tapped button arrives as its payload: agents read the title the customer saw.
            "tapped": {b["payload"]: b["title"] for e in transcript if e.kind == EventKind.MESSAGE_OUT
                       for b in e.data.get("buttons") or () if isinstance(b, dict) and "payload" in b and "title" in b},
            "latest_question": latest_question(transcript),
            "suggestions": [(p, suggestion_text(p)) for p in assistant.suggestions(
                transcript, conversation.last_channel, customer.language)] if can_reply else [],
            "canned": [c.for_ticket(customer.display_name, g.agent.name, customer.language) for c in canned],
            "canned_error": canned_error,
            "can_reply": can_reply,
        }

    @console.get("/conversations/<conversation_id>")
    @signed_in
    def ticket(conversation_id: str) -> str:
        conversation = conversation_or_404(conversation_id)
        customer = conversations.get_customer(conversation.customer_id)
        team = agents.list_agents()
        parts = live_parts(conversation, customer, team)
        if request.args.get("fragment") == "live":
            return render_template("console/_ticket_live.html", **parts)
        return render_template(
            "console/ticket.html",
            **parts,
            summary=summarize(conversation, parts["transcript"]),
            past=[c for c in conversations.conversations_of(conversation.customer_id)
                  if c.conversation_id != conversation_id],
            customer=customer,
            merges=conversations.merges_of(customer.customer_id),
            # What the bot picked up (order number, product, ...); its counters are not for agents.
            noted=sorted((k, v) for k, v in conversation.dialogue.slots.items() if isinstance(v, str) and v),
            reply_targets=reply_targets(conversation, customer),
            # Whom it can go to: anyone but its holder (an admin may take it over themselves).
            colleagues=[a for a in team if a.active and a.agent_id != conversation.assignee_id],
            resolutions=RESOLUTIONS, snooze_hours=SNOOZE_HOURS, now=utcnow(),
            assignee=agents.get_agent(conversation.assignee_id) if conversation.assignee_id else None,
            max_text_length=max_text_length,
        )

    @console.get("/conversations/<conversation_id>/stream")
    @signed_in
    def ticket_stream(conversation_id: str) -> Response:
        """Server-Sent Events: `ticket` with the ticket's state whenever conversations change."""
        conversation_or_404(conversation_id)

        def state() -> dict[str, Any]:
            return ticket_state(conversations.get_conversation(conversation_id),
                                conversations.transcript(conversation_id), conversations.outbox_of(conversation_id))

        return change_stream(notifier, state, streams, f"console:{g.agent.agent_id}:{conversation_id}",
                             event="ticket")

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
        channel, _, external_id = request.form.get("to", "").partition(":")
        to = (channel, external_id) if channel and external_id else None
        if to is not None and channel not in reply_channels:
            flash(f"Replies cannot reach {channel} here; choose another of the customer's channels.")
            return redirect(url_for("console.ticket", conversation_id=conversation_id))
        return act(conversation_id, lambda: conversations.agent_reply(
            conversation_id, g.agent.agent_id, text, admin=is_admin(), to=to),
            f"Reply sent on {channel}." if to else "Reply sent.")

    @console.post("/conversations/<conversation_id>/return")
    @signed_in
    def return_to_bot(conversation_id: str) -> Response:
        return act(conversation_id, lambda: conversations.return_to_bot(
            conversation_id, g.agent.agent_id, admin=is_admin(), notice=notice("utter_back_to_bot", conversation_id)),
            "The bot answers this conversation again; the customer is told.")

    @console.post("/conversations/<conversation_id>/reopen")
    @signed_in
    def reopen(conversation_id: str) -> Response:
        return act(conversation_id, lambda: conversations.reopen(conversation_id, g.agent.agent_id),
                   "Reopened: you hold this conversation; the customer's next message comes here.")

    @console.post("/conversations/<conversation_id>/tags")
    @signed_in
    def tags(conversation_id: str) -> Response:
        labels = [t for t in request.form.get("tags", "").split(",") if t.strip()]
        return act(conversation_id, lambda: conversations.set_tags(conversation_id, labels),
                   "Tags saved." if labels else "Tags removed.")

    @console.post("/conversations/<conversation_id>/snooze")
    @signed_in
    def snooze(conversation_id: str) -> Response:
        hours = request.form.get("hours", "")
        if hours not in SNOOZE_HOURS and hours != "0":
            flash("Choose how long to snooze.")
            return redirect(url_for("console.ticket", conversation_id=conversation_id))
        until = utcnow() + timedelta(hours=int(hours)) if hours != "0" else None
        return act(conversation_id, lambda: conversations.snooze(conversation_id, g.agent.agent_id, until,
                                                                 admin=is_admin()),
                   f"Snoozed for {hours} hour{'' if hours == '1' else 's'}: it comes back then, or when the "
                   "customer writes." if until
                   else "Awake again.")

    @console.post("/conversations/<conversation_id>/close")
    @signed_in
    def close(conversation_id: str) -> Response:
        resolution = request.form.get("resolution") if request.form.get("resolution") in RESOLUTIONS else None
        return act(conversation_id, lambda: conversations.close_conversation(
            conversation_id, g.agent.agent_id, resolution, admin=is_admin(),
            csat_question=notice("utter_csat", conversation_id)),
            "Conversation closed; the customer is asked to rate it.")

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
