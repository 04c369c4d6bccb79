"""Two ways to reach rasa-sdk actions: imported into this process, or a Rasa action server."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import requests

from bot.dialogue.actions import ActionFailed, ActionRejected

log = logging.getLogger(__name__)


class InProcessActionServer:
    """Runs the rasa-sdk actions of Python packages in this process."""

    def __init__(self, *packages: str) -> None:
        # Imported here: a process whose actions run on an action server starts without rasa-sdk (0.2 s).
        from rasa_sdk.executor import ActionExecutor

        self._executor = ActionExecutor()
        for package in packages:
            self._executor.register_package(package)

    def names(self) -> list[str]:
        return sorted(self._executor.actions)

    def run(self, call: dict[str, Any]) -> dict[str, Any]:
        from rasa_sdk.interfaces import ActionExecutionRejection, ActionNotFoundException

        action = str(call.get("next_action"))
        try:
            result = asyncio.run(self._executor.run(call))
        except ActionExecutionRejection as exc:
            raise ActionRejected(f"action '{action}' rejected the message: {exc.message}") from exc
        except ActionNotFoundException as exc:
            raise ActionFailed(f"no action '{action}' is registered in this process") from exc
        except Exception as exc:
            raise ActionFailed(f"action '{action}' raised {type(exc).__name__}: {exc}") from exc
        if result is None:
            raise ActionFailed(f"action '{action}' returned nothing")
        return {"events": result.events, "responses": result.responses}


class HttpActionServer:
    """Calls a Rasa-compatible action server (`rasa_sdk` or any other) at its webhook URL."""

    def __init__(self, url: str, timeout: float = 300.0) -> None:
        self._url = url
        self._timeout = timeout
        self._session = requests.Session()

    def run(self, call: dict[str, Any]) -> dict[str, Any]:
        action = str(call.get("next_action"))
        try:
            response = self._session.post(self._url, json=call, timeout=self._timeout)
        except requests.Timeout as exc:
            raise ActionFailed(f"action server {self._url} did not answer '{action}' within "
                               f"{self._timeout:g} s") from exc
        except requests.RequestException as exc:
            raise ActionFailed(f"action server {self._url} is unreachable: {exc}") from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        error = body if isinstance(body, dict) else {}
        if response.status_code == 400 and "action_name" in error:
            raise ActionRejected(f"action '{action}' rejected the message: {error.get('error')}")
        if response.status_code != 200:
            raise ActionFailed(f"action server {self._url} answered '{action}' with HTTP "
                               f"{response.status_code}: {error.get('error') or response.text[:200]}")
        if not isinstance(body, dict):
            raise ActionFailed(f"action '{action}' returned a reply that is not {{events, responses}}")
        return body
