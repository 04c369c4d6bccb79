"""Rasa 3 training data, domain and rules: what Switchboard reads, and what it reports it ignores."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.dialogue.domain import load_domain
from bot.dialogue.entities import EntityExtractor
from bot.dialogue.forms import Form
from bot.dialogue.responses import ResponseTemplates
from bot.dialogue.rules import Happened, load_rules
from bot.dialogue.training_data import load_nlu
from bot.errors import SwitchboardError
from switchboard.app import load_dialogue
from tests.conftest import ROOT, test_settings
from tests.dialogue import RecordingChannel

RASA = Path(__file__).parent / "data" / "rasa"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def shop(make_chat: Callable[..., RecordingChannel]) -> RecordingChannel:
    return make_chat(nlu_path=RASA / "nlu.yml", domain_path=RASA / "domain.yml", rules_path=RASA / "rules.yml")


def test_the_sample_files_load_without_warnings(tmp_path: Path, index_dir: Path) -> None:
    warnings: list[str] = []
    model, nlu = load_dialogue(test_settings(tmp_path, index_dir), warnings.append)
    assert warnings == []
    assert [rule.actions for rule in model.rules.rules if rule.name == "Order status"] == [["action_order_status"]]
    assert "order_number" in model.domain.slots and "product" in nlu.lookups


def test_annotations_synonyms_lookups_and_regexes_become_entities() -> None:
    nlu = load_nlu(RASA / "nlu.yml")
    assert nlu.by_intent()["ask_stock"][0] == "do you have tents in stock"
    extractor = EntityExtractor(nlu)
    found = {e.entity: e.value for e in extractor.extract("Is the Rucksack available in XL?")}
    assert found == {"product": "backpack", "size": "XL"}
    # The annotated value `tents` maps to its synonym target, and `sleeping bag` wins over nothing shorter.
    assert [e.value for e in extractor.extract("two tents and a sleeping bag")] == ["tent", "sleeping bag"]


def test_a_rule_runs_its_responses_in_order_with_slots_filled_from_entities(shop: RecordingChannel) -> None:
    replies = shop.say("is the rucksack available")
    assert replies == ["Yes, the backpack is in stock in size M.", "Check the shop page."]
    assert shop.conversation().dialogue.slots["product"] == "backpack"


def test_a_slot_condition_picks_the_variation(shop: RecordingChannel) -> None:
    assert shop.say("do you have tents in stock")[0] == "Let me check the tent for you."


def test_channel_variations_are_used_on_their_channel(shop: RecordingChannel) -> None:
    shop.channel = "telegram"
    assert shop.say("do you sell stoves")[1] == "Tap the shop button below."


def test_variations_vary_and_placeholders_prefer_the_known_name() -> None:
    templates = ResponseTemplates(load_domain(ROOT / "data" / "domain.yml").responses, random.Random(7))
    seen = {templates.render("utter_goodbye")[0] for _ in range(30)}
    assert seen == {"Goodbye, and enjoy the outdoors!", "Bye! Write any time if something else comes up."}
    named = {templates.render("utter_greet", {"name": "Anna"})[0] for _ in range(10)}
    assert all(text.startswith("Hi Anna!") for text in named)
    anonymous = {templates.render("utter_greet")[0] for _ in range(30)}
    assert len(anonymous) == 2 and not any("{name}" in text for text in anonymous)


def test_unsupported_domain_keys_are_reported_with_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "domain.yml", """
version: "3.1"
intents:
  - greet:
      use_entities: []
session_config:
  session_expiration_time: 60
forms:
  order_form:
    required_slots: [plan]
    ignored_intents: [greet]
    ask_on_activation: true
mascot: puffin
slots:
  plan:
    type: categorical
    values: [free, pro]
    auto_fill: true
    mappings:
      - type: from_intent
        intent: upgrade
        value: pro
      - type: from_llm
responses:
  utter_greet:
    - text: hi
      image: https://example.com/puffin.png
