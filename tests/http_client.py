"""The HTTP tests' client and servers: a tiny HTTP client on http.client, an SSE reader, and
a real waitress server on a free port (in a thread of this process, or as a subprocess started
the spawn-safe way). No test and no fixture lives here: the fixtures ``server`` and ``api`` are
in tests/conftest.py, the database probes in tests/helpers.py."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from heimdall_synth.service.http.app import create_app
from heimdall_synth.service.http.server import ServerThread
from tests.helpers import ROOT

API = "/api/training/synthetic"
TERMINAL = ("completed", "failed", "cancelled", "interrupted")


class Reply:
    def __init__(self, status: int, headers, body: bytes):
        self.status, self.headers, self.raw = status, headers, body
        ctype = headers.get("Content-Type", "")
        self.json = json.loads(body) if body and ctype.startswith("application/json") else None

    def __repr__(self):
        return f"<Reply {self.status} {self.json if self.json is not None else self.raw[:200]}>"


class Client:
    """Real HTTP to ``base`` (http://host:port). Paths not starting with /api get API in front."""

    def __init__(self, base: str, token: str | None = None):
        parts = urlsplit(base)
        self.base, self.host, self.port, self.token = base, parts.hostname, parts.port, token

    def _path(self, path: str) -> str:
        return path if path.startswith("/api") else API + path

    def request(self, method: str, path: str, body=None, *, raw: bytes | None = None,
                content_type: str | None = "application/json", headers=None,
                token: str | None = None, timeout: float = 30, as_is: bool = False) -> Reply:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        h = dict(headers or {})
        if data is not None and content_type:
            h["Content-Type"] = content_type
        token = token if token is not None else self.token
        if token:
            h.setdefault("Authorization", f"Bearer {token}")
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path if as_is else self._path(path), body=data, headers=h)
            resp = conn.getresponse()
            return Reply(resp.status, resp.headers, resp.read())
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def page(self, path) -> Reply:
        """GET a path outside the API (an HTML page) as it is."""
        return self.request("GET", path, as_is=True)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def patch(self, path, body=None, **kw):
        return self.request("PATCH", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    # ---- jobs

    def generate(self, **request) -> dict:
        reply = self.post("/generate", request)
        assert reply.status == 202, reply
        return reply.json

    def job(self, job_id) -> dict:
        reply = self.get(f"/jobs/{job_id}")
        assert reply.status == 200, reply
        return reply.json

    def wait(self, job_id, statuses=TERMINAL, timeout=60, every=0.02, seen=None) -> dict:
        """Poll GET /jobs/{id} until its status is one of ``statuses``."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if seen is not None:
                seen.append(job["status"])
            if job["status"] in statuses:
                return job
            assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
            time.sleep(every)

    def wait_running(self, job_id, min_generated=1, timeout=60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] == "running" and job["generated"] >= min_generated:
                return job
            assert job["status"] not in TERMINAL, f"job ended before the test could act: {job}"
            assert time.monotonic() < deadline
            time.sleep(0.01)

    def events(self, job_id, timeout=60) -> list[tuple[float, str, dict]]:
        """Read GET /jobs/{id}/events to its end: [(seconds since connect, event, data)]."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        t0 = time.monotonic()
        try:
            conn.request("GET", self._path(f"/jobs/{job_id}/events"))
            resp = conn.getresponse()
            assert resp.status == 200, resp.read()
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            out = [(t - t0, name, data) for t, name, data in read_sse(resp)]
        finally:
            conn.close()
        return out


def read_sse(resp, limit: int | None = None) -> list[tuple[float, str, dict]]:
    """The events of an open event stream, until it ends or ``limit`` events have come:
    [(time.monotonic() at arrival, event name, data)]."""
    out, name, data = [], None, []
    while limit is None or len(out) < limit:
        line = resp.fp.readline()
        if not line:
            break
        line = line.decode().rstrip("\n")
        if line == "":
            if name is not None:
                out.append((time.monotonic(), name, json.loads("\n".join(data))))
            name, data = None, []
        elif line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
    return out


# ---- servers

def start_server(db_url, **config) -> ServerThread:
    """The production server (its thread and stream limits) in a thread of this process."""
    app = create_app({"DATABASE_URL": db_url, "JOB_WORKERS": 2, "API_TOKEN": None, **config})
    return ServerThread(app, "127.0.0.1", 0).start()


@contextlib.contextmanager
def served_client(db_url, **config):
    """A Client of a ``start_server`` server, stopped on leaving."""
    server = start_server(db_url, **config)
    try:
        yield Client(server.url)
    finally:
        server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python -c "from heimdall_synth.service.http.server import serve; serve(...)"`` in a new process;
    ``serve_options`` are serve()'s keyword arguments (workers, threads, event_streams)."""

    def __init__(self, db_url: str, log_path: Path, port: int | None = None, env=None,
                 **serve_options):
        self.port = port or free_port()
        options = "".join(f", {k}={v!r}" for k, v in serve_options.items())
        code = (f"from heimdall_synth.service.http.server import serve; "
                f"serve('127.0.0.1', {self.port}, {db_url!r}{options})")
        self.log_path = log_path
        self._log = open(log_path, "ab")
        environ = {k: v for k, v in os.environ.items() if k != "HEIMDALL_SYNTH_API_TOKEN"}
        self.proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**environ, **(env or {})})
        self.client = Client(f"http://127.0.0.1:{self.port}")
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, f"server exited: {log_path.read_text()}"
            try:
                if self.client.get("/api/health", timeout=2).status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(30) == -signal.SIGKILL
        self._log.close()

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        self._log.close()
        return code
