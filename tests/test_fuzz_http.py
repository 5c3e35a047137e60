"""Hostile HTTP input generated from the OpenAPI document (issue 5).

Every operation that ``GET /api/openapi.json`` lists (whatever paths it has when the test runs)
is fuzzed with schemathesis, in-process over WSGI, against a real migrated database:

* schemathesis's coverage phase (values at and past every bound, missing and repeated
  parameters, methods a path does not take), then positive requests (valid per the document),
  negative requests (invalid per the document) and requests carrying query parameters the
  document does not declare;
* path ids are random UUIDs, or the ids of a seeded dataset, a completed job, a failed
  (resumable) job and a pending job, so that the 2xx/409 paths run and not only the 404s;
  terrain names are random text or a seeded terrain's name.

POST /terrains takes multipart/form-data: schemathesis sends its files under generated names
(``files``, ``files.png``...), never a readable .hgt or GeoTIFF, so every generated upload is
refused (422 naming ``files``), and proved to have stored nothing; the accepted uploads are
tested in tests/test_terrain_http.py. Nothing is excluded.

Checks on every response: no 5xx (schemathesis ``not_a_server_error``); the status code, the
content type, the headers and the body are the ones the document gives for that operation;
invalid requests are refused (``negative_data_rejection``); every 4xx is JSON
``{"error", "message", "field"?}`` where ``field``, when present, names something the request
sent or the operation declares (and an ``invalid_field`` error always has one); and the
DATABASE IS UNCHANGED by every refused request (and by every GET): a digest of the datasets,
jobs, samples and terrains tables is taken before and after.

Accepted ``POST /generate`` requests start real jobs. The API accepts what it documents (one
explicit request at the documented maxima is accepted, then cancelled), but the fuzzer asks for
little work: generated bodies are capped at 20 samples, 400 attempts and 1,000 attempts per
batch (and iq_raw captures at 50 ms of 25 kHz), and the test waits for the job pool to be idle before the next request (a job's commits
would otherwise race the database digest). The runner has one worker and one kernel thread. The
jobs must end without an error (a stall or a spent attempt budget is a clean end).

The bounded run is part of the suite; ``pytest -m slow tests/test_fuzz_http.py -s`` runs ten
times as many requests and prints its figures (into $HEIMDALL_SYNTH_SOAK_RESULTS too, when
set); ``python bench/soak.py --record`` runs it and records them in docs/RELIABILITY.md.
"""

from __future__ import annotations

import collections
import json
import time
from dataclasses import dataclass, field

import numpy as np
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance, negative_data_rejection, response_headers_conformance,
    response_schema_conformance, status_code_conformance, unsupported_method)

from heimdall_synth.kernel.terrain import ElevationGrid
from heimdall_synth.service.storage import jobs, terrains
from heimdall_synth.service.http.app import close_app, create_app
from heimdall_synth.service.engine.request import GenerateRequest
from tests.helpers import db_state, publish_soak_figures

API = "/api/training/synthetic"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, negative_data_rejection,
          unsupported_method]
#: What one accepted generated POST /generate may ask for (see the module docstring).
WORK_CAPS = {"num_samples": 20, "max_attempts": 400, "batch_size": 1000,
             "max_consecutive_rejections": 400, "iq_sample_rate_hz": 25_000,
             "iq_duration_ms": 50}
SAFE = ("GET", "HEAD", "OPTIONS")
#: Examples per operation and mode: the CI run, and the slow run that writes RELIABILITY.md.
CI_EXAMPLES, SLOW_EXAMPLES = 45, 600


# ---------------------------------------------------------------------------- database digest

DIGEST_SQL = """
SELECT (SELECT count(*) || ' ' || coalesce(md5(string_agg(d::text, E'\\n' ORDER BY d.id)), '')
          FROM heimdall.synthetic_datasets d),
       (SELECT count(*) || ' ' || coalesce(md5(string_agg(j::text, E'\\n' ORDER BY j.id)), '')
          FROM heimdall.generation_jobs j),
       (SELECT count(*) || ' ' || coalesce(md5(string_agg(f.ctid::text || f.xmin::text, ','
                                                          ORDER BY f.ctid)), '')
          FROM heimdall.measurement_features f),
       (SELECT count(*) || ' ' || coalesce(md5(string_agg(t.ctid::text || t.xmin::text, ','
                                                          ORDER BY t.ctid)), '')
          FROM heimdall.terrains t)
"""


