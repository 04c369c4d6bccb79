"""Switchboard's one error tree.

    SwitchboardError
    ├── InvalidMessage          bad input from a customer or a client (-> 400/413)
    ├── NotAuthenticated        missing, unknown or expired credentials (-> 401)
    ├── NotAllowed              authenticated, but not permitted (-> 403)
    ├── NotFound                no such conversation, agent, ... (-> 404)
    ├── Conflict                the state moved on, e.g. a ticket already claimed (-> 409)
    └── Unavailable             a backend is down; the caller may retry (-> 503)

Connectors and the console translate these to HTTP in one place each.
"""

from __future__ import annotations


class SwitchboardError(Exception):
    """Base of every error Switchboard raises on purpose."""

    status = 500
    code = "internal_error"


class InvalidMessage(SwitchboardError):
    status = 400
    code = "invalid_message"


class MessageTooLarge(InvalidMessage):
    status = 413
    code = "too_large"


class NotAuthenticated(SwitchboardError):
    status = 401
    code = "not_authenticated"


class NotAllowed(SwitchboardError):
    status = 403
    code = "not_allowed"


class NotFound(SwitchboardError):
    status = 404
    code = "not_found"


class Conflict(SwitchboardError):
    status = 409
    code = "conflict"


class Unavailable(SwitchboardError):
    status = 503
    code = "unavailable"


class TooManyRequests(SwitchboardError):
    status = 429
    code = "rate_limited"
