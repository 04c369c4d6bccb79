"""What every HTTP connector shares: reading input and answering errors as JSON.

Every value a client sends is read through this module, so malformed input (a body that is
not JSON, nested too deeply, a lone surrogate, a number written in superscript digits)
becomes a 400 that says what is wrong, never a 500.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from bot.errors import InvalidMessage, SwitchboardError, Unavailable
from bot.pipeline.inbox import without_lone_surrogates

# What a 503 asks a client to wait before trying again.
RETRY_AFTER_SECONDS = 5
# A count or cursor: plain ASCII digits, few enough to fit any store's integer.
_COUNT = re.compile(r"[0-9]{1,15}")


def bearer_token() -> str:
    """The token of `Authorization: Bearer`, else the `token` query parameter (an EventSource cannot set
    headers); empty if neither."""
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    return token or request.args.get("token", "")


def _readable_json(value: Any) -> Any:
    if isinstance(value, str):
        return without_lone_surrogates(value)
    if isinstance(value, list):
        return [_readable_json(item) for item in value]
    if isinstance(value, dict):
        return {without_lone_surrogates(key): _readable_json(item) for key, item in value.items()}
    return value


def json_object() -> dict[str, Any]:
    """Return the request's JSON object body, or raise InvalidMessage saying what is wrong.

    Lone surrogates in any string are replaced, as Werkzeug replaces undecodable bytes in forms.
    """
    if not request.is_json:
        raise InvalidMessage("send the body as JSON with Content-Type: application/json")
    try:
        body = request.get_json(silent=True)
    except RecursionError as exc:
        raise InvalidMessage("the JSON body is nested too deeply") from exc
    if not isinstance(body, dict):
        raise InvalidMessage("the body must be a JSON object")
    try:
        return _readable_json(body)  # type: ignore[no-any-return]
    except RecursionError as exc:
        raise InvalidMessage("the JSON body is nested too deeply") from exc


def count(raw: str | None, name: str, default: int = 0) -> int:
    """A non-negative integer parameter (a cursor, an option number); InvalidMessage if it is anything else."""
    if raw is None or raw == "":
        return default
    if not _COUNT.fullmatch(raw):
        raise InvalidMessage(f"{name!r} must be a non-negative integer of at most 15 digits")
    return int(raw)


def option_number(text: str) -> int | None:
    """The option number a reply like " 2 " gives (ASCII digits only: "²" is no number), else None."""
    choice = text.strip()
    return int(choice) if re.fullmatch(r"[0-9]{1,3}", choice) else None


def field(body: dict[str, Any], name: str, max_length: int | None = None) -> str:
    """Return a required non-empty string field of a JSON body."""
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidMessage(f"the field {name!r} is required and must be a non-empty string")
    if max_length is not None and len(value) > max_length:
        raise InvalidMessage(f"the field {name!r} is longer than {max_length} characters")
    return value


def optional_field(body: dict[str, Any], name: str, max_length: int) -> str | None:
    """Return an optional string field of a JSON body: None when absent or blank."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidMessage(f"the field {name!r} must be a string")
    if len(value) > max_length:
        raise InvalidMessage(f"the field {name!r} is longer than {max_length} characters")
    return value.strip() or None


def error_response(status: int, code: str, message: str) -> tuple[Response, int]:
    """Build the JSON error body every API answers with."""
    return jsonify({"error": code, "message": message}), status


def answer_errors_as_json(blueprint: Blueprint) -> None:
    """Make a blueprint answer Switchboard and HTTP errors with a JSON body."""

    @blueprint.errorhandler(SwitchboardError)
    def switchboard_error(exc: SwitchboardError) -> tuple[Response, int]:
        response, status = error_response(exc.status, exc.code, str(exc))
        if isinstance(exc, Unavailable):
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)  # webhooks' providers retry on 503
        return response, status

    @blueprint.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        return error_response(status, (exc.name or "error").lower().replace(" ", "_"),
                              exc.description or "")
