"""Switchboard's wiring: settings, the composition root, the server and the CLI."""
