"""Messenger and Instagram through Meta's webhooks in and the Graph API's Send API out.

One callback URL serves both: Meta posts `object: page` events for Messenger and `object: instagram`
for Instagram Direct. Each POST must carry `X-Hub-Signature-256`, the HMAC-SHA256 of the raw body with
the app secret (compared in constant time; 403 and nothing stored otherwise); the GET handshake echoes
`hub.challenge` when `hub.verify_token` is ours. Messages are stored once by their `mid`. Text, quick
reply taps and postbacks (their payload) and attachments (as typed links, never fetched) become
messages; echoes of the page's own messages, deliveries, reads and reactions are ignored. A sender's
name is fetched once through the Graph API.

Replies go out through the Send API: within 24 hours of the customer's last message as a `RESPONSE`;
after that, an agent's reply goes with the `HUMAN_AGENT` tag until 7 days have passed, and anything else
is not sent, with the reason kept on the reply.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

import requests
from flask import Blueprint, Response, abort, jsonify, request

from bot.delivery.worker import DeliveryError
from bot.errors import InvalidMessage
from bot.messages import Author, Button, InboundMessage, OutboxEntry, Profile, utcnow
from bot.pipeline.inbox import Inbox
from connectors.http import answer_errors_as_json, json_object

log = logging.getLogger(__name__)

CHANNELS = {"page": "messenger", "instagram": "instagram"}  # the webhook's `object` -> Switchboard's channel
DEFAULT_GRAPH_URL = "https://graph.facebook.com/v21.0"
STANDARD_WINDOW = timedelta(hours=24)
HUMAN_AGENT_WINDOW = timedelta(days=7)
QUICK_REPLY_TITLE = 20  # characters of a quick reply's title Meta shows
# Graph API error codes worth another try: temporary errors and rate limits.
_TRANSIENT_CODES = {1, 2, 4, 17, 32, 341, 613}
_RATE_LIMIT_CODES = {4, 17, 32, 613}


def signature_valid(body: bytes, header: str, app_secret: str) -> bool:
    """Whether `X-Hub-Signature-256` is `sha256=` and the HMAC-SHA256 of the raw body with the app secret."""
    if not app_secret or not header.startswith("sha256="):
        return False
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(header[len("sha256="):].strip().lower(), expected)


def parse_webhook(body: dict[str, Any]) -> list[InboundMessage]:
    """The customers' messages a webhook call carries; what Switchboard does not answer is left out. A body
    not shaped as Meta's raises InvalidMessage."""
    channel = CHANNELS.get(str(body.get("object")))
    if channel is None:
        raise InvalidMessage(f"not a Messenger or Instagram webhook: object is {body.get('object')!r}")
    entries = body.get("entry")
    if not isinstance(entries, list):
        raise InvalidMessage("not a Messenger or Instagram webhook: 'entry' must be a list")
    messages: list[InboundMessage] = []
    for entry in entries:
        events = entry.get("messaging") if isinstance(entry, dict) else None
        if not isinstance(events, list):
            continue  # `changes` (comments, mentions): nothing for the bot to answer
        for event in events:
            if not isinstance(event, dict):
                raise InvalidMessage("not a Messenger or Instagram webhook: an event is not an object")
            message = _message(channel, event)
            if message is not None:
                messages.append(message)
    return messages


