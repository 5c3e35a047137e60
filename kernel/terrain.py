"""Elevation grids and the terrain loss of a link (model version 2, in progress).

An ``ElevationGrid`` is a regular latitude/longitude grid of ground heights (m above sea level),
row 0 the northernmost, column 0 the westernmost, heights at the cell centres. It is read from
SRTM ``.hgt`` tiles (``read_hgt``, merged with ``merge``) or made from an array
(``ElevationGrid.from_array``). ``link_loss_db`` samples the great-circle profile between two
points from the grid (bilinear, at a step no coarser than the grid's spacing) and returns its
delta-Bullington diffraction loss (``kernel.itu``): a pure function of the link's two ends.
A profile that leaves the grid is an error naming the grid's bounds, never a fallback.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .itu import delta_bullington_db
from .jit import njit

EARTH_RADIUS_KM = 6371.0
K_FACTOR = 4.0 / 3.0
HGT_VOID = -32768
_HGT_NAME = re.compile(r"^([NS])(\d{2})([EW])(\d{3})\.hgt$", re.I)


class TerrainError(ValueError):
    """A grid that cannot be read or used (bad tile, voids, a link leaving it)."""


@dataclass(frozen=True, eq=False)
class ElevationGrid:
    heights: np.ndarray   # (rows, cols) float32, m above sea level; row 0 northernmost
    north: float          # latitude of row 0's centres
    west: float           # longitude of column 0's centres
    dlat: float           # degrees between rows
    dlon: float           # degrees between columns

    @classmethod
    def from_array(cls, heights, north: float, west: float, dlat: float,
                   dlon: float) -> "ElevationGrid":
        heights = np.ascontiguousarray(heights, dtype=np.float32)
        if heights.ndim != 2 or min(heights.shape) < 2:
            raise TerrainError("an elevation grid needs at least 2 x 2 heights")
        if not np.isfinite(heights).all():
            raise TerrainError("an elevation grid must have a height in every cell")
        if not (dlat > 0 and dlon > 0):
            raise TerrainError("grid spacing must be positive")
        return cls(heights, float(north), float(west), float(dlat), float(dlon))

    @property
    def south(self) -> float:
        return self.north - (self.heights.shape[0] - 1) * self.dlat

    @property
    def east(self) -> float:
        return self.west + (self.heights.shape[1] - 1) * self.dlon

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(south, north, west, east) of the cell centres, degrees."""
        return self.south, self.north, self.west, self.east

    def sha256(self) -> str:
        """What identifies the grid: its placement, spacing and every height."""
        h = hashlib.sha256()
        h.update(np.array([self.north, self.west, self.dlat, self.dlon], ">f8").tobytes())
        h.update(np.array(self.heights.shape, ">i8").tobytes())
        h.update(self.heights.astype(">f4").tobytes())
        return h.hexdigest()

    def step_km(self) -> float:
        """The profile step: no coarser than the grid's spacing anywhere on it."""
        widest = max(abs(self.north), abs(self.south))
        return min(self.dlat, self.dlon * math.cos(math.radians(widest))) * (
            math.pi / 180.0 * EARTH_RADIUS_KM)

    def height_at(self, lat: float, lon: float) -> float:
        value = _height_at(self.heights, self.north, self.west, self.dlat, self.dlon, lat, lon)
        if math.isnan(value):
            raise TerrainError(f"({lat:.5f}, {lon:.5f}) is outside the grid {self._bounds_text()}")
        return value

    def profile(self, lat1, lon1, lat2, lon2) -> tuple[np.ndarray, np.ndarray]:
        """(distances km from the first point, ground heights m) along the great circle."""
        d_total = great_circle_km(lat1, lon1, lat2, lon2)
        n = max(int(math.ceil(d_total / self.step_km())), 1) + 1
        d = np.empty(n)
        h = np.empty(n)
        if not _profile(self.heights, self.north, self.west, self.dlat, self.dlon,
                        lat1, lon1, lat2, lon2, d, h):
            raise TerrainError(f"the link ({lat1:.5f}, {lon1:.5f}) - ({lat2:.5f}, {lon2:.5f}) "
                               f"leaves the grid {self._bounds_text()}")
        return d, h

    def _bounds_text(self) -> str:
        s, n, w, e = self.bounds
        return f"(latitude {s:.5f} to {n:.5f}, longitude {w:.5f} to {e:.5f})"


def link_loss_db(grid: ElevationGrid, lat1, lon1, agl1_m, lat2, lon2, agl2_m, f_mhz,
                 k: float = K_FACTOR) -> float:
    """Diffraction loss (dB) of the link between antennas ``agl1_m`` and ``agl2_m`` above the
    ground at its two ends, over the grid's terrain (delta-Bullington, effective earth radius
    k x 6371 km)."""
    d, h = grid.profile(lat1, lon1, lat2, lon2)
    if d[-1] <= 0.0:
        return 0.0
    return delta_bullington_db(d, h, agl1_m, agl2_m, f_mhz, k * EARTH_RADIUS_KM)


def great_circle_km(lat1, lon1, lat2, lon2) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (math.sin((p2 - p1) / 2) ** 2
         + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2)
    return 2.0 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


