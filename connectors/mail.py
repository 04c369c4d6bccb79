"""Email as a channel: IMAP (or a signed Mailgun route) in, SMTP out, threaded like any mail client expects.

A customer is their address. What the bot and the agents see of a mail is the customer's newest words:
HTML turned into text (html2text), quoted history and the signature cut off (mail-parser-reply), and
attachments listed by type, name and size, never opened. Auto-replies, bounces and lists are never
answered (RFC 3834's `Auto-Submitted`, `Precedence: bulk/junk/list`, delivery status reports, mailer
daemons, list headers), nor is mail from Switchboard's own address, and the bot's own replies say
`Auto-Submitted: auto-replied`, so two robots do not keep answering each other.

IMAP: the folder's messages are read in UID order; each is stored before the UID it had is written down
(beside the UIDVALIDITY it belongs to), so a restart neither skips nor rereads mail, and a message read
twice after a crash is stored once by its Message-ID. The first start reads only unseen mail.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import os
import re
import smtplib
import threading
import time
from collections.abc import Callable, Collection, Mapping
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import getaddresses, make_msgid, parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import html2text
from flask import Blueprint, Response, abort, jsonify, request
from imapclient import IMAPClient
from mailparser_reply import EmailReplyParser

from bot.customers.email import SmtpEmailSender, mail_server
from bot.delivery.worker import DeliveryError
from bot.errors import InvalidMessage, SwitchboardError
from bot.messages import Author, Button, InboundMessage, OutboxEntry, Profile
from bot.pipeline.inbox import Inbox
from connectors.http import answer_errors_as_json, option_number

log = logging.getLogger(__name__)

CHANNEL = "email"
MAX_TEXT = 20_000  # characters of a mail's newest words kept for the bot and the agents
REPLY_LANGUAGES = ["en", "de", "fr", "es", "it", "nl", "pl", "sv"]  # quote headers mail-parser-reply knows
_ROBOTS = re.compile(r"^(mailer-daemon|postmaster|no-?reply|do-?not-?reply|bounces?)(\+.*)?@", re.IGNORECASE)
_REFERENCE_IN_SUBJECT = re.compile(r"\s*\[SB-[A-Z0-9]{5}\]\s*$")
MAILGUN_MAX_AGE = 15 * 60  # seconds a signed Mailgun request stays valid


def automated(mail: EmailMessage, sender: str) -> str | None:
    """Why a mail was written by a machine and must not be answered, or None."""
    auto = str(mail.get("Auto-Submitted", "")).strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    precedence = str(mail.get("Precedence", "")).strip().lower()
    if precedence in ("bulk", "junk", "list", "auto_reply"):
        return f"Precedence: {precedence}"
    if mail.get_content_type() == "multipart/report" or mail.get("X-Failed-Recipients"):
        return "a delivery status report"
    for header in ("X-Autoreply", "X-Autorespond"):
        if mail.get(header):
            return header
    if mail.get("List-Id") or mail.get("List-Unsubscribe"):
        return "a mailing list"
    if _ROBOTS.match(sender) or str(mail.get("Return-Path", "")).strip() == "<>":
        return "a mailer daemon"
    return None


def read_mail(raw: bytes, own_addresses: Collection[str] = ()) -> InboundMessage | None:
    """The customer's message a mail carries, or None for mail that is not answered (a reason is logged).
    A message without a sender address raises InvalidMessage."""
    mail = message_from_bytes(raw, policy=policy.default)
    if not isinstance(mail, EmailMessage):
        raise InvalidMessage("not an email message")
    name, address = parseaddr(str(mail.get("From", "")))
    address = address.strip().lower()
    if "@" not in address or len(address) > 254:
        raise InvalidMessage("the mail has no sender address in From")
    reason = automated(mail, address)
    if reason is None and address in {a.lower() for a in own_addresses}:
        reason = "sent from Switchboard's own address"
    if reason is not None:
        log.info("mail from %s not answered: %s", address, reason)
        return None
    message_id = str(mail.get("Message-ID", "")).strip() or f"<{hashlib.sha256(raw).hexdigest()}@no-message-id>"
    attachments = tuple(_listed(part) for part in mail.iter_attachments())
    text = newest_words(mail)
    subject = _REFERENCE_IN_SUBJECT.sub("", " ".join(str(mail.get("Subject", "")).split()))
    references = [m for m in str(mail.get("References", "")).split() if m.startswith("<")]
    data: dict[str, Any] = {"email": {"message_id": message_id[:500], "subject": subject[:300],
                                      "references": references[-20:]}}
    if not text:
        if not attachments:
            return None
        data["media"] = "attachment"
    return InboundMessage(CHANNEL, address, message_id[:500], text or f"[{len(attachments)} attachment(s)]",
                          attachments=attachments, profile=Profile(display_name=name.strip()[:100] or None),
                          data=data)


LastButtons = Callable[[str, str], tuple[Button, ...]]


def chosen_option(message: InboundMessage, last_buttons: LastButtons) -> InboundMessage:
    """A mail that answers with the number of one of the last reply's options ("2") is that option, as a
    tap on its button would be: mail draws no buttons, so replies list them numbered."""
    option = option_number(message.text)
    options = last_buttons(CHANNEL, message.external_id) if option is not None else ()
    if option is None or not 1 <= option <= len(options):
        return message
    return dataclasses.replace(message, text=options[option - 1].payload, data={**message.data, "button": True})


def newest_words(mail: EmailMessage) -> str:
    """The mail's text without what it quotes and without the signature: the customer's newest words."""
    part = mail.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, ValueError):  # an unknown charset: read what can be read
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if not isinstance(content, str):
        return ""
    if part.get_content_type() == "text/html":
        converter = html2text.HTML2Text()
        converter.body_width = 0
        converter.ignore_images = True
        content = converter.handle(content)
    content = content.replace("\r\n", "\n").strip()
    replies = EmailReplyParser(languages=REPLY_LANGUAGES).read(text=content).replies
    newest = replies[0].body.strip() if replies else ""
    return (newest or content)[:MAX_TEXT]


def _listed(part: EmailMessage) -> str:
    """An attachment as agents see it: type, name and size; its content is never opened."""
    payload = part.get_payload(decode=True)
    size = len(payload) if isinstance(payload, bytes) else 0
    name = part.get_filename() or "unnamed"
    return f"{part.get_content_type()} {name} ({size:,} bytes)"


class ImapReader:
    """Reads new mail from an IMAP folder into the inbox, polling every `poll_seconds`."""

    def __init__(self, url: str, inbox: Inbox, state_path: Path, own_addresses: Collection[str] = (),
                 poll_seconds: float = 30.0, timeout: float = 30.0,
                 last_buttons: LastButtons = lambda channel, address: ()) -> None:
        server = mail_server(url, "imap", 143, 993)
        if server is None or server.user is None:
            raise SwitchboardError(f"SWITCHBOARD_EMAIL_IMAP_URL={_redacted(url)!r}: use "
                                   "imaps://user:password@host:993/INBOX (or imap:// without TLS)")
        self._ssl, self._host, self._port = server.tls, server.host, server.port
        self._user, self._password = server.user, server.password or ""
        self._folder = server.path or "INBOX"
        self._inbox = inbox
        self._state_path = state_path
        self._own = own_addresses
        self._poll = poll_seconds
        self._timeout = timeout
        self._last_buttons = last_buttons
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="switchboard-imap", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=self._timeout + 5)

    def _run(self) -> None:
        delay = self._poll
        while not self._stopping.is_set():
            try:
                self.read_new()
                delay = self._poll
            except Exception as exc:  # the mail server is down or refuses us: try again, less often
                log.warning("reading mail from %s:%d failed (%s: %s); trying again in %.0f s", self._host, self._port,
                            type(exc).__name__, exc, delay)
                delay = min(delay * 2, 300.0)
            self._stopping.wait(delay)

    def read_new(self) -> int:
        """Store every message that arrived since the last read; how many were read."""
        with IMAPClient(self._host, port=self._port, ssl=self._ssl, timeout=self._timeout) as imap:
            imap.login(self._user, self._password)
            status = imap.select_folder(self._folder)
            validity = int(status[b"UIDVALIDITY"])
            state = self._state()
            if state.get("uidvalidity") == validity:
                uids = [uid for uid in imap.search(["UID", f"{int(state['last_uid']) + 1}:*"])
                        if uid > int(state["last_uid"])]
            else:
                if state:
                    log.warning("the mail folder %s was recreated (UIDVALIDITY changed); reading its unseen mail",
                                self._folder)
                uids = imap.search(["UNSEEN"])
                self._save(validity, (min(uids) if uids else int(status.get(b"UIDNEXT", 1))) - 1)
            for uid in sorted(uids):
                fetched = imap.fetch([uid], ["BODY.PEEK[]"]).get(uid, {})
                raw = fetched.get(b"BODY[]")
                if isinstance(raw, bytes):
                    self._accept(raw, uid)
                imap.add_flags([uid], [b"\\Seen"])
                self._save(validity, uid)  # only once the message is stored
            return len(uids)

    def _accept(self, raw: bytes, uid: int) -> None:
        try:
            message = read_mail(raw, self._own)
        except InvalidMessage as exc:
            log.warning("mail UID %d not read: %s", uid, exc)
            return
        if message is not None:
            self._inbox.accept(chosen_option(message, self._last_buttons))

    def _state(self) -> dict[str, int]:
        try:
            state = json.loads(self._state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def _save(self, validity: int, last_uid: int) -> None:
        self._state_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._state_path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"uidvalidity": validity, "last_uid": last_uid}), encoding="utf-8")
        os.replace(temporary, self._state_path)


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    return url.replace(f":{parts.password}@", ":***@") if parts.password else url


class MailSender:
    """Sends replies by SMTP, threaded under the customer's latest mail, with the reference in the subject."""

    def __init__(self, smtp: SmtpEmailSender, from_address: str,
                 latest_mail: Callable[[str, str], Mapping[str, Any] | None],
                 reference_of: Callable[[str], str]) -> None:
        self._smtp = smtp
        self._from = from_address
        self._latest_mail = latest_mail
        self._reference_of = reference_of

    def send(self, entry: OutboxEntry, text: str, buttons: tuple[Button, ...]) -> str:
        latest = self._latest_mail(CHANNEL, entry.external_id) or {}
        reference = self._reference_of(entry.conversation_id)
        subject = str(latest.get("subject") or "Your question")
        if not subject.lower().startswith("re:"):
            subject = f"Re: {subject}"
        message = EmailMessage()
        message["From"], message["To"] = self._from, entry.external_id
        message["Subject"] = f"{subject} [{reference}]"
        domain = parseaddr(self._from)[1].rpartition("@")[2] or None
        message["Message-ID"] = make_msgid(idstring=entry.reply_id, domain=domain)
        if latest.get("message_id"):
            message["In-Reply-To"] = str(latest["message_id"])
            message["References"] = " ".join([*latest.get("references", ()), str(latest["message_id"])][-20:])
        if entry.author == Author.BOT:
            message["Auto-Submitted"] = "auto-replied"  # RFC 3834: other robots do not answer it
        message.set_content(text)
        try:
            self._smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"the mail server refused {entry.external_id}: {exc.recipients}", permanent=True) \
                from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"the mail could not be sent: {type(exc).__name__}: {exc}", permanent=False) from exc
        return str(message["Message-ID"])


