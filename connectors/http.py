"""What every HTTP connector shares: reading a JSON body and answering errors as JSON."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from bot.errors import InvalidMessage, SwitchboardError


def json_object() -> dict[str, Any]:
    """Return the request's JSON object body, or raise InvalidMessage saying what is wrong."""
    if not request.is_json:
        raise InvalidMessage("send the body as JSON with Content-Type: application/json")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidMessage("the body must be a JSON object")
    return body


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
        return error_response(exc.status, exc.code, str(exc))

    @blueprint.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        return error_response(status, (exc.name or "error").lower().replace(" ", "_"),
                              exc.description or "")
