"""Serving Switchboard with gunicorn's asyncio worker, in one process or several.

`switchboard run` serves from one process that also holds the message processor and the change
notifier that wakes web chat streams. `switchboard web` serves from several, whose messages
`switchboard worker` processes answer, with changes shared over Redis. Each process runs the views on
a pool of `SWITCHBOARD_SERVER_THREADS` threads and serves open event streams on its event loop
(`switchboard.asgi`), so thousands of open streams hold no thread.
"""

from __future__ import annotations

import resource
import signal
import threading
from typing import Any

from gunicorn.app.base import BaseApplication

from switchboard.app import create_app, freeze_startup_heap, services_of
from switchboard.asgi import FlaskOnAsyncio
from switchboard.metrics import count_across_processes
from switchboard.settings import Settings, metrics_multiprocess_dir


class SwitchboardServer(BaseApplication):  # type: ignore[misc]
    """gunicorn, configured from Settings instead of a command line."""

    def __init__(self, settings: Settings, host: str, port: int, processes: int = 1, role: str = "all") -> None:
        self._settings = settings
        self._role = role
        self._port = port
        self._options: dict[str, Any] = {
            "bind": f"{host}:{port}",
            "workers": processes,
            "worker_class": "asgi",
            # Open streams are connections too; gunicorn's default cap (1000) would refuse them first.
            "worker_connections": settings.stream_limit + settings.server_threads * 2,
            "timeout": 120,
            "graceful_timeout": 10,
            "keepalive": 5,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "info",
            # No control socket: it would be created in the user's home directory.
            "control_socket_disable": True,
            "post_worker_init": _worker_ready,
            "worker_exit": _worker_exit,
        }
        super().__init__()

    def run(self) -> None:
        _allow_open_files(self._options["worker_connections"] + 256)
        if self._options["workers"] > 1 and not metrics_multiprocess_dir():
            # A scrape reaches one process at random: each counts into one directory, and any adds them all up.
            count_across_processes(self._settings.var_dir / "metrics" / f"{self._role}-{self._port}")
        super().run()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> FlaskOnAsyncio:
        return FlaskOnAsyncio(create_app(self._settings, role=self._role), self._settings.server_threads)


def _allow_open_files(wanted: int) -> None:
    # Every open stream is a socket: raise the soft limit (often 1,024) towards the hard one.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard),
                                                    hard))


def _worker_ready(worker: Any) -> None:
    # The app is built: its startup objects are left out of full garbage collections from now on.
    freeze_startup_heap()
    _end_streams_on_shutdown(worker)


def _end_streams_on_shutdown(worker: Any) -> None:
    # Open streams would hold a graceful shutdown until its timeout; end them as soon as the worker is
    # told to stop (clients reconnect to the next process). The worker's own handler still runs.
    app = worker.asgi
    stop = worker.handle_exit_signal

    def on_term() -> None:
        # A thread: a shared notifier's close waits for its Redis listener, which must not block the loop.
        threading.Thread(target=services_of(app.flask).notifier.close, name="switchboard-end-streams").start()
        stop()

    worker.loop.add_signal_handler(signal.SIGTERM, on_term)


def _worker_exit(server: Any, worker: Any) -> None:
    app = getattr(worker, "asgi", None)
    if isinstance(app, FlaskOnAsyncio):
        services_of(app.flask).close()
        app.close()