""")
    warnings: list[str] = []
    domain = load_domain(path, warnings.append)
    assert domain.intents == ("greet",) and [m.type for m in domain.slots["plan"].mappings] == ["from_intent"]
    assert domain.forms["order_form"] == Form("order_form", ("plan",), ("greet",))
    assert "requested_slot" in domain.slots  # as Rasa adds it for forms
    assert warnings == [
        f"{path}: key 'session_config' is ignored (a session is a Switchboard conversation, which an agent "
        "closes)",
        f"{path}: unknown key 'mascot' is ignored",
        f"{path}: options of intent 'greet' (use_entities) are ignored",
        f"{path}: key 'auto_fill' of slot 'plan' is ignored",
        f"{path}: mapping type 'from_llm' of slot 'plan' is not supported; the slot is set only by actions",
        f"{path}: key 'image' of response 'utter_greet' is ignored",
        f"{path}: key 'ask_on_activation' of form 'order_form' is ignored",
    ]


def test_unsupported_nlu_items_are_reported_and_bad_regexes_are_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "nlu.yml", """
version: "3.1"
nlu:
- intent: greet
  metadata: {sentiment: neutral}
  examples: |
    - hi
- regex: code
  examples: |
    - \\d{4}
- intent: bye
  synonym: farewell
- just a string
- intent: book_flight
  examples: |
    - fly from [Berlin]{"entity": "city", "role": "departure"} to [Rome]{"entity": "city", "role": "destination"}
stories: []
""")
    warnings: list[str] = []
    nlu = load_nlu(path, warnings.append)
    assert nlu.by_intent() == {"greet": ["hi"], "book_flight": ["fly from Berlin to Rome"]}
    assert nlu.regexes == {"code": ("\\d{4}",)} and nlu.lookups["city"] == ("Berlin", "Rome")
    # Roles are kept by the word before the entity.
    assert nlu.cues == {("role", "city", "from"): "departure", ("role", "city", "to"): "destination"}
    assert warnings == [
        f"{path}: key 'stories' is ignored (Switchboard reads 'nlu' from NLU files)",
        f"{path}: metadata 'sentiment' of intent 'greet' is ignored (Switchboard reads 'language')",
        f"{path}: an item of 'nlu' with keys ['intent', 'synonym'] is ignored (expected one of intent, lookup, "
        "regex, synonym)",
        f"{path}: an item of 'nlu' is not a mapping and is ignored",
    ]
    bad = write(tmp_path, "bad.yml", "nlu:\n- intent: x\n  examples: |\n    - x\n- regex: r\n  examples: |\n    - ((\n")
    with pytest.raises(SwitchboardError, match="regex 'r' has an invalid pattern"):
        load_nlu(bad)


def test_examples_in_other_languages_are_marked_by_their_intents_metadata(tmp_path: Path) -> None:
    path = write(tmp_path, "nlu.yml", """
version: "3.1"
nlu:
- intent: greet
  examples: |
    - hi
- intent: greet
  metadata:
    language: de
  examples: |
    - hallo zusammen
- intent: greet
  metadata: {language: en-GB}
  examples: |
    - good day
""")
    nlu = load_nlu(path)
    assert [(e.text, e.language) for e in nlu.examples] == [("hi", None), ("hallo zusammen", "de"),
                                                            ("good day", "en-GB")]
    # The English classifier learns the English examples alone; the classifier of other languages learns them all.
    assert [e.text for e in nlu.english_examples] == ["hi", "good day"]
    assert nlu.by_intent() == {"greet": ["hi", "hallo zusammen", "good day"]}
    for metadata, error in (("[de]", "is not a mapping"), ("{language: 7}", "has metadata language 7")):
        bad = write(tmp_path, "bad.yml", f"nlu:\n- intent: greet\n  metadata: {metadata}\n  examples: |\n    - x\n")
        with pytest.raises(SwitchboardError, match=error):
            load_nlu(bad)


def test_rules_name_the_next_action_where_their_steps_and_conditions_hold(tmp_path: Path) -> None:
    path = write(tmp_path, "rules.yml", """
version: "3.1"
stories:
- story: happy path
  steps: []
rules:
- rule: greet
  steps:
  - intent: greet
  - action: utter_greet
- rule: greet a customer who gave their name
  condition:
  - slot_was_set:
    - name_given: true
  steps:
  - intent: greet
  - action: utter_greet_by_name
- rule: only at the start
  conversation_start: true
  steps:
  - intent: goodbye
  - action: utter_goodbye
- rule: thanks or bye
  steps:
  - or:
    - intent: thanks
    - intent: bye
  - action: utter_thanks
  - slot_was_set:
    - order_number: null
