"""What the test modules share that is not a fixture: databases and their probes, jobs run in
this process, the CLI in a subprocess, a kernel configuration, and the soaks' figures.

No test lives here, and no fixture: the shared fixtures are in tests/conftest.py, the HTTP
client and servers in tests/http_client.py.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg

from heimdall_synth.service.engine.loop import run_job
from heimdall_synth.service.engine.request import GenerateRequest
from heimdall_synth.service.storage import jobs
from heimdall_synth.service.storage.database import with_dbname

ROOT = Path(__file__).resolve().parent.parent


# ---- databases -------------------------------------------------------------------------------

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


# ---- rows and counts, on a connection (autocommit off) ---------------------------------------

DATA_COLUMNS = (
    "sample_index, attempt_index, tx_latitude, tx_longitude, tx_altitude_m, tx_power_dbm, "
    "frequency_hz, tx_known, num_receivers_in_sample, num_receivers_detected, mean_snr_db, gdop, "
    "hdop, crb_m, overall_confidence, rx_id, rx_lat, rx_lon, rx_alt_m, distance_km, "
    "signal_present, rssi_dbm, snr_db, rssi_std_db, rssi_min_dbm, rssi_max_dbm, noise_floor_dbm, "
    "psd_dbm_per_hz, freq_offset_hz")


def rows(conn, dataset_id, columns=DATA_COLUMNS, where=""):
    with conn.transaction():
        return conn.execute(f"SELECT {columns} FROM heimdall.measurement_features WHERE "
                            f"dataset_id = %s {where} ORDER BY sample_index",
                            (dataset_id,)).fetchall()


def iq_row_columns() -> str:
    """DATA_COLUMNS and every iq_* feature column: an iq_raw row's data."""
    from heimdall_synth.kernel.defaults import IQ_FEATURE_COLUMNS
    return DATA_COLUMNS + ", " + ", ".join(IQ_FEATURE_COLUMNS)


def stored_captures(conn, dataset_id) -> list[tuple]:
    """(sample_index, receiver, format, scale, md5 of the IQ bytes) of every stored capture."""
    with conn.transaction():
        return conn.execute(
            "SELECT sample_index, receiver, format, scale, md5(iq) FROM heimdall.iq_captures "
            "WHERE dataset_id = %s ORDER BY sample_index, receiver", (dataset_id,)).fetchall()


def counts(conn, dataset_id):
    """(num_samples, COUNT(*)) read in one statement, so from one snapshot."""
    with conn.transaction():
        return conn.execute(
            "SELECT num_samples, (SELECT count(*) FROM heimdall.measurement_features f "
            "WHERE f.dataset_id = d.id) FROM heimdall.synthetic_datasets d WHERE id = %s",
            (dataset_id,)).fetchone()


def table_sizes(conn):
    with conn.transaction():
        return conn.execute(
            "SELECT (SELECT count(*) FROM heimdall.synthetic_datasets), "
            "(SELECT count(*) FROM heimdall.generation_jobs), "
            "(SELECT count(*) FROM heimdall.measurement_features)").fetchone()


# ---- the same probes by URL (each opens its own autocommit connection) -----------------------

def url_table_sizes(db_url) -> tuple:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute(
            "SELECT (SELECT count(*) FROM heimdall.synthetic_datasets), "
            "(SELECT count(*) FROM heimdall.generation_jobs), "
            "(SELECT count(*) FROM heimdall.measurement_features)").fetchone()


def url_counts(db_url, dataset_id) -> tuple:
    """(num_samples, COUNT(*)) of the dataset, from one snapshot; None when it does not exist."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute(
            "SELECT num_samples, (SELECT count(*) FROM heimdall.measurement_features f "
            "WHERE f.dataset_id = d.id) FROM heimdall.synthetic_datasets d WHERE id = %s",
            (dataset_id,)).fetchone()


def db_state(db_url) -> tuple:
    """Row counts of the three tables and the datasets' and jobs' rows, to prove a refused
    request changed nothing."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        datasets = conn.execute("SELECT id, name, description, num_samples, next_attempt_index, "
                                "updated_at FROM heimdall.synthetic_datasets ORDER BY id").fetchall()
        jobs = conn.execute("SELECT id, status, generated, attempted, cancel_requested FROM "
                            "heimdall.generation_jobs ORDER BY id").fetchall()
    return url_table_sizes(db_url), datasets, jobs


def row_digests(db_url, dataset_id) -> list[tuple]:
    """(sample_index, md5 of every data column) ordered by sample_index: comparing these lists
    compares every data column of every row (text output of floats is exact)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute(
            f"SELECT sample_index, md5(ROW({DATA_COLUMNS})::text) FROM "
            "heimdall.measurement_features WHERE dataset_id = %s ORDER BY sample_index",
            (dataset_id,)).fetchall()


def wait_for_locks_released(db_url, timeout=60) -> None:
    """Until no session holds a heimdall advisory lock (a killed process's backends exit when
    PostgreSQL notices the closed socket)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(db_url, autocommit=True) as conn:
        while conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND "
                           "database = (SELECT oid FROM pg_database WHERE datname = "
                           "current_database())").fetchone()[0]:
            assert time.monotonic() < deadline, "advisory locks were not released"
            time.sleep(0.05)


