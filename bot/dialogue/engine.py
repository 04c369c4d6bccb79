"""The dialogue engine: decides the bot's turn for one stored customer message.

In order: the handoff policy's triggers (an explicit request, a keyword, a sensitive
intent, negative sentiment), the active form or the action that asked the customer a
question, the rules and then the stories (bot/dialogue/rules.py), an intent's own response, the
knowledge base (bot/dialogue/kb_answers.py), and last the fallback, which hands off when it repeats.
The message's working state is a `Turn` (bot/dialogue/turn.py).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot.customers.codes import new_link_code, quoted_reference
from bot.delivery.capabilities import CAPABILITIES
from bot.dialogue.actions import (
    ActionFailed,
    ActionRejected,
    ActionResult,
    ActionServer,
    TurnInput,
    build_call,
    read_reply,
)
from bot.dialogue.domain import Domain
from bot.dialogue.entities import Entity, EntityExtractor
from bot.dialogue.forms import DEACTIVATE_LOOP, LISTEN, REQUESTED_SLOT, RESTART, Form, extract_slots
from bot.dialogue.handoff_policy import HandoffPolicy
from bot.dialogue.kb_answers import KbAnswers
from bot.dialogue.kb_decision import OTHER_LANGUAGES, KbPolicy, LanguagePolicies
from bot.dialogue.nlu import IntentClassifier, IntentPrediction
from bot.dialogue.responses import ResponseTemplates
from bot.dialogue.rules import Happened, Rulebook
from bot.dialogue.sentiment import LexiconSentiment
from bot.dialogue.turn import LANGUAGE_SLOT, Turn
from bot.language import LanguageDetector, is_english
from bot.messages import (
    PRESENCE_MINUTES,
    Author,
    Button,
    Conversation,
    ConversationStatus,
    EventKind,
    Reply,
    utcnow,
)
from bot.outcome import Outcome, ReferenceNotice
from bot.ports import DialogueMemory, Encoder, Retriever

log = logging.getLogger(__name__)

MAX_ACTIONS = 10    # actions the bot runs for one message, at most (a rule or story that loops stops there)

SESSION_START = "action_session_start"  # Rasa's action run as a conversation begins, when a project defines one
# A button's payload naming an intent, as in Rasa: "/order_status" or "/order_status{\"order_number\": \"PO-1\"}".
_INTENT_PAYLOAD = re.compile(r"/(\w{1,100})(\{.{0,2000}\})?", re.DOTALL)
# Fields of an action's message that are not values for the response's placeholders.
_MESSAGE_FIELDS = {"text", "response", "template", "buttons", "image", "elements", "custom", "attachment",
                   "json_message", "quick_replies", "recipient_id"}


@dataclass(frozen=True)
class EnginePolicy:
    """The engine's thresholds; the handoff rules are in `HandoffPolicy`."""

    kb: KbPolicy = field(default_factory=KbPolicy)
    kb_other_languages: LanguagePolicies = OTHER_LANGUAGES  # questions scored by the multilingual encoder
    handoff_intent: str = "request_human"
    kb_passages: int = 10  # searched for a question: enough for the runner-up article and the choices
    quote_chars: int = 400
    recall_days: int = 30
    presence_minutes: int = PRESENCE_MINUTES  # an agent seen this recently counts as online
    max_followups: int = 5
    greet_intent: str = "greet"  # a returning customer's greeting is answered with a recall
    link_intent: str = "link_channels"  # "I wrote to you before on WhatsApp": the bot gives a link code


@dataclass(frozen=True)
class DialogueModel:
    """What a business configures: Rasa domain, rules and entities, and the handoff policy."""

    domain: Domain
    responses: ResponseTemplates
    rules: Rulebook = field(default_factory=Rulebook)
    entities: EntityExtractor | None = None
    handoff: HandoffPolicy = field(default_factory=HandoffPolicy)


