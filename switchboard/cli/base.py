"""What every `switchboard` command shares: the command group, the settings and the store."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Protocol, TypeVar

import click

from bot.errors import SwitchboardError, Unavailable
from switchboard.settings import Settings

if TYPE_CHECKING:
    from bot.stores.conversations import ConversationStore
    from handoff.agents import AgentDirectory


def plural(n: int, word: str) -> str:
    """ "1 question", "2 questions"."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def load_settings() -> Settings:
    try:
        return Settings.from_env()
    except SwitchboardError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def main() -> None:
    """Switchboard: a chatbot-first customer-service layer."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # faiss reports at INFO how it probed for CPU features; only its problems matter here.
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    logging.getLogger("bm25s").setLevel(logging.WARNING)


class Disposable(Protocol):
    def dispose(self) -> None: ...


Opened = TypeVar("Opened", bound=Disposable)


@contextmanager
def opened(opener: Callable[[str], Opened]) -> Iterator[Opened]:
    """What `opener` makes of the configured store's URL, disposed of afterwards; errors become clear messages."""
    url = load_settings().store_url
    try:
        opened = opener(url)
    except SwitchboardError as exc:
        raise click.ClickException(store_error(exc, url)) from exc
    try:
        yield opened
    except SwitchboardError as exc:
        raise click.ClickException(store_error(exc, url)) from exc
    finally:
        opened.dispose()


def store_or_fail() -> AbstractContextManager[ConversationStore]:
    """The configured store (its schema checked)."""
    from bot.stores import open_store

    return opened(open_store)


def store_error(exc: SwitchboardError, url: str) -> str:
    return f"{exc} [{url}]" if isinstance(exc, Unavailable) else str(exc)


@contextmanager
def agent_directory() -> Iterator[AgentDirectory]:
    """The agent directory on the configured store."""
    from handoff.agents import AgentDirectory

    with store_or_fail() as store:
        yield AgentDirectory(store)
