"""Agent accounts: creation with hashed passwords, and sign-in.

A sign-in, in the console (inside its signed cookie) or on the API (a bearer token), is a random token
of which the store keeps only the hash: signing out deletes it, and a new password or a disabled
account ends every sign-in of that agent at once.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from werkzeug.security import check_password_hash, generate_password_hash

from bot.errors import InvalidMessage
from bot.messages import Agent, utcnow
from bot.ports import AgentStore

# agent: the queue and tickets; editor: also the knowledge base; manager: also the reports; admin: everything.
ROLES = ("agent", "editor", "manager", "admin")
MIN_PASSWORD_LENGTH = 12
DEMO_EMAIL = "demo@switchboard.local"
# Checked when the email is unknown, so a wrong email costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash(secrets.token_urlsafe(16))


class AgentDirectory:
    """Creates agents and checks their passwords; plain passwords are never stored."""

    def __init__(self, store: AgentStore) -> None:
        self._store = store

    def add(self, email: str, name: str, role: str, password: str) -> Agent:
        """Create an agent with a hashed password."""
        if role not in ROLES:
            raise InvalidMessage(f"role must be one of {', '.join(ROLES)}")
        email = email.strip()
        if "@" not in email.strip("@") or len(email) > 254 or any(c.isspace() for c in email):
            raise InvalidMessage(f"{email!r} is not an email address")
        return self._store.add_agent(email, name.strip() or email.split("@")[0], role, _hash(password))

    def list(self) -> list[Agent]:
        return self._store.list_agents()

    def disable(self, email: str) -> Agent:
        """Sign the agent out everywhere and refuse their sign-ins; their tickets stay as they are."""
        return self._store.update_agent(email, active=False)

    def enable(self, email: str) -> Agent:
        return self._store.update_agent(email, active=True)

    def reset_password(self, email: str, password: str) -> Agent:
        """Replace the password; every sign-in of the agent (console and API) ends."""
        return self._store.update_agent(email, password_hash=_hash(password))

    def sign_in(self, agent: Agent, hours: int) -> tuple[str, datetime]:
        """A new sign-in token for `agent`, valid for `hours`, and when it expires."""
        token = secrets.token_urlsafe(32)
        expires_at = utcnow() + timedelta(hours=hours)
        self._store.add_agent_token(token_hash(token), agent.agent_id, expires_at)
        return token, expires_at

    def signed_in(self, token: str) -> Agent | None:
        """The active agent whose unexpired, unrevoked sign-in this is."""
        return self._store.agent_for_token(token_hash(token), utcnow()) if token else None

    def sign_out(self, token: str) -> None:
        """End one sign-in."""
        if token:
            self._store.revoke_agent_token(token_hash(token))

    def authenticate(self, email: str, password: str) -> Agent | None:
        """Return the active agent with these credentials, or None."""
        found = self._store.agent_credentials(email.strip())
        if found is None:
            check_password_hash(_DUMMY_HASH, password)
            return None
        agent, password_hash = found
        if not check_password_hash(password_hash, password) or not agent.active:
            return None
        return agent

    @staticmethod
    def new_password() -> str:
        """A random password to hand to a new agent."""
        return secrets.token_urlsafe(12)

    def ensure_demo_agent(self) -> tuple[str, str] | None:
        """On first start, create a demo admin and return its login; later starts return None."""
        if self._store.count_agents():
            return None
        password = self.new_password()
        self.add(DEMO_EMAIL, "Demo Agent", "admin", password)
        return DEMO_EMAIL, password


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _hash(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidMessage(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return generate_password_hash(password)
