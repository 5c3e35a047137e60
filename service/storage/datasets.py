"""The datasets table: creating, reading, validating, renaming and deleting datasets.

A refused request changes nothing: every check runs inside the one transaction that would write.
Reads that show two counts (the metadata ``num_samples`` and a real ``COUNT(*)``) take both in
ONE statement, so they come from one snapshot.
"""

from __future__ import annotations

import uuid

import psycopg
from psycopg.types.json import Jsonb

from heimdall_synth.kernel.config import check_value
from heimdall_synth.service.engine.request import ConflictError, NotFoundError
from heimdall_synth.service.engine.states import ACTIVE
from heimdall_synth.service.storage.ids import new_dataset_id, uuid_of

# The real count of dataset ``d``'s rows, as a scalar subquery (an index-only count per dataset).
ACTUAL_COUNT_SQL = "SELECT count(*) FROM heimdall.measurement_features f WHERE f.dataset_id = d.id"

DATASET_COLUMNS = ("id, name, description, dataset_type, seed, config, num_samples, "
                   "next_attempt_index, quality_metrics, storage_size_bytes, created_at, "
                   "updated_at, created_by_job_id, model_version, terrain_sha256, "
                   # the devices (as the jobs recorded them) that produced its samples
                   "(SELECT coalesce(array_agg(DISTINCT j.device ORDER BY j.device), '{}') "
                   "FROM heimdall.generation_jobs j WHERE j.dataset_id = d.id AND "
                   "j.generated > 0 AND j.device IS NOT NULL) AS devices")
RECORDING_PREFIX_KEY = "synthetic_datasets_recording_prefix_key"
ID_TRIES = 8


