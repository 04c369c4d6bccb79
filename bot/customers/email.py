"""Sending email: one-time codes (verifying a web chat customer's address), and the SMTP connection the email
channel's replies go through (connectors/mail.py).

`SWITCHBOARD_EMAIL_SENDER` picks the sender: `log` (the default, for development: the code is
written to the server log, so it is refused when the public URL is https), `off` (no email: the
web chat's email verification answers 403), or `smtp://user:password@host:port` (STARTTLS when the
server offers it; `smtps://` for TLS from the start).
"""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol
from urllib.parse import unquote, urlsplit

from bot.errors import NotAllowed, SwitchboardError, Unavailable

log = logging.getLogger(__name__)


class EmailSender(Protocol):
    def send(self, to: str, subject: str, body: str) -> None: ...


class LogEmailSender:
    """Writes the email to the log instead of sending it: for development and demos."""

    def send(self, to: str, subject: str, body: str) -> None:
        log.warning("email not sent (SWITCHBOARD_EMAIL_SENDER=log) to %s: %s\n%s", to, subject, body)


@dataclass(frozen=True)
class MailServer:
    """A mail server named by a URL, `scheme://user:password@host:port/path`: the scheme with an `s` is TLS
    from the start (smtps, imaps)."""

    tls: bool
    host: str
    port: int
    user: str | None
    password: str | None
    path: str


def mail_server(url: str, scheme: str, plain_port: int, tls_port: int) -> MailServer | None:
    """The server a `smtp://` / `imap://` URL (or its TLS scheme) names; None if it names none."""
    parts = urlsplit(url)
    if parts.scheme not in (scheme, f"{scheme}s") or not parts.hostname:
        return None
    tls = parts.scheme == f"{scheme}s"
    return MailServer(tls, parts.hostname, parts.port or (tls_port if tls else plain_port),
                      unquote(parts.username) if parts.username else None,
                      unquote(parts.password) if parts.password else None, unquote(parts.path.lstrip("/")))


class SmtpEmailSender:
    """Sends through an SMTP server."""

    def __init__(self, url: str, from_address: str, timeout: float = 10.0) -> None:
        server = mail_server(url, "smtp", 587, 465)
        if server is None:
            raise SwitchboardError(f"SWITCHBOARD_EMAIL_SENDER={url!r}: use log, smtp://host:port or smtps://host:port")
        self._tls, self._host, self._port = server.tls, server.host, server.port
        self._user, self._password = server.user, server.password
        self._from = from_address
        self._timeout = timeout

    def send(self, to: str, subject: str, body: str) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self._from, to, subject
        message.set_content(body)
        try:
            self.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            log.error("email to %s not sent: %s", to, exc)
            raise Unavailable("the email could not be sent right now; try again in a minute") from exc

    def send_message(self, message: EmailMessage) -> None:
        """Send a message as it is; smtplib's errors are the caller's to judge."""
        connect = smtplib.SMTP_SSL if self._tls else smtplib.SMTP
        with connect(self._host, self._port, timeout=self._timeout) as server:
            if not self._tls:
                server.ehlo()
                if server.has_extn("starttls"):
                    server.starttls()
                    server.ehlo()
            if self._user:
                server.login(self._user, self._password or "")
            server.send_message(message)


class NoEmailSender:
    """Sends nothing: email verification is off."""

    def send(self, to: str, subject: str, body: str) -> None:
        raise NotAllowed("this service sends no email, so email verification is off")


def email_sender(setting: str, from_address: str) -> EmailSender:
    """The sender a `SWITCHBOARD_EMAIL_SENDER` value names."""
    if setting == "off":
        return NoEmailSender()
    if setting in ("", "log"):
        log.warning("verification codes are written to the log (SWITCHBOARD_EMAIL_SENDER=log): for development "
                    "only; set smtp://user:password@host:port to send them")
        return LogEmailSender()
    return SmtpEmailSender(setting, from_address)
