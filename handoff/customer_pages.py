"""The console's customer pages: search for customers and conversations, a customer's page with every
conversation, merging two customers (and undoing it), and for admins export and erasure."""

from __future__ import annotations

import json

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from bot.customers.codes import quoted_reference
from bot.errors import SwitchboardError
from bot.messages import Customer
from bot.ports import AgentStore
from bot.stores.conversations import ConversationStore
from handoff.auth import require_agent

ERASE_WORD = "erase"


def create_customer_blueprint(store: ConversationStore, agents: AgentStore) -> Blueprint:
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

    @pages.get("/")
    @signed_in
    def search() -> str:
        """Customers by name, email, phone, identity or message text (saying which matched), and the
        conversation a reference (SB-...) names."""
        query = request.args.get("q", "").strip()[:200]
        found: list[tuple[Customer, str]] = []
        if len(query) >= 2:
            reference = quoted_reference(query)
            owner = store.reference_owner(reference) if reference else None
            if owner is not None:
                found.append((store.get_customer(owner), f"conversation {reference}"))
            found += [(c, c.matched_on(query)) for c in store.find_customers(query)
                      if c.customer_id != owner]
        return render_template("console/customers.html", query=query, found=found,
                               conversations={c.customer_id: store.conversations_of(c.customer_id) for c, _ in found})

    @pages.get("/<customer_id>")
    @signed_in
    def customer_page(customer_id: str) -> str:
        customer = customer_or_404(customer_id)
        return render_template("console/customer.html", customer=customer,
                               conversations=store.conversations_of(customer_id),
                               merges=store.merges_of(customer_id))

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
