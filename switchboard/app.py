"""The composition root: builds every collaborator once and wires them into a Flask app."""

from __future__ import annotations

import functools
import gc
import hashlib
import logging
import os
import secrets
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, jsonify, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from actions.server import HttpActionServer, InProcessActionServer
from bot.analytics.gaps import GapCluster, cluster_gaps, collect_gaps
from bot.customers.email import SmtpEmailSender, email_sender
from bot.customers.privacy import RetentionWorker, load_privacy
from bot.delivery.capabilities import CAPABILITIES
from bot.delivery.worker import OUTBOX_CHANGED, DeliveryWorker, Sender
from bot.dialogue.actions import ActionServer, tracker_state
from bot.dialogue.domain import Warn, load_domain
from bot.dialogue.engine import DialogueModel, Engine, EnginePolicy
from bot.dialogue.entities import EntityExtractor
from bot.dialogue.forms import DEFAULT_ACTIONS
from bot.dialogue.handoff_policy import HandoffPolicy, load_handoff_policy
from bot.dialogue.kb_decision import KbPolicy, LanguagePolicies, parse_language_policies
from bot.dialogue.nlu import OTHER_LANGUAGE_INTENTS, IntentClassifier
from bot.dialogue.responses import ResponseTemplates
from bot.dialogue.rules import Rulebook, load_rules
from bot.dialogue.training_data import Example, NluData, load_nlu
from bot.errors import InvalidMessage, SwitchboardError, Unavailable
from bot.language import LanguageDetector, is_english
from bot.messages import Button, utcnow
from bot.notifier import Notifier, SharedNotifier
from bot.outcome import Outcome
from bot.pipeline.inbox import Inbox, SenderThrottle, SharedSenderThrottle
from bot.pipeline.processor import WORK_WAITING, ConversationProcessor, SharedQuiet, WorkerProcessors
from bot.ports import DialogueMemory, Encoder, Retriever
from bot.stores import open_store
from bot.stores.conversations import ConversationStore
from connectors.http import RETRY_AFTER_SECONDS, error_response, json_object
from connectors.mail import CHANNEL as MAIL_CHANNEL
from connectors.mail import ImapReader, MailSender, addresses, create_mail_blueprint
from connectors.meta import CHANNELS as META_CHANNELS
from connectors.meta import GraphClient, MetaSender, Names, create_meta_blueprint
from connectors.rasa_api import create_rasa_api_blueprint
from connectors.rest import create_rest_blueprint
from connectors.streams import StreamSlots
from connectors.telegram import TelegramClient, TelegramPoller, TelegramSender, create_telegram_blueprint
from connectors.twilio import RECEIPT_ORDER, TwilioSender, create_twilio_blueprint, twilio_client
from connectors.web import create_web_blueprint, load_widget_words
from handoff.accounts_pages import create_accounts_blueprint
from handoff.agents import AgentDirectory
from handoff.api import create_agent_api
from handoff.assist import ReplyAssistant
from handoff.console import create_console_blueprint
from handoff.customer_pages import create_customer_blueprint
from handoff.kb_pages import create_kb_blueprint, create_no_kb_blueprint
from handoff.reports_pages import create_reports_blueprint
from kb_index.editing import ArticleFiles, SharedEdits
from kb_index.encoder import BatchingEncoder, OnnxEncoder, load_encoder, vectors_name
from kb_index.evaluation import EvalCase
from kb_index.multilingual import MultilingualModel, load_multilingual
from kb_index.publisher import KnowledgeBasePublisher
from kb_index.query_tuning import labelled_questions
from kb_index.retriever import KB_PUBLISHED, HybridRetriever, NoKnowledgeBase, SnapshotWatcher
from kb_index.shipping import StoreSnapshots
from kb_index.snapshot import BuildOptions
from kb_index.tuning import ContrastiveTuner
from switchboard.metrics import PrometheusMeter, scrape
from switchboard.reports import report_options, report_zone
from switchboard.settings import SAMPLE_QUESTIONS, Settings

log = logging.getLogger(__name__)

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class DraftPreview:
    """What the bot would answer from the working copy of the knowledge base, unpublished edits included:
    a private index of the working copy (var/kb_draft, rebuilt when the articles change, embedding only
    what differs from the published index) and an engine over it. Nothing is stored."""

    def __init__(self, services: Services, publisher: KnowledgeBasePublisher) -> None:
        self._services = services
        self._publisher = publisher
        self._dir = services.settings.var_dir / "kb_draft"
        self._lock = threading.Lock()
        self._engine: Engine | None = None

    def __call__(self) -> Callable[[str, str], Outcome]:
        """The preview of the working copy as it is now (its index brought up to date once per call)."""
        with self._lock:
            if self._publisher.build_draft(self._dir) or self._engine is None:
                settings, services = self._services.settings, self._services
                retriever = HybridRetriever(self._dir, services.encoder, multilingual=multilingual_model(settings))
                self._engine = build_engine(settings, services.encoder, retriever, services.store)
            return self._engine.preview


