"""Rasa's REST channel: POST a message, get the bot's replies in the same response.

Existing Rasa clients and test scripts work unchanged against Switchboard.
"""

from __future__ import annotations

import uuid

from flask import Blueprint, Response, jsonify

from bot.inbox import Inbox
from bot.messages import InboundMessage
from bot.ports import ConversationStore
from connectors.http import answer_errors_as_json, field, json_object

CHANNEL = "rest"


def create_rest_blueprint(inbox: Inbox, conversations: ConversationStore, *, timeout: float) -> Blueprint:
    """Build the `/webhooks/rest/webhook` endpoint."""
    rest = Blueprint("rest", __name__)
    answer_errors_as_json(rest)

    @rest.get("/webhooks/rest/")
    def health() -> Response:
        return jsonify({"status": "ok"})

    @rest.post("/webhooks/rest/webhook")
    def webhook() -> Response:
        body = json_object()
        sender = field(body, "sender", max_length=200)
        text = field(body, "message")
        message_id = body.get("message_id")
        accepted = inbox.accept(InboundMessage(
            channel=CHANNEL, external_id=sender, text=text,
            provider_message_id=message_id if isinstance(message_id, str) and message_id else uuid.uuid4().hex,
        ))
        inbox.wait_processed(accepted, CHANNEL, sender, timeout)
        # Everything waiting for this sender goes out now, agents' replies included.
        pending = conversations.outbox_for(CHANNEL, sender, "pending")
        conversations.mark_sent([entry.reply_id for entry in pending])
        return jsonify([
            {"recipient_id": sender, "text": entry.text,
             **({"buttons": [{"title": b.title, "payload": b.payload} for b in entry.buttons]}
                if entry.buttons else {})}
            for entry in pending
        ])

    return rest
