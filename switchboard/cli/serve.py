"""Serving: `switchboard run` (all in one), `switchboard web` and `switchboard worker` (scaled out)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click

from bot.errors import SwitchboardError
from switchboard.cli.base import agent_directory, load_settings, main, store_or_fail
from switchboard.settings import Settings


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option("--project", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A Rasa project directory (domain, data/, endpoints.yml, credentials.yml); "
                   "also SWITCHBOARD_PROJECT_DIR.")
def run(host: str, port: int, project: Path | None) -> None:
    """Serve Switchboard: web chat, Rasa REST channel and agent console."""
    import os

    if project is not None:
        os.environ["SWITCHBOARD_PROJECT_DIR"] = str(project.resolve())  # the index build below reads it too

    from switchboard.server import SwitchboardServer

    settings = _ready_settings()
    public = settings.public_url.startswith("https://")
    with agent_directory() as directory:
        # A demo admin whose password is printed is for trying Switchboard out, never for a public service.
        demo_login = None if public else directory.ensure_demo_agent()
        no_agents = not directory.list()

    base = f"http://{host}:{port}"
    click.echo("")
    click.echo(f"  Switchboard is starting on {base}")
    click.echo(f"    web chat:       {base}/")
    click.echo(f"    agent console:  {base}/console/")
    click.echo(f"    Rasa REST:      {base}/webhooks/rest/webhook")
    if demo_login:
        email, password = demo_login
        click.echo(f"    demo agent:     {email} / {password}   (shown only this once; for trying Switchboard "
                   "out: none is made when SWITCHBOARD_PUBLIC_URL is https)")
    elif public and no_agents:
        click.echo("    no agents yet:  create an admin with `switchboard agents add EMAIL --role admin`")
    click.echo("")
    SwitchboardServer(settings, host, port).run()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option("--processes", default=2, show_default=True, type=click.IntRange(1, 64),
              help="Server processes (each loads the models).")
def web(host: str, port: int, processes: int) -> None:
    """Serve HTTP only (web chat, webhooks, console); `switchboard worker` processes answer the messages.
    Needs SWITCHBOARD_REDIS_URL, shared with the workers."""
    from switchboard.server import SwitchboardServer

    settings = _ready_settings()
    if not settings.redis_url:
        raise click.ClickException("`switchboard web` tells the workers about new messages over Redis: set "
                                   "SWITCHBOARD_REDIS_URL (the same for every web and worker process)")
    with store_or_fail():
        pass  # the schema is checked before any process forks
    click.echo(f"Switchboard web: {processes} processes on http://{host}:{port}/ (the workers answer)")
    SwitchboardServer(settings, host, port, processes=processes, role="web").run()


@main.command()
@click.option("--metrics-port", type=click.IntRange(1, 65535),
              help="Serve this worker's /metrics on this port (behind SWITCHBOARD_METRICS_TOKEN).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              help="Interface for --metrics-port (0.0.0.0 for a scraper on another host).")
def worker(metrics_port: int | None, metrics_host: str) -> None:
    """Answer stored messages and send replies, beside `switchboard web`; run as many as you like, on any
    host that reaches the same store and Redis. Stops cleanly on SIGTERM or Ctrl-C."""
    from switchboard.worker import run_worker

    settings = _ready_settings()
    try:
        run_worker(settings, metrics=(metrics_host, metrics_port) if metrics_port else None)
    except SwitchboardError as exc:
        raise click.ClickException(str(exc)) from exc


def index_predates(settings: Settings, snapshot: Path) -> str | None:
    """What the live `snapshot` was built without that these settings ask for (a server rebuilds it), or None."""
    import json

    from switchboard.app import labelled_kb_questions, serves_other_languages

    try:
        manifest = json.loads((snapshot / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = {}
    if serves_other_languages(settings):
        if not manifest.get("multilingual"):
            return f"answers in {settings.languages}"
        if "tuned_on" not in manifest and labelled_kb_questions(settings):
            return "tuning questions in other languages to the KB (SWITCHBOARD_KB_QUESTIONS)"
    if "labelled_examples" not in manifest and labelled_kb_questions(settings):
        return "labelled English questions as example questions (SWITCHBOARD_KB_QUESTIONS)"
    return None


def _ready_settings() -> Settings:
    """The settings, checked, with the knowledge-base index built if there is none (or it is too old)."""
    from kb_index.snapshot import current_snapshot
    from switchboard.app import check_settings

    settings = load_settings()
    try:
        check_settings(settings)
    except SwitchboardError as exc:
        raise click.ClickException(str(exc)) from exc
    live = current_snapshot(settings.index_dir)
    if not settings.kb_dir.is_dir():
        click.echo(f"No knowledge base at {settings.kb_dir}: the bot answers from its rules and intents only.")
    elif live is not None and (outdated := index_predates(settings, live)):
        click.echo(f"The knowledge-base index predates {outdated}; rebuilding it.")
        live = None
    if live is None and settings.kb_dir.is_dir():
        click.echo(f"Building the knowledge-base index in {settings.index_dir} from {settings.kb_dir}.")
        # In a child process, so the model never loads in the server's parent before it forks.
        if subprocess.run([sys.executable, "-m", "switchboard", "kb", "build"], check=False).returncode:
            raise click.ClickException("the knowledge-base build failed; see the messages above")
    return settings
