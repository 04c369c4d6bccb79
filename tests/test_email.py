"""Email as a channel, against real mail servers: Dovecot (IMAP) holds the support mailbox, aiosmtpd (SMTP)
takes the replies. A thread goes bot, handoff, agent reply, customer; auto-replies and bounces are never
answered; the reader keeps its place across restarts."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from bot.messages import ConversationStatus
from connectors.mail import ImapReader, read_mail
from switchboard.app import services_of
from tests.conftest import settle
from tests.mail_servers import MAILBOX, Dovecot, SmtpServer, dovecot, smtp_server
from tests.servers import wait_for
from tests.test_console import AgentBrowser

CUSTOMER = "anna.schmidt@example.org"
SUPPORT = f"Puffin Outdoor <{MAILBOX}>"


@pytest.fixture
def imap() -> Iterator[Dovecot]:
    with dovecot() as server:
        yield server


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def app(make_app: Callable[..., Flask], imap: Dovecot, smtp: SmtpServer) -> Flask:
    return make_app(email_imap_url=imap.url, email_poll_seconds=0.2, email_sender=smtp.url, email_from=SUPPORT)


def mail(text: str, subject: str = "Question", sender: str = f"Anna Schmidt <{CUSTOMER}>", html: str | None = None,
         **headers: str) -> tuple[bytes, str]:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, MAILBOX, subject
    message_id = make_msgid(domain="example.org")
    message["Message-ID"] = message_id
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message.as_bytes(), message_id


def test_a_mail_thread_goes_bot_handoff_agent_reply_and_stays_one_thread(app: Flask, imap: Dovecot,
                                                                         smtp: SmtpServer) -> None:
    raw, first_id = mail("Hi, how much is shipping to Germany?\n\nThanks\nAnna", subject="Shipping costs")
    imap.deliver(raw)
    (answer,) = wait_for(lambda: smtp.received, timeout=30)
    assert answer["To"] == CUSTOMER and "4.95" in answer.get_content()
    store = services_of(app).store
    (conversation,) = store.list_conversations(list(ConversationStatus))
    # Threaded under the customer's mail, the reference in the subject, marked as an automatic reply.
    assert answer["Subject"] == f"Re: Shipping costs [{conversation.reference}]"
    assert answer["In-Reply-To"] == first_id and answer["References"] == first_id
    assert answer["Auto-Submitted"] == "auto-replied"
    assert store.get_customer(conversation.customer_id).display_name == "Anna Schmidt"

    reply, second_id = mail(f"I want to talk to a person please\n\nOn Tue, Anna wrote:\n> {answer.get_content()}",
                            subject=str(answer["Subject"]), In_Reply_To=str(answer["Message-ID"]),
                            References=f"{first_id} {answer['Message-ID']}")
    imap.deliver(reply)
    wait_for(lambda: len(smtp.received) == 2, timeout=30)
    (queued,) = wait_for(lambda: store.list_conversations([ConversationStatus.QUEUED]))
    assert queued.conversation_id == conversation.conversation_id  # one customer, one conversation
    texts = [e.text for e in store.transcript(conversation.conversation_id) if e.kind == "message_in"]
    assert texts[1] == "I want to talk to a person please"  # the quoted answer is cut off
    notice = smtp.received[1]
    assert notice["Subject"] == f"Re: Shipping costs [{conversation.reference}]"  # not "Re: Re:"
    assert notice["In-Reply-To"] == second_id

    agent = AgentBrowser(app, "ann@example.com")
    agent.act(queued, "claim")
    agent.act(queued, "reply", text="Hi Anna, shipping to Germany is 4.95 EUR, free from 50 EUR. Ann")
    wait_for(lambda: len(smtp.received) == 3, timeout=30)
    human = smtp.received[2]
    assert "free from 50 EUR" in human.get_content() and human["Auto-Submitted"] is None
    assert human["In-Reply-To"] == second_id and second_id in str(human["References"])
    page = agent.client.get(f"/console/conversations/{conversation.conversation_id}").get_data(as_text=True)
    assert "email" in page and '<span class="delivery sent"' in page


def test_auto_replies_bounces_and_lists_are_never_answered_so_a_loop_with_an_auto_responder_is_cut(
        app: Flask, imap: Dovecot, smtp: SmtpServer) -> None:
    raw, _ = mail("how much is shipping")
    imap.deliver(raw)
    (answer,) = wait_for(lambda: smtp.received, timeout=30)
    # The customer's auto-responder answers our answer; and answers again, and again, if we let it.
    for _ in range(3):
        auto, _ = mail("I am out of the office until Monday.", subject=f"Automatic reply: {answer['Subject']}",
                       Auto_Submitted="auto-replied", In_Reply_To=str(answer["Message-ID"]))
        imap.deliver(auto)
    bounce = (b"From: Mail Delivery System <MAILER-DAEMON@example.org>\r\nTo: " + MAILBOX.encode()
              + b"\r\nSubject: Undelivered Mail\r\nMessage-ID: <bounce-1@example.org>\r\nMIME-Version: 1.0\r\n"
              b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\n"
              b"Content-Type: text/plain\r\n\r\nDelivery failed.\r\n--b--\r\n")
    imap.deliver(bounce)
    newsletter, _ = mail("Our autumn sale!", sender="news@brand.example", Precedence="bulk")
    imap.deliver(newsletter)
    ourselves, _ = mail("a copy of our own mail", sender=SUPPORT)
    imap.deliver(ourselves)
    wait_for(lambda: len(imap.seen()) == 7, timeout=30)  # all of them read...
    settle(app)
    time.sleep(1.0)
    assert len(smtp.received) == 1  # ...and none answered
    store = services_of(app).store
    (conversation,) = store.list_conversations(list(ConversationStatus))
    assert [e.text for e in store.transcript(conversation.conversation_id) if e.kind == "message_in"] \
        == ["how much is shipping"]


def test_html_mail_signatures_and_attachments(app: Flask, imap: Dovecot, smtp: SmtpServer) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = CUSTOMER, MAILBOX, "Broken zip"
    message["Message-ID"] = make_msgid()
    message.set_content("The zip of my jacket broke.\n\n--\nAnna Schmidt\nSent from my phone")
    message.add_alternative("<p>The <b>zip</b> of my jacket broke.</p><p>--<br>Anna Schmidt</p>", subtype="html")
    message.add_attachment(b"\x89PNG fake image bytes", maintype="image", subtype="png", filename="zip.png")
    imap.deliver(message.as_bytes())
    wait_for(lambda: smtp.received, timeout=30)
    store = services_of(app).store
    (conversation,) = store.list_conversations(list(ConversationStatus))
    (event,) = [e for e in store.transcript(conversation.conversation_id) if e.kind == "message_in"]
    assert event.text == "The zip of my jacket broke."
    assert event.data["attachments"] == ["image/png zip.png (21 bytes)"]
    html_only = read_mail(b"From: a@example.org\r\nMessage-ID: <h@example.org>\r\nContent-Type: text/html\r\n\r\n"
                          b"<html><body><h1>Hello</h1><p>Where is <i>my order</i>?</p></body></html>")
    assert html_only is not None and "Where is _my order_?" in html_only.text and "<p>" not in html_only.text


def test_the_reader_keeps_its_place_across_restarts_and_reads_each_mail_once(tmp_path: Path, imap: Dovecot) -> None:
    accepted: list[str] = []

    class Recorder:
        def accept(self, message: Any) -> Any:
            accepted.append(message.text)

    old, _ = mail("read before Switchboard started")
    imap.deliver(old)
    with_seen_flag = imap.seen()
    state = tmp_path / "imap_state.json"
    reader = ImapReader(imap.url, Recorder(), state)  # type: ignore[arg-type]
    assert reader.read_new() == 1 and accepted == ["read before Switchboard started"]  # unseen mail at first
    for text in ("one", "two"):
        imap.deliver(mail(text)[0])
    restarted = ImapReader(imap.url, Recorder(), state)  # type: ignore[arg-type]
    assert restarted.read_new() == 2 and accepted[1:] == ["one", "two"]
    assert restarted.read_new() == 0 and len(accepted) == 3  # nothing twice
    assert with_seen_flag == [] and len(imap.seen()) == 3  # read mail is marked seen


def test_a_verified_web_chat_address_and_mail_from_it_are_one_customer(app: Flask, imap: Dovecot,
                                                                       smtp: SmtpServer) -> None:
    store = services_of(app).store
    code = store.request_email_code("web", "visitor-1", CUSTOMER)
    assert store.verify_email_code("web", "visitor-1", code) == "verified"
    imap.deliver(mail("how much is shipping")[0])
    wait_for(lambda: smtp.received, timeout=30)
    (conversation,) = store.list_conversations(list(ConversationStatus))
    identities = set(store.get_customer(conversation.customer_id).identities)
    assert {("web", "visitor-1"), ("email", CUSTOMER)} <= identities


def test_a_refused_recipient_is_not_retried_and_the_reason_is_kept(app: Flask, imap: Dovecot,
                                                                   smtp: SmtpServer) -> None:
    smtp.refused.add(CUSTOMER)
    imap.deliver(mail("how much is shipping")[0])
    store = services_of(app).store
    (conversation,) = wait_for(lambda: store.list_conversations(list(ConversationStatus)), timeout=30)
    (entry,) = wait_for(lambda: [e for e in store.outbox_of(conversation.conversation_id) if e.status == "failed"],
                        timeout=30)
    assert "refused" in (entry.error or "") and smtp.received == []


def mailgun_form(raw: bytes, key: str = "mailgun-key", age: float = 0) -> dict[str, str]:
    timestamp, token = str(int(time.time() - age)), "a" * 50
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {"timestamp": timestamp, "token": token, "signature": signature, "body-mime": raw.decode()}


def test_mail_through_a_signed_mailgun_route(make_app: Callable[..., Flask], smtp: SmtpServer) -> None:
    app = make_app(mailgun_signing_key="mailgun-key", email_sender=smtp.url, email_from=SUPPORT)
    client = app.test_client()
    raw, _ = mail("how much is shipping")
    for forged in (mailgun_form(raw, key="guess"), mailgun_form(raw, age=3600), {"body-mime": raw.decode()}):
        assert client.post("/webhooks/email/mailgun/mime", data=forged).status_code == 403
    settle(app)
    assert services_of(app).store.list_conversations(list(ConversationStatus)) == []
    assert client.post("/webhooks/email/mailgun/mime", data={**mailgun_form(raw), "body-mime": ""}).status_code == 400
    for _ in range(2):  # Mailgun retries: stored once by Message-ID
        assert client.post("/webhooks/email/mailgun/mime", data=mailgun_form(raw)).status_code == 200
    (answer,) = wait_for(lambda: smtp.received, timeout=30)
    assert answer["To"] == CUSTOMER
    time.sleep(0.5)
    assert len(smtp.received) == 1


def test_an_unconfigured_mailgun_route_says_what_to_set(make_app: Callable[..., Flask]) -> None:
    answer = make_app().test_client().post("/webhooks/email/mailgun/mime", data={"body-mime": "x"})
    assert answer.status_code == 503 and "SWITCHBOARD_MAILGUN_SIGNING_KEY" in answer.get_data(as_text=True)



def test_choices_come_numbered_and_a_reply_with_the_number_chooses(app: Flask, imap: Dovecot,
                                                                    smtp: SmtpServer) -> None:
    imap.deliver(mail("how do i return something", subject="Returns")[0])
    (offer,) = wait_for(lambda: smtp.received, timeout=30)
    text = offer.get_content()
    assert "Reply with a number." in text
    number = next(line.split(")", 1)[0] for line in text.splitlines() if line.endswith(") How to send a return"))
    # The customer answers with the number above the quoted offer, as mail clients write replies.
    quoted = "\n".join(f"> {line}" for line in text.splitlines())
    imap.deliver(mail(f"{number}\n\nOn Wed, Puffin Outdoor wrote:\n{quoted}", subject=str(offer["Subject"]),
                      In_Reply_To=str(offer["Message-ID"]))[0])
    (answer,) = wait_for(lambda: smtp.received[1:], timeout=30)
    # From the article chosen (which of its two sections leads is a near tie: 0.7470 against 0.7469).
    assert 'More in "How to send a return"' in answer.get_content()
    store = services_of(app).store
    (conversation,) = store.list_conversations(list(ConversationStatus))
    (chosen,) = [e for e in store.transcript(conversation.conversation_id)
                 if e.kind == "kb_answer" and e.data.get("decision") == "chosen"]
    assert chosen.data["chosen"] == "returns-how" and chosen.data["question"] == "how do i return something"