@dataclass
class Services:
    """The collaborators of one Switchboard process."""

    settings: Settings
    store: ConversationStore
    notifier: Notifier
    processor: ConversationProcessor | WorkerProcessors
    inbox: Inbox
    agents: AgentDirectory
    retriever: HybridRetriever | NoKnowledgeBase
    engine: Engine
    encoder: Encoder
    batching: BatchingEncoder | None  # set when this process built its own encoder
    delivery: DeliveryWorker
    telegram: TelegramClient | None
    retention: RetentionWorker
    meter: PrometheusMeter
    telegram_poller: TelegramPoller | None = None
    mail_reader: ImapReader | None = None
    kb_watch: SnapshotWatcher | None = None  # set where processes share a notifier: reloads on others' publishes
    kb_shipping: StoreSnapshots | None = None  # set with SWITCHBOARD_KB_SNAPSHOTS=store: shares this one's publishes
    streams: StreamSlots | None = None  # set by create_app: the open event streams

    def close(self) -> None:
        """Let turns in progress finish, then release the encoder and the store."""
        stop_pulling(self)
        self.retention.stop()
        self.processor.stop()
        self.delivery.stop()
        if self.telegram is not None:
            self.telegram.close()
        if self.batching is not None:
            self.batching.close()
        self.store.dispose()
        self.notifier.close()
        if self.kb_watch is not None:
            self.kb_watch.stop()


def knowledge_base_version(services: Services) -> str:
    """The live snapshot's name, or "no-kb"."""
    snapshot = services.retriever.snapshot
    return snapshot.path.name if snapshot is not None else "no-kb"


def secret_key(settings: Settings) -> str:
    """Return the configured secret key, or one generated once and kept under the var dir."""
    if settings.secret_key:
        return settings.secret_key
    path = settings.var_dir / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32), encoding="utf-8")
    return path.read_text(encoding="utf-8").strip()


def load_dialogue(settings: Settings, warn: Warn = log.warning) -> tuple[DialogueModel, NluData]:
    """Read the Rasa domain, NLU data and rules, and the handoff policy; report what cannot apply."""
    nlu = load_nlu(settings.nlu_path, warn)
    domain = load_domain(settings.domain_path, warn, extra_responses=nlu.responses)
    rules = load_rules(settings.rules_path, warn) if settings.rules_path.exists() else Rulebook()
    for step in sorted(rules.actions()):
        # A retrieval intent's rule names `utter_faq`, whose responses are `utter_faq/<question>`.
        if step.startswith("utter_") and step not in domain.responses \
                and not any(name.startswith(f"{step}/") for name in domain.responses):
            warn(f"{settings.rules_path}: a rule or story uses '{step}', which {settings.domain_path} does not define")
        elif not step.startswith("utter_") and step not in (*domain.actions, *domain.forms, *DEFAULT_ACTIONS):
            warn(f"{settings.rules_path}: a rule or story runs '{step}', which is not listed under 'actions' or "
                 f"'forms' in {settings.domain_path}")
    if settings.handoff_policy_path.exists():
        policy = load_handoff_policy(settings.handoff_policy_path, warn)
    else:
        log.info("no handoff policy at %s: the bot hands off on the request_human intent and after 2 "
                 "fallbacks in a row, at any hour", settings.handoff_policy_path)
        policy = HandoffPolicy()
    model = DialogueModel(domain, ResponseTemplates(domain.responses), rules, EntityExtractor(nlu), policy)
    return model, nlu


def action_server(settings: Settings) -> ActionServer | None:
    """The configured Rasa action server, or the actions package run in this process."""
    if settings.action_endpoint:
        return HttpActionServer(settings.action_endpoint, settings.action_timeout)
    packages = [p.strip() for p in settings.actions_package.split(",") if p.strip()]
    return InProcessActionServer(*packages) if packages else None


INTENT_ENCODERS = ("tuned", "shared")


def intent_tuner(settings: Settings, progress: Callable[[str], None] | None = None,
                 one_graph: bool = False) -> ContrastiveTuner | None:
    """The tuner of the intent encoder, or None when intents use the shared encoder (SWITCHBOARD_INTENT_ENCODER)."""
    if settings.intent_encoder not in INTENT_ENCODERS:
        raise SwitchboardError(f"SWITCHBOARD_INTENT_ENCODER must be one of {', '.join(INTENT_ENCODERS)}, "
                               f"not {settings.intent_encoder!r}")
    if settings.intent_encoder == "shared":
        return None
    return ContrastiveTuner(settings.model, settings.index_dir / "nlu", settings.encoder, progress=progress,
                            one_graph=one_graph, threads=settings.encoder_threads if one_graph else 0)


