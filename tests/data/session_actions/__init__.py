"""A project's own `action_session_start` (rasa-sdk), for tests/test_rasa_project.py."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActionExecuted, EventType, SessionStarted, SlotSet
from rasa_sdk.executor import CollectingDispatcher


class ActionSessionStart(Action):
    def name(self) -> str:
        return "action_session_start"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: dict[str, Any]) -> list[EventType]:
        dispatcher.utter_message(text="Welcome to the mood bot.")
        return [SessionStarted(), SlotSet("visits", 1.0), ActionExecuted("action_listen")]