- rule: outside a form
  condition:
  - active_loop: null
  steps:
  - intent: stop
  - action: utter_stop
- rule: two intents
  steps:
  - intent: a
  - action: utter_a
  - intent: b
  - action: utter_b
- rule: a form
  steps:
  - intent: book
  - action: booking_form
  - active_loop: booking_form
- rule: greet again
  steps:
  - intent: greet
  - action: utter_hello
""")
    warnings: list[str] = []
    book = load_rules(path, warnings.append)
    assert [rule.name for rule in book.rules] == ["greet", "greet a customer who gave their name", "only at the start",
                                                  "thanks or bye", "outside a form", "two intents", "a form"]

    def said(*intents: str, slots: dict[str, object] | None = None, loop: str | None = None,
             before: tuple[Happened, ...] = ()) -> tuple[str, str] | None:
        history = [*before, *(Happened("intent", i, loop) for i in intents)]
        return book.next_action(history, slots or {})

    # The rule with a condition that holds wins over the one without.
    assert said("greet", slots={"name_given": True}) == ("utter_greet_by_name", "greet a customer who gave their name")
    assert said("greet", slots={"name_given": "true"})[0] == "utter_greet_by_name"  # a slot's text, YAML's true
    assert said("greet", slots={"name_given": None}) == ("utter_greet", "greet")
    assert said("goodbye") == ("utter_goodbye", "only at the start")
    assert said("goodbye", before=(Happened("intent", "greet"), Happened("action", "utter_greet"))) is None
    assert said("thanks")[0] == said("bye")[0] == "utter_thanks"
    assert said("stop") == ("utter_stop", "outside a form") and said("stop", loop="booking_form") is None
    # A rule of two turns: its second half applies only after its first.
    assert said("b") is None
    first = (Happened("intent", "a"), Happened("action", "utter_a"))
    assert said(before=first) == ("action_listen", "two intents")
    assert said("b", before=first) == ("utter_b", "two intents")
    assert said("book") == ("booking_form", "a form")
    assert warnings == [
        f"{path}: rule 'greet again' is skipped: rule 'greet' already answers 'greet' under the same conditions",
        f"{path}: story 'happy path' is skipped: it has no action step",
    ]


def test_a_rule_with_a_condition_answers_only_where_it_holds(tmp_path: Path,
                                                             make_chat: Callable[..., RecordingChannel]) -> None:
    domain = write(tmp_path, "domain.yml", """version: "3.1"
intents: [ask_stock, greet]
entities: [product]
slots:
  product:
    type: text
    mappings:
      - type: from_entity
        entity: product
responses:
  utter_stock:
    - text: "Which product?"
  utter_stock_of:
    - text: "{product} is in stock."
  utter_welcome_first:
    - text: "Welcome! Ask me about stock."
  utter_greet:
    - text: "Hello again."
""")
    rules = write(tmp_path, "rules.yml", """version: "3.1"
rules:
- rule: stock of a product
  condition:
  - slot_was_set:
    - product
  steps:
  - intent: ask_stock
  - action: utter_stock_of
- rule: stock of what
  steps:
  - intent: ask_stock
  - action: utter_stock
- rule: a first hello
  conversation_start: true
  steps:
  - intent: greet
  - action: utter_welcome_first
- rule: hello
  steps:
  - intent: greet
  - action: utter_greet
""")
    chat = make_chat(domain_path=domain, nlu_path=RASA / "nlu.yml", rules_path=rules)
    assert chat.say("hello") == ["Welcome! Ask me about stock."]
    assert chat.say("hello") == ["Hello again."]
    assert chat.say("do you have it in stock?") == ["Which product?"]
    assert chat.say("is the rucksack in stock?") == ["backpack is in stock."]  # the synonym's value


def test_a_rule_naming_an_unknown_response_or_action_is_reported(tmp_path: Path, index_dir: Path) -> None:
    rules = write(tmp_path, "rules.yml", "rules:\n- rule: r\n  steps:\n  - intent: greet\n  - action: utter_nope\n"
                                         "  - action: action_nope\n")
    warnings: list[str] = []
    load_dialogue(test_settings(tmp_path, index_dir, rules_path=rules), warnings.append)
    assert len(warnings) == 2
    assert "'action_nope', which is not listed" in warnings[0] and "'utter_nope', which" in warnings[1]


def test_files_that_are_not_yaml_mappings_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SwitchboardError, match="must hold a YAML mapping"):
        load_domain(write(tmp_path, "domain.yml", "- just\n- a list\n"))
    with pytest.raises(SwitchboardError, match="cannot read NLU data"):
        load_nlu(write(tmp_path, "nlu.yml", "nlu: [unclosed\n"))


MOOD_DOMAIN = """version: "3.1"
intents: [greet, mood_great]
responses:
  utter_greet:
    - text: "Hey! How are you?"
  utter_happy:
    - text: "Great, carry on!"
  utter_default:
    - text: "Sorry, I didn't get that. Can you rephrase?"
