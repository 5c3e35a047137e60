"""Shared fixtures: one real PostgreSQL per test session, a fresh database per test.

The server is ``$DATABASE_URL`` when set (its role needs CREATEDB); otherwise an embedded
PostgreSQL started in a pytest temporary folder and stopped at the end of the session, also when
tests fail. Tests never skip for want of a database: they start what they need.
"""

from __future__ import annotations

import contextlib
import os
import uuid

import psycopg
import pytest

from heimdall_synth.service.storage.database import EmbeddedPostgres, connect, with_dbname
from heimdall_synth.service.storage.migrations import upgrade


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


@contextlib.contextmanager
def new_database(pg_server_url: str, purpose: str = "test"):
    """URL of a new, empty database on the session's server, dropped on leaving."""
    name = f"heimdall_{purpose}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_dbname(pg_server_url, name)
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
