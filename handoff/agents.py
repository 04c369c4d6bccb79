"""Agent accounts: creation with hashed passwords, and sign-in."""

from __future__ import annotations

import secrets

from werkzeug.security import check_password_hash, generate_password_hash

from bot.messages import Agent
from bot.ports import AgentStore

ROLES = ("agent", "editor", "admin")
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
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        return self._store.add_agent(email, name, role, generate_password_hash(password))

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

    def ensure_demo_agent(self) -> tuple[str, str] | None:
        """On first start, create a demo admin and return its login; later starts return None."""
        if self._store.count_agents():
            return None
        password = secrets.token_urlsafe(12)
        self.add(DEMO_EMAIL, "Demo Agent", "admin", password)
        return DEMO_EMAIL, password
