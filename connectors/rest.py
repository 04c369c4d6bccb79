"""Rasa's REST channel: POST a message, get the bot's replies in the same response.

Existing Rasa clients and test scripts work unchanged against Switchboard. With
`SWITCHBOARD_REST_TOKEN` set, every request must carry it (`?token=`, as Rasa's server takes
it, or `Authorization: Bearer`); such a caller is trusted with everything waiting for the
sender, agents' replies included, and agents may answer on this channel. Without a token the
channel is open, as Rasa's is, so a caller is only a client that knows a sender id: it gets the
bot's answers to the message it just sent, and nothing else (no agent's reply, nothing queued
for that sender before).

Rasa's `POST /conversations/<sender>/trigger_intent` (`{"name": "greet", "entities": {...}}`) is the same
turn with the intent given instead of a text, as a button payload (`/greet{...}`) is; it answers with the
sender's tracker and the bot's messages, and only to a caller holding the token.
"""

from __future__ import annotations

import hmac
import json
import uuid
from collections.abc import Callable, Collection
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from bot.errors import InvalidMessage, NotAllowed, NotAuthenticated, NotFound
from bot.messages import Accepted, InboundMessage
from bot.pipeline.inbox import Inbox
from bot.ports import ConversationStore
from connectors.http import answer_errors_as_json, bearer_token, field, json_object
from connectors.on_loop import Deferred, on_event_loop, served_on_loop

CHANNEL = "rest"
Tracker = Callable[[str], dict[str, Any] | None]


def create_rest_blueprint(inbox: Inbox, conversations: ConversationStore, *, timeout: float,
                          token: str = "", intents: Collection[str] = (),
                          tracker: Tracker = lambda sender: None) -> Blueprint:
    """Build the `/webhooks/rest/webhook` endpoint; `token`, if set, is required on every request. `intents`
    are the domain's (those `trigger_intent` may name); `tracker` gives a sender's conversation as Rasa's."""
    rest = Blueprint("rest", __name__)
    answer_errors_as_json(rest)

    def authenticated() -> bool:
        """Whether the caller showed the configured token; NotAuthenticated if one is configured and it did not."""
        if not token:
            return False
        if not hmac.compare_digest(bearer_token().encode(), token.encode()):
            raise NotAuthenticated("this REST channel needs its token: ?token=... or Authorization: Bearer ...")
        return True

    @rest.get("/webhooks/rest/")
    def health() -> Response:
        return jsonify({"status": "ok"})

    @rest.post("/webhooks/rest/webhook")
    def webhook() -> Response:
        trusted = authenticated()
        body = json_object()
        # Rasa's own default: a message without a sender is the "default" sender's.
        sender = "default" if body.get("sender") is None else field(body, "sender", max_length=200)
        message_id = body.get("message_id")
        return turn(sender, field(body, "message"), message_id if isinstance(message_id, str) else "", trusted,
                    lambda messages: messages)

    @rest.post("/conversations/<sender>/trigger_intent")
    def trigger_intent(sender: str) -> Response:
        # It speaks as the sender and answers with their whole conversation: only for a caller with the token.
        if not authenticated():
            raise NotAllowed("trigger_intent needs SWITCHBOARD_REST_TOKEN set, and the token on the request")
        body = json_object()
        name = field(body, "name", max_length=200)
        if name not in intents:
            raise NotFound(f"the intent {name!r} is not in the domain")
        entities = body.get("entities") or {}
        if not isinstance(entities, dict):
            raise InvalidMessage("'entities' must be an object of entity names and values")
        payload = f"/{name}{json.dumps(entities, ensure_ascii=False) if entities else ''}"
        return turn(sender, payload, "", True, lambda messages: {"tracker": tracker(sender), "messages": messages})

    def turn(sender: str, text: str, message_id: str, trusted: bool,
             shape: Callable[[list[dict[str, Any]]], object]) -> Response:
        """Store the sender's message, wait for the bot's turn, and answer with what is waiting for them
        (`shape`d). Served on an event loop, the wait holds no thread, and what is waiting is read on the
        thread that finds the turn taken."""
        accepted = inbox.accept(InboundMessage(channel=CHANNEL, external_id=sender, text=text,
                                               provider_message_id=message_id or uuid.uuid4().hex))
        encode = current_app.json.dumps

        def body() -> bytes:
            return (encode(shape(handed_over(sender, accepted, trusted))) + "\n").encode()

        if on_event_loop():
            seen = inbox.unprocessed_version(accepted, CHANNEL, sender)
            if seen is not None:
                return served_on_loop(Deferred(lambda run: inbox.wait_processed_async(
                    accepted, CHANNEL, sender, timeout, run, body, seen), body), (), "application/json")
        else:
            inbox.wait_processed(accepted, CHANNEL, sender, timeout)
        return Response(body(), mimetype="application/json")

    def handed_over(sender: str, accepted: Accepted, trusted: bool) -> list[dict[str, Any]]:
        """What waits for the sender after the bot's turn, marked sent. Untrusted, only the answers to this
        message: whoever merely knows the sender id reads nothing more."""
        pending = conversations.take_replies(
            CHANNEL, sender, None if trusted else (accepted.conversation_id, accepted.event_seq))
        return [{"recipient_id": sender, "text": entry.text,
                 **({"buttons": [{"title": b.title, "payload": b.payload} for b in entry.buttons]}
                    if entry.buttons else {})}
                for entry in pending]

    return rest
