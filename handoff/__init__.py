"""Human handoff: agent accounts and the agent console."""