def db_digest(conn) -> tuple:
    """Every row of the datasets and jobs tables, in full; the samples and terrains tables by
    their row versions: PostgreSQL never changes a user-table row in place (an UPDATE writes a
    new version with a new ctid and xmin, a DELETE removes it from view), so the (ctid, xmin)
    set changes exactly when a row is inserted, changed or deleted, without reading every
    array."""
    return conn.execute(DIGEST_SQL).fetchone()


# ---------------------------------------------------------------------------- the fuzzer

@dataclass
class Tally:
    sent: collections.Counter = field(default_factory=collections.Counter)      # op label
    by_mode: collections.Counter = field(default_factory=collections.Counter)   # mode
    status: collections.Counter = field(default_factory=collections.Counter)    # http status
    refused: collections.Counter = field(default_factory=collections.Counter)   # (status, code)
    server_errors: int = 0
    refused_changed_db: int = 0
    safe_changed_db: int = 0
    refusals_checked: int = 0
    job_errors: set = field(default_factory=set)  # jobs that ended with an (expected) error

    @property
    def total(self) -> int:
        return sum(self.sent.values())


class Fuzzer:
    """Sends generated cases to the app and checks each response (see the module docstring)."""

    def __init__(self, app, db_url: str, seeds: dict):
        self.app, self.seeds, self.tally = app, seeds, Tally()
        self.runner = app.extensions["heimdall"].runner
        self.conn = psycopg.connect(db_url, autocommit=True)
        self.digest = None  # the database as it was after the last request (None: unknown)

    def close(self) -> None:
        self.conn.close()

    def quiesce(self, timeout: float = 120.0) -> None:
        """Wait until the job pool runs nothing (a job's commits would race the digest), then
        check that the jobs accepted requests started ended without an error."""
        deadline = time.monotonic() + timeout
        while self.runner.active():
            assert time.monotonic() < deadline, f"jobs still running: {self.runner.active()}"
            time.sleep(0.005)
        for job_id, error in self.conn.execute(
                "SELECT id, error FROM heimdall.generation_jobs WHERE error IS NOT NULL"):
            # the one expected error: resuming the seeded pending job after an expansion of
            # its dataset committed first (refused clearly: the dataset moved on)
            assert "another job wrote to it since" in error, (job_id, error)
            self.tally.job_errors.add(str(job_id))

    def send(self, case, mode: str):
        method = case.method.upper()  # the coverage phase also sends undeclared methods
        if self.digest is None:
            self.quiesce()
            self.digest = db_digest(self.conn)
        before = self.digest
        response = case.call()
        label = case.operation.label
        self.tally.sent[label] += 1
        self.tally.by_mode[mode] += 1
        self.tally.status[response.status_code] += 1
        if response.status_code >= 500:
            self.tally.server_errors += 1
        case.validate_response(response, checks=CHECKS)
        if 400 <= response.status_code < 500:
            body = check_error_body(case, response)
            self.tally.refused[(response.status_code, body["error"])] += 1
        refused = 400 <= response.status_code < 500
        if refused or method in SAFE:
            after = db_digest(self.conn)
            if after != before:
                if refused:
                    self.tally.refused_changed_db += 1
                else:
                    self.tally.safe_changed_db += 1
            assert after == before, (f"{label} answered {response.status_code} and changed the "
                                     f"database:\n{case.as_curl_command()}")
            self.tally.refusals_checked += refused
        else:
            self.digest = None  # accepted: it may have changed the database and started a job
        return response


def check_error_body(case, response) -> dict:
    """A 4xx is JSON {"error": code, "message": text, "field"?: name} naming what was sent."""
    where = f"{case.operation.label} -> {response.status_code}:\n{case.as_curl_command()}"
    assert response.headers.get("content-type", [""])[0].startswith("application/json"), where
    body = json.loads(response.content)
    assert isinstance(body, dict), where
    assert isinstance(body.get("error"), str) and body["error"], (where, body)
    assert isinstance(body.get("message"), str) and body["message"].strip(), (where, body)
    assert (body["error"] == "invalid_field") == ("field" in body and response.status_code == 422
                                                  ), (where, body)
    if "field" in body:
        name = body["field"]
        assert isinstance(name, str) and name, (where, body)
        if response.status_code == 422:
            assert name in body["message"], (where, body)
        # it names what was sent (or a declared part that is missing); a 409 may blame the
        # job's status or the dataset's type (a dataset without IQ)
        known = known_names(case) | ({"status", "dataset_type"} if response.status_code == 409
                                     else set())
        assert name in known or name.split("[")[0].split(".")[0] in known, (where, body)
    if response.status_code == 409:
        assert body["field"] == body["fields"][0], (where, body)
    return body


