"""`switchboard customers` and `switchboard retention`: profiles and privacy from the command line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bot.messages import InboundMessage, Profile, utcnow
from bot.stores import open_store
from bot.stores.conversations import ConversationStore
from switchboard.cli import main
from tests.conftest import both_databases  # noqa: F401 (runs each test on both databases)


@pytest.fixture
def store(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConversationStore]:
    monkeypatch.setenv("SWITCHBOARD_STORE_URL", store_url)
    monkeypatch.setenv("SWITCHBOARD_PRIVACY_PATH", str(tmp_path / "privacy.yml"))
    opened = open_store(store_url)
    yield opened
    opened.dispose()


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin)


def test_import_csv_and_json_creates_and_updates_profiles(store: ConversationStore, tmp_path: Path) -> None:
    store.accept(InboundMessage("sms", "+4915112345678", "m1", "hi", profile=Profile("Lena")))
    csv_file = tmp_path / "crm.csv"
    csv_file.write_text("email,phone,name,plan,orders\n"
                        "mo@example.com,,Mo Kaya,gold,3\n"
                        ",+49 151 12345678,,silver,\n"
                        "nobody,,,bronze,1\n"
                        ",,Nameless,,\n", encoding="utf-8")
    result = run("customers", "import", str(csv_file))
    assert result.exit_code == 1  # two rows were skipped, and said so
    assert "Imported 2 customers: 1 new, 1 updated; 2 skipped" in result.stdout
    assert "line 4: 'nobody' is not an email address" in result.stderr
    assert "line 5: needs an email or a phone number" in result.stderr
    (lena,) = store.find_customers("Lena")
    assert lena.attributes == {"plan": "silver"} and lena.phone == "+4915112345678"

    json_file = tmp_path / "crm.json"
    json_file.write_text(json.dumps([{"email": "MO@example.com", "language": "tr", "orders": 4}]))
    assert run("customers", "import", str(json_file)).exit_code == 0
    (mo,) = store.find_customers("mo@example.com")
    assert mo.display_name == "Mo Kaya" and mo.language == "tr" and mo.attributes == {"plan": "gold", "orders": 4}
    # A customer imported with a phone number is the one who writes from it later.
    run("customers", "import", str(json_file))
    json_file.write_text(json.dumps([{"phone": "+447700900123", "name": "Ola", "vip": True}]))
    run("customers", "import", str(json_file))
    accepted = store.accept(InboundMessage("whatsapp", "+447700900123", "m2", "hello"))
    assert store.get_customer(accepted.customer_id).attributes == {"vip": True}
    assert run("customers", "import", str(tmp_path / "crm.txt")).exit_code != 0


def test_list_find_export_and_erase(store: ConversationStore) -> None:
    accepted = store.accept(InboundMessage("web", "w-1", "m1", "my parcel to Tarragona is late",
                                           profile=Profile("Ximena")))
    listed = json.loads(run("customers", "list", "--json").stdout)
    assert [c["name"] for c in listed] == ["Ximena"] and listed[0]["conversations"] == 1
    today = utcnow().date().isoformat()
    assert listed[0]["first_seen"] == listed[0]["last_seen"] == today
    header, row = run("customers", "list").stdout.splitlines()
    assert header.split() == ["ID", "NAME", "EMAIL", "FIRST", "SEEN", "LAST", "SEEN", "CONV.", "IDENTITIES"]
    assert row.split() == [accepted.customer_id, "Ximena", "-", today, today, "1", "web:w-1"]
    found = run("customers", "find", "tarragona")
    assert accepted.customer_id in found.stdout and "Ximena" in found.stdout
    assert found.stdout.splitlines()[0].endswith("MATCHED ON") and found.stdout.rstrip().endswith("a message")
    assert run("customers", "find", "ximena").stdout.rstrip().endswith("name")
    assert json.loads(run("customers", "find", "w-1", "--json").stdout)[0]["matched"] == "identity web"
    assert "No customer matches" in run("customers", "find", "nobody-here").stdout

    exported = json.loads(run("customers", "export", accepted.customer_id).stdout)
    assert "my parcel to Tarragona is late" in json.dumps(exported)

    assert run("customers", "erase", accepted.customer_id, stdin="n\n").exit_code == 1  # asked, declined
    assert store.find_customers("Tarragona")
    result = run("customers", "erase", accepted.customer_id, "--yes")
    assert result.exit_code == 0 and "Erased 1 customer record" in result.stdout
    assert not store.find_customers("Tarragona")
    assert "no such customer" in run("customers", "export", "missing").output


def test_retention_run_uses_the_privacy_file(store: ConversationStore, tmp_path: Path) -> None:
    accepted = store.accept(InboundMessage("web", "w-1", "m1", "an old message"))
    with store._write() as db:
        db.execute("UPDATE conversations SET status = 'closed', updated_at = '2020-01-01T00:00:00+00:00'")
    (tmp_path / "privacy.yml").write_text("retention_days: 0\n")
    assert "Retention is off" in run("retention", "run").stdout
    (tmp_path / "privacy.yml").write_text("retention_days: 30\n")
    assert "Purged the transcripts of 1 conversation closed more than 30 days ago" in run("retention", "run").stdout
    assert [e.text for e in store.transcript(accepted.conversation_id)] == [None]
