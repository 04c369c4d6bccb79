"""A Rasa project directory run as it is: `domain/` split over files, `data/` at any depth (retrieval intents
with their responses beside them), endpoints.yml's action server, credentials.yml's keys, config.yml read for
what does not apply."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.errors import SwitchboardError
from bot.ports import Encoder
from switchboard.app import create_app, load_dialogue, services_of
from switchboard.cli import main
from switchboard.project import project_values
from switchboard.settings import Settings
from tests.conftest import Editor
from tests.dialogue import RecordingChannel

FILES = {
    "domain/core.yml": """version: "3.1"
intents: [greet, mood_great, mood_unhappy, faq]
responses:
  utter_greet:
    - text: "Hey! How are you?"
  utter_default:
    - text: "Sorry, I didn't get that."
""",
    "domain/mood.yml": """version: "3.1"
responses:
  utter_happy:
    - text: "Great, carry on!"
  utter_cheer_up:
    - text: "Here is something to cheer you up."
""",
    "data/nlu/greet.yml": """version: "3.1"
nlu:
  - intent: greet
    examples: |
      - hey
      - hello
      - hi there
""",
    "data/nlu/mood.yml": """version: "3.1"
nlu:
  - intent: mood_great
    examples: |
      - perfect
      - amazing
      - I am feeling very good
  - intent: mood_unhappy
    examples: |
      - I am sad
      - not good
      - I feel terrible
""",
    "data/nlu/faq.yml": """version: "3.1"
nlu:
  - intent: faq/opening_hours
    examples: |
      - when are you open
      - what are your opening hours
      - what time do you open on saturday
  - intent: faq/location
    examples: |
      - where are you
      - what is your address
      - where can I find the shop
responses:
  utter_faq/opening_hours:
    - text: "We are open 9 to 5."
  utter_faq/location:
    - text: "We are at 1 Main Street."
""",
    "data/rules.yml": """version: "3.1"
rules:
  - rule: faq
    steps:
      - intent: faq
      - action: utter_faq
  - rule: greet
    steps:
      - intent: greet
      - action: utter_greet
  - rule: happy
    steps:
      - intent: mood_great
      - action: utter_happy
""",
    "data/stories/unhappy.yml": """version: "3.1"
stories:
  - story: sad path
    steps:
      - intent: mood_unhappy
      - action: utter_cheer_up
""",
    "endpoints.yml": """action_endpoint:
  url: "http://127.0.0.1:5055/webhook"
tracker_store:
  type: redis
""",
    "credentials.yml": """rest:
telegram:
  access_token: "123:abc"
  verify: "mood_bot"
  webhook_url: "https://example.com/webhooks/telegram/webhook"
facebook:
  verify: "x"
  secret: "app-secret"
  page-access-token: "EAAB"
slack:
  slack_token: "xoxb"
""",
    "config.yml": """language: en
pipeline:
  - name: DIETClassifier
policies:
  - name: RulePolicy
