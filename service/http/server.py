"""The production server: waitress (threads, no fork) in front of ``create_app``.

``serve(host, port, database_url)`` is what ``heimdall-synth serve`` calls. Waitress runs
requests in threads of one process; it never forks, which Numba's OpenMP layer requires once a
kernel has run. It refuses to listen on anything but a loopback address unless
``$HEIMDALL_SYNTH_API_TOKEN`` is set (with a token, state-changing requests need it).

``ServerThread`` runs the same server in a background thread (tests, embedding) and stops it.

Capacity (docs/API.md, "Capacity"): HTTP_THREADS waitress threads. An open event stream holds a
thread for its whole life, so at most MAX_EVENT_STREAMS of them may be open (more are refused
with 503 and Retry-After) and the other threads stay free for requests. Requests draw their
database connection from two pools (``common.open_pools``): DATASET_READ_CONNECTIONS
connections for dataset reads (GETs under /datasets: they count the dataset's rows, O(rows))
and REQUEST_CONNECTIONS for the rest, which bounds the PostgreSQL connections that requests
hold, and keeps a status poll from queueing behind slow dataset reads. Event streams share one
connection (events.JobWatch).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import sys
import threading

from heimdall_synth.service.http.common import DATASET_READ_CONNECTIONS, REQUEST_CONNECTIONS
from heimdall_synth.service.http.app import TOKEN_ENV, close_app, create_app

log = logging.getLogger("heimdall.service")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
HTTP_THREADS = 128       # waitress threads (an idle one costs little)
MAX_EVENT_STREAMS = 48   # each open stream holds a thread for its life
CONNECTION_LIMIT = 512   # open client sockets before waitress pauses accept() (its default: 100)


class UnsafeBindError(RuntimeError):
    """Listening beyond loopback without an API token."""


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback address ('' and 0.0.0.0 are not)."""
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    if host.lower() == "localhost":
        return True
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback
                                   for a in addresses)


def check_bind(host: str, token: str | None) -> None:
    if not is_loopback(host) and not token:
        raise UnsafeBindError(
            f"refusing to listen on {host or 'all interfaces'!s}: beyond loopback the API needs "
            f"a token. Set {TOKEN_ENV} (clients then send 'Authorization: Bearer <token>' on "
            f"POST, PATCH and DELETE), or listen on 127.0.0.1.")


class ServerThread:
    """A waitress server for ``app`` on ``host:port`` (0: a free port), run by ``run()`` in the
    calling thread or by ``start()`` in a background thread; ``stop()`` ends it."""

    def __init__(self, app, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 threads: int = HTTP_THREADS, event_streams: int = MAX_EVENT_STREAMS):
        from waitress import create_server
        # exports, like streams, hold their thread while their body is sent
        slots = (REQUEST_CONNECTIONS + DATASET_READ_CONNECTIONS
                 + int(app.config.get("MAX_EXPORTS", 0)))
        if event_streams < 1 or threads - event_streams < slots:
            raise ValueError(f"with {threads} threads, event_streams must be between 1 and "
                             f"{threads - slots}: open streams hold threads, and {slots} must "
                             f"remain for requests; got {event_streams}")
        self.app = app
        app.config["MAX_EVENT_STREAMS"] = event_streams
        self._map: dict = {}
        self.server = create_server(app, map=self._map,
                                    host=host, port=port, threads=threads,
                                    connection_limit=CONNECTION_LIMIT,
                                    ident="heimdall-synth", channel_timeout=120,
                                    clear_untrusted_proxy_headers=True)
        listening = getattr(self.server, "effective_listen", None)  # several sockets
        port = listening[0][1] if listening else self.server.effective_port
        self.host, self.port = host, int(port)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def run(self) -> None:
        from waitress import wasyncore
        try:
            while not self._stop.is_set() and self._map:
                wasyncore.loop(timeout=0.2, map=self._map, use_poll=True, count=1)
        finally:
            state = self.app.extensions.get("heimdall")
            if state is not None:
                state.stopping = True  # open event streams end at their next poll
            self.server.task_dispatcher.shutdown(timeout=5)
            wasyncore.close_all(self._map)

    def start(self) -> "ServerThread":
        self._thread = threading.Thread(target=self.run, name="heimdall-http", daemon=True)
        self._thread.start()
        return self

    def stop(self, close_application: bool = True) -> None:
        """Stop listening, end the app's jobs and event streams, let go of the database."""
        self._stop.set()
        if close_application:
            close_app(self.app)
        if self._thread is not None:
            self._thread.join(10)


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          database_url: str | None = None, *, workers: int | None = None,
          threads: int = HTTP_THREADS, event_streams: int = MAX_EVENT_STREAMS) -> None:
    """Serve the API until Ctrl-C or SIGTERM (then jobs stop at their next batch, recorded
    interrupted and resumable). Raises UnsafeBindError before touching anything when ``host``
    is not loopback and no API token is set."""
    token = os.environ.get(TOKEN_ENV) or None
    check_bind(host, token)
    _default_logging()
    config = {"API_TOKEN": token}
    if database_url:
        config["DATABASE_URL"] = database_url
    if workers is not None:
        config["JOB_WORKERS"] = workers
    # SIGTERM from here on stops the service cleanly: while it starts (the embedded PostgreSQL,
    # migrations, recovery) the signal is only noted, and acted on once the start is complete,
    # so nothing is left half started (an embedded server running with nobody to stop it).
    requested = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: requested.set())
    try:
        app = create_app(config)
        try:
            if requested.is_set():
                return
            server = ServerThread(app, host, port, threads, event_streams)
            if previous is not None:
                signal.signal(signal.SIGTERM, lambda *_: server._stop.set())
            if requested.is_set():  # arrived before the handler changed
                return
            log.info("heimdall-synth API on %s (auth %s, %d job workers, %d HTTP threads: up to "
                     "%d event streams, %d requests and %d dataset reads at once)", server.url,
                     "on" if token else "off (loopback only)", app.config["JOB_WORKERS"],
                     threads, event_streams, REQUEST_CONNECTIONS, DATASET_READ_CONNECTIONS)
            print(f"heimdall-synth API listening on {server.url}/api/training/synthetic "
                  f"(health: {server.url}/api/health)", file=sys.stderr, flush=True)
            server.run()
        except KeyboardInterrupt:
            pass
        finally:
            close_app(app)
            log.info("heimdall-synth API stopped")
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _default_logging() -> None:
    """INFO lines of the 'heimdall' loggers on stderr, unless logging is configured already."""
    logger = logging.getLogger("heimdall")
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
