"""GET /api/health and GET /api/openapi.json."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify

from heimdall_synth.service.http.common import query_args, state

bp = Blueprint("meta", __name__, url_prefix="/api")
log = logging.getLogger("heimdall.service")


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version as dist_version
    try:
        return dist_version("heimdall-synth")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


@bp.get("/health")
def health():
    """{"status": "ok"} when the database answers; 503 {"status": "unavailable"} otherwise."""
    query_args(())
    from heimdall_synth.service.storage.database import connect
    body = {"status": "ok", "version": version(), "database": "ok", "schema_version": None,
            "active_jobs": len(state().runner.active())}
    try:
        with connect(state().url, autocommit=True, connect_timeout=5) as conn:
            body["schema_version"] = conn.execute(
                "SELECT max(version) FROM heimdall.schema_migrations").fetchone()[0]
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        log.warning("health check: database unreachable: %s", exc)
        body.update(status="unavailable", database="unreachable",
                    message=f"the database does not answer: {type(exc).__name__}")
        return jsonify(body), 503
    return jsonify(body)


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 document of this API (request schema generated from the parameter
    table)."""
    query_args(())
    from heimdall_synth.service.http.openapi import build_openapi
    doc = current_app.extensions.get("heimdall.openapi")
    if doc is None:
        doc = current_app.extensions["heimdall.openapi"] = build_openapi(version())
    return jsonify(doc)
