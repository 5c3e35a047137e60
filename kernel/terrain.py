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

from .itu import (bullington_loss_db, delta_bullington_combine, delta_bullington_db, fitted_ends,
                  SPEED_OF_LIGHT_M_S)
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

    def _digest(self) -> str:
        h = hashlib.sha256()
        h.update(np.array([self.north, self.west, self.dlat, self.dlon], ">f8").tobytes())
        h.update(np.array(self.heights.shape, ">i8").tobytes())
        h.update(self.heights.astype(">f4").tobytes())
        return h.hexdigest()

    def covers(self, south, north, west, east) -> bool:
        """Whether the box lies within the grid's cell centres."""
        s, n, w, e = self.bounds
        return s <= south and north <= n and w <= west and east <= e

    def bounds_text(self) -> str:
        return self._bounds_text()

    def sha256(self) -> str:
        """What identifies the grid: its placement, spacing and every height (computed once)."""
        cached = self.__dict__.get("_sha256")
        if cached is None:
            cached = self._digest()
            object.__setattr__(self, "_sha256", cached)
        return cached

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


#: A profile follows the great circle through exact knots this far apart (km) and straight
#: lines in latitude and longitude between them: within 5 m of the great circle, and cheap.
KNOT_KM = 16.0


@njit(inline="always")
def _great_circle_point(ax, ay, az, bx, by, bz, delta, t):
    """(lat, lon) in degrees of the point a fraction t along the great circle a -> b."""
    if delta < 1e-12:
        x, y, z = ax, ay, az
    else:
        s = math.sin(delta)
        wa = math.sin((1.0 - t) * delta) / s
        wb = math.sin(t * delta) / s
        x, y, z = wa * ax + wb * bx, wa * ay + wb * by, wa * az + wb * bz
    return math.degrees(math.atan2(z, math.sqrt(x * x + y * y))), math.degrees(math.atan2(y, x))


