"""/metrics: Prometheus's text format behind a bearer token, counted as things happen and added up across
processes."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import requests
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from bot.analytics.reports import build_report
from bot.delivery.worker import DeliveryWorker, RetryPolicy
from bot.errors import SwitchboardError
from bot.notifier import Notifier
from bot.stores.conversations import ConversationStore
from connectors.twilio import TwilioSender, twilio_client
from switchboard.app import services_of
from switchboard.metrics import MetricsServer, PrometheusMeter
from switchboard.reports import report_options
from switchboard.settings import Settings
from switchboard.worker import run_worker
from tests.conftest import OPEN_HOURS, ROOT, Editor, WebChat
from tests.dialogue import Clock
from tests.servers import free_port, running_deployment
from tests.test_delivery import queue_replies
from tests.twilio_stub import ACCOUNT_SID, AUTH_TOKEN, Failure, TwilioStub

TOKEN = "scrape-me-0123456789"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition by name and labels (parsed by prometheus-client's own parser)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(app: Flask) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return samples(response.get_data(as_text=True))


def test_metrics_are_off_without_a_token(app: Flask) -> None:
    assert app.test_client().get("/metrics").status_code == 404


def test_metrics_need_the_token(make_app: Callable[..., Flask]) -> None:
    client = make_app(metrics_token=TOKEN).test_client()
    for authorization in (None, "Bearer wrong", TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN}x"):
        response = client.get("/metrics", headers={"Authorization": authorization} if authorization else {})
        assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer", authorization
        assert "switchboard_" not in response.get_data(as_text=True)


def test_a_conversation_is_counted(make_app: Callable[..., Flask]) -> None:
    app = make_app(metrics_token=TOKEN)
    before = scrape(app)
    assert before[("switchboard_queue_conversations", ())] == 0
    assert before[("switchboard_queue_oldest_wait_seconds", ())] == 0
    customer = WebChat(app, app.test_client())
    customer.say("how long do i have to return something")
    customer.say("I want to talk to a person")
    customer.send("I want to talk to a person", client_message_id="m2")  # a repeat: stored once, counted once
    found = scrape(app)
    assert found[("switchboard_messages_received_total", (("channel", "web"),))] == 2
    assert found[("switchboard_reply_seconds_count", (("channel", "web"),))] == 2
    assert found[("switchboard_bot_replies_total", (("channel", "web"),))] >= 2
    assert found[("switchboard_kb_decisions_total", (("decision", "answer"), ("encoder", "english")))] == 1
    assert found[("switchboard_handoffs_total", (("reason", "customer_request"),))] == 1
    assert found[("switchboard_queue_conversations", ())] == 1
    assert found[("switchboard_queue_oldest_wait_seconds", ())] > 0

    # The reports count the same conversation the same: `switchboard report`'s figures and the console's export.
    services = services_of(app)
    report = build_report(services.store, report_options(services.settings, None))
    assert report.by_channel["web"]["messages"] == found[("switchboard_messages_received_total", (("channel", "web"),))]
    assert report.handoff_reasons == {"customer_request": found[("switchboard_handoffs_total",
                                                                 (("reason", "customer_request"),))]}
    assert report.kb_answered == found[("switchboard_kb_decisions_total", (("decision", "answer"),
                                                                          ("encoder", "english")))]
    exported = Editor(app, "manager").client.get("/console/reports/export.csv").get_data(as_text=True)
    assert "messages_by_channel,web,2\r\n" in exported and "handoffs_by_reason,customer_request,1\r\n" in exported


@pytest.fixture
def stub() -> Iterator[TwilioStub]:
    server = TwilioStub()
    yield server
    server.close()


def test_deliveries_are_counted_by_result(tmp_path: Path, stub: TwilioStub) -> None:
    store = ConversationStore(tmp_path / "switchboard.db")
    meter = PrometheusMeter()
    clock = Clock(OPEN_HOURS)
    sender = TwilioSender(twilio_client(ACCOUNT_SID, AUTH_TOKEN, stub.url), "sms", "+15005550006", None)
    worker = DeliveryWorker(store, {"sms": sender}, Notifier(), RetryPolicy(max_attempts=2), clock=clock,
                            rng=random.Random(1), meter=meter)
    queue_replies(store, "Your parcel ships today.")
    queue_replies(store, "Hello!", customer="+4915199999999")
    stub.failures = [Failure(500, 20500, "boom")] * 3
    worker.run_once()                      # both fail once: retried
    clock.now += timedelta(minutes=5)
    worker.run_once()                      # the first gives up, the second goes out
    store.close()
    counts = {labels: value for (name, labels), value in samples(_text(meter)).items()
              if name == "switchboard_deliveries_total"}
    assert counts == {(("channel", "sms"), ("result", "retry")): 2.0, (("channel", "sms"), ("result", "failed")): 1.0,
                      (("channel", "sms"), ("result", "sent")): 1.0}


def _text(meter: PrometheusMeter) -> str:
    from prometheus_client import generate_latest

    return generate_latest(meter.registry).decode()


COUNT_IN_A_PROCESS = """
import sys
from switchboard.metrics import PrometheusMeter
meter = PrometheusMeter()
for _ in range(int(sys.argv[1])):
    meter.message_received("sms")