_classifiers: dict[tuple[Any, ...], IntentClassifier] = {}
_classifiers_lock = threading.Lock()


def trained_classifier(settings: Settings, encoder: Encoder, examples: tuple[Example, ...]) -> IntentClassifier:
    """Train the intent classifier once per process for the same encoder, examples and model settings (it is
    read-only once trained, so engines share it, whichever index directory they keep their files in)."""
    def train() -> IntentClassifier:
        tuner = intent_tuner(settings, lambda stage: log.info("intents: %s", stage))
        return IntentClassifier(encoder, examples, tuner=tuner, cache=classifier_cache(settings),
                                encoder_name=intent_encoder_name(settings))

    return _once((encoder, examples, settings.model, settings.encoder, settings.intent_encoder), train)


def _once(key: tuple[Any, ...], train: Callable[[], IntentClassifier]) -> IntentClassifier:
    """The classifier trained for `key` in this process, trained now if there is none (the last 8 are kept)."""
    with _classifiers_lock:
        found = _classifiers.get(key)
        if found is None:
            found = train()
            while len(_classifiers) >= 8:
                del _classifiers[next(iter(_classifiers))]
            _classifiers[key] = found
    return found


def other_languages_classifier(settings: Settings, examples: tuple[Example, ...]) -> IntentClassifier | None:
    """The intent classifier of messages in other languages than English, on the multilingual encoder (None
    when SWITCHBOARD_LANGUAGES lists only English); trained once per process for the same examples."""
    multilingual = multilingual_model(settings)
    if multilingual is None:
        return None
    queries = multilingual.queries
    return _once((queries, examples), lambda: IntentClassifier(
        queries, examples, OTHER_LANGUAGE_INTENTS, cache=classifier_cache(settings), encoder_name=multilingual.name))


def intent_encoder_name(settings: Settings) -> str:
    """What the English intent classifier's vectors come from, in its cache's fingerprint."""
    return f"{vectors_name(settings.model, settings.encoder)}/{settings.intent_encoder}"


def classifier_cache(settings: Settings) -> Path:
    """Where trained intent classifiers are kept, by a fingerprint of their examples, options and encoder: an
    unchanged project starts without training them again (`switchboard train` fills it ahead)."""
    return settings.index_dir / "nlu" / "classifiers"


def language_codes(settings: Settings) -> tuple[str, ...]:
    """SWITCHBOARD_LANGUAGES as a tuple of codes, English when it lists none."""
    return tuple(code.strip() for code in settings.languages.split(",") if code.strip()) or ("en",)


def language_detector(settings: Settings) -> LanguageDetector:
    """The detector of each message's language among SWITCHBOARD_LANGUAGES (one per list in a process)."""
    return _language_detector(language_codes(settings))


@functools.lru_cache(maxsize=8)
def _language_detector(languages: tuple[str, ...]) -> LanguageDetector:
    try:
        return LanguageDetector(languages)
    except ValueError as exc:
        raise SwitchboardError(f"SWITCHBOARD_LANGUAGES: {exc}") from exc


def server_encoder(settings: Settings) -> tuple[Encoder, IntentClassifier | None]:
    """A server process's encoder and, with the tuned intent encoder on ONNX Runtime, the intent classifier
    trained on one graph with it: a message is then encoded once for both (kb_index/tuning.py)."""
    plain = load_encoder(settings.model, settings.index_dir / "onnx", settings.encoder, settings.encoder_threads)
    tuner = intent_tuner(settings, lambda stage: log.info("intents: %s", stage), one_graph=True)
    if tuner is None or not isinstance(plain, OnnxEncoder):
        return plain, None
    classifier = IntentClassifier(plain, load_nlu(settings.nlu_path, lambda warning: None).english_examples,
                                  tuner=tuner, cache=classifier_cache(settings),
                                  encoder_name=f"{intent_encoder_name(settings)}/heads")
    return tuner.heads or plain, classifier


def build_engine(settings: Settings, encoder: Encoder, retriever: Retriever, memory: DialogueMemory,
                 clock: Callable[[], datetime] = utcnow, classifier: IntentClassifier | None = None) -> Engine:
    """The dialogue engine over the configured Rasa files, handoff policy and actions (and the intent
    classifier given, else one trained on `encoder`)."""
    model, nlu = load_dialogue(settings)
    if classifier is None:
        classifier = trained_classifier(settings, encoder, nlu.english_examples)
    return Engine(encoder, classifier, retriever, model, memory, actions=action_server(settings),
                  policy=EnginePolicy(kb=kb_policy(settings), kb_other_languages=other_language_policies(settings)),
                  languages=language_detector(settings), clock=clock,
                  other_languages=other_languages_classifier(settings, nlu.examples))


