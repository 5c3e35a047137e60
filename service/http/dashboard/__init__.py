"""The operators' dashboard: ``GET /`` and its static files (issue 6, docs/DASHBOARD.md).

The page is plain HTML, CSS and ES modules (``static/``): no build step and no external asset,
so it works on an offline machine. Everything it shows comes from the HTTP API of the same
server (``/api/training/synthetic``, ``/api/openapi.json``): the forms are generated in the
browser from the OpenAPI ``GenerateRequest`` schema (itself generated from the parameter table),
counts come from the dataset rows and job progress from the job's event stream. This module only
serves the page and tells it whether the API wants a token.
"""

from __future__ import annotations

from flask import Blueprint, current_app, make_response, render_template

from heimdall_synth.service.http.common import API_PREFIX

STATIC_URL = "/dashboard/static"

bp = Blueprint("dashboard", __name__, static_folder="static", static_url_path=STATIC_URL,
               template_folder="templates")

# Only this server's own files and API: no CDN, no inline script, nothing framed elsewhere.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; "
                           "img-src 'self' data:; connect-src 'self'; object-src 'none'; "
                           "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


@bp.get("/")
def index():
    """The dashboard page. ``auth_required`` shows the token field when the API has a token."""
    state = current_app.extensions["heimdall"]
    page = render_template("dashboard/index.html", api_prefix=API_PREFIX,
                           static_url=STATIC_URL, auth_required=state.token is not None)
    response = make_response(page)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-cache"
    return response