# ---- jobs run in this process ----------------------------------------------------------------

def submit(conn, **request):
    return jobs.create_job(conn, GenerateRequest.from_dict(request))


def generate(conn, url, name, n, **fields):
    created = submit(conn, name=name, num_samples=n, **fields)
    result = run_job(url, created["job_id"])
    return created["dataset_id"], result


def expand(conn, url, dataset_id, n, **fields):
    created = submit(conn, expand_dataset_id=dataset_id, num_samples=n, **fields)
    return run_job(url, created["job_id"])


def run_and_die(url, job_id, die_after, **options):
    """In a spawned process: run the job and SIGKILL ourselves after ``die_after`` commits
    (``options``: run_job's, e.g. a Dask cluster)."""
    def on_event(event):
        if event["type"] == "batch" and event["batch"] == die_after:
            os.kill(os.getpid(), signal.SIGKILL)
    run_job(url, job_id, on_event=on_event, **options)


def killed_after(conn, url, created, die_after, timeout=120, **options) -> None:
    """Run the job ``created`` in a spawned process that SIGKILLs itself after ``die_after``
    commits (run_and_die), then check what it left (contract C5): the committed counts agree,
    the job still says 'running', and the recovery marks it 'interrupted' once the dead
    process's backends have exited (PostgreSQL drops its owner lock a moment after the kill)."""
    child = multiprocessing.get_context("spawn").Process(
        target=run_and_die, args=(url, created["job_id"], die_after), kwargs=options)
    child.start()
    child.join(timeout)
    assert child.exitcode == -signal.SIGKILL
    meta, actual = counts(conn, created["dataset_id"])
    assert meta == actual > 0
    assert jobs.get_job(conn, created["job_id"])["status"] == "running"
    wait_for_locks_released(url)
    assert jobs.recover_interrupted(conn) == [created["job_id"]]
    assert jobs.get_job(conn, created["job_id"])["status"] == "interrupted"


# ---- the command line in a subprocess --------------------------------------------------------

def cli(db_url, *args, env=None, timeout=120) -> subprocess.CompletedProcess:
    """Run the CLI; ``db_url`` None means no DATABASE_URL (the embedded server)."""
    environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if db_url is not None:
        environ["DATABASE_URL"] = db_url
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "heimdall_synth.service.cli", *map(str, args)], cwd=ROOT,
                          env=environ, capture_output=True, text=True, timeout=timeout)


def cli_json(db_url, *args, rc=0, **kw):
    res = cli(db_url, "--json", *args, **kw)
    assert res.returncode == rc, res.stderr
    return json.loads(res.stdout)


def dataset_row(db_url, ref):
    rows = cli_json(db_url, "datasets")["datasets"]
    return next(r for r in rows if ref in (r["id"], r["name"]))


# ---- the kernel ------------------------------------------------------------------------------

#: The kernel reference's wide-area case (tests/test_kernel_reference.py), also used by the
#: statistics tests (tests/test_kernel_stats.py).
WIDE_AREA = {"frequency_mhz": 50.0, "use_random_receivers": True, "noise_floor_dbm": -150.0,
             "area_lat_min": 36.0, "area_lat_max": 60.0, "area_lon_min": -10.0,
             "area_lon_max": 30.0}


def in_simulator(script: str, *args: str):
    """What ``script`` prints last (JSON), run in a new process on numba-cuda's simulator
    (NUMBA_ENABLE_CUDASIM=1 must be set before numba.cuda is imported)."""
    res = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT,
                         env={**os.environ, "NUMBA_ENABLE_CUDASIM": "1"},
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def jacksboro():
    """matplotlib's sample elevation model (344 x 403 cells of 3 arc-seconds, Tennessee) as an
    ElevationGrid: real terrain for tests."""
    from matplotlib.cbook import get_sample_data
    from heimdall_synth.kernel.terrain import ElevationGrid
    dem = get_sample_data("jacksboro_fault_dem.npz")
    # Its first row is the northern edge (the file calls that latitude 'ymin').
    return ElevationGrid.from_array(dem["elevation"], float(dem["ymin"]), float(dem["xmin"]),
                                    float(dem["dy"]), float(dem["dx"]))


# ---- the soaks' figures ----------------------------------------------------------------------

#: When set, a folder: each soak writes its figures there as ``<key>.json`` (bench/soak.py
#: sets it and renders them into docs/RELIABILITY.md). Tests never write tracked files.
SOAK_RESULTS_ENV = "HEIMDALL_SYNTH_SOAK_RESULTS"


def publish_soak_figures(key: str, figures: dict) -> Path | None:
    """Print a soak's figures; when $HEIMDALL_SYNTH_SOAK_RESULTS names a folder, also write
    them there as ``key``.json, with the date and the machine. Returns the file written."""
    from bench.results import machine

    result = {"soak": key, "date": dt.date.today().isoformat(), "cores": os.cpu_count(),
              "machine": machine(), "figures": figures}
    text = json.dumps(result, indent=1)
    print(text)
    folder = os.environ.get(SOAK_RESULTS_ENV)
    if not folder:
        return None
    path = Path(folder) / f"{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    print(f"figures written to {path}")
    return path