def mailgun_signature_valid(timestamp: str, token: str, signature: str, key: str, now: float | None = None) -> bool:
    """Mailgun's webhook signature: HMAC-SHA256 of timestamp and token with the signing key, and fresh."""
    if not key or not timestamp.isdigit() or abs((now or time.time()) - int(timestamp)) > MAILGUN_MAX_AGE:
        return False
    expected = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(signature.encode(), expected.encode())


def create_mail_blueprint(inbox: Inbox, signing_key: str, own_addresses: Collection[str],
                          last_buttons: LastButtons) -> Blueprint:
    """Mailgun's inbound route, set to forward the raw MIME (a route URL ending in `mime`)."""
    mail = Blueprint("mail", __name__)
    answer_errors_as_json(mail)

    @mail.post("/webhooks/email/mailgun/mime")
    def mailgun() -> Response:
        if not signing_key:
            abort(Response("inbound mail through Mailgun is not configured: set SWITCHBOARD_MAILGUN_SIGNING_KEY\n",
                           503, mimetype="text/plain"))
        form = request.form
        if not mailgun_signature_valid(form.get("timestamp", ""), form.get("token", ""), form.get("signature", ""),
                                       signing_key):
            log.warning("refused a Mailgun webhook with a missing, wrong or stale signature")
            abort(Response("invalid signature\n", 403, mimetype="text/plain"))
        raw = form.get("body-mime")
        if not raw:
            raise InvalidMessage("the request has no body-mime field (route the mail to a URL ending in /mime)")
        message = read_mail(raw.encode("utf-8", "surrogateescape"), own_addresses)
        if message is not None:
            inbox.accept(chosen_option(message, last_buttons))
        return jsonify({})

    return mail


def addresses(value: str) -> list[str]:
    """The addresses of a From-style value ("Support <help@shop.example>")."""
    return [address.lower() for _, address in getaddresses([value]) if "@" in address]
