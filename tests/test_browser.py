"""End to end in a real headless Chromium: a customer asks for a person in the web chat, an agent
sees the ticket appear live, claims it, replies, closes it, and the customer rates the help."""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from bot.messages import ConversationStatus
from switchboard.app import services_of

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed; `make test` installs Debian's chromium where apt is available "
           "(or: apt-get install chromium chromium-driver)")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency: make install")

PASSWORD = "correct horse battery staple"


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright; closed after the test."""
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-background-networking"])
        try:
            yield launched
        finally:
            launched.close()


def serve(app: Flask) -> Iterator[str]:
    """The app on a real loopback HTTP server, threaded for its event streams."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.port}"
    server.shutdown()


@pytest.fixture
def live(app: Flask) -> Iterator[str]:
    yield from serve(app)


@pytest.fixture
def live_kb(kb_app: Flask) -> Iterator[str]:
    """The app with its own copy of the KB (editing is safe) on a real loopback HTTP server."""
    yield from serve(kb_app)


def signed_in(app: Flask, live: str, browser: Any, email: str, name: str, role: str) -> Any:
    """A console page of a new account of that role, signed in."""
    services_of(app).agents.add(email, name, role, PASSWORD)
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(f"{live}/console/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Sign in')")
    return page


def test_a_handoff_from_the_web_chat_to_an_agent_and_back(app: Flask, live: str, tmp_path: Path,
                                                          browser: Any) -> None:
    expect = sync_api.expect
    agent = signed_in(app, live, browser, "ann@example.com", "Ann", "agent")
    expect(agent).to_have_title(re.compile(r"^Queue - Switchboard$"))
    customer = browser.new_context().new_page()
    customer.goto(f"{live}/")
    # The chat opens with a welcome and quick replies; one is tapped, and the answer is timed.
    expect(customer.locator("#sb-log")).to_contain_text("Ask me anything, or pick a topic")
    customer.click(".sb-buttons button:has-text('Shipping costs')")
    expect(customer.locator("#sb-log")).to_contain_text("Standard delivery costs EUR 4.95")
    expect(customer.locator(".sb-msg.customer")).to_have_text(re.compile("^Shipping costs"))
    expect(customer.locator(".sb-msg.bot .sb-time").last).to_have_text(re.compile(r"\d"))
    customer.fill("#sb-text", "I want to talk to a person")
    customer.press("#sb-text", "Enter")
    expect(customer.locator("#sb-log")).to_contain_text("Your reference is SB-")
    # The open queue page updates by itself: title count and the new row.
    expect(agent).to_have_title(re.compile(r"^\(1\) Queue"), timeout=10_000)
    agent.click("table.queue a")
    agent.click("button:has-text('Claim')")
    # The claimed ticket's page, not the one the claim was posted from (which shows suggestions too).
    expect(agent.locator("button:has-text('Return to bot')")).to_be_visible()
    # A suggestion from the knowledge base for the customer's question goes into the reply box.
    expect(agent.locator(".suggestions")).to_contain_text("Shipping costs")
    agent.locator(".suggestions button:has-text('Insert')").first.click()
    expect(agent.locator("#reply-text")).to_have_value(re.compile("Standard delivery costs EUR 4.95"))
    # The customer writes again: the open ticket shows it without a reload, and the draft stays.
    customer.fill("#sb-text", "Do you deliver on Saturdays?")
    customer.press("#sb-text", "Enter")
    expect(agent.locator("#ticket-live")).to_contain_text("Do you deliver on Saturdays?", timeout=10_000)
    expect(agent.locator("#reply-text")).to_have_value(re.compile("Standard delivery costs EUR 4.95"))
    agent.locator(".canned button:has-text('Greeting')").click()
    expect(agent.locator("#reply-text")).to_have_value(re.compile("Hi, this is Ann"))
    agent.fill("#reply-text", "Hi, this is Ann from the Puffin team. How can I help?")
    agent.click("button:has-text('Send reply')")
    expect(customer.locator("#sb-log")).to_contain_text("Hi, this is Ann from the Puffin team.")
    expect(customer.locator(".sb-msg.agent .sb-who")).to_have_text("Ann · Puffin Outdoor")
    # The ticket keeps the sides of the web chat: the customer on the right, the bot and agents on the left.
    customer_box = agent.locator("#ticket-live li.msg.customer").first.bounding_box()
    bot_box = agent.locator("#ticket-live li.msg.bot").first.bounding_box()
    assert customer_box is not None and bot_box is not None and customer_box["x"] > bot_box["x"]
    agent.screenshot(path=str(screenshot_path(tmp_path)), full_page=True)
    agent.click("button:has-text('Close')")
    expect(agent.locator("dd.status-closed")).to_be_visible()
    assert agent.evaluate("window.scrollY") == 0  # the page opens at its top, not mid-transcript
    expect(customer.locator("#sb-log")).to_contain_text("How happy are you with the help you got")
    customer.click(".sb-buttons button:has-text('4')")
    # Thanked, and the rating buttons are spent: still shown, the chosen one marked, none tappable.
    expect(customer.locator("#sb-log")).to_contain_text("Thank you for your rating!")
    expect(customer.locator(".sb-buttons button.sb-chosen").last).to_have_text("4")
    expect(customer.locator(".sb-buttons button:not([disabled])")).to_have_count(0)
    store = services_of(app).store
    deadline = time.monotonic() + 10
    while not [c for c in store.list_conversations([ConversationStatus.CLOSED]) if c.csat == 4]:
        assert time.monotonic() < deadline, "the rating did not arrive"
        time.sleep(0.05)
    # The closed list keeps who handled it, why it was handed off and the rating.
    agent.goto(f"{live}/console/?view=closed")
    row = agent.locator("table.queue tbody tr").first
    expect(row).to_contain_text("Ann")
    expect(row).to_contain_text("customer request")
    expect(row).to_contain_text("4/5")
    agent.screenshot(path=str(screenshot_path(tmp_path, "journey-agent-closed.png")), full_page=True)


