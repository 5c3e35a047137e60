"""The baseline localizer's runs (heimdall.baseline_runs): stored once, read by the report and
the CLI, removed with their dataset."""

from __future__ import annotations

import numpy as np
from psycopg.types.json import Jsonb

from heimdall_synth.service.engine.request import NotFoundError
from heimdall_synth.service.storage.datasets import rows_of

#: The columns of a run's summary (everything but its per-sample arrays).
SUMMARY_COLUMNS = ("id", "dataset_id", "created_at", "method", "params", "seed",
                   "model_version", "dataset_samples", "train_samples", "test_samples",
                   "median_error_m", "p90_error_m", "centre_median_error_m",
                   "centre_p90_error_m", "median_crb_m", "median_gdop", "train_seconds",
                   "total_seconds")
_ARRAYS = ("test_sample_index", "test_error_m")


def insert_run(conn, run: dict):
    """Insert ``run`` (the summary columns but created_at, and the two arrays) in one
    transaction; returns its created_at."""
    columns = [c for c in SUMMARY_COLUMNS if c != "created_at"] + list(_ARRAYS)
    values = [Jsonb(run[c]) if c == "params" else
              run[c].tolist() if c in _ARRAYS else run[c] for c in columns]
    with conn.transaction():
        return conn.execute(
            f"INSERT INTO heimdall.baseline_runs ({', '.join(columns)}) VALUES "
            f"({', '.join(['%s'] * len(columns))}) RETURNING created_at", values).fetchone()[0]


def list_runs(conn, dataset_id, limit: int = 100) -> list[dict]:
    """A dataset's runs, newest first, without their per-sample arrays."""
    with conn.transaction():
        return rows_of(conn.execute(
            f"SELECT {', '.join(SUMMARY_COLUMNS)} FROM heimdall.baseline_runs WHERE "
            "dataset_id = %s ORDER BY created_at DESC, id LIMIT %s", (str(dataset_id), limit)))


def check_run(conn, dataset_id, run_id) -> None:
    """NotFoundError naming ``dataset_id`` or ``run_id`` unless the dataset has that run."""
    from heimdall_synth.service.storage.datasets import get_dataset
    get_dataset(conn, dataset_id, with_count=False)
    with conn.transaction():
        found = conn.execute("SELECT 1 FROM heimdall.baseline_runs WHERE id = %s AND "
                             "dataset_id = %s", (str(run_id), str(dataset_id))).fetchone()
    if found is None:
        raise NotFoundError(f"no baseline run {run_id} for dataset {dataset_id}",
                            field="run_id")


def get_run(conn, dataset_id, run_id=None) -> dict:
    """One run of a dataset (the newest when ``run_id`` is None) with its arrays as NumPy
    arrays; NotFoundError naming ``run_id`` when there is none."""
    where, args = "dataset_id = %s", [str(dataset_id)]
    if run_id is not None:
        where, args = where + " AND id = %s", args + [str(run_id)]
    with conn.transaction():
        rows = rows_of(conn.execute(
            f"SELECT {', '.join(SUMMARY_COLUMNS + _ARRAYS)} FROM heimdall.baseline_runs "
            f"WHERE {where} ORDER BY created_at DESC, id LIMIT 1", args))
    if not rows:
        what = f"no baseline run {run_id}" if run_id else "no baseline run"
        raise NotFoundError(f"{what} for dataset {dataset_id}", field="run_id")
    run = rows[0]
    run["test_sample_index"] = np.array(run["test_sample_index"], np.int64)
    run["test_error_m"] = np.array(run["test_error_m"], np.float32)
    return run