def _message(channel: str, event: dict[str, Any]) -> InboundMessage | None:
    sender = (event.get("sender") or {}).get("id") if isinstance(event.get("sender"), dict) else None
    if not isinstance(sender, str) or not sender.isdigit() or len(sender) > 40:
        raise InvalidMessage("not a Messenger or Instagram webhook: an event has no numeric sender id")
    if isinstance(event.get("postback"), dict):
        postback = event["postback"]
        payload = postback.get("payload") or postback.get("title")
        if not isinstance(payload, str) or not payload:
            return None
        mid = postback.get("mid") or f"postback:{sender}:{event.get('timestamp')}"
        return InboundMessage(channel, sender, str(mid), payload[:4000], data={"button": True})
    message = event.get("message")
    if not isinstance(message, dict) or message.get("is_echo") or message.get("is_deleted"):
        return None  # the page's own messages, deliveries, reads, reactions
    mid = message.get("mid")
    if not isinstance(mid, str) or not mid or len(mid) > 500:
        raise InvalidMessage("not a Messenger or Instagram webhook: a message has no 'mid'")
    quick = message.get("quick_reply")
    if isinstance(quick, dict) and isinstance(quick.get("payload"), str) and quick["payload"]:
        return InboundMessage(channel, sender, mid, quick["payload"][:4000], data={"button": True})
    text = message.get("text")
    if text is not None and not isinstance(text, str):
        raise InvalidMessage("not a Messenger or Instagram webhook: a message's 'text' must be a string")
    attachments = _attachments(message.get("attachments"))
    kinds = [attachment.split(" ", 1)[0] for attachment in attachments]
    if not text and not attachments:
        return None
    # As on the other channels: the attachments as `type url` for agents (never fetched); without text, the
    # message reads as what it carries and the bot says it reads only text.
    return InboundMessage(channel, sender, mid, text or f"[{', '.join(kinds)}]", attachments=attachments,
                          data={} if text else {"media": kinds[0]})