def screenshot_path(tmp_path: Path, name: str = "console-ticket.png") -> Path:
    """docs/ when SWITCHBOARD_DOCS_SCREENSHOTS is set (to refresh the picture in the docs), else tmp."""
    if os.environ.get("SWITCHBOARD_DOCS_SCREENSHOTS"):
        return Path(__file__).resolve().parent.parent / "docs" / name
    return tmp_path / name


def test_a_web_chat_customer_verifies_their_email_and_is_linked(
        app: Flask, live: str, caplog: pytest.LogCaptureFixture, browser: Any) -> None:
    expect = sync_api.expect
    store = services_of(app).store
    known, _ = store.import_customer({"email": "ana@example.com", "phone": "+4915100000001", "name": "Ana"})
    caplog.set_level(logging.WARNING, logger="bot.customers.email")
    page = browser.new_context().new_page()
    page.goto(f"{live}/")
    page.fill("#sb-text", "hello")
    page.press("#sb-text", "Enter")
    expect(page.locator("#sb-log")).to_contain_text("hello")
    page.click(".sb-email summary")
    page.fill("#sb-email-address", "ana@example.com")
    page.click("#sb-email-form button")
    expect(page.locator("#sb-email-status")).to_contain_text("We sent you a code")
    page.fill("#sb-email-code", "000000")
    page.click("#sb-code-form button")
    expect(page.locator("#sb-email-status")).to_contain_text("that code is not right")
    (code,) = re.findall(r"Your code is (\d{6})", caplog.text)
    page.fill("#sb-email-code", code)
    page.click("#sb-code-form button")
    expect(page.locator("#sb-email-status")).to_contain_text("Your earlier conversations are connected")
    assert [channel for channel, _ in store.get_customer(store.current_customer(known)).identities] == ["web"]
    assert store.get_customer(store.current_customer(known)).email == "ana@example.com"


