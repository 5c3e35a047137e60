"""Refusals over real HTTP: every bad request is a 4xx with a JSON body naming the problem and
changes NOTHING in the database; the one error handler never leaks a traceback; the token rules;
serve() refusing a non-loopback address without a token."""

from __future__ import annotations

import json
import socket

import pytest

from heimdall_synth.service.http.app import create_app
from heimdall_synth.service.http.server import UnsafeBindError, check_bind, is_loopback, serve
from tests.helpers import db_state
from tests.http_client import Client, start_server

NIL = "00000000-0000-7000-8000-000000000000"
OK = {"name": "fresh", "num_samples": 5}


@pytest.fixture
def stocked(api):
    """A server with one completed dataset ('taken', 5 samples) and its job."""
    created = api.generate(name="taken", num_samples=5, seed=1)
    assert api.wait(created["job_id"])["status"] == "completed"
    return api, created


def cases(ds, job):
    """(method, path, json body or raw bytes, content type, status, error code, field)."""
    gen = "/generate"
    return [
        ("POST", gen, {**OK, "bogus": 1}, None, 422, "invalid_field", "bogus"),
        ("POST", gen, {**OK, "num_samples": "5"}, None, 422, "invalid_field", "num_samples"),
        ("POST", gen, {**OK, "num_samples": 5.0}, None, 422, "invalid_field", "num_samples"),
        ("POST", gen, {**OK, "use_gpu": 1}, None, 422, "invalid_field", "use_gpu"),
        ("POST", gen, {**OK, "num_samples": 0}, None, 422, "invalid_field", "num_samples"),
        ("POST", gen, {**OK, "frequency_mhz": 0.5}, None, 422, "invalid_field", "frequency_mhz"),
        ("POST", gen, {**OK, "seed": -1}, None, 422, "invalid_field", "seed"),
        ("POST", gen, {**OK, "max_gdop": 0}, None, 422, "invalid_field", "max_gdop"),
        ("POST", gen, {**OK, "receivers": []}, None, 422, "invalid_field", "receivers"),
        ("POST", gen, {**OK, "dataset_type": "iq"}, None, 422, "invalid_field",
         "dataset_type"),
        ("POST", gen, {**OK, "iq_format": "ci16"}, None, 422, "invalid_field", "iq_format"),
        ("POST", gen, {**OK, "dataset_type": "iq_raw", "iq_sample_rate_hz": 1000}, None, 422,
         "invalid_field", "iq_sample_rate_hz"),
        ("POST", gen, {**OK, "dataset_type": "iq_raw", "iq_storage": "s3"}, None, 422,
         "invalid_field", "iq_storage"),
        ("POST", gen, {"num_samples": 5, "expand_dataset_id": "not-a-uuid"}, None, 422,
         "invalid_field", "expand_dataset_id"),
        ("POST", gen, {"num_samples": 5, "expand_dataset_id": f"{ds}x"}, None, 422,
         "invalid_field", "expand_dataset_id"),
        ("POST", gen, {"num_samples": 5}, None, 422, "invalid_field", "name"),
        ("POST", gen, {"name": "no-count"}, None, 422, "invalid_field", "num_samples"),
        ("POST", gen, [OK], None, 422, "invalid_request", None),
        ("POST", gen, {"name": "taken", "num_samples": 5}, None, 409, "name_taken", "name"),
        ("POST", gen, {"expand_dataset_id": ds, "num_samples": 5, "frequency_mhz": 433.0},
         None, 409, "conflicting_override", "frequency_mhz"),
        ("POST", gen, {"expand_dataset_id": NIL, "num_samples": 5}, None, 404, "not_found",
         "expand_dataset_id"),
        ("POST", gen, b'{"name": "x", "num_samples": ', "application/json", 400,
         "malformed_json", None),
        ("POST", gen, b'{"name": "x", "num_samples": NaN}', "application/json", 400,
         "malformed_json", None),
        ("POST", gen, b"\xff\xfe", "application/json", 400, "malformed_json", None),
        ("POST", gen, b'{"name": "a", "name": "b", "num_samples": 5}', "application/json",
         400, "malformed_json", None),
        ("POST", gen, json.dumps(OK).encode(), "text/plain", 415, "unsupported_media_type",
         None),
        ("POST", gen, json.dumps(OK).encode(), "application/x-www-form-urlencoded", 415,
         "unsupported_media_type", None),
        ("POST", gen, json.dumps(OK).encode(), None, 415, "unsupported_media_type", None),
        ("POST", gen + "?dry_run=1", OK, None, 422, "invalid_field", "dry_run"),
        ("DELETE", gen, None, None, 405, "method_not_allowed", None),
        ("GET", gen, None, None, 405, "method_not_allowed", None),
        ("GET", "/nowhere", None, None, 404, "not_found", None),
        ("GET", "/jobs/not-a-uuid", None, None, 422, "invalid_field", "job_id"),
        ("GET", f"/jobs/{NIL}", None, None, 404, "not_found", "job_id"),
        ("GET", "/jobs?limit=0", None, None, 422, "invalid_field", "limit"),
        ("GET", "/jobs?dataset_id=zzz", None, None, 422, "invalid_field", "dataset_id"),
        ("POST", "/jobs/not-a-uuid/cancel", None, None, 422, "invalid_field", "job_id"),
        ("POST", f"/jobs/{NIL}/cancel", None, None, 404, "not_found", "job_id"),
        ("POST", f"/jobs/{job}/cancel", None, None, 409, "not_active", "status"),
        ("POST", f"/jobs/{job}/resume", None, None, 409, "not_resumable", "status"),
        ("POST", f"/jobs/{job}/resume", {"force": True}, None, 422, "invalid_field", "force"),
        ("GET", f"/datasets/{ds[:-1]}", None, None, 422, "invalid_field", "dataset_id"),
        ("GET", f"/datasets/{NIL}", None, None, 404, "not_found", "dataset_id"),
        ("DELETE", f"/datasets/{NIL}", None, None, 404, "not_found", "dataset_id"),
        ("DELETE", "/datasets/123", None, None, 422, "invalid_field", "dataset_id"),
        ("PATCH", f"/datasets/{ds}", {"name": ""}, None, 422, "invalid_field", "name"),
        ("PATCH", f"/datasets/{ds}", {"name": "x", "seed": 3}, None, 422, "invalid_field",
         "seed"),
        ("PATCH", f"/datasets/{ds}", {}, None, 422, "invalid_field", "name"),
        ("PATCH", f"/datasets/{NIL}", {"name": "y"}, None, 404, "not_found", "dataset_id"),
        ("PATCH", f"/datasets/{ds}", b"name=y", "text/plain", 415, "unsupported_media_type",
         None),
        ("GET", f"/datasets/{ds}/samples?limit=0", None, None, 422, "invalid_field", "limit"),
        ("GET", f"/datasets/{ds}/samples?limit=1001", None, None, 422, "invalid_field",
         "limit"),
        ("GET", f"/datasets/{ds}/samples?limit=ten", None, None, 422, "invalid_field", "limit"),
        ("GET", f"/datasets/{ds}/samples?offset=-1", None, None, 422, "invalid_field",
         "offset"),
        ("GET", f"/datasets/{ds}/samples?page=2", None, None, 422, "invalid_field", "page"),
        ("GET", f"/datasets/{NIL}/samples", None, None, 404, "not_found", "dataset_id"),
        ("GET", f"/datasets/{NIL}/validate", None, None, 404, "not_found", "dataset_id"),
    ]


