"""Agents' accounts, presence and API tokens, and the web chat's sessions."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from bot.errors import Conflict, InvalidMessage, NotAllowed, NotFound
from bot.messages import Agent, utcnow
from bot.stores.database import IntegrityError, Row
from bot.stores.records import Records

PRESENCES = ("online", "away")


class AgentRecords(Records):
    """The accounts agents sign in with, what they are doing, their API tokens, and web chat sessions."""

    def add_agent(self, email: str, name: str, role: str, password_hash: str) -> Agent:
        """Create an agent account; raises Conflict if the email is taken."""
        agent_id = uuid.uuid4().hex
        try:
            with self._write() as db:
                db.execute(
                    "INSERT INTO agents (agent_id, email, name, role, password_hash, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (agent_id, email.lower(), name, role, password_hash, utcnow().isoformat()),
                )
        except IntegrityError as exc:
            raise Conflict(f"an agent with the email {email} exists already") from exc
        return Agent(agent_id, email.lower(), name, role, active=True)

    def agent_credentials(self, email: str) -> tuple[Agent, str] | None:
        """Return an agent and their password hash by email."""
        row = self._connection().execute("SELECT * FROM agents WHERE email = ?", (email.lower(),)).fetchone()
        return None if row is None else (_agent(row), row["password_hash"])

    def get_agent(self, agent_id: str) -> Agent | None:
        """Return an agent by id."""
        row = self._connection().execute("SELECT * FROM agents WHERE agent_id = ?", (agent_id,)).fetchone()
        return None if row is None else _agent(row)

    def list_agents(self) -> list[Agent]:
        """Every agent account, by email."""
        rows = self._connection().execute("SELECT * FROM agents ORDER BY email").fetchall()
        return [_agent(row) for row in rows]

    def update_agent(self, email: str, *, active: bool | None = None, password_hash: str | None = None,
                     role: str | None = None) -> Agent:
        """Enable or disable an account, change its role or replace its password hash.

        Raises NotFound for an unknown email, and NotAllowed where the change would leave no active admin.
        """
        admins = "SELECT COUNT(*) FROM agents WHERE role = 'admin' AND active = 1"
        with self._write() as db:
            before = db.execute(admins).fetchone()[0]
            row = db.execute(
                "UPDATE agents SET active = COALESCE(?, active), password_hash = COALESCE(?, password_hash), "
                "role = COALESCE(?, role) WHERE email = ? RETURNING *",
                (None if active is None else int(active), password_hash, role, email.lower()),
            ).fetchone()
            if row is not None and password_hash is not None:
                # A new password ends every sign-in: whoever knew the old one is out.
                db.execute("DELETE FROM agent_tokens WHERE agent_id = ?", (row["agent_id"],))
            if before and not db.execute(admins).fetchone()[0]:
                raise NotAllowed("that would leave no active admin; make another account admin first")
        if row is None:
            raise NotFound(f"no agent with the email {email}")
        return _agent(row)

    def touch_agent(self, agent_id: str, now: datetime) -> None:
        """Record that an agent is at work now (their console made a request); once a minute at most."""
        with self._write() as db:
            db.execute("UPDATE agents SET last_seen_at = ? WHERE agent_id = ? "
                       "AND (last_seen_at IS NULL OR last_seen_at < ?)",
                       (now.isoformat(), agent_id, (now - timedelta(minutes=1)).isoformat()))

    def agents_online(self, since: datetime) -> int:
        """How many active agents were at work since a moment."""
        count: int = self._connection().execute(
            "SELECT COUNT(*) FROM agents WHERE active = 1 AND presence = 'online' AND last_seen_at >= ?",
            (since.isoformat(),),
        ).fetchone()[0]
        return count

    def set_presence(self, agent_id: str, presence: str) -> None:
        """An agent says they are `online` (taking tickets) or `away`."""
        if presence not in PRESENCES:
            raise InvalidMessage(f"presence must be one of {', '.join(PRESENCES)}")
        with self._write() as db:
            db.execute("UPDATE agents SET presence = ? WHERE agent_id = ?", (presence, agent_id))

    def count_agents(self) -> int:
        """Return how many agent accounts exist."""
        count: int = self._connection().execute("SELECT COUNT(*) FROM agents").fetchone()[0]
        return count

    # -- agent API tokens ------------------------------------------------------------

    def add_agent_token(self, token_hash: str, agent_id: str, expires_at: datetime) -> None:
        with self._write() as db:
            db.execute("INSERT INTO agent_tokens (token_hash, agent_id, expires_at) VALUES (?, ?, ?)",
                       (token_hash, agent_id, expires_at.isoformat()))

    def revoke_agent_token(self, token_hash: str) -> None:
        """End one sign-in (console or API)."""
        with self._write() as db:
            db.execute("DELETE FROM agent_tokens WHERE token_hash = ?", (token_hash,))

    def agent_for_token(self, token_hash: str, now: datetime) -> Agent | None:
        """The active agent an unexpired API token belongs to."""
        row = self._connection().execute(
            "SELECT a.* FROM agent_tokens t JOIN agents a USING (agent_id) "
            "WHERE t.token_hash = ? AND t.expires_at > ? AND a.active = 1", (token_hash, now.isoformat()),
        ).fetchone()
        return None if row is None else _agent(row)

    # -- web sessions ----------------------------------------------------------------

    def add_web_session(self, token_hash: str, external_id: str, expires_at: datetime) -> None:
        """Store a web chat session under the hash of its token."""
        with self._write() as db:
            db.execute("INSERT INTO web_sessions (token_hash, external_id, expires_at) VALUES (?, ?, ?)",
                       (token_hash, external_id, expires_at.isoformat()))

    def web_session(self, token_hash: str, now: datetime) -> str | None:
        """Return the external id of an unexpired web session."""
        row = self._connection().execute(
            "SELECT external_id FROM web_sessions WHERE token_hash = ? AND expires_at > ?",
            (token_hash, now.isoformat()),
        ).fetchone()
        return None if row is None else str(row["external_id"])


def _agent(row: Row) -> Agent:
    seen = row["last_seen_at"]
    return Agent(row["agent_id"], row["email"], row["name"], row["role"], bool(row["active"]), row["presence"],
                 datetime.fromisoformat(seen) if seen else None)
