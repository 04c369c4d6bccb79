"""The front door for customer messages: validate, store first, then hand to processing."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from bot.customers.privacy import PrivacyPolicy
from bot.errors import InvalidMessage, MessageTooLarge
from bot.language import LanguageDetector
from bot.messages import Accepted, InboundMessage
from bot.notifier import Notifier, connect_redis
from bot.pipeline.processor import ConversationProcessor, WorkerProcessors
from bot.ports import NO_METER, ConversationStore, Meter

log = logging.getLogger(__name__)
T = TypeVar("T")


def _sender_key(channel: str, external_id: str) -> str:
    """The notifier's key for a sender's changes (the store publishes each conversation's under it)."""
    return f"{channel}:{external_id}"


def without_lone_surrogates(text: str) -> str:
    """`text` with lone surrogates (which JSON can carry but no store can keep) replaced by "?"."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def clean_text(text: str) -> str:
    """Drop NUL characters and replace lone surrogates, which no store can keep."""
    return without_lone_surrogates(text.replace("\x00", ""))


class SenderThrottle:
    """Counts each sender's messages in a sliding window: past `burst` in `window` seconds, a sender floods.

    In memory, per process; the least recently heard senders are forgotten beyond `max_senders`.
    """

    def __init__(self, burst: int, window: float = 10.0, max_senders: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = burst
        self.window = window
        self._max_senders = max_senders
        self._clock = clock
        self._lock = threading.Lock()
        self._heard: OrderedDict[str, deque[float]] = OrderedDict()

    def count(self, sender: str) -> int:
        """Count a message from `sender`; return how many it sent within the window, this one included."""
        now = self._clock()
        with self._lock:
            times = self._heard.pop(sender, None) or deque()
            while times and now - times[0] > self.window:
                times.popleft()
            times.append(now)
            self._heard[sender] = times
            if len(self._heard) > self._max_senders:
                self._heard.popitem(last=False)
            return len(times)


class SharedSenderThrottle(SenderThrottle):
    """The same sliding window, counted in Redis, so that a sender's messages count together whichever web
    process takes them (a sorted set of arrival times per sender, expiring with the window). While Redis
    cannot be reached, this process counts alone."""

    def __init__(self, url: str, prefix: str, burst: int, window: float = 10.0) -> None:
        super().__init__(burst, window)
        self._redis, self._errors = connect_redis(url, timeout=2)
        self._prefix = prefix

    def count(self, sender: str) -> int:
        now = time.time()
        key = f"{self._prefix}:senders:{sender}"
        try:
            pipe = self._redis.pipeline()
            pipe.zremrangebyscore(key, "-inf", now - self.window)
            pipe.zadd(key, {uuid.uuid4().hex: now})
            pipe.zcard(key)
            pipe.pexpire(key, int(self.window * 1000) + 1000)
            return int(pipe.execute()[2])
        except self._errors as exc:
            log.warning("sender counts are this process's own while Redis cannot be reached (%s)", exc)
            return super().count(sender)


class Inbox:
    """Accepts messages from every connector; what `accept` returns is durably stored.

    A sender who floods (more than the throttle's burst in its window) loses nothing: the messages
    are stored, marked `throttled`, and the bot answers once they stop, the last message only, so
    one sender cannot slow everyone else's answers. The console shows the flood.
    """

    def __init__(self, store: ConversationStore, processor: ConversationProcessor | WorkerProcessors,
                 notifier: Notifier,
                 max_text_length: int, privacy: PrivacyPolicy | None = None,
                 throttle: SenderThrottle | None = None, languages: LanguageDetector | None = None,
                 meter: Meter = NO_METER) -> None:
        self._store = store
        self._meter = meter
        self._privacy = privacy or PrivacyPolicy()
        self._processor = processor
        self._notifier = notifier
        self._max_text_length = max_text_length
        self._throttle = throttle or SenderThrottle(burst=10)
        self._languages = languages
        self._floods: dict[str, float] = {}  # conversation id -> when its latest flood began (monotonic)
        self._floods_lock = threading.Lock()

    def accept(self, message: InboundMessage) -> Accepted:
        """Validate and store a message, then schedule it; repeats are stored once."""
        text = clean_text(message.text).strip()
        if not text:
            raise InvalidMessage("the message has no text")
        if len(text) > self._max_text_length:
            raise MessageTooLarge(f"the message is longer than {self._max_text_length} characters")
        if not message.provider_message_id or len(message.provider_message_id) > 200:
            raise InvalidMessage("the message id must have 1 to 200 characters")
        # Card numbers and the like never reach the store, the index or an agent's screen.
        text, masked = self._privacy.mask(text)
        data = {**message.data, "masked": masked} if masked else dict(message.data)
        language = self._languages.detect(text) if self._languages is not None else None
        if language is not None:
            data["language"] = language  # kept on the message; the customer's profile follows it (see the store)
        sent = self._throttle.count(f"{message.channel}:{message.external_id}")
        flood = sent > self._throttle.burst
        if flood:
            data["throttled"] = True
        accepted = self._store.accept(dataclasses.replace(message, text=text, data=data))
        if accepted.duplicate:
            return accepted
        self._meter.message_received(message.channel)
        if flood:
            if sent == self._throttle.burst + 1:
                log.warning("conversation %s: more than %d messages in %g s from one sender; the bot answers "
                            "when they stop", accepted.conversation_id, self._throttle.burst, self._throttle.window)
                with self._floods_lock:
                    self._floods[accepted.conversation_id] = time.monotonic()
                self._notifier.publish("conversations")  # the agents' queue shows it
            self._processor.notify_after(accepted.conversation_id, self._throttle.window / 2)
        else:
            self._processor.notify(accepted.conversation_id)
        return accepted

    def floods(self, within: float = 3600.0) -> list[str]:
        """The conversations whose sender flooded within the last `within` seconds, latest first."""
        cutoff = time.monotonic() - within
        with self._floods_lock:
            for conversation_id in [c for c, began in self._floods.items() if began < cutoff]:
                del self._floods[conversation_id]
            return sorted(self._floods, key=self._floods.__getitem__, reverse=True)

    def wait_processed(self, accepted: Accepted, channel: str, external_id: str, timeout: float) -> bool:
        """Wait until the engine has taken the accepted message's turn; False on timeout."""
        key = _sender_key(channel, external_id)
        deadline = time.monotonic() + timeout
        while (seen := self.unprocessed_version(accepted, channel, external_id)) is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._notifier.wait(key, seen, remaining)
        return True

    def unprocessed_version(self, accepted: Accepted, channel: str, external_id: str) -> int | None:
        """None if the engine has taken the accepted message's turn, else the version of the sender's changes
        at which it had not: where `wait_processed_async` takes up the wait without looking again."""
        version = self._notifier.version(_sender_key(channel, external_id))
        return None if self._store.processed(accepted.inbound_id) else version

    async def wait_processed_async(self, accepted: Accepted, channel: str, external_id: str, timeout: float,
                                   run: Callable[[Callable[[], Any]], Awaitable[Any]], then: Callable[[], T],
                                   seen: int | None = None) -> T:
        """`wait_processed` for a coroutine, then `then()`: each look at the store runs with `run` (on a thread,
        off its loop), and `then` in the same call as the look that finds the turn taken (or after `timeout`),
        so that a turn's reply costs one hand-over to a thread. `seen` is an `unprocessed_version`, which
        spares the first look."""
        key = _sender_key(channel, external_id)
        deadline = time.monotonic() + timeout

        def look() -> tuple[int | None, tuple[T] | None]:
            version = self.unprocessed_version(accepted, channel, external_id)
            return version, ((then(),) if version is None else None)

        done: tuple[T] | None = None
        if seen is None:
            seen, done = await run(look)
        while seen is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return await run(then)
            await self._notifier.wait_async(key, seen, remaining)
            seen, done = await run(look)
        assert done is not None  # the look that found the turn taken ran `then`
        return done[0]
