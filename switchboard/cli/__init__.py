"""The `switchboard` command: one module per group of subcommands, each adding its commands to `main`."""

from switchboard.cli import agents, customers, db, kb, nlu, report, serve, telegram  # noqa: F401 (they add the commands)
from switchboard.cli.base import main

__all__ = ["main"]