def serves_other_languages(settings: Settings) -> bool:
    """Whether SWITCHBOARD_LANGUAGES lists a language other than English."""
    return any(not is_english(code) for code in language_codes(settings))


def multilingual_model(settings: Settings, threads: int | None = None) -> MultilingualModel | None:
    """The encoder of questions in other languages than English, when SWITCHBOARD_LANGUAGES lists any, on
    `threads` ONNX Runtime threads (default: a server's, SWITCHBOARD_ENCODER_THREADS)."""
    if not serves_other_languages(settings):
        return None
    return load_multilingual(settings.index_dir / "onnx", threads=settings.encoder_threads if threads is None
                             else threads)


def labelled_kb_questions(settings: Settings) -> list[EvalCase]:
    """The labelled questions a build learns from (SWITCHBOARD_KB_QUESTIONS): the English ones become example
    questions, and all of them tune the multilingual encoder where other languages are served. None where the
    default (the sample shop's dev splits) is not there to read: a business that runs from its own directory is
    not stopped by the sample's files, while a path it set must exist."""
    if not settings.kb_questions.strip():
        return []
    try:
        return labelled_questions(settings.kb_questions)
    except SwitchboardError:
        if settings.kb_questions != SAMPLE_QUESTIONS:
            raise
        log.info("the sample shop's labelled questions are not here (%s): the KB is taught none",
                 settings.kb_questions)
        return []


def training_digest(settings: Settings) -> str:
    """A digest of the NLU, domain and rules files (every file of a directory), taken when the engine is built
    from them: what the bot understands with until it restarts, whatever the files say since."""
    digest = hashlib.sha256()
    for path in (settings.nlu_path, settings.domain_path, settings.rules_path):
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if file.is_file():
                digest.update(str(file.relative_to(path) if path.is_dir() else "").encode() + file.read_bytes())
    return digest.hexdigest()[:12]


def other_language_policies(settings: Settings) -> LanguagePolicies:
    """When the bot answers questions in other languages than English (SWITCHBOARD_KB_OTHER_LANGUAGES)."""
    return parse_language_policies(settings.kb_other_languages)


def kb_policy(settings: Settings) -> KbPolicy:
    """When the bot answers from the KB, offers choices, or declines."""
    return KbPolicy(answer_score=settings.kb_min_score, answer_margin=settings.kb_answer_margin,
                    choice_score=settings.kb_choice_score, choice_window=settings.kb_choice_window)


# What a process does: everything (`switchboard run`), HTTP only (`switchboard web`: the messages it takes
# are answered by workers), or the answering and sending without HTTP (`switchboard worker`).
ROLES = ("all", "web", "worker")


def changes_channel(settings: Settings) -> str:
    """The Redis channel on which the processes of a deployment tell each other what changed."""
    return f"{settings.redis_prefix}:changes"