@njit
def profile_pass(heights, north, west, dlat, dlon, lat1, lon1, ground1, hts, lat2, lon2,
                 ground2, hrs, d_km, step_km, wavelength_m, ae_km):
    """One pass over the profile of a link, gathering what the delta-Bullington method needs.

    The profile has n = ceil(d / step) + 1 evenly spaced points: the two ends at the given
    ground heights, the points between at the grid's bilinear height. ``hts``, ``hrs`` are the
    antennas' heights above sea level. Returns (s_tim, s_rim, q_los, start, end, ok): the
    Bullington slopes and LOS parameter (``itu.bullington_loss_db``), the ends of P.1812's
    fitted smooth surface (``itu.fitted_ends``), and False when a point is off the grid.

    Between knots the points advance by a constant step in grid coordinates, and the maxima
    of ratios are kept as (numerator, denominator) pairs compared by cross-multiplication: no
    division or trigonometry per point (this loop is most of a terrain job's time).
    """
    n = max(int(math.ceil(d_km / step_km)), 1) + 1
    d = d_km
    if n == 2:  # no point between the ends: nothing obstructs
        start, end = fitted_ends(d, d * (ground1 + ground2), d * d * (ground1 + 2.0 * ground2),
                                 ground1, ground2)
        return -math.inf, -math.inf, -math.inf, start, end, True
    segments = min(max(int(math.ceil(d_km / KNOT_KM)), 1), n - 1)
    p1, l1, p2, l2 = math.radians(lat1), math.radians(lon1), math.radians(lat2), math.radians(lon2)
    ax, ay, az = math.cos(p1) * math.cos(l1), math.cos(p1) * math.sin(l1), math.sin(p1)
    bx, by, bz = math.cos(p2) * math.cos(l2), math.cos(p2) * math.sin(l2), math.sin(p2)
    delta = d_km / EARTH_RADIUS_KM
    ce = 500.0 / ae_km
    inv_d = 1.0 / d
    step = d / (n - 1)
    rows, cols = heights.shape
    r_max, c_max = rows - 1.0, cols - 1.0
    tim_num = rim_num = los_num = -1.0  # -1 / 0: below any real ratio
    tim_den = rim_den = los_den = 0.0
    v1 = v2 = 0.0
    d_prev, h_prev = 0.0, ground1
    lat_a, lon_a = lat1, lon1
    i = 1
    for k in range(segments):
        lat_b, lon_b = _great_circle_point(ax, ay, az, bx, by, bz, delta, (k + 1) / segments)
        ra, ca = (north - lat_a) / dlat, (lon_a - west) / dlon
        rb, cb = (north - lat_b) / dlat, (lon_b - west) / dlon
        if not (-1e-9 <= ra <= r_max + 1e-9 and -1e-9 <= ca <= c_max + 1e-9
                and -1e-9 <= rb <= r_max + 1e-9 and -1e-9 <= cb <= c_max + 1e-9):
            return 0.0, 0.0, 0.0, 0.0, 0.0, False
        # points i with k / segments <= i / (n - 1) < (k + 1) / segments
        i_end = n - 1 if k == segments - 1 else ((k + 1) * (n - 1) + segments - 1) // segments
        scale = segments / (n - 1)
        dr, dc = (rb - ra) * scale, (cb - ca) * scale
        u0 = i * scale - k
        r, c = ra + u0 * (rb - ra), ca + u0 * (cb - ca)
        while i < i_end:
            di = i * step
            rr = min(max(r, 0.0), r_max)
            cc = min(max(c, 0.0), c_max)
            r0 = min(int(rr), rows - 2)
            c0 = min(int(cc), cols - 2)
            fr, fc = rr - r0, cc - c0
            top = heights[r0, c0] + (heights[r0, c0 + 1] - heights[r0, c0]) * fc
            bottom = heights[r0 + 1, c0] + (heights[r0 + 1, c0 + 1] - heights[r0 + 1, c0]) * fc
            h = top + (bottom - top) * fr
            dr_ = d - di
            hb = h + ce * di * dr_
            a = hb - hts
            if a * tim_den > tim_num * di:
                tim_num, tim_den = a, di
            a = hb - hrs
            if a * rim_den > rim_num * dr_:
                rim_num, rim_den = a, dr_
            cl = hb - (hts * dr_ + hrs * di) * inv_d
            a = cl * abs(cl)
            w = di * dr_
            if a * los_den > los_num * w:
                los_num, los_den = a, w
            v1 += step * (h + h_prev)
            v2 += step * (h * (2.0 * di + d_prev) + h_prev * (di + 2.0 * d_prev))
            d_prev, h_prev = di, h
            r += dr
            c += dc
            i += 1
        lat_a, lon_a = lat_b, lon_b
    v1 += (d - d_prev) * (ground2 + h_prev)
    v2 += (d - d_prev) * (ground2 * (2.0 * d + d_prev) + h_prev * (d + 2.0 * d_prev))
    start, end = fitted_ends(d, v1, v2, ground1, ground2)
    q_scale = 0.002 * d / wavelength_m
    return (tim_num / tim_den, rim_num / rim_den, los_num * q_scale / los_den, start, end,
            True)


@njit
def terrain_link_db(heights, geo, lat_t, lon_t, ground_t, agl_t, lat_r, lon_r, ground_r, agl_r,
                    d_km, step_km, f_mhz, ae_km):
    """Diffraction loss (dB) of a link over the grid (delta-Bullington), the Fresnel parameter
    of its decisive point (line of sight when <= itu.V_LINE_OF_SIGHT), and False when its
    profile leaves the grid. ``geo`` is [north, west, dlat, dlon]; ends at ground heights
    ``ground_*`` with antennas ``agl_*`` above them."""
    hts = ground_t + agl_t
    hrs = ground_r + agl_r
    s_tim, s_rim, q_los, start, end, ok = profile_pass(
        heights, geo[0], geo[1], geo[2], geo[3], lat_t, lon_t, ground_t, hts, lat_r, lon_r,
        ground_r, hrs, d_km, step_km, SPEED_OF_LIGHT_M_S / (f_mhz * 1e6), ae_km)
    if not ok:
        return math.nan, math.nan, False
    if s_tim == -math.inf:  # no point between the ends
        return 0.0, -math.inf, True
    actual, v = bullington_loss_db(d_km, hts, hrs, s_tim, s_rim, q_los,
                                   SPEED_OF_LIGHT_M_S / (f_mhz * 1e6))
    return delta_bullington_combine(d_km, actual, hts - start, hrs - end, f_mhz, ae_km), v, True


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
