"""SMS and WhatsApp through Twilio: signed webhooks in, the Messages REST API out.

Every webhook's `X-Twilio-Signature` is checked with the twilio library's validator
against the configured public URL (what Twilio called, whatever proxies changed on the
way); a forged or missing one gets 403 and nothing is stored. A valid message is stored
and answered at once with empty TwiML; the replies go out later through the REST API from
the outbox, with status callbacks updating their receipts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import phonenumbers
import requests
from flask import Blueprint, Response, abort, request
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.twiml.messaging_response import MessagingResponse

from bot.delivery.worker import DeliveryError
from bot.errors import InvalidMessage
from bot.messages import Button, InboundMessage, OutboxEntry, Profile, utcnow
from bot.pipeline.inbox import Inbox
from connectors.http import answer_errors_as_json, option_number

log = logging.getLogger(__name__)

CHANNELS = ("sms", "whatsapp")
# Status callbacks arrive out of order or twice; a receipt only moves forward in this order.
RECEIPT_ORDER = ("accepted", "queued", "sending", "sent", "undelivered", "failed", "delivered", "read")
# Errors worth another try: Twilio's own trouble and its rate limits.
_TRANSIENT_STATUSES = {429, 500, 502, 503, 504}


def e164(number: str, what: str = "'From'") -> str:
    """'whatsapp:+49 151 2345 6789' -> '+4915123456789'; anything that is not a valid number is refused."""
    raw = number.removeprefix("whatsapp:").strip()
    try:
        parsed = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidMessage(f"{what} is not an international phone number: {exc}") from exc
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidMessage(f"{what} is not a possible phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


WHATSAPP_WINDOW = timedelta(hours=24)


class TwilioSender:
    """Sends SMS or WhatsApp messages with the twilio client; one instance per channel.

    WhatsApp allows free-form messages only within 24 hours of the customer's last message;
    after that a reply goes out as the approved template `template_sid` (its variable 1 is
    the reply's text) or, without one, is not sent and is marked failed with the reason.
    """

    def __init__(self, client: Client, channel: str, from_number: str, status_callback: str | None, *,
                 last_inbound: Callable[[str, str], datetime | None] | None = None, template_sid: str = "",
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._client = client
        self._channel = channel
        self._from = from_number
        self._status_callback = status_callback
        self._last_inbound = last_inbound
        self._template_sid = template_sid
        self._clock = clock

    def _address(self, number: str) -> str:
        return f"whatsapp:{number}" if self._channel == "whatsapp" else number

    def _content(self, entry: OutboxEntry, text: str) -> dict[str, str]:
        """The message's body, or the template that stands in for it outside WhatsApp's window."""
        if self._channel != "whatsapp" or self._last_inbound is None:
            return {"body": text}
        last = self._last_inbound(self._channel, entry.external_id)
        if last is not None and self._clock() - last < WHATSAPP_WINDOW:
            return {"body": text}
        if not self._template_sid:
            since = f"last wrote {last:%Y-%m-%d %H:%M} UTC" if last else "never wrote on WhatsApp"
            raise DeliveryError(f"outside WhatsApp's 24-hour window (the customer {since}); not sent. Set "
                                "SWITCHBOARD_TWILIO_WHATSAPP_TEMPLATE_SID to reach them with an approved template, "
                                "or wait for them to write", permanent=True)
        return {"content_sid": self._template_sid, "content_variables": json.dumps({"1": text})}

    def send(self, entry: OutboxEntry, text: str, buttons: tuple[Button, ...]) -> str:
        content = self._content(entry, text)
        try:
            message = self._client.messages.create(
                to=self._address(entry.external_id), from_=self._address(self._from),
                status_callback=self._status_callback, **content)
        except TwilioRestException as exc:
            transient = exc.status in _TRANSIENT_STATUSES
            raise DeliveryError(f"Twilio answered {exc.status} (error {exc.code}): {exc.msg}",
                                permanent=not transient) from exc
        except (TwilioException, requests.RequestException) as exc:
            raise DeliveryError(f"Twilio could not be reached: {exc}", permanent=False) from exc
        return str(message.sid)


def twilio_client(account_sid: str, auth_token: str, api_url: str = "", timeout: float = 10.0) -> Client:
    """The REST client, with a timeout so a hung connection cannot stall delivery; `api_url` replaces
    https://api.twilio.com (a test server, a proxy)."""
    client = Client(account_sid, auth_token, http_client=TwilioHttpClient(timeout=timeout))
    if api_url:
        client.api.base_url = api_url.rstrip("/")
    return client


def create_twilio_blueprint(inbox: Inbox, receipts: Callable[[str, str, str | None], bool], auth_token: str,
                            public_url: str, last_buttons: Callable[[str, str], tuple[Button, ...]]) -> Blueprint:
    """Webhooks for incoming SMS and WhatsApp messages and for delivery status callbacks."""
    twilio = Blueprint("twilio", __name__)
    answer_errors_as_json(twilio)
    validator = RequestValidator(auth_token) if auth_token else None

    def verified_form() -> dict[str, str]:
        if validator is None:
            abort(Response("Twilio is not configured: set SWITCHBOARD_TWILIO_AUTH_TOKEN\n", 503,
                           mimetype="text/plain"))
        # The URL Twilio signed is the public one; the path and query string are what reached us.
        url = public_url.rstrip("/") + request.full_path.rstrip("?")
        form = request.form.to_dict()
        if not validator.validate(url, form, request.headers.get("X-Twilio-Signature", "")):
            log.warning("refused a Twilio webhook with a missing or wrong signature for %s", url)
            abort(Response("invalid signature\n", 403, mimetype="text/plain"))
        return form

    def empty_twiml() -> Response:
        return Response(str(MessagingResponse()), 200, mimetype="text/xml")

    def receive(channel: str) -> Response:
        form = verified_form()
        sid, sender = form.get("MessageSid"), form.get("From")
        if not sid or not sender:
            raise InvalidMessage("a Twilio message needs MessageSid and From")
        number = e164(sender)
        text = form.get("Body", "")
        attachments = tuple(f"{form.get(f'MediaContentType{i}', 'application/octet-stream')} "
                            f"{form.get(f'MediaUrl{i}', '')}" for i in range(_media_count(form)))
        option = option_number(text)
        if option is not None:  # a numbered option of the last reply
            options = last_buttons(channel, number)
            if 1 <= option <= len(options):
                text = options[option - 1].payload
        if not text.strip() and not attachments:
            return empty_twiml()  # nothing to read (e.g. an empty SMS)
        inbox.accept(InboundMessage(
            channel=channel, external_id=number, provider_message_id=sid,
            text=text if text.strip() else "[" + ", ".join(a.split(" ", 1)[0] for a in attachments) + "]",
            attachments=attachments,
            profile=Profile(display_name=form.get("ProfileName") or None, phone=number),
        ))
        return empty_twiml()

    @twilio.post("/webhooks/twilio/sms")
    def sms() -> Response:
        return receive("sms")

    @twilio.post("/webhooks/twilio/whatsapp")
    def whatsapp() -> Response:
        return receive("whatsapp")

    @twilio.post("/webhooks/twilio/status")
    def status() -> Response:
        form = verified_form()
        sid, state = form.get("MessageSid"), form.get("MessageStatus")
        if not sid or not state:
            raise InvalidMessage("a status callback needs MessageSid and MessageStatus")
        error = form.get("ErrorCode")
        if not receipts(sid, state, f"Twilio error {error}" if error else None):
            log.info("status callback for a message Switchboard did not send: %s", sid)
        return Response(status=204)

    return twilio


def _media_count(form: dict[str, str]) -> int:
    try:
        return max(0, min(int(form.get("NumMedia", "0")), 10))
    except ValueError:
        return 0
