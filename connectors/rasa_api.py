"""The parts of Rasa's HTTP API a Rasa user's tools reach for first: `/version`, `/status`,
`/model/parse` and a REST sender's `/conversations/<id>/tracker`, in Rasa's shapes.

They take the REST channel's token when one is set (`?token=`, as Rasa's server takes its auth token,
or `Authorization: Bearer`) and are open without one, as the REST channel is; the tracker, which holds
the whole conversation, only with a token.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from importlib import metadata
from typing import Any

from flask import Blueprint, Response, jsonify

from bot.dialogue.entities import Entity
from bot.dialogue.nlu import IntentPrediction
from bot.errors import NotAllowed, NotAuthenticated, NotFound
from connectors.http import answer_errors_as_json, bearer_token, field, json_object

Parse = Callable[[str], tuple[IntentPrediction, list[Entity], str | None]]
Tracker = Callable[[str], dict[str, Any] | None]


def create_rasa_api_blueprint(parse: Parse, model_id: Callable[[], str], tracker: Tracker, *, token: str = "",
                              max_text_length: int = 4000) -> Blueprint:
    """`parse` is the engine's; `model_id` names the training data and KB the bot answers from now; `tracker`
    gives a REST sender's latest conversation as Rasa's tracker, or None."""
    api = Blueprint("rasa_api", __name__)
    answer_errors_as_json(api)

    @api.before_request
    def authenticate() -> None:
        if token and not hmac.compare_digest(bearer_token().encode(), token.encode()):
            raise NotAuthenticated("Rasa's HTTP API needs the REST token: ?token=... or Authorization: Bearer ...")

    @api.get("/version")
    def version() -> Response:
        own = metadata.version("switchboard")
        return jsonify({"version": own, "minimum_compatible_version": own})

    @api.get("/status")
    def status() -> Response:
        # Switchboard trains at start and keeps no model files: nothing to report on either.
        return jsonify({"model_id": model_id(), "model_file": None, "num_active_training_jobs": 0})

    @api.post("/model/parse")
    def model_parse() -> Response:
        text = field(json_object(), "text", max_length=max_text_length)
        prediction, entities, language = parse(text)
        return jsonify({
            "text": text,
            "intent": {"name": prediction.intent or "nlu_fallback", "confidence": prediction.confidence},
            "intent_ranking": [{"name": name, "confidence": confidence} for name, confidence in prediction.ranking],
            "entities": [entity.as_rasa() for entity in entities],
            "language": language,
        })

    @api.get("/conversations/<sender_id>/tracker")
    def conversation_tracker(sender_id: str) -> Response:
        # The whole conversation: only for a caller holding the token, never open.
        if not token:
            raise NotAllowed("the tracker needs SWITCHBOARD_REST_TOKEN set, and the token on the request")
        found = tracker(sender_id)
        if found is None:
            raise NotFound(f"no conversation of the REST sender {sender_id!r}")
        return jsonify(found)

    return api
