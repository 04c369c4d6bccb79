"""Console sign-in checks shared by every console page."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

from flask import abort, g, redirect, request, session, url_for

from bot.messages import utcnow
from bot.ports import AgentStore

F = TypeVar("F", bound=Callable[..., object])


def require_agent(agents: AgentStore, roles: tuple[str, ...] = ()) -> Callable[[F], F]:
    """A view decorator: a signed-in, active agent (of one of `roles`, if given) or no entry.

    Without a session the browser goes to the sign-in page; with the wrong role it gets 403.
    Each request counts as the agent being at work (the handoff policy's availability).
    """
    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: object, **kwargs: object) -> object:
            agent_id = session.get("agent_id")
            agent = agents.get_agent(agent_id) if isinstance(agent_id, str) else None
            if agent is None or not agent.active:
                session.clear()
                return redirect(url_for("console.login", next=request.path))
            if roles and agent.role not in roles:
                abort(403)
            g.agent = agent
            agents.touch_agent(agent.agent_id, utcnow())
            return view(*args, **kwargs)
        return wrapper  # type: ignore[return-value]
    return decorator
