"""The agent API: the console's operations as JSON, for another front end or a CRM.

Sign in with `POST /api/agent/login`, then send `Authorization: Bearer TOKEN`. Every error
is JSON: `{"error": code, "message": ...}` with the matching status.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, jsonify, request

from bot.errors import InvalidMessage, NotAuthenticated, NotFound
from bot.messages import Agent, Button, Conversation, ConversationStatus, Event, EventKind, utcnow
from bot.notifier import Notifier
from bot.ports import AgentStore, ConversationStore
from connectors.http import answer_errors_as_json, bearer_token, field, json_object, optional_field
from connectors.streams import StreamSlots
from handoff.agents import AgentDirectory
from handoff.assist import ReplyAssistant, suggestion_text
from handoff.streams import change_stream
from handoff.summary import summarize

FILTERS = ("queued", "mine", "snoozed", "bot", "all", "closed")
MAX_SNOOZE_MINUTES = 7 * 24 * 60
LIVE_MINUTES = 60  # a conversation with the bot that had a message this recently is live: an agent may step in
# What the customer is told when an agent acts: (response, conversation id) -> text and buttons of the
# domain response in the variation the conversation's slots select (its language), or None if the
# domain has no such response. "utter_csat" on close, "utter_back_to_bot" on a return to the bot.
CustomerNotice = Callable[[str, str], tuple[str, tuple[Button, ...]] | None]
OPEN = (ConversationStatus.BOT, ConversationStatus.QUEUED, ConversationStatus.ASSIGNED)


def conversations_in(conversations: ConversationStore, view: str, agent: Agent) -> list[Conversation]:
    """One view of the conversations, the same for the console and the API: `queued` (waiting for an
    agent), `mine` (held by `agent`, but for those snoozed), `snoozed` (theirs, snoozed), `bot` (live
    with the bot: a message within LIVE_MINUTES), `all` (every open one: with the bot, waiting or held)
    or `closed` (latest first, the last 200)."""
    if view == "queued":
        return conversations.list_conversations([ConversationStatus.QUEUED])
    if view in ("mine", "snoozed"):
        now = utcnow()
        return [c for c in conversations.list_conversations([ConversationStatus.ASSIGNED])
                if c.assignee_id == agent.agent_id and c.snoozed(now) == (view == "snoozed")]
    if view == "bot":
        since = utcnow() - timedelta(minutes=LIVE_MINUTES)
        return [c for c in conversations.list_conversations([ConversationStatus.BOT]) if c.updated_at >= since]
    if view == "all":
        return conversations.list_conversations(list(OPEN))
    if view == "closed":
        return conversations.list_conversations([ConversationStatus.CLOSED])[::-1][:200]
    raise InvalidMessage(f"no view {view!r}: one of {', '.join(FILTERS)}")


def _agent_json(agent: Agent | None) -> dict[str, Any] | None:
    if agent is None:
        return None
    return {"id": agent.agent_id, "email": agent.email, "name": agent.name, "role": agent.role}


def _event_json(event: Event) -> dict[str, Any]:
    return {"seq": event.seq, "kind": event.kind.value, "author": event.author.value, "channel": event.channel,
            "text": event.text, "data": event.data, "created_at": event.created_at.isoformat()}


def create_agent_api(conversations: ConversationStore, agents: AgentStore, directory: AgentDirectory,
                     notifier: Notifier, assistant: ReplyAssistant, *, max_text_length: int, token_hours: int,
                     streams: StreamSlots, reply_channels: frozenset[str],
                     notice: CustomerNotice = lambda response, conversation_id: None) -> Blueprint:
    api = Blueprint("agent_api", __name__, url_prefix="/api/agent")
    answer_errors_as_json(api)

    def current_agent() -> Agent:
        agent = directory.signed_in(bearer_token())
        if agent is None:
            raise NotAuthenticated("a valid agent token is required: POST /api/agent/login for one")
        agents.touch_agent(agent.agent_id, utcnow())
        return agent

    def ticket_summary(conversation: Conversation) -> dict[str, Any]:
        customer = conversations.get_customer(conversation.customer_id)
        assignee = agents.get_agent(conversation.assignee_id) if conversation.assignee_id else None
        return {
            "id": conversation.conversation_id, "reference": conversation.reference,
            "status": conversation.status.value, "reason": conversation.handoff_reason,
            "channel": conversation.last_channel, "customer": {"id": customer.customer_id,
                                                                "name": customer.display_name},
            "assignee": _agent_json(assignee), "updated_at": conversation.updated_at.isoformat(),
            "csat": conversation.csat, "csat_comment": conversation.csat_comment, "tags": list(conversation.tags),
            "snoozed_until": conversation.snoozed_until.isoformat() if conversation.snoozed_until else None,
            "closed_at": conversation.closed_at.isoformat() if conversation.closed_at else None,
        }

    def ticket_of(conversation_id: str) -> Conversation:
        return conversations.get_conversation(conversation_id)

    def text_field(name: str) -> str:
        text = field(json_object(), name).strip()
        if len(text) > max_text_length:
            raise InvalidMessage(f"the field {name!r} is longer than {max_text_length} characters")
        return text

    @api.post("/login")
    def login() -> tuple[Response, int]:
        body = json_object()
        agent = directory.authenticate(field(body, "email", max_length=254), field(body, "password", max_length=200))
        if agent is None:
            raise NotAuthenticated("wrong email or password")
        token, expires_at = directory.sign_in(agent, token_hours)
        return jsonify({"token": token, "expires_at": expires_at.isoformat(), "agent": _agent_json(agent)}), 200

    @api.post("/logout")
    def logout() -> Response:
        """End this token's sign-in."""
        current_agent()
        directory.sign_out(bearer_token())
        return jsonify({"status": "signed_out"})

    @api.get("/tickets")
    def tickets() -> Response:
        agent = current_agent()
        wanted = request.args.get("status", "queued")
        if wanted not in FILTERS:
            raise InvalidMessage(f"status must be one of {', '.join(FILTERS)}")
        return jsonify({"tickets": [ticket_summary(c) for c in conversations_in(conversations, wanted, agent)]})

    @api.get("/tickets/<conversation_id>")
    def ticket(conversation_id: str) -> Response:
        agent = current_agent()
        conversation = ticket_of(conversation_id)
        transcript = conversations.transcript(conversation_id)
        customer = conversations.get_customer(conversation.customer_id)
        deliveries = {e.reply_id: e for e in conversations.outbox_of(conversation_id)}
        events = []
        for event in transcript:
            item = _event_json(event)
            delivery = deliveries.get(str(event.data.get("reply_id", "")))
            if delivery is not None:
                item["delivery"] = {"status": delivery.status, "receipt": delivery.receipt, "error": delivery.error}
            events.append(item)
        handoffs = [e for e in transcript if e.kind == EventKind.HANDOFF]
        canned, _ = assistant.canned()
        return jsonify({
            **ticket_summary(conversation),
            "handoff": handoffs[-1].data if handoffs else None,
            "customer": {"id": customer.customer_id, "name": customer.display_name, "email": customer.email,
                         "phone": customer.phone, "language": customer.language,
                         "identities": [{"channel": c, "external_id": x, "reachable": c in reply_channels}
                                        for c, x in customer.identities],
                         "attributes": customer.attributes},
            "reply_to": {"channel": conversation.last_channel, "external_id": conversation.last_external_id},
            "summary": summarize(conversation, transcript).as_json(),
            "kb_tries": [e.data for e in transcript if e.kind == EventKind.KB_ANSWER],
            "suggestions": [{"article_id": p.article_id, "title": p.title, "url": p.url, "score": round(p.score, 4),
                             "text": suggestion_text(p)}
                            for p in assistant.suggestions(transcript, conversation.last_channel,
                                                           customer.language)],
            "canned": [{"title": c.title, "text": version.text, "language": version.language,
                        "translations": sorted(c.translations)}
                       for c in canned
                       for version in [c.for_ticket(customer.display_name, agent.name, customer.language)]],
            "transcript": events,
        })

    @api.post("/tickets/<conversation_id>/claim")
    def claim(conversation_id: str) -> Response:
        agent = current_agent()
        return jsonify(ticket_summary(conversations.claim(conversation_id, agent.agent_id)))

    @api.post("/tickets/<conversation_id>/reply")
    def reply(conversation_id: str) -> tuple[Response, int]:
        agent = current_agent()
        target = json_object().get("to")
        to = None
        if target is not None:
            if not isinstance(target, dict):
                raise InvalidMessage('"to" must be an object: {"channel": ..., "external_id": ...}')
            to = (field(target, "channel", max_length=20), field(target, "external_id", max_length=200))
            if to[0] not in reply_channels:
                raise InvalidMessage(f"replies cannot reach {to[0]} in this deployment")
        sent = conversations.agent_reply(conversation_id, agent.agent_id, text_field("text"),
                                         admin=agent.role == "admin", to=to)
        return jsonify({"reply_id": sent.reply_id, "text": sent.text}), 201

    @api.post("/tickets/<conversation_id>/note")
    def note(conversation_id: str) -> tuple[Response, int]:
        agent = current_agent()
        return jsonify(_event_json(conversations.add_note(conversation_id, agent.agent_id, text_field("text")))), 201

    @api.post("/tickets/<conversation_id>/transfer")
    def transfer(conversation_id: str) -> Response:
        agent = current_agent()
        target = agents.agent_credentials(field(json_object(), "agent_email", max_length=254))
        if target is None:
            raise NotFound("no agent with that email")
        moved = conversations.transfer(conversation_id, agent.agent_id, target[0].agent_id,
                                       admin=agent.role == "admin")
        return jsonify(ticket_summary(moved))

    @api.post("/tickets/<conversation_id>/return")
    def return_to_bot(conversation_id: str) -> Response:
        agent = current_agent()
        return jsonify(ticket_summary(conversations.return_to_bot(
            conversation_id, agent.agent_id, admin=agent.role == "admin",
            notice=notice("utter_back_to_bot", conversation_id))))

    @api.post("/tickets/<conversation_id>/tags")
    def tags(conversation_id: str) -> Response:
        current_agent()
        raw = json_object().get("tags")
        if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
            raise InvalidMessage("the field 'tags' must be a list of strings")
        return jsonify(ticket_summary(conversations.set_tags(conversation_id, raw)))

    @api.post("/tickets/<conversation_id>/snooze")
    def snooze(conversation_id: str) -> Response:
        agent = current_agent()
        minutes = json_object().get("minutes")
        if not isinstance(minutes, int) or isinstance(minutes, bool) or not 0 <= minutes <= MAX_SNOOZE_MINUTES:
            raise InvalidMessage(f"the field 'minutes' must be a whole number from 0 (wake it now) to "
                                 f"{MAX_SNOOZE_MINUTES}")
        until = utcnow() + timedelta(minutes=minutes) if minutes else None
        return jsonify(ticket_summary(conversations.snooze(conversation_id, agent.agent_id, until,
                                                           admin=agent.role == "admin")))

    @api.post("/tickets/<conversation_id>/close")
    def close(conversation_id: str) -> Response:
        agent = current_agent()
        resolution = optional_field(json_object(), "resolution", max_length=100) if request.data else None
        return jsonify(ticket_summary(conversations.close_conversation(
            conversation_id, agent.agent_id, resolution, admin=agent.role == "admin",
            csat_question=notice("utter_csat", conversation_id))))

    @api.post("/presence")
    def presence() -> Response:
        agent = current_agent()
        status = field(json_object(), "status", max_length=20)
        agents.set_presence(agent.agent_id, status)
        return jsonify({"status": status})

    @api.get("/stream")
    def stream() -> Response:
        agent = current_agent()

        def counts() -> dict[str, int]:
            held = conversations.list_conversations([ConversationStatus.QUEUED, ConversationStatus.ASSIGNED])
            return {"queued": sum(c.status == ConversationStatus.QUEUED for c in held),
                    "mine": sum(c.assignee_id == agent.agent_id for c in held)}

        return change_stream(notifier, counts, streams, f"api:{agent.agent_id}")

    return api