def known_names(case) -> set[str]:
    """Names a refusal may blame: what the request sent, and what the operation declares."""
    op = case.operation
    names = {p.name for p in op.iter_parameters()}
    names |= set(case.query or {}) | set(case.path_parameters or {})
    if isinstance(case.body, dict):
        names |= {str(k) for k in case.body}
    for media in (op.definition.raw.get("requestBody") or {}).get("content", {}).values():
        names |= set(resolve(op, media.get("schema", {})).get("properties", {}))
    return names


def resolve(op, schema: dict) -> dict:
    ref = schema.get("$ref")
    if ref:
        return op.schema.raw_schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return schema


def bound_work(case):
    """Cap what an accepted generated POST /generate asks for (see the module docstring)."""
    body = case.body
    if isinstance(body, dict):
        for key, cap in WORK_CAPS.items():
            value = body.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > cap:
                body[key] = cap
    return case


# ---------------------------------------------------------------------------- seeding

def seed(app, db_url) -> dict:
    """A completed dataset and job, a failed (resumable) job, a pending job nobody runs, and a
    terrain."""
    client = app.test_client()

    def started(body) -> dict:
        reply = client.post(f"{API}/generate", json=body)
        assert reply.status_code == 202, reply.get_json()
        return reply.get_json()

    done = started({"name": "seeded", "num_samples": 5, "seed": 1})
    # Every attempt is rejected (no receiver can reach 60 dB SNR): it stalls and fails fast.
    failed = started({"name": "stalls", "num_samples": 5, "seed": 2, "min_snr_db": 60.0,
                      "max_consecutive_rejections": 50})
    runner = app.extensions["heimdall"].runner
    deadline = time.monotonic() + 120
    while runner.active():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with psycopg.connect(db_url) as conn:
        pending = jobs.create_job(conn, GenerateRequest.from_dict(
            {"name": "pending", "num_samples": 5, "seed": 3}))
        status = {j: jobs.get_job(conn, j)["status"] for j in (done["job_id"], failed["job_id"])}
        terrains.add_terrain(conn, "seeded terrain", ElevationGrid.from_array(
            np.arange(12.0).reshape(3, 4), 45.0, 7.0, 0.01, 0.01))
    assert status == {done["job_id"]: "completed", failed["job_id"]: "failed"}
    return {"job_id": [done["job_id"], failed["job_id"], pending["job_id"]],
            "dataset_id": [done["dataset_id"], failed["dataset_id"], pending["dataset_id"]],
            "terrain": ["seeded terrain"]}


def terminal_jobs(conn, ids) -> list[str]:
    return [j for j in ids if conn.execute(
        "SELECT status FROM heimdall.generation_jobs WHERE id = %s", (j,)).fetchone()[0]
        in ("completed", "failed", "cancelled", "interrupted")]


# ---------------------------------------------------------------------------- one operation

def strategies(fuzzer: Fuzzer, op, mode: GenerationMode):
    """The operation's cases in ``mode``, half of them on seeded ids when it takes an id."""
    base = op.as_strategy(generation_mode=mode)
    names = [p.name for p in op.path_parameters]
    options = {name: list(fuzzer.seeds.get(name, [])) for name in names}
    if "job_id" in options and is_stream(op):
        # an event stream of a job that no one runs never ends (it waits for the job)
        options["job_id"] = terminal_jobs(fuzzer.conn, options["job_id"])
    options = {name: ids for name, ids in options.items() if ids}  # others are generated
    negatable_elsewhere = bool(op.body) or bool(list(op.query)) or len(options) < len(names)
    strategy = base
    if options and (mode.is_positive or negatable_elsewhere):
        strategy = st.one_of(base, st.fixed_dictionaries(
            {n: st.sampled_from(ids) for n, ids in options.items()}).flatmap(
            lambda ids: op.as_strategy(generation_mode=mode, path_parameters=ids)))
    if mode.is_positive and is_generate(op):
        # half of them expand a seeded dataset (with whatever overrides were drawn)
        datasets = st.sampled_from(fuzzer.seeds["dataset_id"])
        strategy = st.one_of(strategy, st.tuples(strategy, datasets).map(as_expansion))
        strategy = strategy.map(bound_work)
    return strategy