def test_bad_requests_are_refused_clearly_and_change_nothing(stocked, db_url):
    api, created = stocked
    # a second dataset, so that a rename to a taken name can be tried
    other = api.generate(name="other", num_samples=5, seed=2)
    api.wait(other["job_id"])
    table = cases(created["dataset_id"], created["job_id"]) + [
        ("PATCH", f"/datasets/{created['dataset_id']}", {"name": "other"}, None, 409,
         "name_taken", "name")]
    before = db_state(db_url)
    assert before[0] == (2, 2, 10)
    for method, path, body, ctype, status, code, field in table:
        raw = body if isinstance(body, bytes) else None
        reply = api.request(method, path, None if raw is not None else body, raw=raw,
                            content_type=ctype or ("application/json" if raw is None else None))
        where = f"{method} {path} {body!r}"
        assert reply.status == status, (where, reply)
        assert reply.headers["Content-Type"] == "application/json", where
        assert reply.json["error"] == code, (where, reply.json)
        assert reply.json["message"], where
        assert reply.json.get("field") == field, (where, reply.json)
        if field is not None and status == 422:
            assert field in reply.json["message"], (where, reply.json)
        if status == 409:
            assert field in reply.json["fields"], where
        if status == 405:
            assert "Allow" in reply.headers, where
        assert db_state(db_url) == before, f"{where} changed the database"
    # the conflict names every conflicting field
    reply = api.post("/generate", {"expand_dataset_id": created["dataset_id"], "num_samples": 5,
                                   "frequency_mhz": 433.0, "num_chunks": 3})
    assert reply.json["fields"] == ["frequency_mhz", "num_chunks"]
    assert db_state(db_url) == before


