"""`switchboard agents`: accounts from the command line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bot.stores.conversations import ConversationStore
from handoff.agents import AgentDirectory
from switchboard.cli import main


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "switchboard.db"
    monkeypatch.setenv("SWITCHBOARD_STORE_URL", f"sqlite:///{path}")
    return path


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, ["agents", *args], input=stdin)


def signs_in(database: Path, email: str, password: str) -> bool:
    store = ConversationStore(database)
    try:
        return AgentDirectory(store).authenticate(email, password) is not None
    finally:
        store.close()


def test_add_prints_a_generated_password_once_and_it_signs_in(database: Path) -> None:
    result = run("add", "ana@example.com", "--name", "Ana Lima", "--role", "editor")
    assert result.exit_code == 0, result.output
    assert "Added ana@example.com (Ana Lima, editor)." in result.stdout
    match = re.search(r"Password: (\S+)", result.stdout)
    assert match and signs_in(database, "ana@example.com", match.group(1))


def test_add_reads_the_password_from_stdin_and_prints_none(database: Path) -> None:
    result = run("add", "bo@example.com", "--password-stdin", stdin="a long enough secret\n")
    assert result.exit_code == 0, result.output
    assert "Password:" not in result.stdout and "(bo, agent)" in result.stdout
    assert signs_in(database, "bo@example.com", "a long enough secret")


@pytest.mark.parametrize(("args", "stdin", "code", "message"), [
    (("add", "cy@example.com", "--password-stdin"), "short\n", 1, "at least 12 characters"),
    (("add", "not-an-email", "--password-stdin"), "a long enough secret\n", 1, "is not an email address"),
    (("add", "cy@example.com", "--role", "boss"), None, 2, "Invalid value for '--role'"),
    (("disable", "nobody@example.com"), None, 1, "no agent with the email nobody@example.com"),
    (("reset-password", "nobody@example.com"), None, 1, "no agent with the email nobody@example.com"),
])
def test_mistakes_are_explained(database: Path, args: tuple[str, ...], stdin: str | None, code: int,
                                message: str) -> None:
    result = run(*args, stdin=stdin)
    assert result.exit_code == code
    assert message in result.output


def test_an_email_is_added_once(database: Path) -> None:
    assert run("add", "ana@example.com").exit_code == 0
    again = run("add", "ANA@example.com")
    assert again.exit_code == 1 and "exists already" in again.output


def test_list_disable_enable_and_reset_password(database: Path) -> None:
    run("add", "ana@example.com", "--password-stdin", stdin="first password 1\n")
    run("add", "bo@example.com", "--role", "admin")
    listed = json.loads(run("list", "--json").stdout)
    never = {"active": True, "status": "never signed in", "last_seen_at": None}
    assert listed == [{"email": "ana@example.com", "name": "ana", "role": "agent", **never},
                      {"email": "bo@example.com", "name": "bo", "role": "admin", **never}]
    assert run("list").stdout.splitlines()[:2] == [
        "EMAIL                                    ROLE    STATUS           NAME",
        "ana@example.com                          agent   never signed in  ana"]
    assert run("disable", "ana@example.com").stdout == "Disabled ana@example.com.\n"
    assert not signs_in(database, "ana@example.com", "first password 1")
    assert "ana@example.com                          agent   disabled         ana" in run("list").stdout
    assert run("enable", "ana@example.com").exit_code == 0
    assert signs_in(database, "ana@example.com", "first password 1")
    reset = run("reset-password", "ana@example.com", "--password-stdin", stdin="second password 2\n")
    assert reset.exit_code == 0 and "Password:" not in reset.stdout
    assert not signs_in(database, "ana@example.com", "first password 1")
    assert signs_in(database, "ana@example.com", "second password 2")


def test_list_says_how_to_start(database: Path) -> None:
    assert "switchboard agents add EMAIL" in run("list").stdout
