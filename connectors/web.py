"""The web chat channel: sessions, messages in, replies out over SSE or polling."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator
from datetime import timedelta

from flask import Blueprint, Response, jsonify, render_template, request, stream_with_context

from bot.errors import InvalidMessage, NotAuthenticated
from bot.inbox import Inbox
from bot.messages import Event, EventKind, InboundMessage, Profile, utcnow
from bot.notifier import Notifier
from bot.ports import ConversationStore, WebSessionStore
from connectors.http import answer_errors_as_json, field, json_object, optional_field

CHANNEL = "web"


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _public(event_id: int, event: Event) -> dict[str, object]:
    return {
        "id": event_id,
        "kind": event.kind.value,
        "author": event.author.value,
        "text": event.text,
        "buttons": event.data.get("buttons", []),
        "created_at": event.created_at.isoformat(),
    }


def create_web_blueprint(inbox: Inbox, conversations: ConversationStore, sessions: WebSessionStore,
                         notifier: Notifier, *, session_days: int, heartbeat: float) -> Blueprint:
    """Build the web chat's page and JSON API around the given collaborators."""
    web = Blueprint("web", __name__, template_folder="templates", static_folder="static",
                    static_url_path="/static/web")
    answer_errors_as_json(web)

    def session_external_id() -> str:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        # EventSource cannot set headers, so the stream also takes the token as a parameter.
        token = token or request.args.get("token", "")
        external_id = sessions.web_session(_token_hash(token), utcnow()) if token else None
        if external_id is None:
            raise NotAuthenticated("a valid session token is required: POST /api/web/sessions for one")
        return external_id

    def deliver(external_id: str, after: int) -> list[dict[str, object]]:
        events = conversations.identity_events(CHANNEL, external_id, after)
        conversations.mark_sent([str(e.data["reply_id"]) for _, e in events
                                 if e.kind == EventKind.MESSAGE_OUT])
        return [_public(event_id, event) for event_id, event in events]

    @web.get("/")
    def chat_page() -> str:
        return render_template("web/chat.html")

    @web.post("/api/web/sessions")
    def new_session() -> tuple[Response, int]:
        token = secrets.token_urlsafe(32)
        expires_at = utcnow() + timedelta(days=session_days)
        sessions.add_web_session(_token_hash(token), "w-" + secrets.token_hex(12), expires_at)
        return jsonify({"token": token, "expires_at": expires_at.isoformat()}), 201

    @web.post("/api/web/messages")
    def post_message() -> tuple[Response, int]:
        external_id = session_external_id()
        body = json_object()
        text = field(body, "text")
        client_message_id = field(body, "client_message_id", max_length=100)
        # The page embedding the chat may know the customer (a signed-in shop account).
        name = optional_field(body, "name", max_length=100)
        accepted = inbox.accept(InboundMessage(
            channel=CHANNEL, external_id=external_id,
            # Client ids are only unique within a session.
            provider_message_id=f"{external_id}:{client_message_id}", text=text,
            profile=Profile(display_name=name),
        ))
        return jsonify({"status": "accepted", "duplicate": accepted.duplicate}), 202

    @web.get("/api/web/events")
    def poll_events() -> Response:
        external_id = session_external_id()
        after = request.args.get("after", "0")
        if not after.isdigit():
            raise InvalidMessage("'after' must be a non-negative integer")
        events = deliver(external_id, int(after))
        return jsonify({"events": events, "cursor": events[-1]["id"] if events else int(after)})

    @web.get("/api/web/stream")
    def stream() -> Response:
        external_id = session_external_id()
        start = request.headers.get("Last-Event-ID") or request.args.get("after", "0")
        cursor = int(start) if start.isdigit() else 0
        key = f"{CHANNEL}:{external_id}"

        def events() -> Iterator[str]:
            nonlocal cursor
            yield "retry: 3000\n\n"
            while not notifier.closed:
                seen = notifier.version(key)
                for event in deliver(external_id, cursor):
                    cursor = int(str(event["id"]))
                    yield f"id: {cursor}\nevent: message\ndata: {json.dumps(event)}\n\n"
                if notifier.wait(key, seen, heartbeat) == seen and not notifier.closed:
                    yield ": keep-alive\n\n"

        return Response(stream_with_context(events()), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return web
