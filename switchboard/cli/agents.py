"""`switchboard agents`: the people who answer, edit and manage."""

from __future__ import annotations

import sys

import click

from switchboard.cli.base import agent_directory, main


@main.group()
def agents() -> None:
    """Agent accounts: add, list, disable, reset passwords."""


def _read_password(from_stdin: bool) -> tuple[str, bool]:
    """The password from stdin (first line), or a generated one; and whether it was generated."""
    from handoff.agents import AgentDirectory

    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n"), False
    return AgentDirectory.new_password(), True


@agents.command("add")
@click.argument("email")
@click.option("--name", default="", help="Shown to colleagues [default: the part of the email before @].")
@click.option("--role", type=click.Choice(["agent", "editor", "manager", "admin"]), default="agent", show_default=True,
              help="agent: queue and tickets; editor: also the knowledge base; manager: also the reports; "
                   "admin: everything.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input instead of "
                                                     "generating one.")
def agents_add(email: str, name: str, role: str, password_stdin: bool) -> None:
    """Create an agent account; prints the generated password once."""
    password, generated = _read_password(password_stdin)
    with agent_directory() as directory:
        agent = directory.add(email, name, role, password)
    click.echo(f"Added {agent.email} ({agent.name}, {agent.role}).")
    if generated:
        click.echo(f"Password: {password}   (shown only now; stored hashed)")


@agents.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the accounts as JSON.")
def agents_list(as_json: bool) -> None:
    """List agent accounts."""
    import json

    from bot.messages import utcnow

    with agent_directory() as directory:
        accounts = directory.list()
    now = utcnow()
    if as_json:
        click.echo(json.dumps([{"email": a.email, "name": a.name, "role": a.role, "active": a.active,
                                "status": a.availability(now),
                                "last_seen_at": a.last_seen_at.isoformat() if a.last_seen_at else None}
                               for a in accounts], indent=2))
        return
    if not accounts:
        click.echo("No agent accounts yet; add one with `switchboard agents add EMAIL`.")
        return
    click.echo(f"{'EMAIL':40} {'ROLE':7} {'STATUS':16} NAME")
    for agent in accounts:
        click.echo(f"{agent.email:40} {agent.role:7} {agent.availability(now):16} {agent.name}")


@agents.command("disable")
@click.argument("email")
def agents_disable(email: str) -> None:
    """Disable an account: signed out at once, sign-in refused; the history stays."""
    with agent_directory() as directory:
        agent = directory.disable(email)
    click.echo(f"Disabled {agent.email}.")


@agents.command("enable")
@click.argument("email")
def agents_enable(email: str) -> None:
    """Enable a disabled account again."""
    with agent_directory() as directory:
        agent = directory.enable(email)
    click.echo(f"Enabled {agent.email}.")


@agents.command("reset-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input.")
def agents_reset_password(email: str, password_stdin: bool) -> None:
    """Give an agent a new password."""
    password, generated = _read_password(password_stdin)
    with agent_directory() as directory:
        agent = directory.reset_password(email, password)
    click.echo(f"New password set for {agent.email}.")
    if generated:
        click.echo(f"Password: {password}   (shown only now; stored hashed)")
