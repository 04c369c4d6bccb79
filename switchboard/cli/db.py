"""`switchboard db`: the store's schema version and its upgrade."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

import click

from switchboard.cli.base import main, opened

if TYPE_CHECKING:
    from bot.stores.database import Database


@main.group()
def db() -> None:
    """The store's database: its schema version, and upgrading it to this release's."""


def _database() -> AbstractContextManager[Database]:
    """The configured store's database, its schema not checked."""
    from bot.stores.database import open_database

    return opened(open_database)


@db.command("upgrade")
def db_upgrade() -> None:
    """Bring the store's database to this release's schema, in one transaction (back it up first).
    Running it again does nothing."""
    from bot.stores import schema

    with _database() as database:
        click.echo(f"Upgrading {database} to schema version {schema.LATEST}.")
        before, after = schema.upgrade(database, progress=lambda step: click.echo(f"  applying {step}"))
    if before is None:
        click.echo(f"Created the store's tables (schema version {after}).")
    elif before == after:
        click.echo(f"Already at schema version {after}: nothing to do.")
    else:
        click.echo(f"Upgraded from schema version {before} to {after}.")


@db.command("version")
def db_version() -> None:
    """Print the store's schema version and the one this release needs."""
    from bot.stores import schema

    with _database() as database, database.snapshot() as connection:
        version = schema.version_of(connection, database)
    held = "no tables yet" if version is None else f"schema version {version}"
    click.echo(f"{database}: {held}; this Switchboard needs version {schema.LATEST}.")