def rows_of(cur) -> list[dict]:
    names = [c.name for c in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def insert_dataset(conn, *, name: str, description, dataset_type: str, seed: int,
                   config: dict, job_id, model_version: int, terrain_sha256=None) -> uuid.UUID:
    """Insert a new dataset (inside the caller's transaction) and return its id.

    ConflictError when the name is taken. The first 8 bytes of the id prefix every recording
    id of its samples and are unique (``recording_prefix``): on the rare clash with a dataset
    made in the same millisecond elsewhere, a new id is drawn at once, never at the first COPY.
    """
    for _ in range(ID_TRIES):
        dataset_id = new_dataset_id()
        try:
            with conn.transaction():  # a savepoint: a clash leaves the caller's work intact
                inserted = conn.execute(
                    "INSERT INTO heimdall.synthetic_datasets (id, name, description, "
                    "dataset_type, seed, config, created_by_job_id, storage_size_bytes, "
                    "model_version, terrain_sha256) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, 0, %s, %s) "
                    "ON CONFLICT (name) DO NOTHING RETURNING id",
                    (dataset_id, name, description, dataset_type, seed, Jsonb(config),
                     job_id, model_version, terrain_sha256)).fetchone()
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name != RECORDING_PREFIX_KEY:
                raise
            continue
        if inserted is None:
            raise ConflictError(f"a dataset named {name!r} exists; expand it with "
                                "expand_dataset_id or choose another name", ["name"],
                                code="name_taken")
        return dataset_id
    raise RuntimeError(f"no free dataset id after {ID_TRIES} tries")


def get_dataset(conn, dataset_id, with_count: bool = True) -> dict:
    dataset_id = uuid_of(dataset_id, "dataset_id")
    # One statement, so the metadata count and the real COUNT(*) come from one snapshot: under
    # READ COMMITTED two statements could straddle a batch's commit and show counts that differ.
    count = f", ({ACTUAL_COUNT_SQL}) AS actual_count" if with_count else ""
    with conn.transaction():
        rows = rows_of(conn.execute(f"SELECT {DATASET_COLUMNS}{count} FROM "
                                    "heimdall.synthetic_datasets d WHERE id = %s",
                                    (str(dataset_id),)))
    if not rows:
        raise NotFoundError(f"no dataset {dataset_id}", field="dataset_id")
    return rows[0]


def find_dataset(conn, ref: str) -> dict:
    """A dataset by id or by name."""
    try:
        return get_dataset(conn, uuid.UUID(str(ref)))
    except (ValueError, NotFoundError):
        with conn.transaction():
            row = conn.execute("SELECT id FROM heimdall.synthetic_datasets WHERE name = %s",
                               (ref,)).fetchone()
        if row is None:
            raise NotFoundError(f"no dataset with id or name {ref!r}", field="dataset") from None
        return get_dataset(conn, row[0])


def list_datasets(conn, with_counts: bool = True) -> list[dict]:
    count = f", ({ACTUAL_COUNT_SQL}) AS actual_count" if with_counts else ""
    with conn.transaction():   # one statement, one snapshot (see get_dataset)
        return rows_of(conn.execute(f"SELECT {DATASET_COLUMNS}{count} FROM "
                                    "heimdall.synthetic_datasets d ORDER BY created_at"))


def validate_dataset(conn, dataset_id) -> dict:
    """Metadata count against a real COUNT, index density and duplicates."""
    ds = get_dataset(conn, dataset_id, with_count=False)
    dataset_id = ds["id"]
    with conn.transaction():
        count, lo, hi, distinct = conn.execute(
            "SELECT count(*), min(sample_index), max(sample_index), count(DISTINCT sample_index) "
            "FROM heimdall.measurement_features WHERE dataset_id = %s",
            (str(dataset_id),)).fetchone()
    dense = count == 0 or (lo == 0 and hi == count - 1)
    duplicates = count - distinct
    ok = count == ds["num_samples"] and dense and duplicates == 0
    report = {"dataset_id": str(dataset_id), "metadata_count": ds["num_samples"],
              "actual_count": count, "counts_agree": count == ds["num_samples"],
              "min_sample_index": lo, "max_sample_index": hi, "index_dense": dense,
              "duplicate_indices": duplicates, "next_attempt_index": ds["next_attempt_index"]}
    if ds["dataset_type"] == "iq_raw":
        report.update(validate_captures(conn, dataset_id))
        ok = ok and report["iq_captures_agree"]
    return {**report, "ok": ok}


# The captures an iq_raw dataset must hold: one per receiver of every sample whose job stored
# its IQ (the job's iq_storage; rows without a job: the dataset's), and no other.
EXPECTED_CAPTURES_SQL = """
SELECT coalesce(sum(cardinality(f.rx_id)), 0) FROM heimdall.measurement_features f
  JOIN heimdall.synthetic_datasets d ON d.id = f.dataset_id
  LEFT JOIN heimdall.generation_jobs j ON j.id = f.job_id
 WHERE f.dataset_id = %(id)s
   AND coalesce(j.config -> 'config' ->> 'iq_storage', d.config ->> 'iq_storage') = 'postgres'
"""
STORED_CAPTURES_SQL = """
SELECT count(*), count(*) FILTER (WHERE c.receiver >= 0 AND c.receiver < cardinality(f.rx_id)
                                  AND length(c.iq) = %(length)s::int8)
  FROM heimdall.iq_captures c JOIN heimdall.measurement_features f
    ON f.dataset_id = c.dataset_id AND f.sample_index = c.sample_index
 WHERE c.dataset_id = %(id)s
"""


def validate_captures(conn, dataset_id) -> dict:
    """iq_raw: the stored IQ captures against the samples that must have them (iq_storage
    postgres): as many as their receivers, each of a receiver of its sample and of a whole
    capture's length in bytes. (The foreign key already rules out captures without a sample.)"""
    from heimdall_synth.kernel.config import GenerationConfig
    from heimdall_synth.kernel.defaults import IQ_BYTES_PER_VALUE
    ds = get_dataset(conn, dataset_id, with_count=False)
    cfg = GenerationConfig.from_dict(ds["config"])
    args = {"id": str(ds["id"]), "length": IQ_BYTES_PER_VALUE[cfg.iq_format] * cfg.iq_capture}
    with conn.transaction():   # one snapshot for both counts
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        expected = conn.execute(EXPECTED_CAPTURES_SQL, args).fetchone()[0]
        stored, whole = conn.execute(STORED_CAPTURES_SQL, args).fetchone()
    return {"iq_captures_expected": int(expected), "iq_captures_stored": int(stored),
            "iq_captures_whole": int(whole),
            "iq_captures_agree": int(expected) == int(stored) == int(whole)}


def delete_dataset(conn, dataset_id) -> None:
    """Delete a dataset and its samples; refused (409) while one of its jobs is active."""
    dataset_id = uuid_of(dataset_id, "dataset_id")
    with conn.transaction():
        ds = conn.execute("SELECT id FROM heimdall.synthetic_datasets WHERE id = %s FOR UPDATE",
                          (str(dataset_id),)).fetchone()
        if ds is None:
            raise NotFoundError(f"no dataset {dataset_id}", field="dataset_id")
        busy = conn.execute(
            "SELECT id FROM heimdall.generation_jobs WHERE dataset_id = %s AND status = ANY(%s)",
            (str(dataset_id), list(ACTIVE))).fetchone()
        if busy is not None:
            raise ConflictError(f"dataset {dataset_id} has an active job {busy[0]}; cancel it "
                                "first", ["dataset_id"], code="dataset_busy")
        conn.execute("DELETE FROM heimdall.synthetic_datasets WHERE id = %s", (str(dataset_id),))


def rename_dataset(conn, dataset_id, name: str) -> dict:
    dataset_id = uuid_of(dataset_id, "dataset_id")
    name = check_value("name", name)
    with conn.transaction():
        taken = conn.execute("SELECT id FROM heimdall.synthetic_datasets WHERE name = %s AND "
                             "id <> %s", (name, str(dataset_id))).fetchone()
        if taken:
            raise ConflictError(f"a dataset named {name!r} exists", ["name"], code="name_taken")
        row = conn.execute("UPDATE heimdall.synthetic_datasets SET name = %s, updated_at = now() "
                           "WHERE id = %s RETURNING id", (name, str(dataset_id))).fetchone()
        if row is None:
            raise NotFoundError(f"no dataset {dataset_id}", field="dataset_id")
    return get_dataset(conn, dataset_id)
