"""Rasa's REST channel: POST a message, get the bot's replies in the same response.

Existing Rasa clients and test scripts work unchanged against Switchboard. With
`SWITCHBOARD_REST_TOKEN` set, every request must carry it (`?token=`, as Rasa's server takes
it, or `Authorization: Bearer`); such a caller is trusted with everything waiting for the
sender, agents' replies included, and agents may answer on this channel. Without a token the
channel is open, as Rasa's is, so a caller is only a client that knows a sender id: it gets the
bot's answers to the message it just sent, and nothing else (no agent's reply, nothing queued
for that sender before).
"""

from __future__ import annotations

import hmac
import uuid

from flask import Blueprint, Response, jsonify

from bot.errors import NotAuthenticated
from bot.inbox import Inbox
from bot.messages import Author, InboundMessage
from bot.ports import ConversationStore
from connectors.http import answer_errors_as_json, bearer_token, field, json_object

CHANNEL = "rest"


def create_rest_blueprint(inbox: Inbox, conversations: ConversationStore, *, timeout: float,
                          token: str = "") -> Blueprint:
    """Build the `/webhooks/rest/webhook` endpoint; `token`, if set, is required on every request."""
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
        text = field(body, "message")
        message_id = body.get("message_id")
        accepted = inbox.accept(InboundMessage(
            channel=CHANNEL, external_id=sender, text=text,
            provider_message_id=message_id if isinstance(message_id, str) and message_id else uuid.uuid4().hex,
        ))
        inbox.wait_processed(accepted, CHANNEL, sender, timeout)
        pending = conversations.outbox_for(CHANNEL, sender, "pending")
        if not trusted:
            # Only the answers to this message: whoever merely knows the sender id reads nothing more.
            pending = [entry for entry in pending if entry.conversation_id == accepted.conversation_id
                       and entry.in_reply_to == accepted.event_seq and entry.author != Author.AGENT]
        conversations.mark_sent([entry.reply_id for entry in pending])
        return jsonify([
            {"recipient_id": sender, "text": entry.text,
             **({"buttons": [{"title": b.title, "payload": b.payload} for b in entry.buttons]}
                if entry.buttons else {})}
            for entry in pending
        ])

    return rest
