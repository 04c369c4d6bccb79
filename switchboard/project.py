"""A Rasa project directory as Switchboard's settings: `domain.yml` or `domain/`, `data/` at any depth,
`kb/` (its knowledge base, if it has one), `endpoints.yml`'s action server, `credentials.yml`'s Telegram and
Twilio keys, and `config.yml` read for what does not apply. SWITCHBOARD_* variables set explicitly win over
the project's files."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.dialogue.domain import load_yaml
from bot.errors import SwitchboardError

log = logging.getLogger(__name__)

Warn = Callable[[str], None]


def project_values(root: Path, warn: Warn = log.warning) -> dict[str, Any]:
    """The settings a Rasa project directory gives, by Settings field name."""
    if not root.is_dir():
        raise SwitchboardError(f"SWITCHBOARD_PROJECT_DIR={root}: no such directory")
    domain = next((p for p in (root / "domain.yml", root / "domain.yaml", root / "domain") if p.exists()), None)
    if domain is None:
        raise SwitchboardError(f"{root} has no domain.yml or domain/ directory: is it a Rasa project?")
    data = root / "data"
    if not data.is_dir():
        raise SwitchboardError(f"{root} has no data/ directory with the NLU data and rules")
    # The project's own knowledge base, indexed beside it (as Rasa keeps .rasa/); without kb/ there is none,
    # and the bot never answers from the sample shop's articles.
    values: dict[str, Any] = {"domain_path": domain, "nlu_path": data, "rules_path": data, "kb_dir": root / "kb",
                              "kb_questions": "",
                              "index_dir": root / ".switchboard" / "kb_index"}
    values |= _endpoints(root / "endpoints.yml", warn)
    values |= _credentials(root / "credentials.yml", warn)
    _config(root / "config.yml", warn)
    return values


def _endpoints(path: Path, warn: Warn) -> dict[str, Any]:
    if not path.exists():
        return {}
    document = load_yaml(path, "endpoints")
    values: dict[str, Any] = {}
    action = document.get("action_endpoint")
    if isinstance(action, dict) and action.get("url"):
        values["action_endpoint"] = str(action["url"])
        if action.get("timeout") is not None:
            try:
                values["action_timeout"] = float(action["timeout"])
            except (TypeError, ValueError):
                raise SwitchboardError(f"{path}: action_endpoint.timeout must be a number of seconds, not "
                                       f"{action['timeout']!r}") from None
    for key in document:
        if key not in ("action_endpoint",):
            warn(f"{path}: '{key}' is ignored (Switchboard keeps conversations in its own store; only "
                 "action_endpoint applies)")
    return values


# credentials.yml's keys that map onto Switchboard's settings, by channel.
_CREDENTIALS = {
    "telegram": {"access_token": "telegram_token"},
    "twilio": {"account_sid": "twilio_account_sid", "auth_token": "twilio_auth_token",
               "twilio_number": "twilio_sms_number"},
    # Rasa's Messenger channel; Instagram shares the page's token and the app's secret.
    "facebook": {"verify": "meta_verify_token", "secret": "meta_app_secret", "page-access-token": "meta_page_token"},
}
_CHANNELS_WITHOUT_KEYS = ("rest", "socketio", "rasa")  # served anyway: the REST channel and the web chat


def _credentials(path: Path, warn: Warn) -> dict[str, Any]:
    if not path.exists():
        return {}
    values: dict[str, Any] = {}
    for channel, keys in load_yaml(path, "credentials").items():
        if channel in _CREDENTIALS:
            for key, value in (keys or {}).items():
                if key in _CREDENTIALS[channel] and value:
                    values[_CREDENTIALS[channel][key]] = str(value)
                elif key not in _CREDENTIALS[channel]:
                    warn(f"{path}: {channel}.{key} is ignored")
        elif channel not in _CHANNELS_WITHOUT_KEYS:
            warn(f"{path}: the {channel} channel is not one of Switchboard's (web, REST, Telegram, SMS, WhatsApp, "
                 "Messenger, Instagram) and is ignored")
    return values


def _config(path: Path, warn: Warn) -> None:
    if not path.exists():
        return
    document = load_yaml(path, "config")
    for key in ("pipeline", "policies"):
        if document.get(key):
            warn(f"{path}: '{key}' is read but does not apply: Switchboard classifies intents with its own "
                 "encoder and follows the active form, rules, then stories (as Rasa's RulePolicy and "
                 "MemoizationPolicy would), then the knowledge base, then the fallback")
    if document.get("language") not in (None, "en"):
        warn(f"{path}: language '{document['language']}': Switchboard detects each message's language among "
             "SWITCHBOARD_LANGUAGES")
