"""Versioned SQL migrations for schema ``heimdall``.

Migrations are files ``NNN_name.sql`` (NNN = version). ``upgrade(conn)`` applies the missing ones
in version order, in ONE transaction, under a transaction-scoped advisory lock, so two processes
migrating at once are safe: the second waits, then finds everything applied. Each applied file is
recorded in ``heimdall.schema_migrations`` with a checksum; an applied migration whose file has
changed since is an error (write a new migration instead of editing an old one).

The one exception is a released file whose comments alone were reworded: its earlier checksum is
listed in ``SUPERSEDED`` with the reason, a database whose ledger holds that checksum is accepted,
and its ledger row is brought to the current checksum in the same transaction.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg
from psycopg.pq import TransactionStatus

#: pg_advisory_xact_lock key: the bytes of "heimdall" as a big-endian int64.
LOCK_KEY = int.from_bytes(b"heimdall", "big")

_FILE_NAME = re.compile(r"^(\d+)_([A-Za-z0-9_\-]+)\.sql$")

#: Checksums of earlier texts of released migrations, still accepted in a database's ledger:
#: version -> {sha256 of the exact earlier file text (line endings normalised): why it was
#: superseded}. Only ever for changes that leave every SQL statement as it was (comments,
#: whitespace); tests/test_db_migrations.py checks that the statements are unchanged.
SUPERSEDED: dict[int, dict[str, str]] = {
    1: {"afbb2759f62b3010a4d13abc5c6581ed5e5a6f5ba71e7cc2b43ac83ae385d1df":
        "comments reworded; the SQL is unchanged"},
    2: {"d47d297d6566326638a10a4a7c1bfef5e5b11cf2aaba41dd95b47e1dd0ff065e":
        "comments reworded; the SQL is unchanged"},
}

_LEDGER = """
CREATE SCHEMA IF NOT EXISTS heimdall;
CREATE TABLE IF NOT EXISTS heimdall.schema_migrations (
    version    int PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""


class MigrationError(RuntimeError):
    """The migration files and the database's ledger disagree, or the files are malformed."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        # Line endings are normalised so a checkout with CRLF conversion keeps the checksum.
        return hashlib.sha256(self.sql.replace("\r\n", "\n").encode("utf-8")).hexdigest()


def sql_dir():
    """The folder holding the migration files.

    The canonical files live in ``sql/`` at the repository root, next to the ``service``
    folder; that is what a checkout or an editable install sees. An installed wheel has no
    repository root: setup.cfg ships the same files as package data (the package
    ``heimdall_synth.service.sql`` is mapped to ``sql/``), found through importlib.resources.
    """
    checkout = Path(__file__).resolve().parents[2] / "sql"
    if checkout.is_dir() and any(checkout.glob("*.sql")):
        return checkout
    packaged = resources.files("heimdall_synth.service") / "sql"
    if packaged.is_dir():
        return packaged
    raise MigrationError(f"no migration files: neither {checkout} nor the package's sql/ exists")


def load_migrations(directory=None) -> list[Migration]:
    """Every ``NNN_name.sql`` file of ``directory`` (default ``sql_dir()``), by version."""
    directory = sql_dir() if directory is None else directory
    found: dict[int, Migration] = {}
    for entry in directory.iterdir():
        match = _FILE_NAME.match(entry.name)
        if not match:
            continue
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migrations with version {version}: "
                                 f"{found[version].name} and {match.group(2)}")
        found[version] = Migration(version, match.group(2), entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def applied(conn: psycopg.Connection) -> dict[int, str]:
    """version -> checksum of the migrations recorded in the ledger ({} when there is none)."""
    exists = conn.execute("SELECT to_regclass('heimdall.schema_migrations')").fetchone()[0]
    if exists is None:
        return {}
    rows = conn.execute("SELECT version, checksum FROM heimdall.schema_migrations").fetchall()
    return dict(rows)


def upgrade(conn: psycopg.Connection, migrations: list[Migration] | None = None) -> list[int]:
    """Apply the missing migrations; return their versions (empty when already up to date).

    Runs and commits its own transaction, so ``conn`` must not be inside one. Raises
    MigrationError when an applied migration's file changed or the database knows a version
    that the files do not (it was migrated by a newer release). A ledger row holding a
    checksum listed in ``SUPERSEDED`` for its version is updated to the file's checksum.
    """
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise MigrationError("upgrade() runs its own transaction: commit or roll back first")
    migrations = load_migrations() if migrations is None else migrations
    done: list[int] = []
    with conn.transaction():
        # READ COMMITTED so that, once the lock is ours, we see what a concurrent run committed.
        conn.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        conn.execute(_LEDGER)
        recorded = applied(conn)
        known = {m.version for m in migrations}
        if unknown := sorted(set(recorded) - known):
            raise MigrationError(f"the database has migrations {unknown} that this release does "
                                 "not know: it was migrated by a newer heimdall-synth")
        for m in migrations:
            if m.version in recorded:
                if recorded[m.version] in SUPERSEDED.get(m.version, {}):
                    conn.execute("UPDATE heimdall.schema_migrations SET checksum = %s "
                                 "WHERE version = %s", (m.checksum, m.version))
                elif recorded[m.version] != m.checksum:
                    raise MigrationError(
                        f"migration {m.version:03d}_{m.name} was changed after it was applied "
                        f"(checksum {m.checksum[:12]}, applied {recorded[m.version][:12]}); "
                        "add a new migration instead of editing an applied one")
                continue
            conn.execute(m.sql)
            conn.execute("INSERT INTO heimdall.schema_migrations (version, name, checksum) "
                         "VALUES (%s, %s, %s)", (m.version, m.name, m.checksum))
            done.append(m.version)
    return done