""",
}


@pytest.fixture
def project(tmp_path: Path, with_models: Callable[..., Path]) -> Path:
    root = tmp_path / "moodbot"
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    with_models(root / ".switchboard" / "kb_index", caches=("onnx",))  # the encoder; its intents are its own
    return root


def test_the_project_directory_sets_what_no_variable_sets(project: Path) -> None:
    warnings: list[str] = []
    values = project_values(project, warnings.append)
    assert values == {"domain_path": project / "domain", "nlu_path": project / "data", "rules_path": project / "data",
                      "kb_dir": project / "kb", "kb_questions": "", "index_dir": project / ".switchboard" / "kb_index",
                      "action_endpoint": "http://127.0.0.1:5055/webhook", "telegram_token": "123:abc",
                      "meta_verify_token": "x", "meta_app_secret": "app-secret", "meta_page_token": "EAAB"}
    assert any("tracker_store" in w and "ignored" in w for w in warnings)
    assert any("telegram.verify is ignored" in w for w in warnings)
    assert any("slack channel is not one of Switchboard's" in w for w in warnings)
    assert any("'pipeline' is read but does not apply" in w for w in warnings)

    settings = Settings.from_env({"SWITCHBOARD_PROJECT_DIR": str(project),
                                  "SWITCHBOARD_TELEGRAM_TOKEN": "456:explicit"})
    assert settings.domain_path == project / "domain" and settings.nlu_path == project / "data"
    assert settings.telegram_token == "456:explicit"  # a variable set explicitly wins
    assert settings.action_endpoint == "http://127.0.0.1:5055/webhook"
    assert settings.action_timeout == 300.0  # Rasa's default: a slow action is waited for

    # endpoints.yml's own timeout, as Rasa reads it; a wrong one says what it should be.
    endpoints = project / "endpoints.yml"
    endpoints.write_text('action_endpoint:\n  url: "http://127.0.0.1:5055/webhook"\n  timeout: 30\n', encoding="utf-8")
    assert Settings.from_env({"SWITCHBOARD_PROJECT_DIR": str(project)}).action_timeout == 30.0
    endpoints.write_text('action_endpoint:\n  url: "http://127.0.0.1:5055/webhook"\n  timeout: soon\n',
                         encoding="utf-8")
    with pytest.raises(SwitchboardError, match=r"action_endpoint\.timeout must be a number of seconds"):
        project_values(project)


def test_a_directory_that_is_no_rasa_project_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SwitchboardError, match=r"no domain\.yml or domain/ directory"):
        project_values(tmp_path)
    with pytest.raises(SwitchboardError, match="no such directory"):
        Settings.from_env({"SWITCHBOARD_PROJECT_DIR": str(tmp_path / "missing")})


def test_domain_and_data_are_read_from_every_file(project: Path, tmp_path: Path, index_dir: Path) -> None:
    warnings: list[str] = []
    settings = Settings.from_env({"SWITCHBOARD_PROJECT_DIR": str(project)}, index_dir=index_dir,
                                 handoff_policy_path=Path("data/handoff.yml"))
    model, nlu = load_dialogue(settings, warnings.append)
    assert set(model.domain.intents) == {"greet", "mood_great", "mood_unhappy", "faq"}
    assert {"utter_greet", "utter_happy", "utter_cheer_up", "utter_handoff", "utter_faq/location"} \
        <= set(model.domain.responses)  # a retrieval intent's responses, kept in its data file
    assert set(nlu.by_intent()) == {"greet", "mood_great", "mood_unhappy", "faq/opening_hours", "faq/location"}
    assert {rule.name: rule.actions for rule in model.rules.rules} \
        == {"faq": ["utter_faq"], "greet": ["utter_greet"], "happy": ["utter_happy"]}
    assert [story.name for story in model.rules.stories] == ["sad path"]
    assert warnings == []  # files read by other readers raise no warning


def test_the_project_answers_without_an_edit(project: Path, make_chat: Callable[..., RecordingChannel]) -> None:
    chat = make_chat(domain_path=project / "domain", nlu_path=project / "data", rules_path=project / "data")
    assert chat.say("hello") == ["Hey! How are you?"]
    assert chat.say("amazing") == ["Great, carry on!"]
    assert chat.say("what is your address") == ["We are at 1 Main Street."]  # a retrieval intent's response
    (notice,) = chat.say("I want to talk to a person")  # Switchboard's own words, which the domain lacks
    assert notice.startswith(("I'm connecting you with a member of our team", "I've passed your conversation"))


def test_a_project_without_a_kb_runs_through_the_rest_channel_and_never_answers_from_another_kb(
        project: Path, tmp_path: Path, encoder: Encoder) -> None:
    # Two FAQ intents of three examples each take any question; without them the bot has nothing to say to this one.
    (project / "data" / "nlu" / "faq.yml").unlink()
    settings = Settings.from_env({"SWITCHBOARD_PROJECT_DIR": str(project),
                                  "SWITCHBOARD_STORE_URL": f"sqlite:///{tmp_path / 'switchboard.db'}",
                                  "SWITCHBOARD_VAR_DIR": str(tmp_path / "var"), "SWITCHBOARD_SECRET_KEY": "test",
                                  "SWITCHBOARD_ACTION_ENDPOINT": ""})
    app = create_app(settings, encoder=encoder)
    try:
        client = app.test_client()

        def say(text: str) -> list[str]:
            response = client.post("/webhooks/rest/webhook", json={"sender": "rasa-user", "message": text})
            assert response.status_code == 200, response.get_data(as_text=True)
            return [reply["text"] for reply in response.get_json()]

        assert say("hello") == ["Hey! How are you?"]
        # The sample shop's KB has a payments article; this project has no KB, so it is not used.
        assert say("can I pay with my credit card") == ["Sorry, I didn't get that."]
        assert client.get("/status").get_json()["model_id"].endswith("-no-kb")
        # The console's KB pages say there is none and how to start one; the reports still link to them.
        editor = Editor(app, "editor").client
        for path in ("/console/kb/", "/console/kb/gaps", "/console/kb/new"):
            page = editor.get(path)
            assert page.status_code == 404 and "No knowledge base" in page.get_data(as_text=True), path
        assert Editor(app, "admin").client.get("/console/reports/").status_code == 200
    finally:
        services_of(app).close()


def test_the_projects_action_session_start_runs_as_a_conversation_begins(
        project: Path, make_chat: Callable[..., RecordingChannel]) -> None:
    (project / "domain" / "session.yml").write_text("""version: "3.1"
slots:
  visits:
    type: float
    mappings:
      - type: custom
actions:
  - action_session_start
""", encoding="utf-8")
    chat = make_chat(domain_path=project / "domain", nlu_path=project / "data", rules_path=project / "data",
                     actions_package="tests.data.session_actions")
    assert chat.say("hello") == ["Welcome to the mood bot.", "Hey! How are you?"]
    assert chat.conversation().dialogue.slots["visits"] == 1.0
    assert chat.say("amazing") == ["Great, carry on!"]  # once a conversation, not every message
    # An action server that cannot be reached: the conversation begins without it, and is answered.
    unreachable = make_chat(domain_path=project / "domain", nlu_path=project / "data", rules_path=project / "data",
                            action_endpoint="http://127.0.0.1:9/webhook", action_timeout=1.0)
    assert unreachable.say("hello") == ["Hey! How are you?"]
    assert unreachable.messages_in()[0].data["action_error"]["action"] == "action_session_start"


def test_switchboard_train_keeps_the_classifiers_for_the_next_start(project: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_LANGUAGES", "en")
    monkeypatch.setenv("SWITCHBOARD_INTENT_ENCODER", "shared")
    result = CliRunner().invoke(main, ["train", "--project", str(project)])
    assert result.exit_code == 0, result.output
    assert "Training intents on 15 examples of 5 intents" in result.output
    kept = list((project / ".switchboard" / "kb_index" / "nlu" / "classifiers").glob("*.pickle"))
    assert len(kept) == 1
    again = CliRunner().invoke(main, ["train", "--project", str(project)])
    assert again.exit_code == 0 and list(kept[0].parent.glob("*.pickle")) == kept  # reused, not another
