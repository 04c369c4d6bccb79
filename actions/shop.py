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
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from babel import Locale
from babel.dates import format_date
from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActiveLoop, ConversationPaused, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.interfaces import ActionExecutionRejection

# Puffin order numbers are PO- and seven digits; customers often type only the digits.
ORDER_NUMBER = re.compile(r"\b(?:PO[-\s]?)?(\d{7})\b", re.IGNORECASE)
ATTEMPTS_BEFORE_HANDOFF = 3
ORDER_DATES = ("placed_on", "eta")
# How dates are written in English answers (and any language Babel does not know): the shop's own
# convention, "26 November 2026"; other languages use theirs.
ENGLISH_LOCALE = Locale.parse(os.environ.get("SWITCHBOARD_ENGLISH_LOCALE", "en_GB"))
TRACE_AFTER_WORKING_DAYS = 5  # data/kb/shipping-delayed.md: "5 working days after the expected delivery date"


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


# A word of a name: letters, and Thai's vowel signs, which are combining marks that `\w` does not match.
_NAME_WORD = r"(?:[^\W\d_]|[\u0e00-\u0e7f])[\w'\u0e00-\u0e7f-]*"
_NAME_WORDS = rf"(?P<name>{_NAME_WORD}(?:\s+{_NAME_WORD}){{0,2}})"
# "my name is Anna Schmidt", "I'm Anna", "this is Tom Baker", "call me Jo": the words after the lead-in,
# up to three, stopping at a word that is no part of a name ("I'm Anna and my order ...").
_NAME = re.compile(r"\b(?:my name is|my name's|name is|name's|i am|i'm|im|this is|call me|it's|its)\s+" + _NAME_WORDS,
                   re.IGNORECASE)
# Words that end a name rather than belong to it ("I'm Anna and my order ...", "ich bin Jonas und ...").
_NOT_NAMES = {"and", "but", "from", "here", "with", "i", "my", "a", "an", "the", "looking", "trying", "not",
              "just", "writing", "asking", "calling", "about", "again", "still", "so", "very", "really", "me", "you",
              "it", "that", "this", "sure", "sorry",
              "und", "aber", "hier", "mit", "ich", "mein", "nicht", "noch", "и", "но", "от", "с"}
# The same lead-ins in the sample shop's other languages. Chinese and Thai write a name straight after them
# with no space ("我叫王伟", "ฉันชื่อสมศรี"): the name runs to the end of the clause, less Thai's polite
# particles ("ครับ", "ค่ะ").
_NAME_ELSEWHERE = re.compile(
    r"(?:\b(?:ich heiße|ich heisse|mein name ist|ich bin|hier ist|nenn mich|nennen sie mich|казвам се|името ми е|"
    r"аз съм|тук е)\s+|我叫|我的名字是|我的名字叫|叫我|我是|ฉันชื่อ|ผมชื่อ|หนูชื่อ|ดิฉันชื่อ|เรียกฉันว่า|เรียกผมว่า|ผม|ฉัน)"
    + _NAME_WORDS, re.IGNORECASE)
_THAI_PARTICLES = re.compile(r"(?:ครับ|ค่ะ|คะ|นะ|จ้า|จ้ะ|ก็ได้)+$")


def name_in(text: str | None) -> str | None:
    """The name in "my name is anna schmidt" -> "Anna Schmidt" (capitalised if typed all lower case), in
    "ich heiße anna schmidt", "казвам се Анна Петрова", "我叫王伟" or "ฉันชื่อสมศรี ใจดี"."""
    match = _NAME.search(text or "") or _NAME_ELSEWHERE.search(text or "")
    if match is None:
        return None
    words: list[str] = []
    for word in match.group("name").split():
        word = _THAI_PARTICLES.sub("", word)
        if not word or word.casefold() in _NOT_NAMES:
            break
        words.append(word)
    if not words:
        return None
    name = " ".join(words)
    return name.title() if name.islower() else name


def remember(**attributes: Any) -> EventType:
    """Keep attributes on the customer's profile, where agents see them and later actions read them
    (`tracker.latest_message["metadata"]["customer"]["attributes"]`)."""
    return {"event": "customer_attributes", "attributes": attributes}


