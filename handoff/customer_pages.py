"""The console's customer actions: merge two customers (and undo it), and for admins export
and erase everything about a person."""

from __future__ import annotations

import json

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from bot.errors import SwitchboardError
from bot.messages import Customer
from bot.ports import AgentStore
from bot.stores.sqlite import SqliteConversationStore
from handoff.auth import require_agent

ERASE_WORD = "erase"


def create_customer_blueprint(store: SqliteConversationStore, agents: AgentStore) -> Blueprint:
    """Build `/console/customers` around the store."""
    pages = Blueprint("customers", __name__, url_prefix="/console/customers", template_folder="templates")
    signed_in = require_agent(agents)
    admin = require_agent(agents, ("admin",))

    def customer_or_404(customer_id: str) -> Customer:
        try:
            return store.get_customer(customer_id)
        except SwitchboardError:
            abort(404)

    def back(conversation_id: str | None) -> Response:
        """To the ticket the agent came from, or the queue."""
        if conversation_id:
            return redirect(url_for("console.ticket", conversation_id=conversation_id))
        return redirect(url_for("console.queue"))

    @pages.get("/<customer_id>/merge")
    @signed_in
    def merge_search(customer_id: str) -> str:
        customer = customer_or_404(customer_id)
        query = request.args.get("q", "").strip()
        found = [c for c in store.find_customers(query) if c.customer_id != customer_id] if len(query) >= 2 else []
        return render_template("console/customer_merge.html", customer=customer, query=query, found=found,
                               conversation_id=request.args.get("conversation", ""))

    @pages.post("/<customer_id>/merge")
    @signed_in
    def merge(customer_id: str) -> Response:
        customer_or_404(customer_id)
        try:
            store.merge_customers(customer_id, request.form.get("other", ""), g.agent.agent_id)
            flash("Merged: the other customer's channels and conversations are part of this one now. "
                  "Undo it under Merges if it was a mistake.")
        except SwitchboardError as exc:
            flash(str(exc))
        return back(request.form.get("conversation"))

    @pages.post("/merges/<merge_id>/undo")
    @signed_in
    def unmerge(merge_id: str) -> Response:
        try:
            store.unmerge(merge_id, g.agent.agent_id)
            flash("The merge is undone: each customer has their own channels and conversations again.")
        except SwitchboardError as exc:
            if exc.status == 404:
                abort(404)
            flash(str(exc))
        return back(request.form.get("conversation"))

    @pages.get("/<customer_id>/export")
    @admin
    def export(customer_id: str) -> Response:
        customer_or_404(customer_id)
        body = json.dumps(store.export_customer(customer_id), indent=2, ensure_ascii=False)
        return Response(body, mimetype="application/json", headers={
            "Content-Disposition": f'attachment; filename="customer-{customer_id}.json"',
            "Cache-Control": "no-store"})

    @pages.post("/<customer_id>/erase")
    @admin
    def erase(customer_id: str) -> Response:
        customer_or_404(customer_id)
        if request.form.get("confirm", "").strip().lower() != ERASE_WORD:
            flash(f"Nothing erased: type {ERASE_WORD} to confirm.")
            return back(request.form.get("conversation"))
        erased = store.erase_customer(customer_id)
        flash(f"Erased {erased} customer record{'s' if erased != 1 else ''}: no message, name or identity is "
              "kept; the conversations stay counted without content.")
        return redirect(url_for("console.queue"))

    return pages