def _attachments(raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidMessage("not a Messenger or Instagram webhook: 'attachments' must be a list")
    found: list[str] = []
    for attachment in raw:
        if isinstance(attachment, dict):
            payload = attachment.get("payload")
            url = payload.get("url") if isinstance(payload, dict) else None
            kind = str(attachment.get("type") or "file")[:30]
            found.append(f"{kind} {url}" if isinstance(url, str) and url else kind)
    return tuple(found)


class GraphClient:
    """The few Graph API calls Switchboard makes, with the page's access token."""

    def __init__(self, token: str, graph_url: str = "", timeout: float = 10.0) -> None:
        self._token = token
        self._url = (graph_url or DEFAULT_GRAPH_URL).rstrip("/")
        self._timeout = timeout
        self._session = requests.Session()

    def send(self, recipient: str, message: dict[str, Any], tag: str | None = None) -> str:
        """Send one message; its `message_id`. Failures raise DeliveryError, transient or permanent."""
        body: dict[str, Any] = {"recipient": {"id": recipient}, "message": message,
                                "messaging_type": "MESSAGE_TAG" if tag else "RESPONSE"}
        if tag:
            body["tag"] = tag
        try:
            response = self._session.post(f"{self._url}/me/messages", json=body, timeout=self._timeout,
                                          params={"access_token": self._token})
        except requests.RequestException as exc:
            raise DeliveryError(f"the Graph API could not be reached: {type(exc).__name__}", permanent=False) from exc
        answer = _json(response)
        if response.status_code == 200 and isinstance(answer.get("message_id"), str):
            return str(answer["message_id"])
        error: dict[str, Any] = answer["error"] if isinstance(answer.get("error"), dict) else {}
        code = error.get("code")
        reason = f"the Send API refused the message (HTTP {response.status_code}, code {code}): " \
                 f"{str(error.get('message') or response.text)[:200]}"
        if response.status_code >= 500 or code in _TRANSIENT_CODES:
            raise DeliveryError(reason, permanent=False, retry_after=60.0 if code in _RATE_LIMIT_CODES else None)
        raise DeliveryError(reason, permanent=True)

    def name(self, channel: str, user_id: str) -> str | None:
        """The customer's name as the Graph API gives it to the page, or None."""
        fields = "name,username" if channel == "instagram" else "first_name,last_name"
        try:
            # Asked while Meta waits for the webhook's answer: a slow Graph API costs the name, not the message.
            response = self._session.get(f"{self._url}/{user_id}", timeout=min(self._timeout, 3.0),
                                         params={"fields": fields, "access_token": self._token})
        except requests.RequestException as exc:
            log.warning("could not fetch the name of %s customer %s: %s", channel, user_id, type(exc).__name__)
            return None
        profile = _json(response)
        if response.status_code != 200:
            log.warning("the Graph API did not give the name of %s customer %s (HTTP %d)", channel, user_id,
                        response.status_code)
            return None
        parts = [profile.get("name") or profile.get("username")] if channel == "instagram" \
            else [profile.get("first_name"), profile.get("last_name")]
        name = " ".join(str(p).strip() for p in parts if isinstance(p, str) and p.strip())
        return name[:100] or None


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class MetaSender:
    """Sends replies on one channel (messenger or instagram); buttons become quick replies."""

    def __init__(self, client: GraphClient, channel: str, last_inbound: Callable[[str, str], datetime | None],
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._client = client
        self._channel = channel
        self._last_inbound = last_inbound
        self._clock = clock

    def send(self, entry: OutboxEntry, text: str, buttons: tuple[Button, ...]) -> str:
        message: dict[str, Any] = {"text": text}
        if buttons:
            message["quick_replies"] = [{"content_type": "text", "title": b.title[:QUICK_REPLY_TITLE],
                                         "payload": b.payload[:1000] or b.title} for b in buttons]
        return self._client.send(entry.external_id, message, tag=self._tag(entry))

    def _tag(self, entry: OutboxEntry) -> str | None:
        """None inside the standard window; HUMAN_AGENT for an agent's reply within 7 days; else not sent."""
        since = self._last_inbound(self._channel, entry.external_id)
        if since is not None and self._clock() - since <= STANDARD_WINDOW:
            return None
        if since is not None and self._clock() - since <= HUMAN_AGENT_WINDOW and entry.author == Author.AGENT:
            return "HUMAN_AGENT"
        wrote = f"last wrote {since:%Y-%m-%d %H:%M} UTC" if since is not None else "never wrote on this channel"
        who = "an agent's reply may go with the HUMAN_AGENT tag for 7 days" if entry.author == Author.AGENT \
            else "only an agent's reply may go after it, with the HUMAN_AGENT tag, for 7 days"
        raise DeliveryError(f"outside Meta's 24-hour messaging window (the customer {wrote}); {who}; not sent",
                            permanent=True)


class Names:
    """Customers' names from the Graph API, fetched once per sender while the process runs."""

    def __init__(self, client: GraphClient | None, limit: int = 10_000) -> None:
        self._client = client
        self._known: dict[tuple[str, str], str | None] = {}
        self._limit = limit
        self._lock = threading.Lock()

    def profile(self, channel: str, user_id: str) -> Profile:
        key = (channel, user_id)
        with self._lock:
            if key in self._known:
                return Profile(display_name=self._known[key])
        name = self._client.name(channel, user_id) if self._client is not None else None
        with self._lock:
            if len(self._known) >= self._limit:
                self._known.clear()
            self._known[key] = name
        return Profile(display_name=name)


def create_meta_blueprint(inbox: Inbox, app_secret: str, verify_token: str, names: Names) -> Blueprint:
    meta = Blueprint("meta", __name__)
    answer_errors_as_json(meta)

    def configured() -> None:
        if not app_secret or not verify_token:
            abort(Response("Messenger and Instagram are not configured: set SWITCHBOARD_META_APP_SECRET and "
                           "SWITCHBOARD_META_VERIFY_TOKEN\n", 503, mimetype="text/plain"))

    @meta.get("/webhooks/meta")
    def verify() -> Response:
        """Meta's subscription handshake: echo the challenge if the verify token is ours."""
        configured()
        given = request.args.get("hub.verify_token", "")
        if request.args.get("hub.mode") != "subscribe" or not hmac.compare_digest(given.encode(),
                                                                                    verify_token.encode()):
            abort(Response("wrong hub.verify_token\n", 403, mimetype="text/plain"))
        return Response(request.args.get("hub.challenge", ""), 200, mimetype="text/plain")

    @meta.post("/webhooks/meta")
    def webhook() -> Response:
        configured()
        raw = request.get_data(cache=True)
        if not signature_valid(raw, request.headers.get("X-Hub-Signature-256", ""), app_secret):
            log.warning("refused a Meta webhook with a missing or wrong X-Hub-Signature-256")
            abort(Response("invalid signature\n", 403, mimetype="text/plain"))
        for message in _with_names(parse_webhook(json_object()), names):
            inbox.accept(message)
        return jsonify({})

    return meta


def _with_names(messages: Iterable[InboundMessage], names: Names) -> list[InboundMessage]:
    return [dataclasses.replace(m, profile=names.profile(m.channel, m.external_id)) for m in messages]