class OrderAction(Action, ABC):
    """Asks for the order number (validating its format) until it finds the order, then `answer`s."""

    @abstractmethod
    def name(self) -> str: ...

    @abstractmethod
    def answer(self, dispatcher: CollectingDispatcher, order: dict[str, str],
               tracker: Tracker) -> list[EventType]: ...

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        text = tracker.latest_message.get("text") or ""
        # Only the number in this message counts: an order spoken of earlier is offered, never assumed.
        number = order_number_in(text)
        asking = tracker.active_loop_name == self.name()
        if number is None and not asking:
            earlier = order_number_in(str(tracker.get_slot("order_number") or ""))
            if earlier is not None:
                dispatcher.utter_message(response="utter_ask_which_order", order_number=earlier)
            else:
                dispatcher.utter_message(response="utter_ask_order_number")
            return [ActiveLoop(self.name())]
        if number is None and not re.search(r"\d", text):
            # The customer moved on to something else: let the bot answer that instead.
            raise ActionExecutionRejection(self.name(), "no order number in the message")
        order = find_order(number) if number else None
        if order is not None:
            return [ActiveLoop(None), SlotSet("order_number", number), SlotSet("order_attempts", None),
                    remember(last_order=number), *self.answer(dispatcher, order, tracker)]

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


def say(dispatcher: CollectingDispatcher, tracker: Tracker, response: str, order: dict[str, str],
        **dates: date) -> None:
    """A response about an order, its dates written as the customer's language writes them
    ("26 November 2026", "26. November 2026", "2026年11月26日")."""
    language = str(tracker.get_slot("language") or "")
    try:
        locale = Locale.parse(language, sep="-") if language and not language.startswith("en") else ENGLISH_LOCALE
    except (ValueError, LookupError):
        locale = ENGLISH_LOCALE
    written = {key: format_date(date.fromisoformat(order[key]), "long", locale=locale)
               for key in ORDER_DATES if order.get(key)}
    dispatcher.utter_message(response=response, **{**order, **written},
                             **{key: format_date(day, "long", locale=locale) for key, day in dates.items()})


def asked_on(tracker: Tracker) -> date:
    """The day the customer wrote (Switchboard sends it with the message), else today."""
    sent_at = (tracker.latest_message.get("metadata") or {}).get("sent_at")
    return datetime.fromisoformat(sent_at).date() if sent_at else date.today()


def working_days_after(day: date, count: int) -> date:
    """The date `count` working days (Monday to Friday) after `day`."""
    while count:
        day += timedelta(days=1)
        count -= day.weekday() < 5
    return day


class ActionOrderStatus(OrderAction):
    """Where the order is; a late one says so, with what happens next. After 5 working days past the
    delivery date a person opens a trace with the carrier, as the late-parcel article promises."""

    def name(self) -> str:
        return "action_order_status"

    def answer(self, dispatcher: CollectingDispatcher, order: dict[str, str],
               tracker: Tracker) -> list[EventType]:
        today = asked_on(tracker)
        late = order["status"] in ("processing", "shipped") and bool(order["eta"]) \
            and today > date.fromisoformat(order["eta"])
        if not late:
            say(dispatcher, tracker, f"utter_order_{order['status']}", order)
            return []
        trace_on = working_days_after(date.fromisoformat(order["eta"]), TRACE_AFTER_WORKING_DAYS)
        if order["status"] == "shipped" and today < trace_on:
            say(dispatcher, tracker, "utter_order_shipped_late", order, trace_on=trace_on)
            return []
        if order["status"] == "shipped":
            say(dispatcher, tracker, "utter_order_late_trace", order)
            why = (f"{order['order_number']} is {TRACE_AFTER_WORKING_DAYS}+ working days late: "
                   f"trace with {order['carrier']}")
        else:
            say(dispatcher, tracker, "utter_order_processing_late", order)
            why = f"{order['order_number']} is late and not shipped yet"
        return [SlotSet("handoff_reason", why), ConversationPaused()]


class ActionRememberName(Action):
    """Keeps the name a customer gives in the chat on their profile, where agents see it."""

    def name(self) -> str:
        return "action_remember_name"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        name = name_in(tracker.latest_message.get("text"))
        if name is None:
            raise ActionExecutionRejection(self.name(), "no name in the message")
        dispatcher.utter_message(response="utter_name_noted", name=name.split()[0])
        return [{"event": "customer_name", "name": name}]


class ActionCancelOrder(OrderAction):
    """Orders not shipped yet can be stopped only by the warehouse team: hand off to a person."""

    def name(self) -> str:
        return "action_cancel_order"

    def answer(self, dispatcher: CollectingDispatcher, order: dict[str, str],
               tracker: Tracker) -> list[EventType]:
        if order["status"] == "processing":
            say(dispatcher, tracker, "utter_cancel_needs_person", order)
            return [SlotSet("handoff_reason", f"cancel {order['order_number']} before it ships"),
                    ConversationPaused()]
        say(dispatcher, tracker, f"utter_cancel_{order['status']}", order)
        return []
