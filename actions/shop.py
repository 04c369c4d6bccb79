"""Example custom actions for the sample shop, written with rasa-sdk.

Both ask for an order number until they have a valid one (an active loop), look the
order up in a CSV file, and answer with responses from `domain.yml`. The cancellation
action decides to hand off when a person has to act: an order not yet shipped.

Run them in Switchboard's process (the default) or on a Rasa action server:
`python -m rasa_sdk --actions actions.shop`.
"""

from __future__ import annotations

import csv
import os
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActiveLoop, ConversationPaused, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.interfaces import ActionExecutionRejection

# Puffin order numbers are PO- and seven digits; customers often type only the digits.
ORDER_NUMBER = re.compile(r"\b(?:PO[-\s]?)?(\d{7})\b", re.IGNORECASE)
ATTEMPTS_BEFORE_HANDOFF = 3


def orders_file() -> Path:
    """The sample order file; `SWITCHBOARD_ORDERS_FILE` points elsewhere."""
    configured = os.environ.get("SWITCHBOARD_ORDERS_FILE")
    return Path(configured) if configured else Path(__file__).resolve().parents[1] / "data" / "orders.csv"


def find_order(number: str) -> dict[str, str] | None:
    """The order's row, read afresh so edits to the file apply at once."""
    with orders_file().open(newline="", encoding="utf-8") as handle:
        return next((row for row in csv.DictReader(handle) if row["order_number"] == number), None)


def order_number_in(text: str | None) -> str | None:
    """'po 2610427', 'PO-2610427' or '2610427' -> 'PO-2610427'."""
    match = ORDER_NUMBER.search(text or "")
    return f"PO-{match.group(1)}" if match else None


def remember(**attributes: Any) -> EventType:
    """Keep attributes on the customer's profile, where agents see them and later actions read them
    (`tracker.latest_message["metadata"]["customer"]["attributes"]`)."""
    return {"event": "customer_attributes", "attributes": attributes}


class OrderAction(Action, ABC):
    """Asks for the order number (validating its format) until it finds the order, then `answer`s."""

    @abstractmethod
    def name(self) -> str: ...

    @abstractmethod
    def answer(self, dispatcher: CollectingDispatcher, order: dict[str, str]) -> list[EventType]: ...

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        text = tracker.latest_message.get("text") or ""
        number = order_number_in(str(tracker.get_slot("order_number") or "")) or order_number_in(text)
        asking = tracker.active_loop_name == self.name()
        if number is None and not asking:
            dispatcher.utter_message(response="utter_ask_order_number")
            return [ActiveLoop(self.name())]
        if number is None and not re.search(r"\d", text):
            # The customer moved on to something else: let the bot answer that instead.
            raise ActionExecutionRejection(self.name(), "no order number in the message")
        order = find_order(number) if number else None
        if order is not None:
            return [ActiveLoop(None), SlotSet("order_number", number), SlotSet("order_attempts", None),
                    remember(last_order=number), *self.answer(dispatcher, order)]

        attempts = int(tracker.get_slot("order_attempts") or 0) + 1
        if attempts >= ATTEMPTS_BEFORE_HANDOFF:
            dispatcher.utter_message(response="utter_order_not_found_handoff")
            return [ActiveLoop(None), SlotSet("order_number", None), SlotSet("order_attempts", None),
                    SlotSet("handoff_reason", "order number not recognised after "
                                              f"{ATTEMPTS_BEFORE_HANDOFF} tries"),
                    ConversationPaused()]
        if number is None:
            dispatcher.utter_message(response="utter_order_number_format")
        else:
            dispatcher.utter_message(response="utter_order_not_found", order_number=number)
        return [ActiveLoop(self.name()), SlotSet("order_number", None), SlotSet("order_attempts", attempts)]


class ActionOrderStatus(OrderAction):
    def name(self) -> str:
        return "action_order_status"

    def answer(self, dispatcher: CollectingDispatcher, order: dict[str, str]) -> list[EventType]:
        dispatcher.utter_message(response=f"utter_order_{order['status']}", **order)
        return []


class ActionCancelOrder(OrderAction):
    """Orders not shipped yet can be stopped only by the warehouse team: hand off to a person."""

    def name(self) -> str:
        return "action_cancel_order"

    def answer(self, dispatcher: CollectingDispatcher, order: dict[str, str]) -> list[EventType]:
        if order["status"] == "processing":
            dispatcher.utter_message(response="utter_cancel_needs_person", **order)
            return [SlotSet("handoff_reason", f"cancel {order['order_number']} before it ships"),
                    ConversationPaused()]
        dispatcher.utter_message(response=f"utter_cancel_{order['status']}", **order)
        return []
