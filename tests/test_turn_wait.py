"""How a channel that answers in its response (Rasa's REST channel) waits for the bot's turn on an event loop:
without a thread while it waits, and with one hand-over to a thread once the turn is taken."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from bot.messages import InboundMessage
from bot.notifier import Notifier
from bot.pipeline.inbox import Inbox
from bot.pipeline.processor import ConversationProcessor, WorkerProcessors
from bot.stores import open_store
from bot.stores.conversations import ConversationStore
from tests.conftest import both_databases  # noqa: F401 (runs each test on both databases)
from tests.test_processor import RecordingEngine


def _inbox(store_url: str) -> tuple[Inbox, ConversationStore]:
    """An inbox whose messages wait until a processor of the test's own is told of them."""
    notifier = Notifier()
    store = open_store(store_url, on_change=notifier.publish)
    return Inbox(store, WorkerProcessors(Notifier()), notifier, 1000), store


def test_the_reply_is_read_on_the_thread_that_finds_the_turn_taken(store_url: str) -> None:
    inbox, store = _inbox(store_url)
    accepted = inbox.accept(InboundMessage("rest", "s-1", "m-1", "hello"))
    seen = inbox.unprocessed_version(accepted, "rest", "s-1")
    assert seen is not None
    processor = ConversationProcessor(store, RecordingEngine(), threads=1)  # type: ignore[arg-type]
    handed: list[Callable[[], Any]] = []

    async def run(function: Callable[[], Any]) -> Any:
        handed.append(function)
        return await asyncio.to_thread(function)

    async def wait() -> Any:
        waiting = asyncio.create_task(inbox.wait_processed_async(
            accepted, "rest", "s-1", 10, run, lambda: store.take_replies("rest", "s-1"), seen))
        await asyncio.sleep(0.1)
        assert not handed and not waiting.done()  # waiting asks nothing of a thread
        processor.notify(accepted.conversation_id)
        return await waiting

    try:
        replies = asyncio.run(wait())
    finally:
        processor.stop()
    assert [reply.text for reply in replies] == ["re: hello"]
    assert len(handed) == 1  # the look that found the turn taken read the replies too
    assert inbox.unprocessed_version(accepted, "rest", "s-1") is None  # taken: a view answers at once


def test_a_turn_not_taken_in_time_answers_with_what_is_waiting(store_url: str) -> None:
    inbox, store = _inbox(store_url)
    accepted = inbox.accept(InboundMessage("rest", "s-2", "m-2", "hello"))
    seen = inbox.unprocessed_version(accepted, "rest", "s-2")

    async def run(function: Callable[[], Any]) -> Any:
        return await asyncio.to_thread(function)

    replies = asyncio.run(inbox.wait_processed_async(accepted, "rest", "s-2", 0.2, run,
                                                     lambda: store.take_replies("rest", "s-2"), seen))
    assert replies == [] and store.conversations_with_pending()  # still to be answered, on the channel later
