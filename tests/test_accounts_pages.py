"""Account management in the console: only admins, every change checked and kept safe."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient

from switchboard.app import services_of
from tests.test_console import PASSWORD, AgentBrowser

PAGE = "/console/admin/agents/"


def admin_of(app: Flask) -> AgentBrowser:
    services_of(app).agents.add("root@example.com", "Root", "admin", PASSWORD)
    admin = AgentBrowser.__new__(AgentBrowser)
    admin.client, admin.email = app.test_client(), "root@example.com"
    assert admin.sign_in(PASSWORD).status_code == 302
    return admin


def post(browser: AgentBrowser, path: str, **form: str) -> tuple[int, str]:
    response = browser.client.post(path, data={"csrf_token": browser.csrf(PAGE), **form}, follow_redirects=True)
    return response.status_code, response.get_data(as_text=True)


def shown_password(page: str) -> str:
    match = re.search(r'<code class="password">([^<]+)</code>', page)
    assert match, "no password shown"
    return match.group(1)


def agent_id(app: Flask, email: str) -> str:
    found = services_of(app).store.agent_credentials(email)
    assert found is not None
    return found[0].agent_id


def can_sign_in(app: Flask, email: str, password: str) -> bool:
    return services_of(app).agents.authenticate(email, password) is not None


def test_only_admins_see_the_account_pages(app: Flask) -> None:
    agent = AgentBrowser(app, "ann@example.com")
    assert agent.client.get(PAGE).status_code == 403
    assert ">Accounts</a>" not in agent.client.get("/console/").get_data(as_text=True)
    admin = admin_of(app)
    page = admin.client.get(PAGE).get_data(as_text=True)
    assert "ann@example.com" in page and ">Accounts</a>" in page
    assert app.test_client().get(PAGE).status_code == 302  # signed out: to the sign-in page


def test_an_admin_adds_an_account_whose_password_is_shown_once(app: Flask) -> None:
    admin = admin_of(app)
    response = admin.client.post(PAGE, data={"csrf_token": admin.csrf(PAGE), "email": "New@Example.com",
                                             "name": "<i>Neo</i>", "role": "editor"})
    assert response.status_code == 201 and response.headers["Cache-Control"] == "no-store"
    page = response.get_data(as_text=True)
    password = shown_password(page)
    assert "&lt;i&gt;Neo&lt;/i&gt;" in page and "<i>Neo</i>" not in page
    assert can_sign_in(app, "new@example.com", password)
    assert services_of(app).store.agent_credentials("new@example.com")[0].role == "editor"  # type: ignore[index]
    assert password not in admin.client.get(PAGE).get_data(as_text=True)


def test_bad_new_accounts_are_refused_with_a_reason(app: Flask) -> None:
    admin = admin_of(app)
    assert "is not an email address" in post(admin, PAGE, email="not-an-email", name="", role="agent")[1]
    assert "role must be one of" in post(admin, PAGE, email="a@example.com", name="", role="owner")[1]
    assert "exists already" in post(admin, PAGE, email="root@example.com", name="", role="agent")[1]
    assert len(services_of(app).agents.list()) == 1
    assert admin.client.post(PAGE, data={"email": "b@example.com", "role": "agent"}).status_code == 400  # no CSRF


def test_role_changes_disable_enable_and_a_new_password(app: Flask) -> None:
    ann = AgentBrowser(app, "ann@example.com")
    admin = admin_of(app)
    ann_id = agent_id(app, "ann@example.com")
    assert "Agent is now editor." in post(admin, f"{PAGE}{ann_id}/role", role="editor")[1]
    assert ann.client.get("/console/kb/").status_code == 200
    assert "Choose a role" in post(admin, f"{PAGE}{ann_id}/role", role="owner")[1]

    assert "is disabled" in post(admin, f"{PAGE}{ann_id}/disable")[1]
    assert ann.client.get("/console/").status_code == 302  # signed out at once
    assert not can_sign_in(app, "ann@example.com", PASSWORD)
    assert "can sign in again" in post(admin, f"{PAGE}{ann_id}/enable")[1]
    assert can_sign_in(app, "ann@example.com", PASSWORD)

    status, page = post(admin, f"{PAGE}{ann_id}/password")
    assert status == 200 and not can_sign_in(app, "ann@example.com", PASSWORD)
    assert can_sign_in(app, "ann@example.com", shown_password(page))
    assert post(admin, f"{PAGE}nobody/disable")[0] == 404


def test_an_admin_cannot_lock_everyone_out(app: Flask) -> None:
    admin = admin_of(app)
    root_id = agent_id(app, "root@example.com")
    assert "cannot disable your own account" in post(admin, f"{PAGE}{root_id}/disable")[1]
    assert "would leave no active admin" in post(admin, f"{PAGE}{root_id}/role", role="agent")[1]
    assert services_of(app).agents.authenticate("root@example.com", PASSWORD).role == "admin"  # type: ignore[union-attr]
    services_of(app).agents.add("second@example.com", "Second", "admin", PASSWORD)
    assert "Root is now agent." in post(admin, f"{PAGE}{root_id}/role", role="agent")[1]
    assert admin.client.get(PAGE).status_code == 403  # no longer an admin


def test_account_pages_refuse_agents_even_with_a_valid_form(app: Flask, client: FlaskClient) -> None:
    admin_of(app)
    ann = AgentBrowser(app, "ann@example.com")
    ann_id = agent_id(app, "ann@example.com")
    response = ann.client.post(f"{PAGE}{ann_id}/role", data={"csrf_token": ann.csrf("/console/"), "role": "admin"})
    assert response.status_code == 403
    assert services_of(app).store.agent_credentials("ann@example.com")[0].role == "agent"  # type: ignore[index]


def test_an_account_that_never_signed_in_does_not_look_online(app: Flask) -> None:
    services_of(app).agents.add("bo@example.com", "Bo", "agent", PASSWORD)  # as `agents add` does
    page = admin_of(app).client.get(PAGE).get_data(as_text=True)
    bo = page[page.index("bo@example.com"):page.index("</tr>", page.index("bo@example.com"))]
    root = page[page.index("root@example.com"):page.index("</tr>", page.index("root@example.com"))]
    assert 'class="availability never-signed-in"' in bo and ">online<" not in bo
    assert 'class="availability online"' in root
