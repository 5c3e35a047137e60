"""The terrains table: elevation grids registered once, read by every job (model version 2).

``add_terrain`` stores a grid (``kernel.terrain.ElevationGrid``) under a name, with its SHA-256,
bounds and spacing; ``get_terrain`` reads it back and checks the hash (a process keeps the
last grids it read, by hash: a service's jobs on one terrain read its tens of megabytes once);
a name is never silently replaced (409). Reading the files is ``terrain_from_files``: SRTM ``.hgt`` tiles and GeoTIFF
files (through rasterio, the optional ``geotiff`` extra) on one lattice, merged.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from heimdall_synth.kernel.config import ConfigError
from heimdall_synth.service.engine.request import ConflictError, NotFoundError, check_field

SUMMARY = "name, sha256, north, west, dlat, dlon, rows, cols, sources, created_at"


#: File suffixes terrain_from_files reads: SRTM tiles, and GeoTIFF (rasterio, the ``geotiff``
#: extra).
HGT_SUFFIXES = (".hgt",)
GEOTIFF_SUFFIXES = (".tif", ".tiff")
SUFFIXES = HGT_SUFFIXES + GEOTIFF_SUFFIXES
#: The most cells a terrain may have: PostgreSQL stores its float32 heights in one bytea,
#: which holds at most 1 GB. Checked before a GeoTIFF is decoded or tiles are merged, so a
#: small compressed file cannot make the process allocate gigabytes.
MAX_CELLS = 250_000_000
GEOTIFF_EXTRA = "pip install 'heimdall-synth[geotiff]'"


def terrain_from_files(paths):
    """One ``ElevationGrid`` from SRTM ``.hgt`` tiles and GeoTIFF (``.tif``/``.tiff``) files on
    one lattice, merged (``kernel.terrain.merge``); ConfigError('files', ...) naming the file at
    fault otherwise. GeoTIFF: see ``read_geotiff``."""
    from heimdall_synth.kernel.terrain import TerrainError, merge, read_hgt
    paths = [Path(p) for p in paths]
    if not paths:
        raise ConfigError("files", "give at least one file: SRTM .hgt tiles or GeoTIFF "
                                   "(.tif, .tiff)")
    for path in paths:
        if path.suffix.lower() not in SUFFIXES:
            raise ConfigError("files", f"{path.name}: only SRTM .hgt tiles and GeoTIFF "
                                       "(.tif, .tiff) files are read")
    tiles = []
    for path in paths:
        try:
            if path.suffix.lower() in HGT_SUFFIXES:
                tiles.append(read_hgt(path))
            else:
                tiles.append(read_geotiff(path))
        except OSError as exc:
            raise ConfigError("files", f"{path.name}: cannot read it: "
                                       f"{exc.strerror or exc}") from None
        except TerrainError as exc:
            raise ConfigError("files", str(exc)) from None
    north, west = max(t.north for t in tiles), min(t.west for t in tiles)
    south, east = min(t.south for t in tiles), max(t.east for t in tiles)
    dlat, dlon = min(t.dlat for t in tiles), min(t.dlon for t in tiles)
    cells = (round((north - south) / dlat) + 1) * (round((east - west) / dlon) + 1)
    if cells > MAX_CELLS:
        raise ConfigError("files", f"the files span {cells:,} cells; a terrain holds at most "
                                   f"{MAX_CELLS:,} (split it into several terrains)")
    try:
        return merge(tiles)
    except TerrainError as exc:
        raise ConfigError("files", str(exc)) from None


def read_geotiff(path):
    """One ``ElevationGrid`` from a GeoTIFF, read with rasterio (imported here: the optional
    ``geotiff`` extra). The file must be in a geographic CRS (latitude/longitude in degrees,
    Greenwich meridian: EPSG:4326 or another datum's), north-up without rotation, one band of
    real numbers, with a height in every cell (a cell equal to the nodata value, masked, or NaN
    is refused, like an .hgt void). Pixel-is-area and pixel-is-point files are both read so that
    the grid's north/west are the CENTRES of the first cell: GDAL gives the transform of a
    pixel-is-point file shifted by half a cell (GTIFF_POINT_GEO_IGNORE is forced off here), so
    for both, north = f + e / 2, west = c + a / 2, dlat = -e, dlon = a. TerrainError naming the
    file for anything else; OSError when it cannot be read at all."""
    from heimdall_synth.kernel.terrain import ElevationGrid, TerrainError
    path = Path(path)
    name = path.name
    try:
        import rasterio
        from rasterio.errors import RasterioError
    except ImportError:
        raise TerrainError(f"{name}: reading GeoTIFF needs rasterio, an optional extra: "
                           f"{GEOTIFF_EXTRA}") from None
    with warnings.catch_warnings():
        # an ungeoreferenced file warns (NotGeoreferencedWarning); it is refused below instead
        warnings.simplefilter("ignore")
        try:
            with rasterio.Env(GTIFF_POINT_GEO_IGNORE="NO"), \
                    rasterio.open(path, driver="GTiff") as src:
                return _geotiff_grid(src, name, ElevationGrid, TerrainError)
        except RasterioError as exc:
            # rasterio's message names the file by its full path: the name is enough
            why = str(exc).replace(str(path), name)
            raise TerrainError(f"{name}: not a readable GeoTIFF ({why})") from None


def _geotiff_grid(src, name: str, ElevationGrid, TerrainError):
    crs = src.crs
    if crs is None:
        raise TerrainError(f"{name}: has no coordinate reference system; a terrain needs "
                           "latitude/longitude (e.g. EPSG:4326)")
    if not crs.is_geographic:
        raise TerrainError(f"{name}: its CRS ({crs.to_string() or 'unnamed'}) is projected, not "
                           "geographic; reproject it to latitude/longitude (EPSG:4326), e.g. "
                           "gdalwarp -t_srs EPSG:4326")
    units = crs.units_factor[0] if crs.units_factor else ""
    meridian = crs.to_dict().get("pm", "greenwich")
    if not str(units).startswith("degree") or meridian not in ("greenwich", 0, 0.0):
        raise TerrainError(f"{name}: its CRS ({crs.to_string()}) is geographic but in {units} "
                           f"from the {meridian} meridian; a terrain needs degrees from "
                           "Greenwich (e.g. EPSG:4326)")
    t = src.transform
    if t.b != 0.0 or t.d != 0.0:
        raise TerrainError(f"{name}: the raster is rotated or sheared; a terrain must be "
                           "north-up (gdalwarp it first)")
    if not (t.a > 0.0 and t.e < 0.0):
        raise TerrainError(f"{name}: the raster is not north-up (its first row must be the "
                           "northernmost and its first column the westernmost)")
    if src.count != 1:
        raise TerrainError(f"{name}: has {src.count} bands; a terrain is one band of heights")
    if np.dtype(src.dtypes[0]).kind not in "iuf":
        raise TerrainError(f"{name}: its band holds {src.dtypes[0]} values, not heights")
    if src.height * src.width > MAX_CELLS:
        raise TerrainError(f"{name}: {src.height:,} x {src.width:,} cells; a terrain holds at "
                           f"most {MAX_CELLS:,}")
    band = src.read(1, masked=True)
    missing = int(np.ma.getmaskarray(band).sum())
    if missing:
        raise TerrainError(f"{name}: {missing:,} cells without a height (nodata "
                           f"{src.nodata!r} or masked); fill them first")
    heights = np.ma.getdata(band)
    if not np.isfinite(heights).all():
        raise TerrainError(f"{name}: {int((~np.isfinite(heights)).sum()):,} cells are NaN or "
                           "infinite; fill them first")
    north, west = t.f + t.e / 2.0, t.c + t.a / 2.0
    dlat, dlon = -t.e, t.a
    south = north - (src.height - 1) * dlat
    east = west + (src.width - 1) * dlon
    if not (-90.0 <= south and north <= 90.0 and -180.0 <= west and east <= 180.0):
        raise TerrainError(f"{name}: its cell centres (latitude {south:g} to {north:g}, "
                           f"longitude {west:g} to {east:g}) leave [-90, 90] x [-180, 180]")
    try:
        return ElevationGrid.from_array(heights, north, west, dlat, dlon)
    except TerrainError as exc:   # e.g. fewer than 2 x 2 cells
        raise TerrainError(f"{name}: {exc}") from None


def add_terrain(conn, name: str, grid, sources=()) -> dict:
    """Register ``grid`` as ``name``; ConflictError when the name is taken."""
    name = check_field("name", name)   # the parameter table's rule, and storable text
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


#: Grids this process has read and checked, by SHA-256 (most recent last).
_GRIDS: OrderedDict = OrderedDict()
_GRIDS_LOCK = threading.Lock()
GRIDS_KEPT = 2


def get_terrain(conn, name: str):
    """The registered grid, its hash checked against the stored one. A grid of the same hash
    read before by this process is returned as it was (a hash names its heights exactly)."""
    from heimdall_synth.kernel.terrain import ElevationGrid
    with conn.transaction():
        row = conn.execute("SELECT sha256 FROM heimdall.terrains WHERE name = %s",
                           (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"no terrain named {name!r}", field="terrain")
        with _GRIDS_LOCK:
            if row[0] in _GRIDS:
                _GRIDS.move_to_end(row[0])
                return _GRIDS[row[0]]
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
    with _GRIDS_LOCK:
        _GRIDS[sha] = grid
        while len(_GRIDS) > GRIDS_KEPT:
            _GRIDS.popitem(last=False)
    return grid


def delete_terrain(conn, name: str) -> None:
    with conn.transaction():
        if conn.execute("DELETE FROM heimdall.terrains WHERE name = %s", (name,)).rowcount == 0:
            raise NotFoundError(f"no terrain named {name!r}", field="terrain")
