"""The restaurant form's validation, written as for Rasa: rasa-sdk's FormValidationAction."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import FormValidationAction
from rasa_sdk.types import DomainDict

CUISINES = ("italian", "chinese", "mexican", "thai")
WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}


class ValidateRestaurantForm(FormValidationAction):
    def name(self) -> str:
        return "validate_restaurant_form"

    def validate_cuisine(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                         domain: DomainDict) -> dict[str, Any]:
        if str(value).lower() in CUISINES:
            return {"cuisine": str(value).lower()}
        dispatcher.utter_message(text=f"We don't book {value} restaurants.")
        return {"cuisine": None}

    def validate_num_people(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker,
                            domain: DomainDict) -> dict[str, Any]:
        number = WORDS.get(str(value).lower()) or (int(value) if str(value).isdigit() else 0)
        if 0 < number <= 12:
            return {"num_people": float(number)}
        dispatcher.utter_message(text="Tables are for 1 to 12 people.")
        return {"num_people": None}
