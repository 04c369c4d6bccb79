"""The web chat channel: sessions, messages in, replies out over SSE or polling."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path

from flask import Blueprint, Response, jsonify, render_template, request

from bot.customers.codes import CODE_LIFETIME
from bot.customers.email import EmailSender
from bot.dialogue.domain import load_yaml
from bot.errors import InvalidMessage, NotAuthenticated, SwitchboardError
from bot.messages import Author, Button, Event, EventKind, InboundMessage, Profile, utcnow
from bot.notifier import Notifier
from bot.pipeline.inbox import Inbox
from bot.ports import AgentStore, ConversationStore, WebSessionStore
from connectors.http import answer_errors_as_json, bearer_token, count, field, json_object, optional_field
from connectors.streams import EventStream, StreamSlots, event_stream_response

CHANNEL = "web"
log = logging.getLogger(__name__)
# Something@something.tld, no spaces: the code sent there is what proves the address.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# The web chat's own words when data/widget.yml has none: plain English, naming no business.
DEFAULT_WORDS = {
    "title": "Chat with us", "heading": "Help", "intro": 'Ask us anything. Say "agent" to reach a person.',
    "header": "Chat with us", "your_message": "Your message", "placeholder": "Type your question", "send": "Send",
    "email_summary": "Wrote to us before? Verify your email to bring your earlier conversations here.",
    "email_label": "Your email", "send_code": "Send code", "code_label": "Code from the email", "verify": "Verify",
    "typing": "Typing", "team": "Support team", "agent": "{name}", "reconnecting": "Reconnecting...",
    "not_sent": "Could not send; check your connection and try again.",
    "code_sent": "We sent you a code; it works for 10 minutes.",
    "linked": "Thanks! Your earlier conversations are connected to this chat.",
    "verified": "Thanks! Your email is verified.", "unavailable": "The chat is unavailable right now.",
}
WIDGET_WORDS = tuple(DEFAULT_WORDS)


def load_widget_words(path: Path) -> dict[str, dict[str, str]]:
    """The web chat's own words per language from `path` (data/widget.yml; without the file, plain English).
    A word a language lacks is the file's English one, else the default; an unknown word is an error
    naming the file."""
    if not path.is_file():
        log.info("no web chat words at %s: the chat is shown in plain English", path)
        return {"en": dict(DEFAULT_WORDS)}
    document = load_yaml(path, "web chat words")
    words: dict[str, dict[str, str]] = {}
    for language, given in document.items():
        if not isinstance(given, dict):
            raise SwitchboardError(f"{path}: '{language}' must map words to texts")
        unknown = sorted(set(map(str, given)) - set(WIDGET_WORDS))
        if unknown:
            raise SwitchboardError(f"{path}: '{language}' has unknown words {', '.join(unknown)}; "
                                   f"the words are {', '.join(WIDGET_WORDS)}")
        words[str(language)] = {str(k): str(v) for k, v in given.items()}
    english = {**DEFAULT_WORDS, **words.get("en", {})}
    return {"en": english, **{language: {**english, **own} for language, own in words.items()}}


# The greeting a new chat opens with (text and quick-reply buttons) in a language, if the domain has one.
Welcome = Callable[[str | None], tuple[str, tuple[Button, ...]] | None]


def _public(event_id: int, event: Event, agent_name: str | None = None) -> dict[str, object]:
    return {
        "id": event_id,
        "kind": event.kind.value,
        "author": event.author.value,
        "text": event.text,
        "buttons": event.data.get("buttons", []),
        "created_at": event.created_at.isoformat(),
        **({"name": agent_name} if agent_name else {}),
    }


def create_web_blueprint(inbox: Inbox, conversations: ConversationStore, sessions: WebSessionStore,
                         notifier: Notifier, email: EmailSender, streams: StreamSlots, *,
                         session_days: int, agents: AgentStore | None = None,
                         welcome: Welcome = lambda language: None, languages: Sequence[str] = ("en",),
                         words: Mapping[str, Mapping[str, str]] | None = None) -> Blueprint:
    """Build the web chat's page and JSON API around the given collaborators. Agents' replies carry the
    agent's first name (from `agents`); the page opens with `welcome` in the browser's language among
    `languages`, in `words` (the page's own, per language; English without them)."""
    every_words = words or {"en": DEFAULT_WORDS}
    web = Blueprint("web", __name__, template_folder="templates", static_folder="static",
                    static_url_path="/static/web")
    answer_errors_as_json(web)

    def session_external_id() -> str:
        token = bearer_token()
        external_id = sessions.web_session(_token_hash(token), utcnow()) if token else None
        if external_id is None:
            raise NotAuthenticated("a valid session token is required: POST /api/web/sessions for one")
        return external_id

    def deliver(external_id: str, after: int) -> list[dict[str, object]]:
        events = conversations.identity_events(CHANNEL, external_id, after)
        conversations.mark_sent([str(e.data["reply_id"]) for _, e in events
                                 if e.kind == EventKind.MESSAGE_OUT])
        agent_ids = {str(e.data["agent_id"]) for _, e in events if e.author == Author.AGENT and e.data.get("agent_id")}
        names = {agent_id: first_name(agent_id) for agent_id in agent_ids}  # one look-up per agent, not per reply
        return [_public(event_id, event, names.get(str(event.data.get("agent_id")))
                        if event.author == Author.AGENT else None) for event_id, event in events]

    def first_name(agent_id: str) -> str | None:
        agent = agents.get_agent(agent_id) if agents is not None else None
        return agent.name.split()[0] if agent is not None and agent.name.strip() else None

    @web.get("/")
    def chat_page() -> str:
        language = request.accept_languages.best_match(languages) or languages[0]
        greeting = welcome(language)
        shown = every_words.get(language) or every_words["en"]
        return render_template("web/chat.html", language=language, words=shown, welcome={
            "text": greeting[0], "buttons": [{"title": b.title, "payload": b.payload} for b in greeting[1]],
        } if greeting else None)

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
        # The page embedding the chat may know the customer (a signed-in shop account), and the widget
        # says the language the page is shown in: a hint for the profile, like Telegram's language_code.
        name = optional_field(body, "name", max_length=100)
        language = optional_field(body, "language", max_length=20)
        accepted = inbox.accept(InboundMessage(
            channel=CHANNEL, external_id=external_id,
            # Client ids are only unique within a session.
            provider_message_id=f"{external_id}:{client_message_id}", text=text,
            profile=Profile(display_name=name, language=language if language in languages else None),
        ))
        return jsonify({"status": "accepted", "duplicate": accepted.duplicate}), 202

    @web.post("/api/web/email")
    def send_email_code() -> tuple[Response, int]:
        """Email a one-time code; entering it proves the address is the customer's and links them to
        the customer who has it (their conversations on other channels)."""
        external_id = session_external_id()
        address = field(json_object(), "email", max_length=254).strip()
        if not _EMAIL.fullmatch(address):
            raise InvalidMessage(f"{address!r} is not an email address")
        code = conversations.request_email_code(CHANNEL, external_id, address, request.remote_addr or "")
        email.send(address, "Your chat verification code",
                   f"Your code is {code}. Type it in the chat within 10 minutes.\n\n"
                   "If you did not ask for it, ignore this email: nothing happens without the code.")
        return jsonify({"status": "sent", "expires_in": int(CODE_LIFETIME.total_seconds())}), 202

    @web.post("/api/web/email/verify")
    def verify_email_code() -> Response:
        external_id = session_external_id()
        code = field(json_object(), "code", max_length=20)
        return jsonify({"result": conversations.verify_email_code(CHANNEL, external_id, code)})

    @web.get("/api/web/events")
    def poll_events() -> Response:
        external_id = session_external_id()
        after = count(request.args.get("after"), "after")
        events = deliver(external_id, after)
        return jsonify({"events": events, "cursor": events[-1]["id"] if events else after})

    @web.get("/api/web/stream")
    def stream() -> Response:
        """Server-Sent Events of the session's messages; when refused (429/503) the widget polls instead."""
        external_id = session_external_id()
        cursor = count(request.headers.get("Last-Event-ID") or request.args.get("after"), "after")
        key = f"{CHANNEL}:{external_id}"
        slot = streams.open(request.remote_addr or "", key)

        def read() -> list[str]:
            nonlocal cursor
            frames = []
            for event in deliver(external_id, cursor):
                cursor = int(str(event["id"]))
                frames.append(f"id: {cursor}\nevent: message\ndata: {json.dumps(event)}\n\n")
            return frames

        return event_stream_response(EventStream(notifier, key, read, slot, streams.heartbeat))

    return web