@njit
def _height_at(heights, north, west, dlat, dlon, lat, lon):
    """Bilinear height at (lat, lon); NaN outside the grid's cell centres."""
    r = (north - lat) / dlat
    c = (lon - west) / dlon
    rows, cols = heights.shape
    eps = 1e-9
    if r < -eps or c < -eps or r > rows - 1 + eps or c > cols - 1 + eps:
        return math.nan
    r = min(max(r, 0.0), rows - 1.0)
    c = min(max(c, 0.0), cols - 1.0)
    r0 = min(int(r), rows - 2)
    c0 = min(int(c), cols - 2)
    fr = r - r0
    fc = c - c0
    top = heights[r0, c0] * (1.0 - fc) + heights[r0, c0 + 1] * fc
    bottom = heights[r0 + 1, c0] * (1.0 - fc) + heights[r0 + 1, c0 + 1] * fc
    return top * (1.0 - fr) + bottom * fr


@njit
def _profile(heights, north, west, dlat, dlon, lat1, lon1, lat2, lon2, d_out, h_out):
    """Fill d_out (km) and h_out (m) with len(d_out) evenly spaced points of the great circle
    from point 1 to point 2 (both included); False when a point is outside the grid."""
    n = d_out.shape[0]
    p1, l1 = math.radians(lat1), math.radians(lon1)
    p2, l2 = math.radians(lat2), math.radians(lon2)
    a = np.array([math.cos(p1) * math.cos(l1), math.cos(p1) * math.sin(l1), math.sin(p1)])
    b = np.array([math.cos(p2) * math.cos(l2), math.cos(p2) * math.sin(l2), math.sin(p2)])
    delta = math.acos(min(1.0, max(-1.0, a[0] * b[0] + a[1] * b[1] + a[2] * b[2])))
    for i in range(n):
        t = i / (n - 1) if n > 1 else 0.0
        if delta < 1e-12:
            x, y, z = a[0], a[1], a[2]
        else:
            wa = math.sin((1.0 - t) * delta) / math.sin(delta)
            wb = math.sin(t * delta) / math.sin(delta)
            x = wa * a[0] + wb * b[0]
            y = wa * a[1] + wb * b[1]
            z = wa * a[2] + wb * b[2]
        lat = math.degrees(math.atan2(z, math.sqrt(x * x + y * y)))
        lon = math.degrees(math.atan2(y, x))
        h = _height_at(heights, north, west, dlat, dlon, lat, lon)
        if math.isnan(h):
            return False
        d_out[i] = t * delta * EARTH_RADIUS_KM
        h_out[i] = h
    return True


# ---- SRTM .hgt tiles -----------------------------------------------------------------------

def read_hgt(path) -> ElevationGrid:
    """One SRTM ``.hgt`` tile: big-endian int16 heights, 1201 x 1201 (3 arc-seconds) or
    3601 x 3601 (1 arc-second), named after its south-west corner (``N45E007.hgt``). A tile
    with voids (-32768) is refused: use a void-filled release."""
    path = Path(path)
    match = _HGT_NAME.match(path.name)
    if match is None:
        raise TerrainError(f"{path.name}: an SRTM tile is named like N45E007.hgt")
    lat = int(match.group(2)) * (1 if match.group(1).upper() == "N" else -1)
    lon = int(match.group(4)) * (1 if match.group(3).upper() == "E" else -1)
    raw = np.fromfile(path, dtype=">i2")
    side = int(round(math.sqrt(raw.size)))
    if side * side != raw.size or side not in (1201, 3601):
        raise TerrainError(f"{path.name}: {raw.size * 2} bytes is not a 1201 x 1201 or "
                           "3601 x 3601 tile")
    heights = raw.reshape(side, side)
    voids = int((heights == HGT_VOID).sum())
    if voids:
        raise TerrainError(f"{path.name}: {voids} void cells (-32768); use a void-filled tile")
    spacing = 1.0 / (side - 1)
    return ElevationGrid.from_array(heights, lat + 1.0, lon, spacing, spacing)


def merge(grids: list[ElevationGrid]) -> ElevationGrid:
    """Tiles of one spacing, aligned on one lattice, as one grid covering their bounding box
    (shared edges must agree; a cell no tile covers is an error)."""
    if not grids:
        raise TerrainError("no tiles to merge")
    dlat, dlon = grids[0].dlat, grids[0].dlon
    if any(abs(g.dlat - dlat) > 1e-12 or abs(g.dlon - dlon) > 1e-12 for g in grids):
        raise TerrainError("tiles of different spacing cannot be merged")
    north, west = max(g.north for g in grids), min(g.west for g in grids)
    south, east = min(g.south for g in grids), max(g.east for g in grids)
    rows = int(round((north - south) / dlat)) + 1
    cols = int(round((east - west) / dlon)) + 1
    out = np.full((rows, cols), np.nan, np.float32)
    for g in grids:
        r0 = int(round((north - g.north) / dlat))
        c0 = int(round((g.west - west) / dlon))
        block = out[r0:r0 + g.heights.shape[0], c0:c0 + g.heights.shape[1]]
        overlap = ~np.isnan(block)
        if overlap.any() and not np.array_equal(block[overlap], g.heights[overlap]):
            raise TerrainError("tiles disagree where they overlap")
        block[...] = g.heights
    if np.isnan(out).any():
        raise TerrainError("the tiles do not cover their bounding box (a tile is missing)")
    return ElevationGrid.from_array(out, north, west, dlat, dlon)
