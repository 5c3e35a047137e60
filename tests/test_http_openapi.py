"""The OpenAPI document stays true: every Flask route is in it and vice versa, and the request
schema is the parameter table. Plus /api/health over real HTTP."""

from __future__ import annotations

import re

from heimdall_synth.kernel.defaults import PARAMETERS
from heimdall_synth.service.engine.request import GenerateRequest

IGNORED_METHODS = {"HEAD", "OPTIONS"}


def flask_routes(app) -> set[tuple[str, str]]:
    """The API routes (under /api/); the HTML pages of the dashboard are not part of the API."""
    out = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - IGNORED_METHODS:
            out.add((path, method.lower()))
    return out


def documented(doc) -> set[tuple[str, str]]:
    return {(path, method) for path, ops in doc["paths"].items() for method in ops}


def test_every_route_is_documented_and_every_documented_route_exists(server, api):
    reply = api.get("/api/openapi.json")
    assert reply.status == 200
    doc = reply.json
    assert doc["openapi"] == "3.1.0"
    assert flask_routes(server.app) == documented(doc)
    for path, ops in doc["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for method, op in ops.items():
            assert op["summary"] and op["responses"], (path, method)
            params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert params == names, (path, method)
            if method in ("post", "patch", "delete"):
                assert {"401", "403"} <= set(op["responses"]), (path, method)
    # every $ref resolves
    text = reply.raw.decode()
    for ref in set(re.findall(r'"\$ref": ?"#/components/schemas/(\w+)"', text)):
        assert ref in doc["components"]["schemas"], ref


def test_request_schema_is_the_parameter_table(api):
    schema = api.get("/api/openapi.json").json["components"]["schemas"]["GenerateRequest"]
    assert set(schema["properties"]) == {p.name for p in PARAMETERS}
    assert list(schema["properties"]) == [p.name for p in PARAMETERS]
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["num_samples"] and schema["else"] == {"required": ["name"]}
    kinds = {"int": "integer", "float": "number", "bool": "boolean", "str": "string",
             "choice": "string", "uuid": "string", "receivers": "array", "dist": "object"}
    for p in PARAMETERS:
        s = schema["properties"][p.name]
        types = s["type"] if isinstance(s["type"], list) else [s["type"]]
        assert types[0] == kinds[p.kind], p.name
        assert ("null" in types) == p.nullable, p.name
        assert p.doc in s["description"], p.name
        assert s["x-scope"] == p.scope
        if p.kind in ("int", "float") and p.lo is not None:
            key = "exclusiveMinimum" if p.lo_open else "minimum"
            assert s[key] == p.lo and s["maximum"] == p.hi, p.name
        if p.kind == "choice":
            assert [c for c in s["enum"] if c is not None] == list(p.choices)
        if p.default is not None:
            expected = [dict(r) for r in p.default] if p.kind == "receivers" else (
                dict(p.default) if p.kind == "dist" else p.default)
            assert s["default"] == expected, p.name
        # the schema's default is what the request model uses when the field is absent
        if p.default is not None and p.name not in ("name", "num_samples"):
            req = GenerateRequest.from_dict({"name": "x", "num_samples": 1})
            assert req.get(p.name) == p.default, p.name


def test_health(api):
    reply = api.get("/api/health")
    assert reply.status == 200
    body = reply.json
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["version"] == "0.1.0" and body["schema_version"] >= 2
