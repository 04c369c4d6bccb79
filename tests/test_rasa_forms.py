"""A Rasa 3 project with a form, rules of several turns and stories (tests/data/restaurant, written for these
tests in Rasa's layout), run as it is: the form asks, its validation action (rasa-sdk's FormValidationAction)
checks, chitchat and "stop" interrupt it, rules submit it; stories and checkpoints carry the small talk."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.ports import Encoder
from switchboard.app import create_app, services_of
from switchboard.settings import Settings
from tests.conftest import ROOT
from tests.dialogue import RecordingChannel
from tests.servers import free_port, wait_until_up

PROJECT = ROOT / "tests" / "data" / "restaurant"


@pytest.fixture
def restaurant(make_chat: Callable[..., RecordingChannel]) -> RecordingChannel:
    return make_chat(domain_path=PROJECT / "domain.yml", nlu_path=PROJECT / "data", rules_path=PROJECT / "data",
                     actions_package="tests.data.restaurant.actions.actions", intent_encoder="shared")


def test_a_form_asks_for_each_slot_validates_it_and_submits(restaurant: RecordingChannel) -> None:
    assert restaurant.say("book a table") == ["What cuisine?"]
    state = restaurant.conversation().dialogue
    assert state.active_loop == "restaurant_form" and state.slots["requested_slot"] == "cuisine"
    assert state.slots["booked_from_request"] is True  # from_trigger_intent: the intent that activated the form
    # The validation action refuses a cuisine; the form asks again.
    assert restaurant.say("martian") == ["We don't book martian restaurants.", "What cuisine?"]
    assert restaurant.conversation().dialogue.slots["cuisine"] is None
    assert restaurant.say("italian") == ["How many people?"]
    # A number fills only the slot asked for (its mapping's requested_slot condition), as validated.
    assert restaurant.say("for 4 people") == ["Do you want to sit outside?"]
    assert restaurant.conversation().dialogue.slots["num_people"] == 4.0
    assert restaurant.say("yes") == ["Any other preferences?"]  # from_intent: affirm is true
    # from_text takes the answer to its own question only, and the rule for the complete form submits it.
    assert restaurant.say("a quiet corner please") == [
        "All done!", "A table for 4.0 (italian), outside: True, a quiet corner please."]
    state = restaurant.conversation().dialogue
    assert state.active_loop is None and state.slots["requested_slot"] is None
    assert state.slots["preferences"] == "a quiet corner please"


def test_from_text_does_not_fill_a_slot_that_was_not_asked_for(restaurant: RecordingChannel) -> None:
    restaurant.say("book a table")
    restaurant.say("thai")
    assert restaurant.say("two") == ["Do you want to sit outside?"]
    # The answer to "how many people?" did not become the preferences (the ported form's "preferences: 4").
    assert restaurant.conversation().dialogue.slots["preferences"] is None
    assert restaurant.say("no") == ["Any other preferences?"]
    assert restaurant.say("no") == ["All done!", "A table for 2.0 (thai), outside: False, no additional preferences."]


def test_chitchat_interrupts_the_form_and_it_asks_again(restaurant: RecordingChannel) -> None:
    restaurant.say("book a table")
    # An ignored intent fills nothing; the rule for chitchat during the form answers and returns to it.
    assert restaurant.say("are you a bot") == ["I'm a bot that books tables.", "What cuisine?"]
    assert restaurant.conversation().dialogue.active_loop == "restaurant_form"
    assert restaurant.say("chinese") == ["How many people?"]


def test_rules_of_several_turns_stop_or_continue_the_form(restaurant: RecordingChannel) -> None:
    restaurant.say("book a table")
    assert restaurant.say("stop") == ["Do you want to continue the booking?"]
    assert restaurant.say("yes") == ["What cuisine?"]  # the form asks again; "yes" filled nothing
    assert restaurant.conversation().dialogue.active_loop == "restaurant_form"
    assert restaurant.say("stop") == ["Do you want to continue the booking?"]
    assert restaurant.say("no") == ["Booking stopped."]  # action_deactivate_loop, then the rule's response
    assert restaurant.conversation().dialogue.active_loop is None
    followed = restaurant.messages_in()[-1].data["followed"]
    assert followed == ["Stop the booking", "Stop the booking"]


def test_stories_continue_from_what_was_said_and_join_at_checkpoints(
        make_chat: Callable[..., RecordingChannel]) -> None:
    def chat() -> RecordingChannel:
        return make_chat(domain_path=PROJECT / "domain.yml", nlu_path=PROJECT / "data", rules_path=PROJECT / "data",
                         actions_package="tests.data.restaurant.actions.actions", intent_encoder="shared")

    cheered = chat()
    assert cheered.say("hello") == ["Hey! How are you?"]  # a rule for the conversation's start
    assert cheered.say("I am sad") == ["Here is something to cheer you up: a puffin.", "Did that help you?"]
    assert cheered.say("yes") == ["Great, carry on!"]  # the story after the checkpoint, an `or` of two intents
    assert cheered.messages_in()[-1].data["followed"] == ["unhappy path > it helped"]

    not_cheered = chat()
    not_cheered.say("hello")
    not_cheered.say("I am sad")
    # The other story from the checkpoint; its goodbye is followed by the rule that starts with that action.
    assert not_cheered.say("no") == ["Bye", "Please rate us from 1 to 5."]

    # Told mid-conversation, without the greeting the story begins with: the longest stretch that fits.
    later = chat()
    assert later.say("I am sad") == ["Here is something to cheer you up: a puffin.", "Did that help you?"]
    # A rule with wait_for_user_input: false lets the next rule go on.
    assert later.say("bye") == ["Bye", "Please rate us from 1 to 5."]
    # Greeting later is no conversation start: the rule for one does not answer it; the stories do.
    assert later.say("hello") == ["Hey! How are you?"]
    assert "Greet" not in later.messages_in()[-1].data["followed"]


@pytest.fixture(scope="module")
def restaurant_actions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A copy of the project, and its action server run as a Rasa user runs it (`rasa run actions` in the
    project's directory, which imports its `actions` package)."""
    project = tmp_path_factory.mktemp("restaurant") / "restaurant"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("__pycache__"))
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "rasa_sdk", "--actions", "actions", "--port", str(port)],
                               cwd=project, env={**os.environ, "PYTHONPATH": str(project)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    wait_until_up(f"{base}/health", process, 60, lambda: "the action server did not start: "
                  + (process.stderr.read().decode()[-2000:] if process.stderr else ""))
    yield project, f"{base}/webhook"
    process.terminate()
    process.wait(timeout=10)


def test_the_project_books_a_table_through_the_rest_channel_with_its_action_server(
        restaurant_actions: tuple[Path, str], tmp_path: Path, encoder: Encoder) -> None:
    project, endpoint = restaurant_actions
    settings = Settings.from_env({"SWITCHBOARD_PROJECT_DIR": str(project),
                                  "SWITCHBOARD_STORE_URL": f"sqlite:///{tmp_path / 'switchboard.db'}",
                                  "SWITCHBOARD_VAR_DIR": str(tmp_path / "var"), "SWITCHBOARD_SECRET_KEY": "test",
                                  "SWITCHBOARD_INTENT_ENCODER": "shared", "SWITCHBOARD_REST_TOKEN": "t0ken",
                                  # endpoints.yml names port 5055; the test's server listens elsewhere.
                                  "SWITCHBOARD_ACTION_ENDPOINT": endpoint})
    app = create_app(settings, encoder=encoder)
    try:
        client = app.test_client()

        def say(text: str) -> list[str]:
            response = client.post("/webhooks/rest/webhook", json={"sender": "diner", "message": text},
                                   headers={"Authorization": "Bearer t0ken"})
            assert response.status_code == 200, response.get_data(as_text=True)
            return [reply["text"] for reply in response.get_json()]

        assert say("hello") == ["Hey! How are you?"]
        assert say("book a table") == ["What cuisine?"]
        assert say("martian") == ["We don't book martian restaurants.", "What cuisine?"]
        assert say("mexican") == ["How many people?"]
        assert say("we are six") == ["Do you want to sit outside?"]
        assert say("no") == ["Any other preferences?"]
        assert say("a table by the window") == [
            "All done!", "A table for 6.0 (mexican), outside: False, a table by the window."]
        # A button's payload, and the story it begins mid-conversation.
        assert say("/mood_unhappy") == ["Here is something to cheer you up: a puffin.", "Did that help you?"]
        assert say("/affirm") == ["Great, carry on!"]
        tracker = client.get("/conversations/diner/tracker",
                             headers={"Authorization": "Bearer t0ken"}).get_json()
        assert tracker["active_loop"] == {} and tracker["slots"]["cuisine"] == "mexican"
    finally:
        services_of(app).close()