"""
def test_a_domain_without_switchboards_responses_gets_them(tmp_path: Path) -> None:
    # A Rasa project's domain knows nothing of handoffs, KB answers or ratings: Switchboard's own words fill in,
    # and Rasa's utter_default is the fallback.
    domain = load_domain(write(tmp_path, "domain.yml", MOOD_DOMAIN))
    assert domain.responses["utter_fallback"] == [{"text": "Sorry, I didn't get that. Can you rephrase?"}]
    for name in ("utter_handoff", "utter_handoff_closed", "utter_kb_answer", "utter_kb_choices", "utter_csat"):
        assert name in domain.responses, name
    assert ResponseTemplates(domain.responses).render("utter_handoff", {"wait": "3", "reference": "SB-1"})[0] \
        .startswith("I'm connecting you with a member of our team. The wait is about 3 minutes")
    # Its own definitions win; and the shipped words name no shop.
    shop = load_domain(ROOT / "data" / "domain.yml")
    assert "Puffin Outdoor" in ResponseTemplates(shop.responses).render("utter_csat")[0]
    assert "Puffin" not in (ROOT / "bot" / "dialogue" / "platform_responses.yml").read_text(encoding="utf-8")


def test_entity_roles_fill_the_slots_that_ask_for_them(tmp_path: Path,
                                                       make_chat: Callable[..., RecordingChannel]) -> None:
    domain = write(tmp_path, "domain.yml", """version: "3.1"
intents: [book_flight, greet]
entities: [city]
slots:
  departure:
    type: text
    mappings:
      - type: from_entity
        entity: city
        role: departure
  destination:
    type: text
    mappings:
      - type: from_entity
        entity: city
        role: destination
responses:
  utter_flight:
    - text: "From {departure} to {destination}."
""")
    nlu = write(tmp_path, "nlu.yml", """version: "3.1"
nlu:
- intent: book_flight
  examples: |
    - fly from [Berlin]{"entity": "city", "role": "departure"} to [Rome]{"entity": "city", "role": "destination"}
    - a flight to [Oslo]{"entity": "city", "role": "destination"} from [Lisbon]{"entity": "city", "role": "departure"}
    - book me a flight
    - I need a plane ticket
- intent: greet
  examples: |
    - hello
    - hi there
    - good morning
- lookup: city
  examples: |
    - Paris
    - Madrid
""")
    rules = write(tmp_path, "rules.yml", """version: "3.1"
rules:
- rule: flight
  steps:
  - intent: book_flight
  - action: utter_flight
""")
    chat = make_chat(domain_path=domain, nlu_path=nlu, rules_path=rules, intent_encoder="shared")
    assert chat.say("I want to fly to Paris from Madrid") == ["From Madrid to Paris."]
    entities = EntityExtractor(load_nlu(nlu)).extract("to Paris from Madrid, via Rome")
    assert [(e.value, e.role) for e in entities] == [("Paris", "destination"), ("Madrid", "departure"),
                                                     ("Rome", None)]  # "via" marks no role
    assert entities[0].as_rasa()["role"] == "destination" and "role" not in entities[2].as_rasa()


def test_a_form_asks_the_way_rasa_looks_for_it() -> None:
    form = Form("booking_form", ("date", "guests"))
    responses = ("utter_ask_date", "utter_ask_booking_form_date")
    assert form.ask("date", responses, ()) == ("response", "utter_ask_booking_form_date")  # the form's own first
    assert form.ask("guests", responses, ("action_ask_guests",)) == ("action", "action_ask_guests")
    assert form.ask("guests", responses, ()) is None
    assert form.next_slot({"date": "friday", "guests": None}) == "guests"
    assert form.next_slot({"date": "friday", "guests": 2}) is None
