"""The console's account pages for admins: list, add, change role, disable or enable, reset a password."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, abort, flash, g, make_response, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from bot.errors import SwitchboardError
from bot.messages import Agent, utcnow
from bot.ports import AgentStore
from handoff.agents import ROLES, AgentDirectory
from handoff.auth import require_agent


def create_accounts_blueprint(agents: AgentStore, directory: AgentDirectory) -> Blueprint:
    """Build `/console/admin/agents` around the agent store."""
    accounts = Blueprint("accounts", __name__, url_prefix="/console/admin/agents", template_folder="templates")
    admin = require_agent(agents, ("admin",))

    def page(new_login: tuple[str, str] | None = None, status: int = 200) -> Response:
        """The account list; `new_login` (email, password) is shown once and never stored in plain text."""
        response = make_response(render_template("console/accounts.html", accounts=directory.list(), roles=ROLES,
                                                 new_login=new_login, now=utcnow()), status)
        response.headers["Cache-Control"] = "no-store"
        return response

    def account(agent_id: str) -> Agent:
        found = agents.get_agent(agent_id)
        if found is None:
            abort(404)
        return found

    def change(agent_id: str, update: Callable[[Agent], object], done: str) -> Response:
        target = account(agent_id)
        try:
            update(target)
            flash(done.format(name=target.name))
        except SwitchboardError as exc:
            flash(str(exc))
        # An admin who just made themselves an agent or editor may no longer see this page.
        still_admin = agents.get_agent(g.agent.agent_id)
        return redirect(url_for("accounts.list_accounts") if still_admin and still_admin.role == "admin"
                        else url_for("console.queue"))

    @accounts.get("/")
    @admin
    def list_accounts() -> Response:
        return page()

    @accounts.post("/")
    @admin
    def add() -> Response:
        email = request.form.get("email", "").strip()
        password = directory.new_password()
        try:
            directory.add(email, request.form.get("name", ""), request.form.get("role", ""), password)
        except SwitchboardError as exc:
            flash(str(exc))
            return redirect(url_for("accounts.list_accounts"))
        return page((email.lower(), password), 201)

    @accounts.post("/<agent_id>/role")
    @admin
    def set_role(agent_id: str) -> Response:
        role = request.form.get("role", "")
        if role not in ROLES:
            flash(f"Choose a role: {', '.join(ROLES)}.")
            return redirect(url_for("accounts.list_accounts"))
        return change(agent_id, lambda a: agents.update_agent(a.email, role=role), "{name} is now " + role + ".")

    @accounts.post("/<agent_id>/disable")
    @admin
    def disable(agent_id: str) -> Response:
        if agent_id == g.agent.agent_id:
            flash("You cannot disable your own account; ask another admin.")
            return redirect(url_for("accounts.list_accounts"))
        return change(agent_id, lambda a: directory.disable(a.email),
                      "{name} is disabled: signed out everywhere and cannot sign in.")

    @accounts.post("/<agent_id>/enable")
    @admin
    def enable(agent_id: str) -> Response:
        return change(agent_id, lambda a: directory.enable(a.email), "{name} can sign in again.")

    @accounts.post("/<agent_id>/password")
    @admin
    def reset_password(agent_id: str) -> Response:
        target = account(agent_id)
        password = directory.new_password()
        directory.reset_password(target.email, password)
        return page((target.email, password))

    return accounts