def is_generate(op) -> bool:
    return op.method.upper() == "POST" and op.path.endswith("/generate")


def as_expansion(pair):
    case, dataset_id = pair
    if isinstance(case.body, dict):
        case.body["expand_dataset_id"] = dataset_id
    return case


def is_stream(op) -> bool:
    return any("text/event-stream" in (r.get("content") or {})
               for r in op.definition.raw.get("responses", {}).values())


def fuzz_operation(fuzzer: Fuzzer, op, mode: str, examples: int) -> None:
    if mode == "unknown-query":
        # a positive case plus query parameters the document does not declare: refused (422)
        declared = {p.name for p in op.query}
        extra = st.dictionaries(st.text(min_size=1, max_size=12).filter(
            lambda k: k not in declared), st.text(max_size=12), min_size=1, max_size=3)
        strategy = st.tuples(op.as_strategy(generation_mode=GenerationMode.POSITIVE), extra)
    else:
        strategy = st.tuples(strategies(fuzzer, op, GenerationMode(mode)), st.just({}))

    @settings(max_examples=examples, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate, Phase.shrink],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(pair):
        case, extra = pair
        if extra:
            case.query = {**(case.query or {}), **extra}
            if is_generate(op):
                bound_work(case)
        response = fuzzer.send(case, mode)
        if extra:
            assert response.status_code == 422, (op.label, extra, response.status_code)
            assert json.loads(response.content)["field"] in extra

    run()


def cover_operation(fuzzer: Fuzzer, schema, op) -> None:
    """schemathesis's coverage phase, deterministic: values at and just past every bound, each
    required part missing, query parameters repeated, methods the path does not take (405
    with Allow), positive and negative."""
    config = schema.config.generation_for(operation=op)
    for case in schema.iter_coverage_cases(op, generation_modes=list(GenerationMode),
                                           generation_config=config):
        if is_generate(op):
            bound_work(case)
        fuzzer.send(case, "coverage")


def modes_for(op) -> list[str]:
    """Negative data needs something to negate; unknown query parameters fit every operation."""
    modes = ["positive", "unknown-query"]
    if op.body or list(op.iter_parameters()):
        modes.insert(1, "negative")
    return modes


def operations(schema) -> list:
    ops = [result.ok() for result in schema.get_all_operations()]
    # deletes last: the seeded ids stay alive for every other operation
    return sorted(ops, key=lambda op: op.method.upper() == "DELETE")


