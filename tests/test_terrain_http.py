"""Terrains over real HTTP: POST /terrains (multipart upload of .hgt tiles and GeoTIFF files),
GET /terrains, GET and DELETE /terrains/{terrain}; a refused upload (a taken name, a file that is
not read, a missing field, a body over the limit) stores nothing."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import numpy as np
import psycopg
import rasterio
from rasterio.transform import Affine

from heimdall_synth.service.storage import terrains
from tests.http_client import Client, start_server

SIDE = 1201
ARCSEC30 = 1.0 / 120.0


def hgt_tile(path):
    """A 3 arc-second SRTM tile (1201 x 1201 big-endian int16), 2.9 MB."""
    rows = np.arange(SIDE)[:, None]
    np.asarray(200 + (rows * 3 + np.arange(SIDE)[None, :]) % 500, ">i2").tofile(path)
    return path


def geotiff(path, rows=61, cols=81, north=44.5, west=6.0):
    """A small EPSG:4326 GeoTIFF of 30 arc-second cells (first cell centred on north, west)."""
    r, c = np.mgrid[0:rows, 0:cols]
    heights = (100.0 + 2.0 * r + c).astype(np.float32)
    with rasterio.open(path, "w", driver="GTiff", width=cols, height=rows, count=1,
                       dtype="float32", crs="EPSG:4326",
                       transform=Affine(ARCSEC30, 0.0, west - ARCSEC30 / 2, 0.0, -ARCSEC30,
                                        north + ARCSEC30 / 2)) as dst:
        dst.write(heights, 1)
    return path


def multipart(fields) -> tuple[bytes, str]:
    """A multipart/form-data body of ``fields``: (name, text) or (name, (filename, bytes))."""
    boundary = uuid.uuid4().hex
    out = b""
    for name, value in fields:
        if isinstance(value, tuple):
            filename, data = value
            quoted = filename.replace("\\", "\\\\").replace('"', '\\"')  # a quoted-string
            head = (f'Content-Disposition: form-data; name="{name}"; filename="{quoted}"\r\n'
                    "Content-Type: application/octet-stream\r\n\r\n")
        else:
            head, data = f'Content-Disposition: form-data; name="{name}"\r\n\r\n', value.encode()
        out += f"--{boundary}\r\n".encode() + head.encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def upload(api, fields):
    body, ctype = multipart(fields)
    return api.post("/terrains", raw=body, content_type=ctype)


def stored(db_url) -> list[tuple]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute("SELECT name, sha256, sources, created_at FROM heimdall.terrains "
                            "ORDER BY name").fetchall()


def test_upload_list_get_delete(api, db_url, tmp_path):
    hgt = hgt_tile(tmp_path / "N45E007.hgt")
    tif = geotiff(tmp_path / "maritime.tif")
    # a client may send a whole path as the file name: only its base name is kept (an SRTM
    # tile's name is its position)
    added = upload(api, [("name", "alps"), ("files", ("C:\\dem\\N45E007.hgt",
                                                      hgt.read_bytes()))])
    assert added.status == 201, added
    expected = terrains.terrain_from_files([hgt])
    body = added.json
    assert body["name"] == "alps" and body["sha256"] == expected.sha256()
    assert (body["rows"], body["cols"], body["spacing_arcsec"]) == (SIDE, SIDE, 3.0)
    assert (body["south"], body["north"], body["west"], body["east"]) == expected.bounds[:2] + (
        expected.west, expected.east)
    assert (body["dlat"], body["dlon"]) == (expected.dlat, expected.dlon)
    assert body["sources"] == ["N45E007.hgt"] and body["created_at"].endswith("+00:00")
    assert added.headers["Location"] == "/api/training/synthetic/terrains/alps"

    reply = upload(api, [("files", ("../maritime.tif", tif.read_bytes())),
                         ("name", "côte d'azur / 30\"")])
    assert reply.status == 201, reply
    coast = reply.json
    assert coast["sha256"] == terrains.terrain_from_files([tif]).sha256()
    assert (coast["rows"], coast["cols"], coast["spacing_arcsec"]) == (61, 81, 30.0)
    assert (coast["north"], coast["west"]) == (44.5, 6.0) and coast["sources"] == ["maritime.tif"]
    location = reply.headers["Location"]
    assert location == "/api/training/synthetic/terrains/c%C3%B4te%20d%27azur%20%2F%2030%22"

    listed = api.get("/terrains")
    assert listed.status == 200
    assert listed.json == {"terrains": [body, coast]}
    assert api.get("/terrains/alps").json == body
    assert api.get(location).json == coast
    missing = api.get("/terrains/nowhere")
    assert missing.status == 404 and missing.json["field"] == "terrain", missing

    deleted = api.delete("/terrains/alps")
    assert deleted.status == 204 and deleted.raw == b""
    assert api.get("/terrains/alps").status == 404
    again = api.delete("/terrains/alps")
    assert again.status == 404 and again.json["error"] == "not_found", again
    assert [t["name"] for t in api.get("/terrains").json["terrains"]] == [coast["name"]]
    assert api.delete(location).status == 204
    assert api.get("/terrains").json == {"terrains": []} and stored(db_url) == []


def test_refused_uploads_store_nothing(api, db_url, tmp_path):
    hgt = hgt_tile(tmp_path / "N45E007.hgt").read_bytes()
    assert upload(api, [("name", "alps"), ("files", ("N45E007.hgt", hgt))]).status == 201
    before = stored(db_url)
    voids = np.full(SIDE * SIDE, -32768, ">i2").tobytes()
    cases = [
        # (fields, status, error, field, in the message)
        ([("name", "alps"), ("files", ("N45E007.hgt", hgt))], 409, "name_taken", "name",
         "exists"),
        ([("name", "new"), ("files", ("heights.txt", b"1 2 3"))], 422, "invalid_field",
         "files", "heights.txt: only SRTM .hgt tiles and GeoTIFF"),
        ([("files", ("N45E007.hgt", hgt))], 422, "invalid_field", "name", "required"),
        ([("name", ""), ("files", ("N45E007.hgt", hgt))], 422, "invalid_field", "name",
         "1 to 100 characters"),
        ([("name", "new")], 422, "invalid_field", "files", "at least one file"),
        ([("name", "new"), ("files", "N45E007.hgt")], 422, "invalid_field", "files",
         "must be a file part"),
        ([("name", "new"), ("files", ("N46E007.hgt", b"\x00" * 10))], 422, "invalid_field",
         "files", "N46E007.hgt: 10 bytes is not"),
        ([("name", "new"), ("files", ("N45E008.hgt", voids))], 422, "invalid_field", "files",
         "void cells"),
        ([("name", "new"), ("files", ("broken.tif", b"II*\x00"))], 422, "invalid_field",
         "files", "broken.tif: not a readable GeoTIFF"),
        # a good tile with one that does not touch it: no grid covers both
        ([("name", "new"), ("files", ("N45E007.hgt", hgt)), ("files", ("N47E007.hgt", hgt))],
         422, "invalid_field", "files", "do not cover"),
        ([("name", "new"), ("files", ("N45E007.hgt", hgt)), ("files", ("a/N45E007.hgt", hgt))],
         422, "invalid_field", "files", "N45E007.hgt: sent twice"),
        ([("name", "new"), ("files", ("N45E007.hgt", hgt)), ("tiles", ("x.hgt", hgt))], 422,
         "invalid_field", "tiles", "unknown field"),
        ([("name", "new"), ("name", "new2"), ("files", ("N45E007.hgt", hgt))], 422,
         "invalid_field", "name", "more than once"),
    ]
    for fields, status, error, field, text in cases:
        reply = upload(api, fields)
        where = [(k, v[0] if isinstance(v, tuple) else v) for k, v in fields]
        assert reply.status == status, (where, reply)
        assert reply.json["error"] == error and reply.json["field"] == field, (where, reply)
        assert text in reply.json["message"], (where, reply)
        assert stored(db_url) == before, f"{where} changed the database"
    # not multipart, and unknown query parameters
    reply = api.post("/terrains", {"name": "new", "files": []})
    assert reply.status == 415 and reply.json["error"] == "unsupported_media_type", reply
    body, ctype = multipart([("name", "new"), ("files", ("N45E007.hgt", hgt))])
    reply = api.post("/terrains?force=1", raw=body, content_type=ctype)
    assert reply.status == 422 and reply.json["field"] == "force", reply
    assert stored(db_url) == before


def test_an_upload_over_the_limit_is_413_as_json(db_url, tmp_path):
    server = start_server(db_url, MAX_TERRAIN_UPLOAD=256 << 10)
    try:
        api = Client(server.url)
        hgt = hgt_tile(tmp_path / "N45E007.hgt").read_bytes()
        reply = upload(api, [("name", "alps"), ("files", ("N45E007.hgt", hgt))])
        assert reply.status == 413, reply
        assert reply.json["error"] == "payload_too_large" and "256 KiB" in reply.json["message"]
        assert stored(db_url) == []
        small = geotiff(tmp_path / "small.tif", rows=5, cols=5).read_bytes()
        assert upload(api, [("name", "small"), ("files", ("small.tif", small))]).status == 201
        # the other routes keep their own limit (1 MiB)
        assert api.post("/generate", raw=b" " * (2 << 20)).status == 413
    finally:
        server.stop()


def test_any_name_is_addressed_by_its_url_encoded_path(api, db_url, tmp_path):
    """Slashes (leading, doubled, trailing), line breaks, dots, quotes, spaces and non-ASCII
    letters: each name registered is read and deleted at /terrains/<its URL encoding>."""
    tif = geotiff(tmp_path / "small.tif", rows=3, cols=3).read_bytes()
    names = ["/leading", "a//b/", "line\nbreak", "..", ".", " ", "tab\tand 'quotes\"",
             "ünïcødé 🛰️", "100%", "?query#hash"]
    for name in names:
        reply = upload(api, [("name", name), ("files", ("small.tif", tif))])
        assert reply.status == 201 and reply.json["name"] == name, (name, reply)
        assert api.get(reply.headers["Location"]).json["name"] == name
    assert sorted(t["name"] for t in api.get("/terrains").json["terrains"]) == sorted(names)
    for name in names:
        path = "/terrains/" + quote(name, safe="")
        got = api.get(path)
        assert got.status == 200 and got.json["name"] == name, (name, got)
        assert api.delete(path).status == 204, name
        assert api.get(path).status == 404, name
    assert stored(db_url) == []
