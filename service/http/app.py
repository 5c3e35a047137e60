"""The Flask application factory of the HTTP service.

``create_app(config)`` sets up everything a request needs, once:

* the database: ``config["DATABASE_URL"]``, else ``open_database()`` ($DATABASE_URL, else the
  embedded PostgreSQL); migrations are applied and jobs left running by a dead process are
  marked ``interrupted`` (``jobs.recover_interrupted``) before the app is returned;
* the job runner (``engine.runner.JobRunner``, ``JOB_WORKERS`` workers) and the request
  connection pools (``common.open_pools``);
* the blueprints (one per resource: ``*_routes``, the report, the dashboard);
* ONE error handler turning every exception into ``{"error": code, "message": text,
  "field": name?}`` (409s add ``"fields"``); a 500 never shows a traceback;
* bearer-token auth for state-changing requests when a token is configured.

``close_app(app)`` stops the job pool and lets go of the database. Config keys (all optional):
DATABASE_URL, API_TOKEN (default $HEIMDALL_SYNTH_API_TOKEN), JOB_WORKERS (2), KERNEL_THREADS
(None: the loop's default), DASK_SCHEDULER (default $HEIMDALL_SYNTH_DASK_SCHEDULER: the jobs'
attempts are evaluated on that Dask cluster), EVENTS_POLL_S (0.25), EVENTS_KEEPALIVE_S (10), MAX_CONTENT_LENGTH
(1 MiB), MAX_TERRAIN_UPLOAD (512 MiB: the body of POST /terrains, a multipart upload of elevation
files). Importing this module does not import the Numba kernel.
"""

from __future__ import annotations

import hmac
import logging
import os
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout
from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from heimdall_synth.kernel.config import ConfigError
from heimdall_synth.service.engine.request import ConflictError, NotFoundError, NotIQError

from heimdall_synth.service.http.common import ApiError, ServiceState, close_db, open_pools
from heimdall_synth.service.http.serialize import JSONProviderStrict

log = logging.getLogger("heimdall.service")

TOKEN_ENV = "HEIMDALL_SYNTH_API_TOKEN"
#: The Dask scheduler the service's jobs run on (service/engine/cluster.py), when set.
SCHEDULER_ENV = "HEIMDALL_SYNTH_DASK_SCHEDULER"
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})

DEFAULTS: dict[str, Any] = {
    "DATABASE_URL": None,
    "JOB_WORKERS": 2,
    "KERNEL_THREADS": None,
    "EVENTS_POLL_S": 0.25,
    "EVENTS_KEEPALIVE_S": 10.0,
    "MAX_CONTENT_LENGTH": 1 << 20,
    "MAX_TERRAIN_UPLOAD": 512 << 20,   # POST /terrains only (terrain_routes)
    "MAX_EXPORTS": 4,   # exports streamed at once (each holds a thread and a connection)
}


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__, static_folder=None)
    app.config.from_mapping(DEFAULTS)
    app.config["API_TOKEN"] = os.environ.get(TOKEN_ENV) or None
    app.config["DASK_SCHEDULER"] = os.environ.get(SCHEDULER_ENV) or None
    app.config.update(config or {})
    app.json = JSONProviderStrict(app)

    from heimdall_synth.service.storage.database import ExternalDatabase, connect, open_database
    from heimdall_synth.service.storage.migrations import upgrade

    url = app.config["DATABASE_URL"]
    db = ExternalDatabase(url) if url else open_database()
    try:
        with connect(db.url, autocommit=True) as conn:
            applied = upgrade(conn)
            if applied:
                log.info("applied migrations %s", applied)
            from heimdall_synth.service.storage.jobs import recover_interrupted
            for job_id in recover_interrupted(conn):
                log.warning("job %s was left running by a process that ended: marked "
                            "interrupted (POST .../jobs/%s/resume continues it)", job_id, job_id)
        from heimdall_synth.service.engine.runner import JobRunner
        pools = open_pools(db.url)
        runner = JobRunner(db.url, workers=int(app.config["JOB_WORKERS"]),
                           threads=app.config["KERNEL_THREADS"],
                           cluster=app.config["DASK_SCHEDULER"])
    except BaseException:
        for pool in locals().get("pools", {}).values():
            pool.close()
        db.close()
        raise
    app.extensions["heimdall"] = ServiceState(
        db=db, url=db.url, runner=runner, pools=pools, token=app.config["API_TOKEN"] or None,
        events_poll_s=float(app.config["EVENTS_POLL_S"]),
        events_keepalive_s=float(app.config["EVENTS_KEEPALIVE_S"]))

    from heimdall_synth.service.http import (dataset_routes, export_routes, job_routes,
                                             meta_routes, relief_routes, signal_routes,
                                             terrain_routes)
    from heimdall_synth.service.http.dashboard import bp as dashboard  # GET / and its files
    from heimdall_synth.service.report.views import bp as report  # PNG plots and the page
    for blueprint in (meta_routes.bp, job_routes.bp, dataset_routes.bp, export_routes.bp,
                      signal_routes.bp, terrain_routes.bp, relief_routes.bp, report, dashboard):
        app.register_blueprint(blueprint)
    app.before_request(_authorize)
    app.teardown_appcontext(close_db)
    app.register_error_handler(Exception, handle_error)
    return app


