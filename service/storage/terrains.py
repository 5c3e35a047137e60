"""The terrains table: elevation grids registered once, read by every job (model version 2).

``add_terrain`` stores a grid (``kernel.terrain.ElevationGrid``) under a name, with its SHA-256,
bounds and spacing; ``get_terrain`` reads it back and checks the hash; a name is never silently
replaced (409). Reading the files is ``terrain_from_files``: SRTM ``.hgt`` tiles, merged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from heimdall_synth.kernel.config import ConfigError, check_value
from heimdall_synth.service.engine.request import ConflictError, NotFoundError

SUMMARY = "name, sha256, north, west, dlat, dlon, rows, cols, sources, created_at"


def terrain_from_files(paths):
    """One ``ElevationGrid`` from SRTM ``.hgt`` tiles (merged); ConfigError naming the file
    otherwise."""
    from heimdall_synth.kernel.terrain import TerrainError, merge, read_hgt
    paths = [Path(p) for p in paths]
    if not paths:
        raise ConfigError("files", "give at least one .hgt tile")
    tiles = []
    for path in paths:
        if path.suffix.lower() != ".hgt":
            raise ConfigError("files", f"{path.name}: only SRTM .hgt tiles are read (GeoTIFF "
                                       "is not supported yet)")
        try:
            tiles.append(read_hgt(path))
        except OSError as exc:
            raise ConfigError("files", f"cannot read {path}: {exc.strerror or exc}") from None
        except TerrainError as exc:
            raise ConfigError("files", str(exc)) from None
    try:
        return merge(tiles)
    except TerrainError as exc:
        raise ConfigError("files", str(exc)) from None


def add_terrain(conn, name: str, grid, sources=()) -> dict:
    """Register ``grid`` as ``name``; ConflictError when the name is taken."""
    name = check_value("name", name)
    heights = np.ascontiguousarray(grid.heights, "<f4")
    with conn.transaction():
        try:
            with conn.transaction():
                conn.execute(
                    "INSERT INTO heimdall.terrains (name, sha256, north, west, dlat, dlon, rows, "
                    "cols, heights, sources) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (name, grid.sha256(), grid.north, grid.west, grid.dlat, grid.dlon,
                     heights.shape[0], heights.shape[1], heights.tobytes(),
                     Jsonb([str(s) for s in sources])))
        except psycopg.errors.UniqueViolation:
            raise ConflictError(f"a terrain named {name!r} exists; delete it first or choose "
                                "another name", ["name"], code="name_taken") from None
    return describe(get_row(conn, name))


def get_row(conn, name: str) -> dict:
    with conn.transaction():
        cur = conn.execute(f"SELECT {SUMMARY} FROM heimdall.terrains WHERE name = %s", (name,))
        row = cur.fetchone()
        if row is None:
            raise NotFoundError(f"no terrain named {name!r}", field="terrain")
        return dict(zip([c.name for c in cur.description], row))


def describe(row: dict) -> dict:
    """A terrain row as shown: its bounds and spacing in words as well as numbers."""
    south = row["north"] - (row["rows"] - 1) * row["dlat"]
    east = row["west"] + (row["cols"] - 1) * row["dlon"]
    return {**row, "south": south, "east": east,
            "spacing_arcsec": round(row["dlat"] * 3600.0, 3)}


def list_terrains(conn) -> list[dict]:
    with conn.transaction():
        cur = conn.execute(f"SELECT {SUMMARY} FROM heimdall.terrains ORDER BY name")
        names = [c.name for c in cur.description]
        return [describe(dict(zip(names, r))) for r in cur.fetchall()]


def get_terrain(conn, name: str):
    """The registered grid, its hash checked against the stored one."""
    from heimdall_synth.kernel.terrain import ElevationGrid
    with conn.transaction():
        row = conn.execute("SELECT sha256, north, west, dlat, dlon, rows, cols, heights FROM "
                           "heimdall.terrains WHERE name = %s", (name,)).fetchone()
    if row is None:
        raise NotFoundError(f"no terrain named {name!r}", field="terrain")
    sha, north, west, dlat, dlon, rows, cols, heights = row
    grid = ElevationGrid.from_array(np.frombuffer(heights, "<f4").reshape(rows, cols),
                                    north, west, dlat, dlon)
    if grid.sha256() != sha:
        raise ConflictError(f"terrain {name!r} does not match its stored SHA-256 (corrupted)",
                            ["terrain"], code="terrain_corrupted")
    return grid


def delete_terrain(conn, name: str) -> None:
    with conn.transaction():
        if conn.execute("DELETE FROM heimdall.terrains WHERE name = %s", (name,)).rowcount == 0:
            raise NotFoundError(f"no terrain named {name!r}", field="terrain")