def test_valid_renames_and_json_types(stocked, db_url):
    api, created = stocked
    ds = created["dataset_id"]
    reply = api.patch(f"/datasets/{ds}", {"name": "renamed"})
    assert reply.status == 200 and reply.json["name"] == "renamed"
    assert api.patch(f"/datasets/{ds}", {"name": "renamed"}).status == 200  # its own name
    got = api.get(f"/datasets/{ds}").json
    assert got["id"] == ds and isinstance(got["seed"], int)
    assert got["created_at"].endswith("+00:00") and "T" in got["created_at"]
    page = api.get(f"/datasets/{ds}/samples?limit=2&offset=4").json
    assert [s["sample_index"] for s in page["samples"]] == [4]
    assert page["next_offset"] is None and page["count"] == 1
    assert api.get(f"/datasets/{ds}/samples?offset=99").json["samples"] == []


def test_internal_errors_do_not_leak(db_url):
    app = create_app({"DATABASE_URL": db_url})
    try:
        def boom():
            raise RuntimeError("secret detail /etc/passwd")
        app.add_url_rule("/boom", view_func=boom)
        reply = app.test_client().get("/boom")
        assert reply.status_code == 500
        assert reply.get_json() == {"error": "internal_error", "message":
                                    "internal server error; the service log has the details"}
        assert b"secret" not in reply.data and b"Traceback" not in reply.data
    finally:
        from heimdall_synth.service.http.app import close_app
        close_app(app)


def test_token_rules(db_url):
    token = "s3cret-token"
    srv = start_server(db_url, API_TOKEN=token)
    try:
        anon, wrong, right = (Client(srv.url), Client(srv.url, token="nope"),
                              Client(srv.url, token=token))
        before = db_state(db_url)
        for client, status, code in ((anon, 401, "unauthorized"), (wrong, 403, "forbidden")):
            for method, path, body in (("POST", "/generate", OK),
                                       ("POST", f"/jobs/{NIL}/cancel", None),
                                       ("PATCH", f"/datasets/{NIL}", {"name": "x"}),
                                       ("DELETE", f"/datasets/{NIL}", None)):
                reply = client.request(method, path, body)
                assert reply.status == status and reply.json["error"] == code, (method, reply)
                assert reply.headers["WWW-Authenticate"].startswith("Bearer")
        basic = anon.post("/generate", OK, headers={"Authorization": "Basic czNjcmV0"})
        assert basic.status == 401
        assert db_state(db_url) == before
        # GETs stay open
        for path in ("/api/health", "/datasets", "/jobs", "/api/openapi.json"):
            assert anon.get(path).status == 200, path
        created = right.generate(name="authorised", num_samples=5)
        assert right.wait(created["job_id"])["status"] == "completed"
        reply = right.patch(f"/datasets/{created['dataset_id']}", {"name": "authorised-2"})
        assert reply.status == 200
        assert right.delete(f"/datasets/{created['dataset_id']}").status == 200
    finally:
        srv.stop()


def test_serve_refuses_public_address_without_token(monkeypatch, db_url):
    monkeypatch.delenv("HEIMDALL_SYNTH_API_TOKEN", raising=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for host in ("0.0.0.0", "", "::"):
        with pytest.raises(UnsafeBindError, match="HEIMDALL_SYNTH_API_TOKEN"):
            serve(host, port, db_url)
    with pytest.raises(ConnectionRefusedError):  # nothing was left listening
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("") and not is_loopback("8.8.8.8")
    check_bind("0.0.0.0", "a-token")  # with a token it may listen anywhere
    check_bind("127.0.0.1", None)


def test_json_has_no_infinity_and_uses_iso_dates_and_string_uuids():
    import math
    import uuid
    from datetime import datetime, timedelta, timezone

    from heimdall_synth.service.http.serialize import dumps, sample_json
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    ident = uuid.UUID(NIL)
    text = dumps({"gdop": math.inf, "crb": -math.inf, "x": math.nan, "ok": 1.5, "when": when,
                  "id": ident, "nested": [(math.inf, 2)]})
    assert json.loads(text) == {"gdop": None, "crb": None, "x": None, "ok": 1.5,
                                "when": "2025-01-02T01:04:05+00:00", "id": NIL,
                                "nested": [[None, 2]]}
    row = sample_json({"crb_m": math.inf, "receiver_features": [
        {"rx_id": 0, "snr_db": "Infinity", "rssi_dbm": "NaN", "lat": 45.0}]})
    assert json.loads(dumps(row)) == {"crb_m": None, "receiver_features": [
        {"rx_id": 0, "snr_db": None, "rssi_dbm": None, "lat": 45.0}]}


def test_importing_the_app_does_not_import_the_kernel():
    import subprocess
    import sys
    code = ("import sys; import heimdall_synth.service.http.app, heimdall_synth.service.http.server; "
            "import heimdall_synth.service.http.openapi, heimdall_synth.service.cli.main; "
            "assert 'numba' not in sys.modules and 'heimdall_synth.kernel.batch' not in sys.modules, "
            "sorted(m for m in sys.modules if 'numba' in m)[:5]")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