def run_fuzz(db_url, examples: int) -> tuple[Tally, dict]:
    app = create_app({"DATABASE_URL": db_url, "JOB_WORKERS": 1, "KERNEL_THREADS": 1,
                      "API_TOKEN": None, "EVENTS_POLL_S": 0.01})
    fuzzer = None
    try:
        seeds = seed(app, db_url)
        schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
        fuzzer = Fuzzer(app, db_url, seeds)
        documented_maxima_are_accepted(fuzzer, app)
        per_op = {}
        for op in operations(schema):
            before = fuzzer.tally.sent[op.label]
            cover_operation(fuzzer, schema, op)
            for mode in modes_for(op):
                # unknown query parameters are one simple rule: fewer examples prove it
                fuzz_operation(fuzzer, op, mode,
                               examples if mode != "unknown-query" else examples // 3)
            per_op[op.label] = fuzzer.tally.sent[op.label] - before
        fuzzer.quiesce()
        return fuzzer.tally, per_op
    finally:
        if fuzzer is not None:
            fuzzer.close()
        close_app(app)


def documented_maxima_are_accepted(fuzzer: Fuzzer, app) -> None:
    """The fuzzer caps the work it asks for; the API itself takes the documented maxima."""
    client = app.test_client()
    reply = client.post(f"{API}/generate", json={
        "name": "documented maxima", "num_samples": 100_000_000, "batch_size": 10_000_000,
        "max_attempts": 2**62, "max_consecutive_rejections": 2**62})
    assert reply.status_code == 202, reply.get_json()
    job_id = reply.get_json()["job_id"]
    assert client.post(f"{API}/jobs/{job_id}/cancel").status_code in (202, 409)
    fuzzer.quiesce()
    assert client.get(f"{API}/jobs/{job_id}").get_json()["status"] == "cancelled"


# ---------------------------------------------------------------------------- the tests

def test_fuzz_the_api_from_its_openapi_document(db_url):
    tally, per_op = run_fuzz(db_url, CI_EXAMPLES)
    print(f"{tally.total} requests: {dict(tally.by_mode)}; statuses {dict(tally.status)}")
    assert tally.server_errors == 0 and tally.refused_changed_db == 0
    assert tally.total >= 1500, tally.total
    assert all(per_op.values()), per_op                   # every documented operation was hit
    assert tally.refusals_checked >= tally.total // 3     # most refusals proved harmless
    assert sum(n for s, n in tally.status.items() if 200 <= s < 300) >= 100
    assert {404, 409, 422} <= set(tally.status), tally.status
    json.dumps(soak_figures(tally, per_op, 0.0))  # what the soak publishes is JSON


NIL = "00000000-0000-7000-8000-000000000000"
RX = [{"name": "b", "lat": 45.0, "lon": 7.5, "alt_m": 300.0},
      {"name": "c", "lat": 45.2, "lon": 7.9, "alt_m": 300.0}]


def found_by_fuzzing(ds, job):
    """What the fuzzer found broken (all were 500s or silent acceptances), kept as cases:
    (method, path, raw body, content type, status, error code, field)."""
    gen = "/generate"

    def rx(name: str) -> str:  # a receivers list whose first name is the raw JSON `name`
        return json.dumps([{"name": "a", "lat": 45.1, "lon": 7.6, "alt_m": 1.0}, *RX]).replace(
            '"a"', name, 1)

    return [
        # PostgreSQL text and jsonb hold no NUL and no lone surrogate: 500s before
        ("POST", gen, '{"name": "a\\u0000b", "num_samples": 1}', None, 422, "invalid_field",
         "name"),
        ("POST", gen, '{"name": "a\\ud800b", "num_samples": 1}', None, 422, "invalid_field",
         "name"),
        ("POST", gen, '{"name": "n", "description": "\\u0000", "num_samples": 1}', None, 422,
         "invalid_field", "description"),
        ("POST", gen, '{"name": "n", "num_samples": 1, "receivers": %s}' % rx('"x\\u0000"'),
         None, 422, "invalid_field", "receivers[0].name"),
        ("POST", gen, '{"name": "n", "num_samples": 1, "receivers": %s}' % rx('"\\udfff"'),
         None, 422, "invalid_field", "receivers[0].name"),
        ("PATCH", f"/datasets/{ds}", '{"name": "nul\\u0000"}', None, 422, "invalid_field",
         "name"),
        ("PATCH", f"/datasets/{ds}", '{"name": "\\udc00"}', None, 422, "invalid_field", "name"),
        # the whole request is checked before the dataset is looked up
        ("PATCH", f"/datasets/{NIL}", '{"name": 5}', None, 422, "invalid_field", "name"),
        # json's RecursionError was a 500
        ("POST", gen, "[" * 100_000 + "]" * 100_000, None, 400, "malformed_json", None),
        # charset=idna or base64 was "decoded" as asked
        ("POST", gen, '{"name": "n", "num_samples": 1}', "application/json; charset=idna", 415,
         "unsupported_media_type", None),
        ("POST", gen, '{"name": "n", "num_samples": 1}', "application/json; charset=utf-16",
         415, "unsupported_media_type", None),
        # JSON null was read as "no body"
        ("POST", f"/jobs/{job}/cancel", "null", None, 422, "invalid_request", None),
        ("POST", f"/jobs/{job}/resume", "[]", None, 422, "invalid_request", None),
        # unknown query parameters on the routes that take none: refused, now documented
        ("GET", "/api/health?verbose=1", None, None, 422, "invalid_field", "verbose"),
        ("GET", "/api/openapi.json?v=2", None, None, 422, "invalid_field", "v"),
        # Python's advice to call sys.set_int_max_str_digits() is no message for a client
        ("POST", gen, '{"name": "n", "num_samples": 1%s}' % ("0" * 5000), None, 400,
         "malformed_json", None),
    ]


def test_cases_found_by_fuzzing_stay_fixed(api, db_url):
    created = api.generate(name="kept", num_samples=5, seed=4)
    api.wait(created["job_id"])
    before = db_state(db_url)
    for method, path, raw, ctype, status, code, blamed in found_by_fuzzing(
            created["dataset_id"], created["job_id"]):
        reply = api.request(method, path, raw=None if raw is None else raw.encode(),
                            content_type=ctype or "application/json")
        where = f"{method} {path} {(raw or '')[:80]!r}"
        assert reply.status == status, (where, reply)
        assert reply.json["error"] == code and reply.json.get("field") == blamed, (where, reply)
        assert db_state(db_url) == before, f"{where} changed the database"
    assert "4,300 digits" in reply.json["message"] and "sys." not in reply.json["message"]
    # an unknown field named with a lone surrogate is echoed as escape text: strict UTF-8 JSON
    reply = api.request("POST", "/generate", raw=b'{"\\udbff": 1, "name": "n", "num_samples": 1}')
    body = json.loads(reply.raw.decode("utf-8"))
    assert reply.status == 422 and body["field"] == "\\udbff", reply  # the escape's 6 chars
    for text in body.values():
        text.encode("utf-8")  # strict: no lone surrogate left anywhere in the body
    assert db_state(db_url) == before


HOSTILE_NAMES = [
    "O'Brien's \"set\"", "x'; DROP TABLE heimdall.measurement_features; --",
    "Robert'); DELETE FROM heimdall.synthetic_datasets;--", "1 OR 1=1", "$$; SELECT 1; $$",
    "ünïcødé 你好 🛰️ 👩‍🔬", "\u202eevil\u202c RTL override", "\u200f\u05e9\u05dc\u05d5\u05dd",
    "zero\u200bwidth", "e\u0301 combining", "tab\there\nnewline", "back\\slash %s %(x)s {0}",
    "  padded  ", "<script>alert(1)</script>", "a" * 100]


def test_hostile_names_round_trip_over_http(api, db_url):
    """Created, renamed and read back byte for byte over real HTTP; NUL and lone surrogates
    are refused naming the field and change nothing."""
    for i, name in enumerate(HOSTILE_NAMES):
        created = api.generate(name=name, num_samples=1, seed=i, description=name[::-1])
        assert api.wait(created["job_id"])["status"] == "completed"
        got = api.get(f"/datasets/{created['dataset_id']}").json
        assert (got["name"], got["description"]) == (name, name[::-1])
        renamed = HOSTILE_NAMES[(i + 1) % len(HOSTILE_NAMES)] + " (renamed)"
        if len(renamed) > 100:
            renamed = renamed[-100:]
        reply = api.patch(f"/datasets/{created['dataset_id']}", {"name": renamed})
        assert reply.status == 200 and reply.json["name"] == renamed, reply
        assert api.get(f"/datasets/{created['dataset_id']}").json["name"] == renamed
    listed = {d["name"] for d in api.get("/datasets").json["datasets"]}
    assert len(listed) == len(HOSTILE_NAMES)
    victim = api.get("/datasets").json["datasets"][0]
    before = db_state(db_url)
    for bad in ("nul\x00inside", "\x00", "x" * 99 + "\x00"):
        for reply in (api.post("/generate", {"name": bad, "num_samples": 1}),
                      api.patch(f"/datasets/{victim['id']}", {"name": bad})):
            assert reply.status == 422, reply
            assert reply.json["field"] == "name" and "NUL" in reply.json["message"], reply
    assert db_state(db_url) == before
    assert api.get(f"/datasets/{victim['id']}").json["name"] == victim["name"]


@pytest.mark.slow
def test_fuzz_soak(db_url):
    t0 = time.perf_counter()
    tally, per_op = run_fuzz(db_url, SLOW_EXAMPLES)
    seconds = time.perf_counter() - t0
    assert tally.server_errors == 0 and tally.refused_changed_db == 0
    publish_soak_figures("fuzz", soak_figures(tally, per_op, seconds))


def soak_figures(tally: Tally, per_op: dict, seconds: float) -> dict:
    """The soak's figures as JSON values (bench/soak.py renders them into docs/RELIABILITY.md)."""
    return {
        "seconds": seconds, "schemathesis": schemathesis.__version__, "total": tally.total,
        "by_mode": dict(tally.by_mode),
        "status": {str(status): n for status, n in sorted(tally.status.items())},
        "refused": [[status, code, n] for (status, code), n in sorted(tally.refused.items())],
        "server_errors": tally.server_errors, "refused_changed_db": tally.refused_changed_db,
        "safe_changed_db": tally.safe_changed_db, "refusals_checked": tally.refusals_checked,
        "per_op": dict(per_op)}