def close_app(app: Flask, timeout: float = 10.0) -> None:
    """Stop the job pool (running jobs stop at their next batch and are recorded interrupted)
    and let go of the database (an embedded server stops when no process uses it)."""
    state = app.extensions.get("heimdall")
    if state is None or state.closed:
        return
    state.stopping = state.closed = True
    try:
        state.runner.close(timeout)
    finally:
        for pool in state.pools.values():
            pool.close()
        state.db.close()


def _authorize():
    """With a token configured, POST/PUT/PATCH/DELETE need ``Authorization: Bearer <token>``:
    401 when it is missing, 403 when it is wrong. GETs stay open."""
    token = app_state_token()
    if token is None or request.method not in STATE_CHANGING:
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="heimdall-synth"'}
    if not header or scheme.lower() != "bearer" or not given.strip():
        raise ApiError(401, "unauthorized", "this request changes state: send the API token as "
                       "'Authorization: Bearer <token>'", headers=challenge)
    if not hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8")):
        raise ApiError(403, "forbidden", "the API token is wrong", headers=challenge)
    return None


def app_state_token() -> str | None:
    from flask import current_app
    return current_app.extensions["heimdall"].token


def _error_code(exc: HTTPException) -> str:
    return {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
            413: "payload_too_large", 415: "unsupported_media_type"}.get(
        exc.code or 500, (exc.name or "error").lower().replace(" ", "_"))


def _printable(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [_printable(v) for v in value]
    return value


def handle_error(exc: Exception):
    """THE error handler: every failure as {"error", "message", "field"?} with its status."""
    body: dict[str, Any]
    headers: dict = {}
    if isinstance(exc, ApiError):
        status, body, headers = exc.status, {"error": exc.code, "message": exc.message,
                                             **exc.extra}, exc.headers
        if exc.field:
            body["field"] = exc.field
    elif isinstance(exc, ConfigError):
        status, body = 422, {"error": "invalid_field" if exc.field else "invalid_request",
                             "message": str(exc)}
        if exc.field:
            body["field"] = exc.field
    elif isinstance(exc, NotFoundError):
        status, body = 404, {"error": "not_found", "message": str(exc)}
        if exc.field:
            body["field"] = exc.field
    elif isinstance(exc, NotIQError):
        status, body = 409, {"error": "not_iq_raw", "message": str(exc), "field": exc.field,
                             "fields": [exc.field]}
    elif isinstance(exc, ConflictError):
        status, body = 409, {"error": exc.code, "message": str(exc), "fields": exc.fields}
        if len(exc.fields) >= 1:
            body["field"] = exc.fields[0]
    elif isinstance(exc, HTTPException):
        status = exc.code or 500
        body = {"error": _error_code(exc), "message": exc.description or exc.name}
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        if status == 405 and getattr(exc, "valid_methods", None):
            body["message"] = (f"{request.method} is not allowed here; allowed: "
                               f"{', '.join(sorted(exc.valid_methods))}")
    elif isinstance(exc, PoolTimeout):
        status, body = 503, {"error": "server_busy", "message": "every database connection of "
                             "the service is in use; try again shortly"}
        headers = {"Retry-After": "1"}
    elif isinstance(exc, psycopg.OperationalError):
        log.error("database unavailable in %s %s: %s", request.method, request.path, exc)
        status, body = 503, {"error": "database_unavailable",
                             "message": "the database does not answer; try again later"}
    else:
        log.exception("unhandled error in %s %s", request.method, request.path)
        status, body = 500, {"error": "internal_error",
                             "message": "internal server error; the service log has the details"}
    # A name the client sent may hold a lone surrogate (a "\ud800" escape in its JSON): it is
    # echoed as that escape's text, so the error body is strict UTF-8 JSON (RFC 8259).
    response = jsonify({k: _printable(v) for k, v in body.items()})
    response.status_code = status
    for key, value in headers.items():
        response.headers[key] = value
    return response
