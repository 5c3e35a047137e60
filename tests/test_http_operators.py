"""The operators' requests over real HTTP (waitress, real PostgreSQL): expansion appends, counts
agree in metadata and in the table, cumulative progress in the event stream, the diagnostic
log lines operators grep for, and a strict expansion that stops with a reason a person can act on."""

from __future__ import annotations

import io
import logging
import re

import numpy as np
import pytest

from tests.helpers import url_counts

BASE_REQUEST = {"name": "test-expansion-base", "description": "Base dataset for expansion test",
                "num_samples": 5, "frequency_mhz": 145.0, "tx_power_dbm": 5.0, "min_snr_db": 3.0,
                "min_receivers": 3, "max_gdop": 150, "dataset_type": "feature_based",
                "use_random_receivers": False, "use_gpu": False}


@pytest.fixture
def heimdall_log():
    """Records of the 'heimdall' loggers (DEBUG and up) while the test runs."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    logger = logging.getLogger("heimdall")
    handler, level = Keep(logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def expansion_request(dataset_id, n, dataset_type="feature_based"):
    return {"name": "test-expansion-extended", "description": "Expanded dataset",
            "num_samples": n, "expand_dataset_id": dataset_id, "dataset_type": dataset_type,
            "use_gpu": False}


def messages(records):
    return [r.getMessage() for r in records]


def create_base(api, dataset_type="feature_based"):
    created = api.generate(**{**BASE_REQUEST, "dataset_type": dataset_type})
    assert set(created) >= {"job_id", "dataset_id", "status", "status_url", "events_url"}
    assert created["status_url"] == f"/api/training/synthetic/jobs/{created['job_id']}"
    assert created["events_url"] == created["status_url"] + "/events"
    events = api.events(created["job_id"])
    final = events[-1][2]
    assert events[-1][1] == "final" and final["status"] == "completed", events[-1]
    assert final["progress"] == "5 / 5"
    return created


@pytest.mark.parametrize("dataset_type, n", [("feature_based", 10), ("feature_based", 1000),
                                             ("iq_raw", 1000)])
def test_operator_expansion_over_http(api, db_url, heimdall_log, dataset_type, n):
    """The operators' session as sent, for each dataset type (iq_raw with its default capture,
    50 kHz x 200 ms per receiver)."""
    base = create_base(api, dataset_type)
    dataset_id = base["dataset_id"]
    ds = api.get(f"/datasets/{dataset_id}").json
    assert (ds["num_samples"], ds["actual_count"], ds["counts_agree"]) == (5, 5, True)
    assert ds["dataset_type"] == dataset_type

    created = api.generate(**expansion_request(dataset_id, n, dataset_type))
    assert created["dataset_id"] == dataset_id and created["kind"] == "expand"
    assert "name and description of an expansion" in created["notices"][0]
    events = api.events(created["job_id"])
    names = [e[1] for e in events]
    assert names[-1] == "final" and names.count("final") == 1
    final = events[-1][2]
    total = 5 + n
    want = f"{total:,} / {total:,} (continued from 5)"
    assert (final["status"], final["stopped_reason"]) == ("completed", "target_reached")
    assert final["progress"] == want
    assert (final["requested"], final["generated"], final["samples_offset"]) == (n, n, 5)
    assert final["committed_count"] == total and final["success_rate"] > 0
    assert final["stop_message"].startswith(f"Generated all {n:,} samples")
    for _, name, data in events:  # progress is always cumulative
        if name in ("progress", "status"):
            assert "(continued from 5)" in data["progress"]
        if name == "batch":
            assert data["committed_count"] == 5 + data["generated"]

    job = api.job(created["job_id"])
    assert job["progress"] == want and job["status"] == "completed"
    assert job["device"].startswith("cpu") and job["duration_s"] >= 0
    assert job["config"]["request"]["name"] == "test-expansion-extended"  # kept on the job
    assert job["finished_at"] and job["started_at"] and job["created_at"]

    # metadata and actual counts, from the dataset and from the list
    ds = api.get(f"/datasets/{dataset_id}").json
    assert (ds["num_samples"], ds["actual_count"]) == (total, total)
    listed = {d["id"]: d for d in api.get("/datasets").json["datasets"]}
    assert (listed[dataset_id]["num_samples"], listed[dataset_id]["actual_count"]) == (total,
                                                                                        total)
    assert url_counts(db_url, dataset_id) == (total, total)
    # name/description of an expansion describe the request, not the dataset (docs/API.md)
    assert (ds["name"], ds["description"]) == ("test-expansion-base",
                                                "Base dataset for expansion test")
    assert api.get(f"/datasets/{dataset_id}/validate").json["ok"] is True

    # the diagnostic log lines, with matching numbers
    log = messages(heimdall_log)
    assert f"Expanding dataset {dataset_id} (current samples: 5)" in log
    assert any(m.startswith(f"[GENERATION DEBUG] Target: {n} valid samples") for m in log)
    batches = [m for m in log if re.match(r"Batch \d+ complete: ", m)]
    assert batches[-1].split(" | ")[1].startswith(f"Total: {n}/{n} valid")
    if n == 10:
        assert any(m.startswith("Batch 1 complete: 10 valid samples | Total: 10/10 valid")
                   for m in log)
    assert f"[FINAL COUNT DEBUG] samples_offset=5, stats_generated={n}" in log
    assert f"Query returned actual_count={total} from database" in log

    # the samples, in order, from the JSON view
    page = api.get(f"/datasets/{dataset_id}/samples?limit=1000&offset=0").json
    assert page["num_samples"] == total and page["count"] == min(total, 1000)
    assert [s["sample_index"] for s in page["samples"]] == list(range(min(total, 1000)))
    first = page["samples"][0]
    assert len(first["receiver_features"]) == 7 and first["dataset_id"] == dataset_id
    assert first["receiver_features"][0]["rx_id"] == 0
    if dataset_type == "iq_raw":  # the last sample's IQ, every receiver's capture
        reply = api.request("GET", f"/datasets/{dataset_id}/samples/{total - 1}/iq")
        assert reply.status == 200
        iq = np.load(io.BytesIO(reply.raw))
        assert iq.dtype == np.complex64 and iq.shape == (7, 10_000)


@pytest.mark.parametrize("dataset_type", ["feature_based", "iq_raw"])
def test_strict_expansion_stops_with_a_clear_reason(api, db_url, dataset_type):
    base = api.generate(name="strict-base", num_samples=5, seed=3,  # default power, 37 dBm
                        dataset_type=dataset_type)
    assert api.wait(base["job_id"])["status"] == "completed"
    created = api.generate(expand_dataset_id=base["dataset_id"], num_samples=1000,
                           min_snr_db=30.0, min_receivers=7, max_gdop=10.0)

    assert set(created["overrides"]) == {"min_snr_db", "min_receivers", "max_gdop"}
    final = api.events(created["job_id"])[-1]
    assert final[1] == "final"
    job = final[2]
    assert (job["status"], job["stopped_reason"]) == ("failed", "max_attempts")
    assert "min_receivers" in job["stop_message"] and "lower min_receivers" in job["stop_message"]
    assert job["attempted"] == 20_000 and job["generated"] < 1000
    assert sum(job["rejections"].values()) + job["generated"] == job["attempted"]
    again = api.job(created["job_id"])
    assert {k: again[k] for k in job} == job  # the final event IS the job's record
    n = 5 + job["generated"]
    assert url_counts(db_url, base["dataset_id"]) == (n, n)
    ds = api.get(f"/datasets/{base['dataset_id']}").json
    assert (ds["num_samples"], ds["actual_count"]) == (n, n)
