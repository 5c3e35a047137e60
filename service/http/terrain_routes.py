"""Terrains: GET /terrains, POST /terrains (multipart upload), GET/DELETE /terrains/{terrain}.

A terrain is an elevation grid registered once under a name (``storage.terrains``). POST takes
``multipart/form-data``: the field ``name`` and one or more files in the field ``files`` (SRTM
``.hgt`` tiles, GeoTIFF ``.tif``/``.tiff``). The files are saved under their base names (an SRTM
tile's name is its position: ``N45E007.hgt``) in a temporary folder, read and merged
(``terrain_from_files``) and stored (``add_terrain``); the folder is removed whatever happens.
Every part of the request is checked before anything is stored: a refused upload stores
nothing. The body may be up to ``MAX_TERRAIN_UPLOAD`` bytes (app config, 512 MiB by default;
every other route keeps ``MAX_CONTENT_LENGTH``); more is 413.

DELETE removes a terrain even when a dataset was made with it: a dataset records the terrain's
SHA-256, not a reference, so it stays readable; expanding it will be refused until a terrain
with that hash is registered again.
"""

from __future__ import annotations

import tempfile
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import PathConverter

from heimdall_synth.kernel.config import ConfigError
from heimdall_synth.service.engine.request import ConflictError, NotFoundError, check_field

from heimdall_synth.service.http.common import API_PREFIX, ApiError, get_db, query_args
from heimdall_synth.service.storage import terrains

bp = Blueprint("terrains", __name__, url_prefix=API_PREFIX)


class NameConverter(PathConverter):
    """A terrain name in the path: any text, URL-encoded. Werkzeug's ``path`` converter stops at
    a line break and ``string`` at a slash; a name may hold both (and may start with a slash:
    its rules are matched with ``merge_slashes=False``)."""

    regex = "(?s:.+)"
    part_isolating = False


bp.record_once(lambda setup: setup.app.url_map.converters.setdefault("terrain_name",
                                                                     NameConverter))
_NAME_RULE = "/terrains/<terrain_name:terrain>"

MAX_FILES = 64                   # files in one upload
FORM_FIELDS = ("name",)          # text fields of the form
FILE_FIELDS = ("files",)         # file fields of the form


def terrain_url(name: str) -> str:
    return f"{API_PREFIX}/terrains/{quote(name, safe='')}"


def _path_name(value: str) -> str:
    """The terrain named in the path: a valid, storable name, else 422 naming ``terrain``."""
    try:
        return check_field("name", value)
    except ConfigError as exc:
        raise ConfigError("terrain", exc.message) from None


@bp.get("/terrains")
def list_terrains():
    query_args(())
    return jsonify({"terrains": terrains.list_terrains(get_db())})


@bp.get(_NAME_RULE, merge_slashes=False)
def get_terrain(terrain):
    query_args(())
    name = _path_name(terrain)
    return jsonify(terrains.describe(terrains.get_row(get_db(), name)))


@bp.delete(_NAME_RULE, merge_slashes=False)
def delete_terrain(terrain):
    """Remove a terrain (datasets made with it keep its hash; see the module docstring)."""
    query_args(())
    name = _path_name(terrain)
    terrains.delete_terrain(get_db(), name)
    return "", 204


@bp.post("/terrains")
def add_terrain():
    """Register the uploaded files as one terrain: 201 with its summary."""
    limit = int(current_app.config["MAX_TERRAIN_UPLOAD"])
    request.max_content_length = limit
    query_args(())
    if request.mimetype != "multipart/form-data":
        got = request.content_type or "none"
        raise ApiError(415, "unsupported_media_type",
                       "the body must be sent with Content-Type: multipart/form-data (the field "
                       f"name and the files in the field files), got {got}")
    try:
        form, uploads = request.form, request.files
    except RequestEntityTooLarge:
        raise ApiError(413, "payload_too_large", f"the upload is larger than the limit of "
                       f"{_size(limit)} (or has too many parts); split the terrain, or raise "
                       "the server's MAX_TERRAIN_UPLOAD") from None
    for key in form:
        if key in FILE_FIELDS:
            raise ConfigError(key, "must be a file part (with a filename), got a text field")
        if key not in FORM_FIELDS:
            raise ConfigError(key, "unknown field; the form takes name and files")
    for key in uploads:
        if key in FORM_FIELDS:
            raise ConfigError(key, "must be a text field, got a file")
        if key not in FILE_FIELDS:
            raise ConfigError(key, "unknown field; the form takes name and files")
    names = form.getlist("name")
    if not names:
        raise ConfigError("name", "is required: the terrain's name (1-100 characters)")
    if len(names) > 1:
        raise ConfigError("name", "given more than once")
    name = check_field("name", names[0])
    files = uploads.getlist("files")
    if not files:
        raise ConfigError("files", "give at least one file: SRTM .hgt tiles or GeoTIFF "
                                   "(.tif, .tiff)")
    if len(files) > MAX_FILES:
        raise ConfigError("files", f"{len(files)} files; one upload takes at most {MAX_FILES}")
    bases = [_base_name(f.filename) for f in files]
    for i, base in enumerate(bases):
        if base in bases[:i]:
            raise ConfigError("files", f"{base}: sent twice")
    conn = get_db()
    try:   # a taken name is refused before the files are read
        terrains.get_row(conn, name)
    except NotFoundError:
        pass
    else:
        raise ConflictError(f"a terrain named {name!r} exists; delete it first or choose "
                            "another name", ["name"], code="name_taken")
    with tempfile.TemporaryDirectory(prefix="heimdall-terrain-") as folder:
        paths = []
        for upload, base in zip(files, bases):
            path = Path(folder) / base
            upload.save(path)
            paths.append(path)
        grid = terrains.terrain_from_files(paths)
    row = terrains.add_terrain(conn, name, grid, bases)
    response = jsonify(row)
    response.status_code = 201
    response.headers["Location"] = terrain_url(row["name"])
    return response


def _base_name(filename: str | None) -> str:
    """The base name of an uploaded file (a client may send a whole path, with / or \\): the
    folders are dropped, nothing else is changed. 422 naming ``files`` when there is none, when
    it is not a name a file can have, or when its suffix is not one that is read."""
    if not filename:
        raise ConfigError("files", "each file part needs its file name (SRTM tiles are named "
                                   "after their position, e.g. N45E007.hgt)")
    base = PurePosixPath(filename.replace("\\", "/")).name
    if base in ("", ".", "..") or "\x00" in base or not _utf8(base) or len(
            base.encode("utf-8")) > 255:
        raise ConfigError("files", f"{filename!r} is not a file name")
    if PurePosixPath(base).suffix.lower() not in terrains.SUFFIXES:
        raise ConfigError("files", f"{base}: only SRTM .hgt tiles and GeoTIFF (.tif, .tiff) "
                                   "files are read")
    return base


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:   # a lone surrogate
        return False
    return True


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:g} {unit}"
    return f"{n} bytes"