def test_did_you_mean_and_did_this_help_in_the_widget(app: Flask, live: str, tmp_path: Path,
                                                      browser: Any) -> None:
    expect = sync_api.expect
    customer = browser.new_context(viewport={"width": 480, "height": 800}).new_page()
    customer.goto(f"{live}/")
    customer.fill("#sb-text", "how do i return something")
    customer.press("#sb-text", "Enter")
    log = customer.locator("#sb-log")
    expect(log).to_contain_text("which of these you mean")
    customer.click("button:has-text('How to send a return')")
    expect(log).to_contain_text("Did this help?")
    # The tap shows as the article's title, never as its payload.
    expect(log.locator("li.customer").last).to_have_text(re.compile("^How to send a return"))
    expect(log).not_to_contain_text("/kb_article")
    customer.locator("button:has-text('Yes')").last.click()
    expect(log).to_contain_text("Glad it helped!")
    customer.screenshot(path=str(tmp_path / "widget-choices.png"), full_page=True)


def test_the_customer_journey_welcome_order_status_and_a_rating(app: Flask, live: str, tmp_path: Path,
                                                                 browser: Any) -> None:
    expect = sync_api.expect
    customer = browser.new_context(viewport={"width": 480, "height": 900}, locale="en-GB").new_page()
    customer.goto(f"{live}/")
    log = customer.locator("#sb-log")
    customer.click(".sb-buttons button:has-text('Where is my order?')")
    expect(log).to_contain_text("What's your order number?")
    customer.fill("#sb-text", "PO-2610421")
    customer.press("#sb-text", "Enter")
    expect(log).to_contain_text("Order PO-2610421 was delivered on 2 November 2026.")
    customer.fill("#sb-text", "my name is anna schmidt")
    customer.press("#sb-text", "Enter")
    expect(log).to_contain_text("Nice to meet you, Anna!")
    # The welcome's quick replies are spent once the customer wrote: still shown, no longer tappable.
    expect(customer.locator(".sb-buttons button:has-text('Returns')")).to_be_disabled()
    customer.screenshot(path=str(screenshot_path(tmp_path, "journey-customer.png")), full_page=True)
    store = services_of(app).store
    (conversation,) = store.list_conversations([ConversationStatus.BOT])
    assert store.get_customer(conversation.customer_id).display_name == "Anna Schmidt"


def test_the_editor_journey_edit_test_the_draft_publish_compare_and_roll_back(
        kb_app: Flask, live_kb: str, tmp_path: Path, browser: Any) -> None:
    expect = sync_api.expect
    page = signed_in(kb_app, live_kb, browser, "eve@example.com", "Eve", "editor")
    page.goto(f"{live_kb}/console/kb/articles/shipping-costs")
    body = page.locator("textarea[name=body]")
    body.fill(body.input_value().replace("EUR 4.95", "EUR 5.95"))
    page.click("button[value=save]")
    expect(page.get_by_text("Saved. Publish to make it live.")).to_be_visible()
    # Tried before publishing: the draft answers with the edit, the live bot still without it.
    page.goto(f"{live_kb}/console/kb/test")
    page.fill("input[name=q]", "how much is shipping")
    page.check("input[value=draft]")
    page.click("button:has-text('Ask')")
    expect(page.locator("table.answers")).to_contain_text("EUR 5.95")
    page.check("input[value=live]")
    page.click("button:has-text('Ask')")
    expect(page.locator("table.answers")).to_contain_text("EUR 4.95")
    page.screenshot(path=str(screenshot_path(tmp_path, "journey-editor-test.png")), full_page=True)
    page.goto(f"{live_kb}/console/kb/")
    page.click("button:has-text('Publish')")
    expect(page.get_by_text("the bot answers from it now")).to_be_visible()
    page.goto(f"{live_kb}/console/kb/versions")
    page.locator("a:has-text('What changed')").first.click()
    expect(page.locator("pre.diff .added")).to_contain_text(["+Standard delivery costs EUR 5.95"])
    page.screenshot(path=str(screenshot_path(tmp_path, "journey-editor-diff.png")), full_page=True)
    # Rolling back asks first; dismissed, nothing happens.
    page.goto(f"{live_kb}/console/kb/versions")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.locator("button:has-text('Make live, with its articles')").first.click()
    expect(page.locator("p.flash")).to_have_count(0)
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("button:has-text('Make live, with its articles')").first.click()
    expect(page.get_by_text("its articles are back in the editor")).to_be_visible()
    page.goto(f"{live_kb}/console/kb/articles/shipping-costs")
    assert "EUR 4.95" in page.locator("textarea[name=body]").input_value()


