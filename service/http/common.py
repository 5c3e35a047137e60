"""The HTTP API's blueprints (one per resource) and the helpers they share.

Blueprints: ``meta`` (/api/health, /api/openapi.json), ``jobs`` (/generate and /jobs...),
``datasets`` (/datasets...), all but meta under ``/api/training/synthetic``. Views raise; the
app's one error handler (``http.app.handle_error``) turns every exception into the JSON error body.

Nothing here imports the Numba kernel at import time: the generation loop is imported when a
job first runs (Numba's OpenMP layer forbids forking after a kernel ran; the app never forks,
but a module import must not start the kernel either).
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from dataclasses import dataclass
from typing import Any

from flask import current_app, g, request
from psycopg.pq import TransactionStatus

from heimdall_synth.kernel.config import ConfigError

API_PREFIX = "/api/training/synthetic"
DATASET_READS = API_PREFIX + "/datasets"
REQUEST_CONNECTIONS = 16       # requests using the database at once, dataset reads aside
DATASET_READ_CONNECTIONS = 8   # GETs under /datasets at once (each counts the dataset's rows)
POOL_WAIT_S = 30.0             # a request waits this long for a connection, then 503

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_INT = re.compile(r"[0-9]{1,18}")


class ApiError(Exception):
    """An HTTP error with its JSON body: {"error": code, "message": text, "field": name?}."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict | None = None, **extra: Any):
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers or {}
        self.extra = extra


@dataclass
class ServiceState:
    """What the app factory sets up: the database handle, its URL and the job pool."""

    db: Any            # storage.database handle (.url, .close())
    url: str
    runner: Any        # engine.runner.JobRunner
    pools: dict        # request connection pools (open_pools)
    token: str | None  # API token (None: no auth; only loopback serving allowed)
    events_poll_s: float
    events_keepalive_s: float
    closed: bool = False
    stopping: bool = False  # set first when the server stops: event streams end


def state() -> ServiceState:
    return current_app.extensions["heimdall"]


def get_db():
    """This request's PostgreSQL connection (autocommit off), from the app's connection pools:
    GETs under /datasets (they count a dataset's rows) draw from their own pool, so a status
    poll never waits behind them. Given back at the end of the request."""
    if "db" not in g:
        from flask import request as current
        reads_dataset = (current.method in ("GET", "HEAD")
                         and current.path.startswith(DATASET_READS))
        pool = state().pools["dataset_reads" if reads_dataset else "requests"]
        g.db = pool.getconn()
        g.db_pool = pool
    return g.db


def close_db(exc=None) -> None:
    conn, pool = g.pop("db", None), g.pop("db_pool", None)
    if conn is None:
        return
    if not conn.broken and conn.info.transaction_status != TransactionStatus.IDLE:
        conn.rollback()
    pool.putconn(conn)


def open_pools(url: str) -> dict:
    """The request connection pools (psycopg_pool): at most REQUEST_CONNECTIONS connections for
    requests and DATASET_READ_CONNECTIONS for dataset reads. A request finding its pool empty
    waits for a connection up to POOL_WAIT_S, then gets 503 server_busy. Every connection is
    checked when taken (a database restart leaves none broken behind)."""
    from psycopg_pool import ConnectionPool
    pools = {}
    try:
        for name, size in (("requests", REQUEST_CONNECTIONS),
                           ("dataset_reads", DATASET_READ_CONNECTIONS)):
            pools[name] = ConnectionPool(url, min_size=1, max_size=size, name=name,
                                         kwargs={"autocommit": False}, timeout=POOL_WAIT_S,
                                         check=ConnectionPool.check_connection, open=True)
    except BaseException:
        for pool in pools.values():
            pool.close()
        raise
    return pools


def parse_uuid(value: str, field: str) -> str:
    """A UUID from a path or query parameter: 8-4-4-4-12 hex digits, else 422 naming it."""
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise ConfigError(field, f"must be a UUID (8-4-4-4-12 hex digits), got {value!r}")
    return str(uuid.UUID(value))


def query_args(allowed: tuple[str, ...]) -> dict:
    """The query string, refusing unknown and repeated parameters (422 naming them)."""
    args = request.args
    for name in args:
        if name not in allowed:
            raise ConfigError(name, f"unknown query parameter; allowed: {', '.join(allowed)}"
                              if allowed else "unknown query parameter; this endpoint takes none")
        if len(args.getlist(name)) > 1:
            raise ConfigError(name, "given more than once")
    return {k: args[k] for k in args}


def int_arg(args: dict, name: str, default: int, lo: int, hi: int | None) -> int:
    if name not in args:
        return default
    text = args[name]
    if not _INT.fullmatch(text):
        raise ConfigError(name, f"must be an integer{f' in [{lo}, {hi}]' if hi else f' >= {lo}'}"
                                f", got {text!r}")
    value = int(text)
    if value < lo or (hi is not None and value > hi):
        raise ConfigError(name, f"{value} is out of range "
                                f"{f'[{lo}, {hi}]' if hi is not None else f'>= {lo}'}")
    return value


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicates(pairs: list) -> dict:
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def read_json(required: bool = True) -> Any:
    """The request body as JSON: 415 unless it is application/json, 400 when malformed.

    With ``required=False`` an empty body is None (any Content-Type)."""
    data = request.get_data(cache=True)
    if not data and not required:
        return None
    if request.mimetype != "application/json":
        got = request.content_type or "none"
        raise ApiError(415, "unsupported_media_type",
                       f"the body must be JSON sent with Content-Type: application/json "
                       f"(got {got})")
    charset = request.mimetype_params.get("charset", "utf-8")
    if charset.lower().replace("-", "") != "utf8":
        # JSON is UTF-8 (RFC 8259); another charset is refused rather than decoded as asked
        # (Python would happily "decode" charset=idna or base64).
        raise ApiError(415, "unsupported_media_type",
                       f"JSON bodies are UTF-8 (RFC 8259); charset={charset} is not supported")
    try:
        text = data.decode("utf-8")
        return json.loads(text, parse_constant=_reject_constant,
                          object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError as exc:
        raise ApiError(400, "malformed_json", f"the body is not UTF-8 text: {exc}") from None
    except RecursionError:
        raise ApiError(400, "malformed_json", "the body is not valid JSON: arrays or objects "
                                              "nested too deeply") from None
    except ValueError as exc:
        if "integer string conversion" in str(exc):  # Python's guard against huge numbers
            exc = (f"a number has more than {sys.get_int_max_str_digits():,} digits (no field "
                   "takes one that long)")
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None


def no_body() -> None:
    """For actions that take no body: accept none, or an empty JSON object. A JSON ``null``,
    ``[]`` or ``""`` is a body, and not an empty object: refused, not read as none."""
    if not request.get_data(cache=True):
        return
    body = read_json()
    if isinstance(body, dict) and not body:
        return
    if not isinstance(body, dict):
        raise ConfigError(None, "this endpoint takes no body (or an empty JSON object), got "
                                f"JSON {_json_type(body)}")
    raise ConfigError(sorted(body)[0], "unknown field; this endpoint takes no body")


def _json_type(value: Any) -> str:
    return {type(None): "null", bool: "true/false", str: "text", list: "array",
            int: "number", float: "number"}.get(type(value), type(value).__name__)
