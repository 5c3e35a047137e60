"""The embedded PostgreSQL: reuse of a data folder, clean stops, recovery from unclean ones."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import signal
import time
from pathlib import Path

import psycopg
import pytest

from heimdall_synth.service.storage.database import (EmbeddedPostgres, ExternalDatabase, connect, default_data_dir, open_database, stop_server)


def _own_server_then_hang(data_dir: str, urls) -> None:
    """Child process: start the server of ``data_dir``, report its URL, wait to be killed."""
    server = EmbeddedPostgres(data_dir).start()
    urls.put(server.url)
    time.sleep(600)


def start_in_killable_child(data_dir: Path):
    ctx = multiprocessing.get_context("spawn")  # never fork a process that ran a Numba kernel
    urls = ctx.Queue()
    child = ctx.Process(target=_own_server_then_hang, args=(str(data_dir), urls), daemon=True)
    child.start()
    return child, urls.get(timeout=60)


def kill_hard(child) -> None:
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    assert child.exitcode == -signal.SIGKILL


def postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().split()[0])
    except FileNotFoundError:
        return None


def write_rows(url: str, *values: int) -> None:
    with connect(url) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS kept (x int)")
        for v in values:
            conn.execute("INSERT INTO kept VALUES (%s)", (v,))


def read_rows(url: str) -> list[int]:
    with connect(url) as conn:
        return [x for (x,) in conn.execute("SELECT x FROM kept ORDER BY x")]


def assert_stopped(data_dir: Path, url: str) -> None:
    assert postmaster_pid(data_dir) is None
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=3).close()


def test_restart_on_same_folder_keeps_data(tmp_path):
    data_dir = tmp_path / "pgdata"
    with EmbeddedPostgres(data_dir) as server:
        url = server.url
        write_rows(url, 1, 2)
    assert_stopped(data_dir, url)
    with EmbeddedPostgres(data_dir) as server:  # second start: no initdb, same data
        assert read_rows(server.url) == [1, 2]
        write_rows(server.url, 3)
        assert server.start() is server  # starting twice is harmless
    assert_stopped(data_dir, url)
    server = EmbeddedPostgres(data_dir).start()
    try:
        assert read_rows(server.url) == [1, 2, 3]
    finally:
        server.stop()
        server.stop()  # idempotent


def test_server_left_by_sigkilled_owner_is_reused_then_stopped(tmp_path):
    data_dir = tmp_path / "pgdata"
    child, url = start_in_killable_child(data_dir)
    write_rows(url, 7)
    kill_hard(child)
    # The owner died without cleaning up: the server keeps running.
    left_running = postmaster_pid(data_dir)
    assert left_running is not None and read_rows(url) == [7]

    server = EmbeddedPostgres(data_dir).start()
    assert postmaster_pid(data_dir) == left_running  # joined, not restarted
    assert read_rows(server.url) == [7]
    server.stop()  # the dead owner no longer counts: this stops the server
    assert_stopped(data_dir, url)


def test_stop_server_stops_a_server_whoever_started_it(tmp_path):
    data_dir = tmp_path / "pgdata"
    child, url = start_in_killable_child(data_dir)
    kill_hard(child)
    assert stop_server(data_dir) is True
    assert_stopped(data_dir, url)
    assert stop_server(data_dir) is False
    with EmbeddedPostgres(data_dir) as server:  # and it starts again normally
        write_rows(server.url, 1)


def test_server_killed_with_its_owner_recovers_on_next_start(tmp_path):
    import psutil
    data_dir = tmp_path / "pgdata"
    child, url = start_in_killable_child(data_dir)
    write_rows(url, 1, 2, 3)
    postmaster = psutil.Process(postmaster_pid(data_dir))
    workers = postmaster.children()
    kill_hard(child)
    postmaster.kill()  # power-cut style: no shutdown checkpoint, postmaster.pid left behind
    for proc in [postmaster, *workers]:  # its backends exit when they see it gone
        try:
            proc.wait(10)
        except psutil.TimeoutExpired:
            assert proc.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            pass
    assert postmaster_pid(data_dir) is not None

    with EmbeddedPostgres(data_dir) as server:  # crash recovery; committed rows survive
        assert read_rows(server.url) == [1, 2, 3]
    assert_stopped(data_dir, url)


def test_stale_pidfile_naming_a_recycled_pid_does_not_block_start(tmp_path):
    data_dir = tmp_path / "pgdata"
    with EmbeddedPostgres(data_dir) as server:
        write_rows(server.url, 5)
        pidfile = (data_dir / "postmaster.pid").read_text().splitlines()
    # As after a crash and a reboot: the pid in postmaster.pid now belongs to another process.
    (data_dir / "postmaster.pid").write_text("\n".join([str(os.getpid())] + pidfile[1:]) + "\n")
    with EmbeddedPostgres(data_dir) as server:
        assert read_rows(server.url) == [5]


def test_open_database_prefers_database_url(monkeypatch, pg_server_url):
    monkeypatch.setenv("DATABASE_URL", pg_server_url)
    with open_database() as db:
        assert isinstance(db, ExternalDatabase) and db.url == pg_server_url
        with connect(db.url) as conn:
            assert conn.autocommit is False
            assert conn.execute("SELECT 1").fetchone() == (1,)
    assert open_database("postgresql://elsewhere/db").url == "postgresql://elsewhere/db"


def test_open_database_starts_embedded_server_in_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("HEIMDALL_SYNTH_DATA_DIR", str(tmp_path / "data"))
    assert default_data_dir() == (tmp_path / "data").resolve()
    db = open_database()
    url = db.url
    try:
        assert isinstance(db, EmbeddedPostgres) and db.data_dir == (tmp_path / "data").resolve()
        assert (db.data_dir / "PG_VERSION").exists()
        with connect(db.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        db.close()
    assert_stopped(db.data_dir, url)


def test_default_data_dir_is_under_home(monkeypatch):
    monkeypatch.delenv("HEIMDALL_SYNTH_DATA_DIR", raising=False)
    expected = Path.home() / ".local" / "share" / "heimdall-synth" / "pgdata"
    assert default_data_dir() == expected.resolve()


def test_url_before_start_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="not started"):
        EmbeddedPostgres(tmp_path / "pgdata").url


def test_a_standalone_backends_negative_pid_is_read_as_its_pid(tmp_path):
    """initdb's bootstrap backend writes its pid negated into postmaster.pid; a process killed
    while it ran (a SIGTERM during the first start) left such a file, which made the next start
    fail with psutil's 'pid must be a positive integer'."""
    from heimdall_synth.service.storage.database import _remove_stale_pidfile
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    data_dir = tmp_path / "pgdata"
    data_dir.mkdir()
    (data_dir / "postmaster.pid").write_text(f"-{dead.pid}\n{data_dir}\n")
    _remove_stale_pidfile(data_dir)
    assert not (data_dir / "postmaster.pid").exists()
    (data_dir / "postmaster.pid").write_text(f"-{os.getpid()}\n{data_dir}\n")  # alive, not postgres
    _remove_stale_pidfile(data_dir)
    assert not (data_dir / "postmaster.pid").exists()
