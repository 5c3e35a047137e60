"""The fixtures that more than one test module uses (the helpers that are not fixtures are in
tests/helpers.py and tests/http_client.py; no test module imports another).

One real PostgreSQL per test session, a fresh database per test. The server is
``$DATABASE_URL`` when set (its role needs CREATEDB); otherwise an embedded PostgreSQL started
in a pytest temporary folder and stopped at the end of the session, also when tests fail. Tests
never skip for want of anything: they start (or install) what they need, or fail saying why.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import pytest

from heimdall_synth.service.storage.database import EmbeddedPostgres, connect
from heimdall_synth.service.storage.migrations import upgrade
from tests.browser_setup import ChromiumMissing, ensure_chromium
from tests.helpers import new_database
from tests.http_client import Client, start_server


#: The modules that take longest, longest first (seconds on the 2-core machine, warm Numba
#: cache: 69, 51, 46, 44, 38, 30, 27, 25, 23, 22, 22, 20, 18, 17, 16, 16, 15): the suite runs
#: in two processes, a module at a time each (setup.cfg), and a long module started last would
#: run alone at the end.
LONGEST_FIRST = ("test_readme.py", "test_cluster.py", "test_cli.py", "test_baseline.py",
                 "test_fuzz_http.py", "test_load.py", "test_faults.py",
                 "test_dashboard_browser.py", "test_gpu_sim.py", "test_export.py",
                 "test_torch_data.py", "test_http_jobs.py", "test_generation.py",
                 "test_http_operators.py", "test_iq_jobs.py", "test_iq_reading.py",
                 "test_job_engine.py")


def pytest_collection_modifyitems(session, config, items):
    rank = {name: k for k, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable otherwise


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """No test skips: a skip (pytest.skip, a skip mark, importorskip) is reported as a failure,
    so that a missing prerequisite is never passed over in silence."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        why = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid}: {why}. The tests never skip: start or install what "
                           "the test needs, or let it fail saying why.")


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory):
    """URL of the session's server (its maintenance database)."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    server = EmbeddedPostgres(tmp_path_factory.mktemp("postgres") / "pgdata")
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def db_url(pg_server_url):
    """URL of a new, empty database, dropped after the test."""
    with new_database(pg_server_url) as url:
        yield url


@pytest.fixture
def conn(db_url):
    """A connection (autocommit off) to a fresh, migrated database."""
    connection = connect(db_url)
    upgrade(connection)
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def db(db_url, tmp_path, monkeypatch):
    """DATABASE_URL for the CLI (tests/helpers.cli); the embedded server's folder points at the
    test's tmp folder so that a mistake can never start a server in the user's home."""
    monkeypatch.setenv("HEIMDALL_SYNTH_DATA_DIR", str(tmp_path / "never-used"))
    return db_url


# ---- HTTP ------------------------------------------------------------------------------------

@pytest.fixture
def server(db_url):
    """The production server (tests/http_client.start_server) on a fresh database."""
    srv = start_server(db_url)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def api(server):
    """A client of ``server``."""
    return Client(server.url)


# ---- the browser -----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def chromium(request) -> str:
    """The path of Chromium, for the dashboard's browser tests (tests/browser_setup.py): when
    it is missing and this process may install it (root, Debian or Ubuntu with apt-get), it is
    installed here, saying so; otherwise the tests that need it fail with the command that
    installs it. They never skip."""
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def uncaptured():
        # an install takes a while: what it does is shown as it happens, not captured
        return capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()

    def say(line: str) -> None:
        with uncaptured():
            print(line, file=sys.stderr, flush=True)

    def run(cmd, **kw):
        with uncaptured():
            return subprocess.run(cmd, **kw)

    try:
        return ensure_chromium(say=say, run=run)
    except ChromiumMissing as exc:
        pytest.fail(str(exc), pytrace=False)
