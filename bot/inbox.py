"""The front door for customer messages: validate, store first, then hand to processing."""

from __future__ import annotations

import dataclasses
import time

from bot.errors import InvalidMessage, MessageTooLarge
from bot.messages import Accepted, InboundMessage
from bot.notifier import Notifier
from bot.ports import ConversationStore
from bot.privacy import PrivacyPolicy
from bot.processor import ConversationProcessor


def clean_text(text: str) -> str:
    """Drop NUL characters and replace lone surrogates, which no store can keep."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


class Inbox:
    """Accepts messages from every connector; what `accept` returns is durably stored."""

    def __init__(self, store: ConversationStore, processor: ConversationProcessor, notifier: Notifier,
                 max_text_length: int, privacy: PrivacyPolicy | None = None) -> None:
        self._store = store
        self._privacy = privacy or PrivacyPolicy()
        self._processor = processor
        self._notifier = notifier
        self._max_text_length = max_text_length

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
        data = {**message.data, "masked": masked} if masked else message.data
        accepted = self._store.accept(dataclasses.replace(message, text=text, data=data))
        self._processor.notify(accepted.conversation_id)
        return accepted

    def wait_processed(self, accepted: Accepted, channel: str, external_id: str, timeout: float) -> bool:
        """Wait until the engine has taken the accepted message's turn; False on timeout."""
        key = f"{channel}:{external_id}"
        deadline = time.monotonic() + timeout
        while True:
            seen = self._notifier.version(key)
            pending = self._store.next_pending(accepted.conversation_id)
            if pending is None or pending.inbound_id > accepted.inbound_id:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._notifier.wait(key, seen, remaining)