def build_services(settings: Settings, encoder: Encoder | None = None, role: str = "all") -> Services:
    """Build the store, model, index, engine and processor of one process."""
    if role not in ROLES:
        raise SwitchboardError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    if role != "all" and not settings.redis_url:
        raise SwitchboardError("`switchboard web` and `switchboard worker` tell each other about new messages and "
                               "replies over Redis: set SWITCHBOARD_REDIS_URL (e.g. redis://127.0.0.1:6379/0), "
                               "or serve everything from one process with `switchboard run`")
    # A worker waits for stored messages, replies to send and KB publishes; the web pages' changes are not its.
    keys = (WORK_WAITING, OUTBOX_CHANGED, KB_PUBLISHED) if role == "worker" else None
    # ... and is told which conversation each stored message is for (`switchboard.worker`).
    subjects = (WORK_WAITING,) if role == "worker" else ()
    notifier = SharedNotifier(settings.redis_url, changes_channel(settings), keys=keys, subjects=subjects) \
        if settings.redis_url else Notifier()
    store = open_store(settings.store_url, on_change=notifier.publish)
    store.checkpoint_in_background()
    batching = None
    classifier = None
    if encoder is None:
        shared, classifier = server_encoder(settings)
        encoder = batching = BatchingEncoder(shared, window=settings.encoder_batch_window_ms / 1000)
    shipped = store_snapshots(settings, store)
    if shipped is not None:
        shipped.start()  # a new host serves what the deployment published, not what its directory holds
    retriever = knowledge_base(settings, encoder)
    engine = build_engine(settings, encoder, retriever, store, classifier=classifier)
    meter = PrometheusMeter()
    # A worker shares the store with other workers: it answers a conversation only while it holds its lease.
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}" if role == "worker" else None
    # Floods are counted, and waited out, across the processes when they share a Redis.
    quiet = SharedQuiet(settings.redis_url, settings.redis_prefix) if role != "all" else None
    processor: ConversationProcessor | WorkerProcessors = (
        WorkerProcessors(notifier, quiet) if role == "web"
        else ConversationProcessor(store, engine, threads=settings.processor_threads, meter=meter, holder=holder,
                                   quiet=quiet))
    throttle = (SharedSenderThrottle(settings.redis_url, settings.redis_prefix, settings.sender_burst)
                if settings.redis_url else SenderThrottle(settings.sender_burst))
    privacy = load_privacy(settings.privacy_path)
    inbox = Inbox(store, processor, notifier, settings.max_text_length, privacy,
                  throttle, language_detector(settings), meter)
    senders = push_senders(settings, store)
    telegram = TelegramClient(settings.telegram_token, settings.telegram_api_url) if settings.telegram_token else None
    if telegram is not None:
        senders["telegram"] = TelegramSender(telegram)
    delivery = DeliveryWorker(store, senders, notifier, meter=meter, shared=role == "worker")
    # Where processes share a notifier, a publish or rollback in any of them (or `switchboard kb build`) is
    # announced, and every process reads the live snapshot again at once.
    watch = SnapshotWatcher(notifier, retriever, shipped.follow if shipped is not None else None,
                            check_seconds=settings.kb_check_seconds) \
        if (settings.redis_url or shipped is not None) and isinstance(retriever, HybridRetriever) else None
    return Services(settings, store, notifier, processor, inbox, AgentDirectory(store), retriever, engine, encoder,
                    batching, delivery, telegram, RetentionWorker(store.purge_transcripts, privacy.retention_days),
                    meter, kb_watch=watch, kb_shipping=shipped)


def check_kb_snapshots(settings: Settings) -> None:
    """Refuse a SWITCHBOARD_KB_SNAPSHOTS that is neither way of sharing snapshots (before a build or a server)."""
    if settings.kb_snapshots not in ("files", "store"):
        raise SwitchboardError(f"SWITCHBOARD_KB_SNAPSHOTS is {settings.kb_snapshots!r}; use files (every host "
                               "reads one index directory) or store (snapshots are shipped through the store)")
    if settings.kb_check_seconds <= 0:
        raise SwitchboardError(f"SWITCHBOARD_KB_CHECK_SECONDS is {settings.kb_check_seconds:g}; give the seconds "
                               "between two looks in the store for a publish, above 0 (the default is 10)")


def store_snapshots(settings: Settings, store: ConversationStore) -> StoreSnapshots | None:
    """This process's share in snapshots shipped through the store (SWITCHBOARD_KB_SNAPSHOTS=store), else None."""
    if settings.kb_snapshots != "store":
        return None
    if not settings.kb_dir.is_dir() and store.live_snapshot() is not None:
        settings.kb_dir.mkdir(parents=True)  # a new host: the published articles are written into it
    kb_dir = settings.kb_dir if settings.kb_dir.is_dir() else None
    return StoreSnapshots(store, settings.index_dir, kb_dir, BuildOptions().keep_snapshots,
                          SharedEdits(store, kb_dir) if kb_dir is not None else None)


def knowledge_base(settings: Settings, encoder: Encoder) -> HybridRetriever | NoKnowledgeBase:
    """The live index of the knowledge base, or none where there is no KB directory (a Rasa project without
    `kb/`): then the bot answers from rules and intents only, and never from another KB's articles."""
    if not settings.kb_dir.is_dir():
        log.warning("no knowledge base at %s: the bot answers from its rules and intents only; add articles there "
                    "and run `switchboard kb build` to answer from them", settings.kb_dir)
        return NoKnowledgeBase()
    return HybridRetriever(settings.index_dir, encoder, multilingual=multilingual_model(settings),
                           vectors=vectors_name(settings.model, settings.encoder))


def push_senders(settings: Settings, store: ConversationStore) -> dict[str, Sender]:
    """A sender for each push channel that is configured."""
    senders: dict[str, Sender] = {}
    if settings.twilio_account_sid and settings.twilio_auth_token:
        client = twilio_client(settings.twilio_account_sid, settings.twilio_auth_token, settings.twilio_api_url)
        callback = settings.public_url.rstrip("/") + "/webhooks/twilio/status"
        for channel, number in (("sms", settings.twilio_sms_number), ("whatsapp", settings.twilio_whatsapp_number)):
            if number:
                senders[channel] = TwilioSender(client, channel, number, callback, last_inbound=store.last_inbound_at,
                                                template_sid=settings.twilio_whatsapp_template_sid)
    if (settings.email_imap_url or settings.mailgun_signing_key) and not settings.email_sender.startswith("smtp"):
        log.warning("the email channel reads mail but cannot answer it: set SWITCHBOARD_EMAIL_SENDER to "
                    "smtp://user:password@host:587 (replies wait in the outbox until then)")
    if (settings.email_imap_url or settings.mailgun_signing_key) and settings.email_sender.startswith("smtp"):
        smtp = SmtpEmailSender(settings.email_sender, settings.email_from)
        senders[MAIL_CHANNEL] = MailSender(smtp, settings.email_from, store.latest_mail,
                                           lambda conversation: store.get_conversation(conversation).reference)
    if settings.meta_page_token:
        graph = GraphClient(settings.meta_page_token, settings.meta_graph_url)
        for channel in META_CHANNELS.values():
            senders[channel] = MetaSender(graph, channel, store.last_inbound_at)
    return senders