"""

SCRAPE = """
from switchboard.metrics import PrometheusMeter, exposition
from switchboard.settings import metrics_multiprocess_dir
class NoQueue:
    def queue_length(self): return 0
    def queue_waiting_since(self): return None
print(exposition(PrometheusMeter(), NoQueue(), metrics_multiprocess_dir()).decode())
"""


def test_several_processes_are_added_up(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    for count in (3, 4):
        subprocess.run([sys.executable, "-c", COUNT_IN_A_PROCESS, str(count)], env=env, check=True, timeout=120)
    scraped = subprocess.run([sys.executable, "-c", SCRAPE], env=env, check=True, timeout=120, capture_output=True,
                             text=True).stdout
    assert samples(scraped)[("switchboard_messages_received_total", (("channel", "sms"),))] == 7


def test_a_deployment_is_counted_whichever_process_is_scraped(tmp_path: Path, index_dir: Path,
                                                               postgres_database: str) -> None:
    # `switchboard web` of two processes counts the messages it stores; a scrape reaches one process at random
    # and must report both. The worker counts its turns and serves them on a port of its own.
    schema = f"metrics_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_database, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    worker_port = free_port()
    with running_deployment(tmp_path, index_dir, f"{postgres_database}?options=-csearch_path%3D{schema}", workers=1,
                            worker_args=("--metrics-port", str(worker_port)),
                            SWITCHBOARD_METRICS_TOKEN=TOKEN) as deployment:
        for n in range(8):
            answer = requests.post(f"{deployment.base}/webhooks/rest/webhook", timeout=60,
                                   json={"sender": f"scraped-{n}", "message": "how long do i have to return something"})
            assert answer.status_code == 200 and answer.json(), answer.text
        web = [_scrape_http(f"{deployment.base}/metrics") for _ in range(12)]
        assert [found[("switchboard_messages_received_total", (("channel", "rest"),))] for found in web] == [8] * 12
        worker = _scrape_http(f"http://127.0.0.1:{worker_port}/metrics")
        assert worker[("switchboard_reply_seconds_count", (("channel", "rest"),))] == 8
        assert worker[("switchboard_kb_decisions_total", (("decision", "answer"), ("encoder", "english")))] == 8
        assert worker[("switchboard_queue_conversations", ())] == 0
        unauthorised = requests.get(f"http://127.0.0.1:{worker_port}/metrics", timeout=10)
        assert unauthorised.status_code == 401 and "switchboard_" not in unauthorised.text


def _scrape_http(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    # A fresh connection each time, as a scraper's would be, so that either process may take it.
    response = requests.get(url, headers={"Authorization": f"Bearer {TOKEN}", "Connection": "close"}, timeout=10)
    assert response.status_code == 200, response.text
    return samples(response.text)


def test_a_worker_serves_metrics_only_behind_a_token() -> None:
    with pytest.raises(SwitchboardError, match="SWITCHBOARD_METRICS_TOKEN"):  # said before any model loads
        run_worker(Settings(metrics_token=""), threading.Event(), metrics=("127.0.0.1", free_port()))


def test_a_taken_metrics_port_is_named(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path / "switchboard.db")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SwitchboardError, match=f"127.0.0.1:{port}.*another --metrics-port"):
            MetricsServer("127.0.0.1", port, TOKEN, PrometheusMeter(), store)
    store.close()
