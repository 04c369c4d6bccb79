"""`switchboard customers` and `switchboard retention`: what is held about people, and for how long."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bot.errors import SwitchboardError
from switchboard.cli.base import load_settings, main, plural, store_or_fail

if TYPE_CHECKING:
    from bot.messages import Customer
    from bot.stores.conversations import ConversationStore


@main.group()
def customers() -> None:
    """Customers: list, find, import profiles, export or erase everything about a person."""


def _customer_json(customer: Customer) -> dict[str, object]:
    return {"id": customer.customer_id, "name": customer.display_name, "email": customer.email,
            "phone": customer.phone, "language": customer.language, "attributes": customer.attributes,
            "identities": [{"channel": c, "external_id": x} for c, x in customer.identities]}


def _print_customers(store: ConversationStore, found: list[Customer], as_json: bool, empty: str,
                     matched: str | None = None) -> None:
    import json

    rows: list[dict[str, Any]] = []
    for customer in found:
        conversations = store.conversations_of(customer.customer_id)
        first = min((c.created_at for c in conversations), default=None)
        last = max((c.updated_at for c in conversations), default=None)
        rows.append({**_customer_json(customer), "conversations": len(conversations),
                     "first_seen": first.date().isoformat() if first else None,
                     "last_seen": last.date().isoformat() if last else None,
                     **({"matched": customer.matched_on(matched)} if matched is not None else {})})
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo(empty)
        return
    matched_title = "  MATCHED ON" if matched is not None else ""
    click.echo(f"{'ID':32}  {'NAME':20}  {'EMAIL':28}  {'FIRST SEEN':10}  {'LAST SEEN':10}  CONV.  "
               f"IDENTITIES{matched_title}")
    for row in rows:
        identities = ", ".join(f"{i['channel']}:{i['external_id']}" for i in row["identities"]) or "none"
        click.echo(f"{row['id']:32}  {row['name'] or '-':20}  {row['email'] or '-':28}  {row['first_seen'] or '-':10}  "
                   f"{row['last_seen'] or '-':10}  {row['conversations']:5}  {identities}"
                   + (f"  {row['matched']}" if matched is not None else ""))


@customers.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the customers as JSON.")
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1), help="At most this many.")
def customers_list(as_json: bool, limit: int) -> None:
    """List customers, latest first, with their conversations and when they were first and last seen."""
    with store_or_fail() as store:
        _print_customers(store, store.list_customers(limit), as_json, "No customers yet.")


@customers.command("find")
@click.argument("text")
@click.option("--json", "as_json", is_flag=True, help="Print the customers as JSON.")
def customers_find(text: str, as_json: bool) -> None:
    """Find customers by name, email, phone, identity or the text of their messages; says which matched."""
    with store_or_fail() as store:
        _print_customers(store, store.find_customers(text), as_json, f"No customer matches {text!r}.", matched=text)


@customers.command("export")
@click.argument("customer_id")
def customers_export(customer_id: str) -> None:
    """Print everything held about a person as JSON (for a data access request)."""
    import json

    with store_or_fail() as store:
        click.echo(json.dumps(store.export_customer(customer_id), indent=2, ensure_ascii=False))


@customers.command("erase")
@click.argument("customer_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def customers_erase(customer_id: str, yes: bool) -> None:
    """Erase everything personal about a person; conversations stay counted, without content."""
    with store_or_fail() as store:
        customer = store.get_customer(store.current_customer(customer_id))
        if not yes:
            click.confirm(f"Erase {customer.display_name or 'this customer'} ({len(customer.identities)} "
                          f"identities) for good? This cannot be undone", abort=True)
        erased = store.erase_customer(customer_id)
    click.echo(f"Erased {plural(erased, 'customer record')}; the database was compacted.")


@customers.command("import")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
def customers_import(file: Path) -> None:
    """Create or update customers from a CSV (header row) or a JSON list: `email` and/or `phone`
    find the customer, `name` and `language` fill the profile, every other column is an attribute."""
    from switchboard.importing import clean_record, read_records

    created = updated = 0
    problems: list[str] = []
    with store_or_fail() as store:
        for where, record in read_records(file):
            try:
                _, new = store.import_customer(clean_record(record))
            except SwitchboardError as exc:
                problems.append(f"{file}: {where}: {exc}")
                continue
            created, updated = created + new, updated + (not new)
    for problem in problems:
        click.echo(problem, err=True)
    click.echo(f"Imported {created + updated} customers: {created} new, {updated} updated"
               + (f"; {len(problems)} skipped (see above)." if problems else "."))
    if problems:
        sys.exit(1)


@main.group()
def retention() -> None:
    """Transcript retention (the days are set in data/privacy.yml)."""


@retention.command("run")
@click.option("--days", type=click.IntRange(1), default=None,
              help="Purge transcripts of conversations closed more than this many days ago "
                   "[default: retention_days of the privacy file].")
def retention_run(days: int | None) -> None:
    """Blank the transcripts of conversations closed longer ago than the retention period."""
    from datetime import timedelta

    from bot.customers.privacy import load_privacy

    settings = load_settings()
    try:
        days = days or load_privacy(settings.privacy_path).retention_days
    except SwitchboardError as exc:
        raise click.ClickException(str(exc)) from exc
    if not days:
        click.echo(f"Retention is off (retention_days: 0 in {settings.privacy_path}); nothing purged.")
        return
    with store_or_fail() as store:
        purged = store.purge_transcripts(timedelta(days=days))
    click.echo(f"Purged the transcripts of {plural(purged, 'conversation')} "
               f"closed more than {days} days ago.")
