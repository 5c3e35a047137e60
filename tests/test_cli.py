"""The command line, end to end: ``python -m service.cli`` in a subprocess against a real
PostgreSQL (a fresh database per test through ``DATABASE_URL``), and once against the embedded
server that a user without a database gets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid

import psutil
import pytest

from tests.helpers import ROOT, cli, cli_json, dataset_row


def test_generate_then_expand_by_id_and_by_name(db):
    job = cli_json(db, "generate", "--name", "grow", "--num-samples", 5, "--seed", 7)
    assert job["status"] == "completed" and job["kind"] == "create"
    assert job["generated"] == 5 and job["result"]["final_count"] == 5
    ds_id = job["dataset_id"]

    exp = cli_json(db, "expand", ds_id, "--num-samples", 10)
    assert exp["dataset_id"] == ds_id and exp["kind"] == "expand"
    assert (exp["status"], exp["samples_offset"], exp["generated"]) == ("completed", 5, 10)
    assert exp["result"]["final_count"] == 15
    assert exp["progress_message"] == "Generated all 10 samples in " \
        f"{exp['attempted']} attempts."
    row = dataset_row(db, ds_id)
    assert (row["num_samples"], row["actual_count"]) == (15, 15)

    text = cli(db, "datasets")  # the table shows both counts side by side
    assert text.returncode == 0
    line = next(ln for ln in text.stdout.splitlines() if ds_id in ln)
    assert line.split()[1:5] == ["grow", "feature_based", "15", "15"]

    by_name = cli(db, "expand", "grow", "--num-samples", 3)  # plain output, by name
    assert by_name.returncode == 0, by_name.stderr
    assert "status: completed" in by_name.stdout and "final count: 18" in by_name.stdout
    assert "samples_offset: 15" in by_name.stdout

    assert cli_json(db, "validate", "grow")["ok"] is True
    assert cli(db, "validate", ds_id).returncode == 0
    shown = cli_json(db, "datasets", "show", "grow")
    assert shown["num_samples"] == shown["actual_count"] == 18 and shown["seed"] == 7
    assert shown["config"]["frequency_mhz"] == 145.0 and shown["quality_metrics"]["samples"] == 18
    assert [j["kind"] for j in shown["jobs"]] == ["expand", "expand", "create"]
    listed = cli_json(db, "jobs", "--dataset", "grow")["jobs"]
    assert [j["generated"] for j in listed] == [3, 10, 5]
    assert cli_json(db, "jobs", "show", job["id"])["status"] == "completed"
    text = cli(db, "datasets", "show", ds_id)
    assert text.returncode == 0 and "config:" in text.stdout and "jobs:" in text.stdout


def test_strict_expansion_stops_short_and_names_the_filter(db):
    cli_json(db, "generate", "--name", "strict", "--num-samples", 5, "--seed", 3)
    res = cli(db, "--json", "expand", "strict", "--num-samples", 10, "--min-snr-db", 30,
              "--min-receivers", 7, "--max-gdop", 10)
    assert res.returncode == 1
    assert "min_receivers" in res.stderr
    job = json.loads(res.stdout)
    assert job["status"] == "failed" and job["stopped_reason"] in ("max_attempts", "stalled")
    assert job["generated"] < 10 and "min_receivers" in job["stop_message"]
    assert set(job["overrides"]) == {"min_snr_db", "min_receivers", "max_gdop"}
    row = dataset_row(db, "strict")
    assert row["num_samples"] == row["actual_count"] == 5 + job["generated"]

    # a failed job can be resumed; its budget is spent, so it stops again, saying why
    again = cli(db, "resume", job["id"])
    assert again.returncode == 1 and "min_receivers" in again.stderr
    assert "status: failed" in again.stdout
    # neither a finished job can be cancelled nor a completed one resumed
    first = cli_json(db, "jobs", "--dataset", "strict")["jobs"][-1]
    for command in ("cancel", "resume"):
        res = cli(db, command, first["id"])
        assert res.returncode == 4 and "error: status:" in res.stderr


BAD_VALUES = [
    (["--num-samples", "0"], "num_samples"),
    (["--num-samples", "1.5"], "num_samples"),
    (["--num-samples", "1e3"], "num_samples"),
    (["--num-samples", "5", "--frequency-mhz", "abc"], "frequency_mhz"),
    (["--num-samples", "5", "--frequency-mhz", "nan"], "frequency_mhz"),
    (["--num-samples", "5", "--frequency-mhz", "inf"], "frequency_mhz"),
    (["--num-samples", "5", "--receivers", "[]"], "receivers"),
    (["--num-samples", "5", "--receivers", "not json"], "receivers"),
    (["--num-samples", "5", "--tx-antenna-dist", '{"whip": 0.5}'], "tx_antenna_dist"),
    (["--num-samples", "5", "--dataset-type", "iq"], "dataset_type"),
    (["--num-samples", "5", "--min-receivers-count", "9", "--max-receivers-count", "4"],
     "min_receivers_count"),
    (["--num-samples", "5", "--max-attempts", "2"], "max_attempts"),
    (["--name", "", "--num-samples", "5"], "name"),
]


def test_bad_values_exit_2_naming_the_field(db):
    for args, field in BAD_VALUES:
        if "--name" not in args:
            args = ["--name", "bad", *args]
        res = cli(db, "generate", *args)
        assert res.returncode == 2, (args, res.stderr)
        assert f"error: {field}: " in res.stderr, (args, res.stderr)
    res = cli(db, "generate", "--name", "bad")  # num_samples is required
    assert res.returncode == 2 and "error: num_samples: is required" in res.stderr
    res = cli(db, "--json", "generate", "--name", "bad", "--num-samples", "-3")
    assert res.returncode == 2
    assert json.loads(res.stdout) == {"error": "invalid_field", "field": "num_samples",
                                      "message": "-3 is out of range [1, 1e+08]"}
    res = cli(db, "generate", "--name", "bad", "--num-samples", "5", "--threads", "0")
    assert res.returncode == 2 and "error: threads: " in res.stderr
    assert cli_json(db, "datasets")["datasets"] == []  # nothing was created


def test_taken_name_exits_4_and_creates_nothing(db):
    cli_json(db, "generate", "--name", "taken", "--num-samples", 5)
    res = cli(db, "generate", "--name", "taken", "--num-samples", 5)
    assert res.returncode == 4 and "error: name: " in res.stderr
    assert len(cli_json(db, "jobs")["jobs"]) == 1
    row = dataset_row(db, "taken")
    assert (row["num_samples"], row["actual_count"]) == (5, 5)


def test_unknown_dataset_or_job_exits_3(db):
    res = cli(db, "expand", "missing", "--num-samples", 5)
    assert res.returncode == 3 and "missing" in res.stderr and "error: dataset: " in res.stderr
    assert cli(db, "datasets", "show", str(uuid.uuid4())).returncode == 3
    assert cli(db, "validate", "missing").returncode == 3
    job = str(uuid.uuid4())
    for args in (["jobs", "show", job], ["cancel", job], ["resume", job]):
        res = cli(db, *args)
        assert res.returncode == 3 and "error: job_id: " in res.stderr, args
    res = cli(db, "jobs", "show", "not-a-uuid")
    assert res.returncode == 2 and "error: job_id: " in res.stderr


def test_expansion_refuses_a_data_change_unless_overridden(db):
    cli_json(db, "generate", "--name", "fixed", "--num-samples", 5)
    res = cli(db, "expand", "fixed", "--num-samples", 5, "--frequency-mhz", 146)
    assert res.returncode == 4 and "frequency_mhz" in res.stderr
    assert len(cli_json(db, "jobs")["jobs"]) == 1  # refused: no job was created
    job = cli_json(db, "expand", "fixed", "--num-samples", 5, "--frequency-mhz", 146,
                   "--allow-parameter-override")
    assert job["status"] == "completed" and job["result"]["final_count"] == 10
    assert job["overrides"] == {"frequency_mhz": {"dataset": 145.0, "job": 146.0}}


def test_db_upgrade_twice(db):
    first = cli_json(db, "db", "upgrade")
    assert first["applied"] == first["current"] and first["current"]
    second = cli_json(db, "db", "upgrade")
    assert second == {"applied": [], "current": first["current"]}
    text = cli(db, "db", "upgrade")
    assert text.returncode == 0 and "up to date" in text.stdout


def test_verbose_prints_the_diagnostic_lines_and_request_file_is_read(db, tmp_path):
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"name": "from-file", "num_samples": 3, "tx_power_dbm": 40}))
    job = cli(db, "-v", "--json", "generate", "--request", request, "--num-samples", 6)
    assert job.returncode == 0, job.stderr
    assert "[FINAL COUNT DEBUG] samples_offset=0, stats_generated=6" in job.stderr
    assert "Batch 1 complete:" in job.stderr
    assert "[GENERATION DEBUG] Target: 6 valid samples" in job.stderr
    record = json.loads(job.stdout)
    assert record["config"]["config"]["tx_power_dbm"] == 40.0 and record["generated"] == 6


def test_plain_progress_lines_when_not_a_terminal(db):
    res = cli(db, "generate", "--name", "plain", "--num-samples", 5)
    assert res.returncode == 0, res.stderr
    assert "progress: batch 1: 5 / 5 100.0%" in res.stderr and "\r" not in res.stderr
    assert "[FINAL COUNT DEBUG]" not in res.stderr  # not without -v
    for text in ("status: completed", "stopped_reason: target_reached", "requested: 5",
                 "final count: 5", "samples_offset: 0", "samples/s", "device: cpu"):
        assert text in res.stdout
    res = cli(db, "expand", "plain", "--num-samples", 5)
    assert "progress: batch 1: 10 / 10 (continued from 5)" in res.stderr


@pytest.mark.parametrize("sig, rc", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_cancels_after_the_batch(db, sig, rc):
    environ = {**os.environ, "DATABASE_URL": db}
    proc = subprocess.Popen(
        [sys.executable, "-m", "heimdall_synth.service.cli", "generate", "--name", "long", "--num-samples",
         "5000000", "--batch-size", "20000", "--max-crb-m", "1e12"],
        cwd=ROOT, env={k: str(v) for k, v in environ.items()}, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for line in proc.stderr:  # wait until the job has committed a batch
            if line.startswith("progress: batch"):
                break
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == rc, err
    assert "status: cancelled" in out
    job = cli_json(db, "jobs")["jobs"][0]
    assert job["status"] == "cancelled" and 0 < job["generated"] < 5_000_000
    row = dataset_row(db, "long")
    assert row["num_samples"] == row["actual_count"] == job["generated"]


def test_embedded_server_is_started_reused_and_stopped(tmp_path):
    data_dir = tmp_path / "pgdata"
    env = {"HEIMDALL_SYNTH_DATA_DIR": str(data_dir)}
    first = cli_json(None, "generate", "--name", "x", "--num-samples", 50, env=env, timeout=300)
    assert first["status"] == "completed" and first["result"]["final_count"] == 50
    assert (data_dir / "PG_VERSION").exists()
    rows = cli_json(None, "datasets", env=env)["datasets"]  # a second run, same folder
    assert [(r["name"], r["num_samples"], r["actual_count"]) for r in rows] == [("x", 50, 50)]
    assert not (data_dir / "postmaster.pid").exists()
    left = [p.info["pid"] for p in psutil.process_iter(["pid", "cmdline"])
            if str(data_dir) in " ".join(p.info["cmdline"] or [])]
    assert left == []
