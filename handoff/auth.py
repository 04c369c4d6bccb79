"""Console sign-in checks shared by every console page."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

from flask import abort, g, redirect, request, session, url_for

from bot.messages import utcnow
from bot.ports import AgentStore
from handoff.agents import token_hash

F = TypeVar("F", bound=Callable[..., object])


def require_agent(agents: AgentStore, roles: tuple[str, ...] = ()) -> Callable[[F], F]:
    """A view decorator: a signed-in, active agent (of one of `roles`, if given) or no entry.

    Without a session the browser goes to the sign-in page; with the wrong role it gets 403.
    Each request counts as the agent being at work (the handoff policy's availability).
    """
    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: object, **kwargs: object) -> object:
            # The cookie holds a sign-in token; the store says whether it still stands (not signed out,
            # password unchanged, account active, not expired).
            token = session.get("sign_in")
            agent = agents.agent_for_token(token_hash(token), utcnow()) if isinstance(token, str) else None
            if agent is None:
                session.clear()
                return redirect(url_for("console.login", next=request.path))
            if roles and agent.role not in roles:
                abort(403)
            g.agent = agent
            agents.touch_agent(agent.agent_id, utcnow())
            return view(*args, **kwargs)
        return wrapper  # type: ignore[return-value]
    return decorator