class Engine:
    """Answers one customer message at a time, from the policy, actions, intents and the KB."""

    def __init__(self, encoder: Encoder, classifier: IntentClassifier, retriever: Retriever,
                 model: DialogueModel, memory: DialogueMemory, *, actions: ActionServer | None = None,
                 sentiment: LexiconSentiment | None = None, policy: EnginePolicy | None = None,
                 languages: LanguageDetector | None = None, clock: Callable[[], datetime] = utcnow,
                 other_languages: IntentClassifier | None = None) -> None:
        self._encoder = encoder
        self._classifier = classifier
        # Intents of messages in other languages than English, on the multilingual encoder's vectors.
        self._other_languages = other_languages
        self._retriever = retriever
        self._model = model
        self._memory = memory
        self._actions = actions
        self._sentiment = sentiment or LexiconSentiment(model.handoff.sentiment.lexicon)
        self._policy = policy or EnginePolicy()
        self._languages = languages
        self._clock = clock
        self._kb = KbAnswers(retriever, model.responses, memory, policy=self._policy.kb,
                             other_languages=self._policy.kb_other_languages, passages=self._policy.kb_passages,
                             quote_chars=self._policy.quote_chars)

    # -- the public turn ---------------------------------------------------------------

    def respond(self, conversation: Conversation, text: str, channel: str | None = None,
                seq: int | None = None, *, media: str | None = None, link: str | None = None,
                rated: str | None = None, language: str | None = None) -> Outcome:
        """Decide the bot's turn for a message that came on `channel` (stored at `seq`); `media` is the
        kind of a message without text (a photo, a sticker), which the bot cannot read; `link` is what
        became of a link code the message carried; `rated` says the message rated the closed
        conversation ("first") or rated it again ("repeat"); `language` is the message's as detected when it
        was stored (detected here when not given).

        Every message is rated for sentiment; a conversation that is not the bot's gets no reply.
        """
        turn = self._start(conversation, text, channel, seq, language=language)
        capabilities = CAPABILITIES.get(channel or "")
        keyword = text.strip().casefold()
        if rated is not None:
            # Said on the closed conversation the rating belongs to; a thanks, never an answer.
            response = "utter_csat_thanks" if rated == "first" else "utter_csat_repeat"
            if self._model.responses.has(response):
                turn.say(self._model.responses, response)
        elif link is not None and self._model.responses.has(f"utter_link_{link}"):
            # Said whoever holds the conversation: only the bot knows what became of the code.
            turn.say(self._model.responses, f"utter_link_{link}")
        elif capabilities is not None and keyword in capabilities.opt_out_keywords | capabilities.opt_in_keywords:
            # The carrier's STOP/START: recorded on the identity, never answered by the bot.
            turn.notes["keyword"] = keyword.upper()
            turn.opted_out = keyword in capabilities.opt_out_keywords
        elif capabilities is not None and keyword in capabilities.help_keywords \
                and self._model.responses.has("utter_sms_help"):
            turn.notes["keyword"] = keyword.upper()
            turn.say(self._model.responses, "utter_sms_help")
        elif media is not None and conversation.status == ConversationStatus.BOT \
                and self._model.responses.has("utter_non_text"):
            turn.fallback_streak = turn.conversation.fallback_streak
            turn.say(self._model.responses, "utter_non_text", media=media)
        elif conversation.status == ConversationStatus.BOT:
            self._decide(turn)
        elif conversation.status == ConversationStatus.QUEUED and self._model.handoff.answer_while_queued:
            self._while_queued(turn)
        return turn.outcome()

    def preview(self, text: str, channel: str | None = None) -> Outcome:
        """What the bot would answer this as the first message of a conversation; nothing is stored."""
        now = self._clock()
        conversation = Conversation("preview", "preview", "SB-PREVW", ConversationStatus.BOT, None, None, 0,
                                    channel or "preview", "preview", now, now)
        return self.respond(conversation, text, channel)

    @property
    def handoff_policy(self) -> HandoffPolicy:
        return self._model.handoff

    @property
    def intents(self) -> tuple[str, ...]:
        """The domain's intents."""
        return self._model.domain.intents

    def render(self, response: str, conversation: Conversation | None = None, language: str | None = None,
               **values: Any) -> tuple[str, tuple[Button, ...]] | None:
        """A domain response's text and buttons said outside a turn (the rating question on close, the web
        chat's welcome), in the variation the conversation's slots select (its customer's language) or
        `language`'s, or None if the domain does not define it."""
        if not self._model.responses.has(response):
            return None
        slots = dict(conversation.dialogue.slots) if conversation is not None else {}
        if language is not None:
            slots[LANGUAGE_SLOT] = language
        return self._model.responses.render(response, values, slots)

    def hand_off(self, conversation: Conversation, reason: str, detail: Mapping[str, Any] | None = None) -> Outcome:
        """Queue the conversation for an agent and tell the customer what happens next."""
        turn = self._start(conversation, "", conversation.last_channel, None, rate=False)
        self._hand_off(turn, reason, dict(detail or {}))
        return turn.outcome()

    # -- deciding ----------------------------------------------------------------------

    def _start(self, conversation: Conversation, text: str, channel: str | None, seq: int | None,
               rate: bool = True, language: str | None = None) -> Turn:
        state = conversation.dialogue
        slots = {**self._model.domain.initial_slots(), **state.slots}
        values, language = self._customer_facts(conversation, text, language)
        turn = Turn(conversation, text, channel, seq, slots, state.active_loop, state.negative_streak,
                     values, {}, language, previous_action=state.latest_action,
                     history=[Happened.from_json(step) for step in state.history])
        if LANGUAGE_SLOT in self._model.domain.slots and turn.language is not None:
            # Responses may vary on it (Rasa's `condition` on a slot): the customer is answered in their language.
            slots[LANGUAGE_SLOT] = turn.language
        if rate:
            score = self._sentiment.score(text)
            turn.notes["sentiment"] = score
            negative = score <= self._model.handoff.sentiment.frustrated_at
            turn.negative_streak = state.negative_streak + 1 if negative else 0
        return turn

    def _decide(self, turn: Turn) -> None:
        policy = self._model.handoff
        turn.fallback_streak = 0
        if turn.seq == 1 and SESSION_START in self._model.domain.actions:
            # Rasa's custom `action_session_start`: run as a conversation begins, before its first message is
            # answered (it may set slots or say something); if it fails, the message is answered all the same.
            self._act(turn, SESSION_START, quiet=True, record=False)
            turn.notes.pop("answered_by", None)  # it answers nothing: the message is still to be answered
            turn.acted = None
        language = policy.explicit_request.language_of_request(turn.text)
        if language is not None:
            return self._hand_off(turn, "customer_request", {"language": language})
        keyword = policy.keyword_in(turn.text)
        if keyword is not None:
            return self._hand_off(turn, "keyword", {"keyword": keyword})
        if policy.sentiment.triggered(turn.notes["sentiment"], turn.negative_streak):
            return self._hand_off(turn, "negative_sentiment", {"sentiment": turn.notes["sentiment"],
                                                               "negative_messages": turn.negative_streak})

        if self._offer_reference(turn):
            return None
        tap = self._kb.choice(turn) or self._kb.feedback(turn)
        if tap is not None:
            return self._fall_back(turn, tap.miss) if tap.miss else None

        vector = self._english_vector(turn)
        self._understand(turn, vector)
        assert turn.prediction is not None
        if turn.prediction.intent == self._policy.handoff_intent:
            return self._hand_off(turn, "customer_request", {"intent": turn.prediction.intent})
        guess, confidence = turn.prediction.best_guess
        if policy.sensitive(guess, confidence):
            return self._hand_off(turn, "sensitive_intent", {"intent": guess, "confidence": confidence})

        if turn.prediction.intent == self._policy.link_intent and self._model.responses.has("utter_link_code"):
            turn.link_code = new_link_code()
            turn.say(self._model.responses, "utter_link_code", code=turn.link_code)
            return None
        if turn.active_loop and self._continue_loop(turn, turn.active_loop):
            return None
        if self._converse(turn):
            return None
        intent = turn.prediction.intent
        if intent is not None and self._model.responses.has(f"utter_{intent}"):
            turn.say(self._model.responses, f"utter_{intent}")
            if intent == self._policy.greet_intent:
                self._recall(turn)
            return None
        if self._follow_up(turn):
            return None
        if self._kb.answer(turn, vector):
            return None
        return self._fall_back(turn)

    def _follow_up(self, turn: Turn) -> bool:
        """A message nothing else answered, carrying what the previous answer's action works on ("what
        about PO-2610433" after an order's status), is that action's again."""
        if turn.previous_action is None or not self._fills_a_slot(turn) or not self._act(turn, turn.previous_action):
            return False
        turn.notes["follow_up"] = turn.previous_action
        return True

    def _fills_a_slot(self, turn: Turn) -> bool:
        found = {e.entity for e in turn.entities}
        return any(mapping.type == "from_entity" and mapping.entity in found
                   for slot in self._model.domain.slots.values() for mapping in slot.mappings)

    def _while_queued(self, turn: Turn) -> None:
        """Waiting for a person: the bot answers what the knowledge base answers with confidence. Anything
        else (chit-chat, another request for a person, a question it cannot answer, a "no" to an answer)
        waits for the person, who sees it all; it is no miss and never hands off again."""
        if self._kb.feedback(turn) is not None:
            return  # a "no" is no miss here: the person the customer waits for answers it
        vector = self._english_vector(turn)
        self._understand(turn, vector)
        assert turn.prediction is not None
        if turn.prediction.intent is None:
            self._kb.answer(turn, vector, choices=False)

    def _offer_reference(self, turn: Turn) -> bool:
        """A customer quoting another conversation's reference is offered to continue it here: a code goes
        to that conversation's channel, and sending it here links the two. The answer is the same whether
        or not the reference exists, so references cannot be probed."""
        reference = quoted_reference(turn.text)
        if reference is None or reference == turn.conversation.reference \
                or not self._model.responses.has("utter_reference_link"):
            return False
        owner = self._memory.reference_owner(reference)
        if owner == turn.conversation.customer_id:
            return False
        if owner is not None and self._model.responses.has("utter_reference_notice"):
            code = new_link_code()
            text, _ = self._model.responses.render("utter_reference_notice", {"reference": reference, "code": code})
            turn.reference_notice = ReferenceNotice(reference, code, text)
        turn.notes["reference"] = reference
        turn.say(self._model.responses, "utter_reference_link", reference=reference)
        return True

    def parse(self, text: str) -> tuple[IntentPrediction, list[Entity], str | None]:
        """What the bot makes of a message outside any conversation (Rasa's `/model/parse`): its intent,
        entities and language."""
        language = self._languages.detect(text) if self._languages is not None else None
        prediction, entities, _ = self._read(text, language, None)
        return prediction, entities, language

    def _in_other_language(self, language: str | None) -> bool:
        """Whether a message in `language` is understood by the multilingual encoder: its intent, and its KB
        search (which may read English questions too: kb_answers asks the retriever)."""
        return (self._other_languages is not None and language is not None and not is_english(language)
                and self._retriever.multilingual_for(language))

    def _english_vector(self, turn: Turn) -> Any:
        """The message's vector from the English encoder, unless the multilingual one reads it instead."""
        return None if self._in_other_language(turn.language) else self._encoder.encode([turn.text])[0]

    def _read(self, text: str, language: str | None, vector: Any) -> tuple[IntentPrediction, list[Entity], bool]:
        """The intent and entities of a message, and whether the multilingual classifier read it. A payload
        naming one of the domain's intents is that intent, whatever its language (a quick reply's
        "/order_status")."""
        payload = _intent_payload(text.strip(), self._model.domain.intents)
        if payload:
            entities = [Entity(name, str(value), 0, 0, "payload") for name, value in payload[1].items()]
            return IntentPrediction(payload[0], 1.0, ((payload[0], 1.0),)), entities, False
        entities = self._model.entities.extract(text) if self._model.entities is not None else []
        if self._other_languages is not None and self._in_other_language(language):
            return self._other_languages.predict(text), entities, True
        return self._classifier.predict(text, vector), entities, False

    def _understand(self, turn: Turn, vector: Any) -> None:
        """Intent, entities and the slots they fill."""
        turn.prediction, turn.entities, multilingual = self._read(turn.text, turn.language, vector)
        if multilingual:
            turn.notes["intent_encoder"] = "multilingual"
        turn.notes["intent"] = turn.prediction.intent
        turn.notes["confidence"] = turn.prediction.confidence
        if turn.entities:
            turn.notes["entities"] = {e.entity: e.value for e in turn.entities}
        turn.happened("intent", turn.prediction.intent or "nlu_fallback")
        domain = self._model.domain
        turn.extracted = extract_slots(domain.slot_mappings, turn.prediction.intent, turn.entities, turn.text,
                                       turn.active_loop, turn.slots.get(REQUESTED_SLOT), domain.ignored_intents)
        turn.slots.update(turn.extracted)

    def _continue_loop(self, turn: Turn, loop: str) -> bool:
        """The active form, or the action that asked the customer a question, takes the message first; False if
        it declined it (the form stays active while the bot answers it otherwise)."""
        form = self._model.domain.forms.get(loop)
        if form is None:
            return self._act(turn, loop, continuing=True)
        if not self._run_form(turn, form, validate=True):
            turn.interrupted = True
            return False
        turn.notes["answered_by"] = {"kind": "form", "form": form.name, "continuing": True}
        self._converse(turn)  # what the rules say once the form is complete (its submit action)
        return True

    def _act(self, turn: Turn, action: str, depth: int = 0, continuing: bool = False, quiet: bool = False,
             record: bool = True) -> bool:
        """Run a custom action; False if it declined the message (the bot answers it otherwise), or failed
        while `quiet` (otherwise a failure is answered with `utter_action_failed`). `record`: it is a step of
        the conversation's history (a form's question is the form's)."""
        try:
            result = self._call(turn, action)
        except ActionRejected as exc:
            log.info("conversation %s: %s", turn.conversation.conversation_id, exc)
            if turn.active_loop == action:
                turn.active_loop = None
            return False
        except ActionFailed as exc:
            self._action_failed(turn, action, exc, quiet)
            return not quiet
        if record:
            turn.happened("action", action)
        self._apply(turn, result)
        # `continuing`: the message answered the action's own question (an order number, say).
        turn.notes["answered_by"] = {"kind": "action", "action": action, "continuing": continuing}
        turn.acted = action
        if result.pause:
            self._hand_off(turn, "action", {"action": action, "why": turn.slots.get("handoff_reason")})
        elif result.followup and depth < self._policy.max_followups \
                and not self._run(turn, result.followup, depth=depth + 1):
            log.info("conversation %s: follow-up %s did nothing", turn.conversation.conversation_id, result.followup)
        return True

    def _call(self, turn: Turn, action: str, candidates: Mapping[str, Any] | None = None) -> ActionResult:
        """One call of the action server; `candidates`: the slots a form's validation is to check."""
        if self._actions is None:
            raise ActionFailed(f"action '{action}' is called but no action server is configured")
        history = self._memory.transcript(turn.conversation.conversation_id) if turn.seq is not None else []
        call = build_call(action, turn.conversation.conversation_id, turn.slots, turn.active_loop,
                          self._turn_input(turn), [e for e in history if turn.seq is None or e.seq < turn.seq],
                          self._model.domain.as_action_domain(), candidates)
        return read_reply(action, self._actions.run(call))

    def _action_failed(self, turn: Turn, action: str, exc: ActionFailed, quiet: bool = False) -> None:
        log.warning("conversation %s: action failed: %s", turn.conversation.conversation_id, exc)
        turn.notes["action_error"] = {"action": action, "error": str(exc)}
        if not quiet:
            self._deactivate(turn, record=False)
            self._fall_back(turn, response="utter_action_failed")

    def _apply(self, turn: Turn, result: ActionResult) -> None:
        """An action's slots, profile changes, loop and messages."""
        if result.reset_slots:
            turn.slots = self._model.domain.initial_slots()
        turn.slots.update(result.slots)
        turn.attributes.update(result.attributes)
        if result.customer_name is not None:
            # Kept on the profile; this turn's replies already greet them by it.
            turn.customer_name = result.customer_name
            turn.values.update(name=result.customer_name.split()[0], full_name=result.customer_name)
        if result.active_loop_set:
            if result.active_loop is None:
                self._deactivate(turn)
            elif result.active_loop != turn.active_loop:
                turn.active_loop = result.active_loop
                turn.happened("loop", result.active_loop)
        for message in result.messages:
            self._say_message(turn, message)

    # -- rules, stories and forms ----------------------------------------------------------

    def _converse(self, turn: Turn) -> bool:
        """Run what the rules and stories say comes next, until they say to listen. False if none said
        anything, or if the first action they named declined the message (the bot answers it otherwise)."""
        for ran in range(MAX_ACTIONS):
            found = self._model.rules.next_action(turn.history, turn.slots) if turn.handoff is None else None
            if found is None or found[0] == LISTEN:
                return ran > 0
            action, source = found
            turn.notes.setdefault("followed", []).append(source)
            if not self._run(turn, action):
                if ran == 0:
                    turn.notes.pop("followed")
                return ran > 0
            if action in self._model.domain.forms and turn.active_loop == action:
                return True  # the form asked for a slot: the customer's answer comes next
        log.warning("conversation %s: the rules and stories ran %d actions for one message; stopped there (%s)",
                    turn.conversation.conversation_id, MAX_ACTIONS, ", ".join(turn.notes.get("followed", ())))
        return True

    def _run(self, turn: Turn, action: str, depth: int = 0) -> bool:
        """Run one action a rule, story or action named: a response, a form, one of Rasa's default actions
        or a custom action. False if it declined the message or does not exist."""
        if action.startswith("utter_"):
            response = self._response_for(turn, action)
            if response is None:
                log.warning("conversation %s: '%s' is not a response of the domain", turn.conversation.conversation_id,
                            action)
                return False
            turn.say(self._model.responses, response)
            return True
        form = self._model.domain.forms.get(action)
        if form is not None:
            after_message = bool(turn.history) and turn.history[-1].kind == "intent"
            return self._run_form(turn, form, validate=after_message and not turn.interrupted)
        if action == DEACTIVATE_LOOP:
            turn.happened("action", action)
            self._deactivate(turn)
            return True
        if action == RESTART:
            turn.happened("action", action)
            turn.slots = self._model.domain.initial_slots()
            turn.active_loop = None
            return True
        return self._act(turn, action, depth)

    def _response_for(self, turn: Turn, response: str) -> str | None:
        """The response to say for `response`: itself, or a retrieval intent's (`utter_faq` says
        `utter_faq/opening_hours` for the intent `faq/opening_hours`)."""
        if self._model.responses.has(response):
            return response
        intent = turn.prediction.intent if turn.prediction is not None else None
        if intent and intent.startswith(f"{response.removeprefix('utter_')}/") \
                and self._model.responses.has(f"utter_{intent}"):
            return f"utter_{intent}"
        return None

    def _deactivate(self, turn: Turn, record: bool = True) -> None:
        if turn.active_loop is None:
            return
        turn.active_loop = None
        if REQUESTED_SLOT in turn.slots:
            turn.slots[REQUESTED_SLOT] = None
        if record:
            turn.happened("loop", None)

    def _run_form(self, turn: Turn, form: Form, validate: bool) -> bool:
        """A form's turn, as Rasa's FormAction takes it: activate it (with what the activating message
        filled), validate the slots this message filled (`validate`: it runs right after the message), ask
        for the first required slot still empty, or deactivate once none is. False if the form was asking
        and the message filled none of its slots: the bot answers it otherwise, and the form stays active."""
        activating = turn.active_loop != form.name
        intent = turn.prediction.intent if turn.prediction is not None else None
        if activating:
            if validate:
                domain = self._model.domain
                found = extract_slots(domain.slot_mappings, intent, turn.entities, turn.text, None, None,
                                      domain.ignored_intents, activating=form.name)
                turn.slots.update(found)
                turn.extracted.update(found)
            turn.happened("action", form.name)
            turn.active_loop = form.name
            turn.happened("loop", form.name)
            candidates = {name: turn.slots[name] for name in form.required_slots if turn.slots.get(name) is not None}
        else:
            candidates = {name: value for name, value in turn.extracted.items() if name in form.required_slots}
            if validate and (not candidates or intent in form.ignored_intents):
                return False
            turn.happened("action", form.name)
        requested: str | None = form.next_slot(turn.slots)
        if validate and candidates and form.validation_action in self._model.domain.actions:
            try:
                result = self._call(turn, form.validation_action, candidates)
            except ActionRejected:
                result = None
            except ActionFailed as exc:
                self._action_failed(turn, form.validation_action, exc)
                return True
            if result is not None:
                self._apply(turn, result)
                if turn.active_loop != form.name:
                    return True  # the validation deactivated the form
                # A validation that chooses the slots (rasa-sdk's `required_slots`) names the next one itself.
                requested = result.slots[REQUESTED_SLOT] if REQUESTED_SLOT in result.slots \
                    else form.next_slot(turn.slots)
        if requested is not None:
            turn.slots[REQUESTED_SLOT] = requested
            self._ask(turn, form, requested)
            return True
        if activating:
            turn.happened("action", form.name)  # as Rasa's tracker shows it: the form ran, then completed
        self._deactivate(turn)
        return True

    def _ask(self, turn: Turn, form: Form, slot: str) -> None:
        way = form.ask(slot, tuple(self._model.domain.responses), self._model.domain.actions)
        if way is None:
            log.warning("conversation %s: form '%s' asks for '%s' but the domain has no utter_ask_%s response or "
                        "action_ask_%s action", turn.conversation.conversation_id, form.name, slot, slot, slot)
        elif way[0] == "response":
            turn.reply(self._model.responses, way[1])  # the form's question is the form's step, as in Rasa's tracker
        else:
            self._act(turn, way[1], record=False)

    def _fall_back(self, turn: Turn, response: str = "utter_fallback") -> None:
        streak = turn.conversation.fallback_streak + 1
        if streak >= self._model.handoff.repeated_fallback:
            return self._hand_off(turn, "repeated_fallback", {"fallbacks": streak})
        turn.fallback_streak = streak
        if response == "utter_fallback" and self._recall(turn):
            return None
        turn.say(self._model.responses, response if self._model.responses.has(response) else "utter_fallback")
        return None

    def _hand_off(self, turn: Turn, reason: str, detail: dict[str, Any]) -> None:
        now = self._clock()
        online = self._memory.agents_online(now - timedelta(minutes=self._policy.presence_minutes))
        # The day the team is back is written in the notice's language ("Monday 08:00" to a Spanish customer of a
        # shop without Spanish responses).
        notice = self._model.handoff.notice(now, self._memory.queue_length(), online,
                                            turn.written_in(self._model.responses, "utter_handoff_closed"))
        response = notice.response if self._model.responses.has(notice.response) else "utter_handoff"
        turn.say(self._model.responses, response, reference=turn.conversation.reference, **notice.values)
        turn.handoff = (reason, {**detail, **notice.detail})
        turn.active_loop = None
        turn.fallback_streak = 0

    # -- personal answers --------------------------------------------------------------

    def _customer_facts(self, conversation: Conversation, text: str,
                        detected: str | None = None) -> tuple[dict[str, str], str | None]:
        """From one read of the customer's profile: the placeholder values every response may use (their
        name), and the message's language; for a message too short to tell, the one on the profile, else
        the one the conversation was in."""
        if detected is None and self._languages is not None:
            detected = self._languages.detect(text)  # unless the inbox told it when the message was stored
        if conversation.conversation_id == "preview":
            return {}, detected
        customer = self._memory.get_customer(conversation.customer_id)
        name = customer.display_name
        values = {"name": name.split()[0], "full_name": name} if name and name.strip() else {}
        before = conversation.dialogue.slots.get(LANGUAGE_SLOT)
        return values, detected or customer.language or (str(before) if before else None)

    def _recall(self, turn: Turn) -> bool:
        """On a returning customer's first message, recall their last question in one sentence."""
        conversation = turn.conversation
        if turn.seq is None or not self._model.responses.has("utter_recall"):
            return False
        if self._memory.wrote_before(conversation.conversation_id, turn.seq):
            return False
        previous = self._memory.previous_conversation(conversation.customer_id, conversation.conversation_id)
        if previous is None:
            return False
        now = self._clock()
        if now - previous.updated_at > timedelta(days=self._policy.recall_days):
            return False
        # The question that set the topic: answered from the KB or by an action, but not the
        # answer to an action's own question (the order number typed after "where is my order").
        asked = [e for e in self._memory.transcript(previous.conversation_id)
                 if e.kind == EventKind.MESSAGE_IN and e.text and e.data.get("answered_by")
                 and not e.data["answered_by"].get("continuing")]
        if not asked:
            return False
        # The customer's own words, quoted by each language's response in its own way, and the order they
        # were about unless they named it (a number reads the same in every language).
        topic = _shorten(asked[-1].text or "", 80)
        order = previous.dialogue.slots.get("order_number")
        if order and str(order) not in topic:
            topic += f" ({order})"
        turn.say(self._model.responses, "utter_recall", topic=topic,
                 when=_days_ago((now.date() - previous.updated_at.date()).days))
        turn.notes["recalled"] = previous.reference
        return True

    # -- saying things -----------------------------------------------------------------

    def _say_message(self, turn: Turn, message: Mapping[str, Any]) -> None:
        """One message an action sent: a domain response by name, or its own text and buttons."""
        response = message.get("response") or message.get("template")
        if response and self._model.responses.has(str(response)):
            values = {k: v for k, v in message.items() if k not in _MESSAGE_FIELDS and v is not None}
            return turn.say(self._model.responses, str(response), **values)
        text = str(message.get("text") or message.get("image") or "")
        if not text:
            log.warning("conversation %s: an action sent a message with nothing Switchboard can show "
                        "(response %r)", turn.conversation.conversation_id, response)
            return None
        buttons = tuple(_button(b) for b in message.get("buttons") or () if isinstance(b, dict))
        turn.replies.append(Reply(turn.conversation.conversation_id, text, Author.BOT, buttons))
        return None

    def _turn_input(self, turn: Turn) -> TurnInput:
        prediction = turn.prediction or IntentPrediction(None, 0.0)
        customer: dict[str, Any] = {}
        if turn.conversation.conversation_id != "preview":
            profile = self._memory.get_customer(turn.conversation.customer_id)
            customer = {"id": profile.customer_id, "name": profile.display_name, "email": profile.email,
                        "phone": profile.phone, "language": profile.language,
                        "attributes": {**profile.attributes, **turn.attributes},
                        "channels": sorted({channel for channel, _ in profile.identities})}
        return TurnInput(turn.text, prediction.intent or "nlu_fallback", prediction.confidence, prediction.ranking,
                         [e.as_rasa() for e in turn.entities], turn.channel, customer, self._clock().isoformat())



def _button(raw: Mapping[str, Any]) -> Button:
    return Button(str(raw.get("title", "")), str(raw.get("payload", "")))


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "\u2026"


def _days_ago(days: int) -> str:
    return "Earlier today" if days <= 0 else "Yesterday" if days == 1 else f"{days} days ago"


def _intent_payload(text: str, intents: tuple[str, ...]) -> tuple[str, dict[str, Any]] | None:
    """The intent and entities of a payload such as `/order_status{"order_number": "PO-2610427"}`, if it
    names one of `intents`; else None (the message is understood as text)."""
    match = _INTENT_PAYLOAD.fullmatch(text)
    if match is None or match.group(1) not in intents:
        return None
    try:
        entities = json.loads(match.group(2)) if match.group(2) else {}
    except ValueError:
        return None
    return (match.group(1), entities) if isinstance(entities, dict) else None