def limit_logins(app: Flask, settings: Settings) -> None:
    """Sign-in attempts are limited per client address, and failed ones per account and address: a
    guesser elsewhere cannot lock the account's owner out (console and API alike)."""
    if settings.trusted_proxies:
        # Behind a proxy the client's address is in X-Forwarded-For, set by that many proxies.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies)  # type: ignore[method-assign]
    # In Redis when the deployment shares one, so that every process counts the same attempts.
    limiter = Limiter(get_remote_address, app=app, storage_uri=settings.redis_url or "memory://",
                      key_prefix=f"{settings.redis_prefix}:limits")

    def address_and_account() -> str:
        try:
            body: Mapping[str, Any] = json_object() if request.is_json else request.form
        except InvalidMessage:
            body = {}  # the view refuses the body itself
        email = body.get("email")
        return f"{get_remote_address()} {email.strip().lower() if isinstance(email, str) else ''}"

    def failed(response: Response) -> bool:
        # The console answers a wrong password with the form again (200) and a right one with a redirect.
        return response.status_code >= 400 or (request.endpoint == "console.login" and response.status_code == 200)

    for view in ("console.login", "agent_api.login"):
        limited = limiter.limit(settings.login_limit_per_address, methods=["POST"])(app.view_functions[view])
        per_account = limiter.limit(settings.login_limit_per_account, key_func=address_and_account, methods=["POST"],
                                    deduct_when=failed)
        app.view_functions[view] = per_account(limited)  # type: ignore[assignment]


def check_settings(settings: Settings) -> None:
    """Refuse settings that cannot work or are unsafe, with what to set instead (before anything starts)."""
    if settings.telegram_mode not in ("webhook", "polling"):
        raise SwitchboardError(f"SWITCHBOARD_TELEGRAM_MODE is {settings.telegram_mode!r}; use webhook or polling")
    if settings.email_sender in ("", "log") and settings.public_url.startswith("https://"):
        raise SwitchboardError(
            "SWITCHBOARD_EMAIL_SENDER=log writes verification codes into the log, which a public (https) "
            "deployment must not do: set SWITCHBOARD_EMAIL_SENDER to smtp://user:password@host:port, or to off")
    report_zone(settings, None)  # a report time zone that does not exist is refused now, not on the first report
    labelled_kb_questions(settings)  # a labelled-questions file set but missing or unreadable says so now
    check_kb_snapshots(settings)
    if settings.pull_lease_seconds < 2:
        raise SwitchboardError(f"SWITCHBOARD_PULL_LEASE_SECONDS is {settings.pull_lease_seconds:g}; a worker renews "
                               "the lease about every second, so it must be at least 2 (15 is the default)")


def freeze_startup_heap() -> int:
    """Set aside what a serving process built to start (the models' and libraries' half a million objects)
    from the garbage collector's full collections, which otherwise walk them all: 0.2 to 0.3 s each on 2
    cores, a pause for every request in flight every 20 s to a minute under steady traffic. Called once a
    process holds its services; logs and returns how many objects were set aside. Reference counting still frees
    them when let go (the KB snapshot a process started with is, once a publish replaces it); only reference
    cycles among them would be kept for good."""
    gc.collect()  # what is already garbage is freed, not kept for good
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("%s startup objects set aside from garbage collection", f"{frozen:,}")
    return frozen