def test_a_chinese_customer_gets_the_chat_in_chinese(app: Flask, live: str, tmp_path: Path, browser: Any) -> None:
    expect = sync_api.expect
    customer = browser.new_context(viewport={"width": 480, "height": 860}, locale="zh-CN").new_page()
    customer.goto(f"{live}/")
    expect(customer.locator(".sb-header")).to_have_text("在线咨询")
    expect(customer.locator("#sb-text")).to_have_attribute("placeholder", "请输入您的问题")
    expect(customer.locator("#sb-log")).to_contain_text("我是 Puffin Outdoor 智能助手")
    customer.click(".sb-buttons button:has-text('运费')")
    expect(customer.locator("#sb-log")).to_contain_text("标准配送运费为 4.95 欧元")
    customer.fill("#sb-text", "退货要多久才能退款")
    customer.press("#sb-text", "Enter")
    expect(customer.locator(".sb-msg.bot:not(.sb-typing)")).to_have_count(3, timeout=15_000)
    customer.screenshot(path=str(screenshot_path(tmp_path, "multilingual-chat.png")), full_page=True)


@pytest.fixture
def week_app(store_url: str, make_app: Any) -> Flask:
    """The app over a store holding tests/report_week.py's week, written with a clock of the test's."""
    from bot.stores import open_store
    from tests.report_week import MONDAY, Clock, set_store_clock, write_week

    clock = Clock(MONDAY)
    with pytest.MonkeyPatch.context() as patch:
        set_store_clock(patch, clock)
        store = open_store(store_url)  # the store the app's settings name
        write_week(store, clock)
        store.dispose()
    app: Flask = make_app(report_timezone="UTC")
    return app


@pytest.fixture
def live_week(week_app: Flask) -> Iterator[str]:
    yield from serve(week_app)


def test_a_manager_reads_the_week_and_opens_the_conversations_behind_a_number(
        week_app: Flask, live_week: str, tmp_path: Path, browser: Any) -> None:
    expect = sync_api.expect
    refused: list[str] = []
    page = signed_in(week_app, live_week, browser, "mia@example.com", "Mia", "manager")
    page.on("console", lambda message: refused.append(message.text)
            if "Content Security Policy" in message.text else None)
    page.click("a:has-text('Reports')")
    page.fill("input[name=from]", "2026-11-02")
    page.fill("input[name=to]", "2026-11-08")
    page.click("button:has-text('Show')")
    expect(page.locator(".tile", has_text="bot containment")).to_contain_text("50%")
    expect(page.locator("svg.chart rect.handed")).to_have_count(2)  # Monday's and Saturday's handoffs
    assert page.locator("svg.chart").first.bounding_box()["height"] > 100  # drawn, at a readable size
    page.screenshot(path=str(screenshot_path(tmp_path, "reports.png")), full_page=True)

    page.click("table >> tr:has-text('keyword') >> a")
    expect(page.locator("h1")).to_have_text("Handoffs: keyword")
    page.click("a:has-text('SB-')")
    expect(page).to_have_title(re.compile(r"^SB-\w+ - Switchboard$"))
    expect(page.locator("body")).to_contain_text("What went wrong?")  # the agent's reply in the transcript
    assert refused == []