def create_app(settings: Settings | None = None, *, encoder: Encoder | None = None, role: str = "all") -> Flask:
    """Create the Switchboard web app and start its message processing (`role` "web": the workers do that)."""
    settings = settings or Settings.from_env()
    check_settings(settings)
    services = build_services(settings, encoder, role)
    app = Flask(__name__, static_folder=None)
    app.config.update(
        SECRET_KEY=secret_key(settings),
        MAX_CONTENT_LENGTH=settings.max_content_length,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_url.startswith("https://"),
        WTF_CSRF_TIME_LIMIT=None,
    )
    app.extensions["switchboard"] = services

    csrf = CSRFProtect(app)
    # Open streams hold no thread, but each is a socket and some memory: bounded all the same.
    streams = StreamSlots(settings.stream_limit, settings.streams_per_client,
                          settings.streams_per_holder, settings.stream_max_seconds, settings.stream_heartbeat)
    services.streams = streams
    web = create_web_blueprint(services.inbox, services.store, services.store, services.notifier,
                               email_sender(settings.email_sender, settings.email_from),
                               streams, session_days=settings.web_session_days, agents=services.store,
                               welcome=lambda language: services.engine.render("utter_welcome", language=language),
                               languages=language_codes(settings), words=load_widget_words(settings.widget_path))
    def tracker(sender_id: str) -> dict[str, Any] | None:
        conversation = services.store.latest_conversation_of("rest", sender_id)
        if conversation is None:
            return None
        return tracker_state(conversation, services.store.transcript(conversation.conversation_id))

    rest = create_rest_blueprint(services.inbox, services.store, timeout=settings.sync_reply_timeout,
                                 token=settings.rest_token, intents=services.engine.intents, tracker=tracker)

    trained_from = training_digest(settings)
    # Rasa's `model_id`: the training files and the live KB snapshot, which a publish switches.
    rasa_api = create_rasa_api_blueprint(services.engine.parse,
                                         lambda: f"{trained_from}-{knowledge_base_version(services)}",
                                         tracker, token=settings.rest_token, max_text_length=settings.max_text_length)
    # The JSON APIs authenticate with bearer tokens, not cookies, so CSRF does not apply.
    csrf.exempt(web)
    csrf.exempt(rest)
    csrf.exempt(rasa_api)
    app.register_blueprint(rasa_api)
    store = services.store
    twilio = create_twilio_blueprint(
        services.inbox, lambda sid, state, error: store.delivery_receipt(sid, state, error, RECEIPT_ORDER),
        settings.twilio_auth_token, settings.public_url, store.last_buttons)
    csrf.exempt(twilio)  # signed by Twilio instead
    app.register_blueprint(twilio)
    telegram = create_telegram_blueprint(services.inbox, settings.telegram_webhook_secret, store.last_buttons)
    csrf.exempt(telegram)  # Telegram's secret token instead
    app.register_blueprint(telegram)
    graph = GraphClient(settings.meta_page_token, settings.meta_graph_url) if settings.meta_page_token else None
    meta = create_meta_blueprint(services.inbox, settings.meta_app_secret, settings.meta_verify_token, Names(graph))
    csrf.exempt(meta)  # signed by Meta instead
    app.register_blueprint(meta)
    mail = create_mail_blueprint(services.inbox, settings.mailgun_signing_key, addresses(settings.email_from),
                                 store.last_buttons)
    csrf.exempt(mail)  # signed by Mailgun instead
    app.register_blueprint(mail)
    app.register_blueprint(web)
    app.register_blueprint(rest)
    def notice(response: str, conversation_id: str) -> tuple[str, tuple[Button, ...]] | None:
        return services.engine.render(response, services.store.get_conversation(conversation_id))

    assistant = ReplyAssistant(services.retriever, settings.canned_path)
    # Pulled channels (the web widget, the REST API) fetch their replies; push channels need a sender.
    # An open REST channel (no token) never hands an agent's reply to whoever posts as the sender.
    reply_channels = frozenset({"web", *(["rest"] if settings.rest_token else []), *services.delivery.channels})
    agent_api = create_agent_api(services.store, services.store, services.agents, services.notifier, assistant,
                                 max_text_length=settings.max_text_length, token_hours=settings.agent_token_hours,
                                 streams=streams, reply_channels=reply_channels,
                                 notice=notice)
    csrf.exempt(agent_api)  # bearer tokens, not cookies
    app.register_blueprint(agent_api)
    app.register_blueprint(create_console_blueprint(services.store, services.store, services.agents, services.notifier,
                                                    assistant, streams=streams,
                                                    max_text_length=settings.max_text_length,
                                                    sign_in_hours=settings.agent_token_hours,
                                                    floods=services.inbox.floods,
                                                    reply_channels=reply_channels, notice=notice))
    app.register_blueprint(create_accounts_blueprint(services.store, services.agents))
    hours = services.engine.handoff_policy.business_hours
    app.register_blueprint(create_reports_blueprint(
        services.store, services.store,
        lambda first, last, channel: report_options(settings, hours, first, last, channel),
        services.store.get_conversation, lambda: {a.agent_id: a.name for a in services.store.list_agents()},
        tuple(CAPABILITIES), str(report_zone(settings, hours))))
    app.register_blueprint(create_customer_blueprint(services.store, services.store))
    if isinstance(services.retriever, NoKnowledgeBase):
        app.register_blueprint(create_no_kb_blueprint(services.store, settings.kb_dir))
    else:
        retriever = services.retriever

        shipped = services.kb_shipping

        def published() -> None:
            retriever.reload()
            if shipped is not None:
                shipped.share()  # hosts that share no directory take it from the store
            services.notifier.publish(KB_PUBLISHED)  # the other processes, where they share the notifier

        shared = shipped.edits if shipped is not None else None
        publisher = KnowledgeBasePublisher(settings.kb_dir, settings.index_dir, services.encoder,
                                           vectors_name(settings.model, settings.encoder),
                                           BuildOptions(hnsw_min_chunks=settings.hnsw_min_chunks),
                                           on_publish=published, multilingual=multilingual_model(settings),
                                           shared=shared, questions=labelled_kb_questions(settings))

        def gap_report(since: datetime | None, until: datetime | None) -> list[GapCluster]:
            questions = collect_gaps(services.store, since, until, services.store.handled_gaps())
            multilingual = multilingual_model(settings)
            return cluster_gaps(questions, services.encoder,
                                other_languages=multilingual.queries if multilingual is not None else None)

        app.register_blueprint(create_kb_blueprint(services.store, ArticleFiles(settings.kb_dir, shared), publisher,
                                                   services.engine.preview, gap_report, services.store.handle_gaps,
                                                   language_detector(settings).languages,
                                                   preview_draft=DraftPreview(services, publisher)))

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        try:
            services.store.check_writable()
        except Unavailable as exc:
            return jsonify({"status": "unavailable", "store": str(exc)}), 503
        return jsonify({"status": "ok", "store": "ok"}), 200

    @app.get("/metrics")
    def metrics() -> Response:
        if not settings.metrics_token:
            abort(404)  # off unless a token is set
        return scrape(settings.metrics_token, services.meter, services.store)

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status=204)  # browsers ask on every page; there is no icon yet

    limit_logins(app, settings)

    @app.errorhandler(404)
    @app.errorhandler(405)
    @app.errorhandler(413)
    @app.errorhandler(429)
    def api_http_error(exc: HTTPException) -> tuple[Response, int] | HTTPException:
        # Blueprint handlers do not see requests that matched no route (or were too large
        # to route); API clients still get JSON.
        if request.path.startswith(("/api/", "/webhooks/")):
            return error_response(exc.code or 500, (exc.name or "error").lower().replace(" ", "_"),
                                  exc.description or "")
        return exc

    @app.errorhandler(Unavailable)
    def store_unavailable(exc: Unavailable) -> Response:
        # Pages (the console) that met a store fault: a page that says so, and no 500.
        log.warning("answered 503 to %s: %s", request.path, exc)
        return Response(f"Switchboard cannot reach its store right now; try again in a few seconds.\n({exc})\n",
                        503, mimetype="text/plain", headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    if role == "web":
        log.info("Switchboard web app ready (store %s); `switchboard worker` processes answer", settings.store_url)
        return app
    start_work(services)
    start_pulling(services)
    log.info("Switchboard app ready (store %s, index %s)", settings.store_url, settings.index_dir)
    return app


def pulls_messages(settings: Settings) -> bool:
    """Whether a channel is configured that Switchboard reads by asking (Telegram long polling, an IMAP
    mailbox), rather than one that calls in."""
    return bool(settings.telegram_token and settings.telegram_mode == "polling") or bool(settings.email_imap_url)


def start_pulling(services: Services) -> None:
    """Start reading the channels Switchboard pulls messages from (`pulls_messages`), each on a thread."""
    settings, store = services.settings, services.store
    if services.telegram is not None and settings.telegram_mode == "polling":
        services.telegram_poller = TelegramPoller(services.telegram, services.inbox, store.last_buttons)
        services.telegram_poller.start()
    if settings.email_imap_url:
        services.mail_reader = ImapReader(settings.email_imap_url, services.inbox, settings.var_dir / "imap_state.json",
                                          addresses(settings.email_from), settings.email_poll_seconds,
                                          last_buttons=store.last_buttons)
        services.mail_reader.start()


def stop_pulling(services: Services) -> None:
    """Stop reading the pull channels; a message being read is stored first."""
    if services.telegram_poller is not None:
        services.telegram_poller.stop()
        services.telegram_poller = None
    if services.mail_reader is not None:
        services.mail_reader.stop()
        services.mail_reader = None


def start_work(services: Services) -> None:
    """Start answering stored messages, sending replies and purging old transcripts."""
    services.processor.start()
    services.delivery.start()
    services.retention.start()


def services_of(app: Flask) -> Services:
    """Return the services a Switchboard app was built with."""
    services: Services = app.extensions["switchboard"]
    return services

