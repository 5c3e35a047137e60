"""Elevation grids and the terrain loss of a link (model version 2).

An ``ElevationGrid`` is a regular latitude/longitude grid of ground heights (m above sea level),
row 0 the northernmost, column 0 the westernmost, heights at the cell centres. It is read from
SRTM ``.hgt`` tiles (``read_hgt``, merged with ``merge``) or made from an array
(``ElevationGrid.from_array``); the model reads its heights to the whole metre.

A link's profile has a point wherever its path crosses a grid line of its major axis (so no
step is coarser than the grid), at the grid's bilinear height: ``ElevationGrid.profile``
builds it readably and ``link_loss_db`` returns its delta-Bullington diffraction loss
(``kernel.itu``); the kernel's ``terrain_link_db`` walks the same points in one pass over a
tiled copy of the grid. Either is a pure function of the link's two ends. A profile that leaves
the grid is an error naming the grid's bounds, never a fallback.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .itu import (bullington_loss_db, delta_bullington, delta_bullington_combine, fitted_ends,
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
        if heights.min() < HEIGHT_MIN or heights.max() > HEIGHT_MAX:
            raise TerrainError(f"heights must lie between {HEIGHT_MIN} and {HEIGHT_MAX} m "
                               f"(this grid: {heights.min():g} to {heights.max():g})")
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

    def kernel_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(tiles, geo): the grid as the kernel reads it (``tile_heights``) and its
        [north, west, dlat, dlon, rows, cols, tiles per row] (made once)."""
        cached = self.__dict__.get("_kernel_arrays")
        if cached is None:
            rows, cols = self.heights.shape
            geo = np.array([self.north, self.west, self.dlat, self.dlon, rows, cols,
                            -(-cols // TILE)], dtype=np.float64)
            cached = (tile_heights(self.heights), geo)
            object.__setattr__(self, "_kernel_arrays", cached)
        return cached

    def metre_heights(self) -> np.ndarray:
        """The heights as the model reads them (``metre_heights``; made once)."""
        cached = self.__dict__.get("_metre_heights")
        if cached is None:
            cached = metre_heights(self.heights)
            object.__setattr__(self, "_metre_heights", cached)
        return cached

    def heights_at(self, lats, lons) -> np.ndarray:
        """The model's bilinear ground heights at points (arrays); NaN off the grid or where
        a coordinate is NaN."""
        rows = (self.north - np.asarray(lats, float)) / self.dlat
        cols = (np.asarray(lons, float) - self.west) / self.dlon
        tol = 1e-9
        with np.errstate(invalid="ignore"):
            inside = ((rows >= -tol) & (cols >= -tol) & (rows <= self.heights.shape[0] - 1 + tol)
                      & (cols <= self.heights.shape[1] - 1 + tol))
        out = np.full(rows.shape, np.nan)
        out[inside] = bilinear(self.metre_heights(), rows[inside], cols[inside])
        return out

    def height_at(self, lat: float, lon: float) -> float:
        """The model's (bilinear) ground height at a point of the grid."""
        value = _height_at(*self.kernel_arrays(), lat, lon)
        if math.isnan(value):
            raise TerrainError(f"({lat:.5f}, {lon:.5f}) is outside the grid {self._bounds_text()}")
        return value

    def profile(self, lat1, lon1, lat2, lon2, ground1=None, ground2=None):
        """(distances km from the first point, ground heights m) of the link's profile.

        Its points: the two ends (at ``ground1``, ``ground2`` when given, else the grid's
        height there) and every point where the path crosses a grid line of its major axis,
        at the grid's bilinear height (of ``metre_heights``). The path runs through knots on
        the great circle KNOT_KM apart and straight in grid coordinates between them; in each
        stretch the major axis (rows or columns) is the one it crosses more lines of, so no
        step moves more than one cell along either axis. The kernel's ``profile_pass`` walks the same
        points in one pass; this is the readable form it is tested against."""
        d_total = great_circle_km(lat1, lon1, lat2, lon2)
        segments = max(int(math.ceil(d_total / KNOT_KM)), 1)
        lats, lons = great_circle_points(lat1, lon1, lat2, lon2, np.arange(segments + 1) / segments)
        lats[[0, -1]], lons[[0, -1]] = (lat1, lat2), (lon1, lon2)
        rows = (self.north - lats) / self.dlat
        cols = (lons - self.west) / self.dlon
        tol = 1e-9
        if (rows.min() < -tol or cols.min() < -tol or rows.max() > self.heights.shape[0] - 1 + tol
                or cols.max() > self.heights.shape[1] - 1 + tol):
            raise TerrainError(f"the link ({lat1:.5f}, {lon1:.5f}) - ({lat2:.5f}, {lon2:.5f}) "
                               f"leaves the grid {self._bounds_text()}")
        d_pts, r_pts, c_pts = [np.zeros(1)], [], []
        for k in range(segments):
            ra, rb, ca, cb = rows[k], rows[k + 1], cols[k], cols[k + 1]
            along_columns = abs(cb - ca) >= abs(rb - ra)
            a, b = (ca, cb) if along_columns else (ra, rb)
            lines = crossed_lines(a, b, include_end=k < segments - 1)
            u = (lines - a) / (b - a) if lines.size else lines
            r_pts.append(ra + u * (rb - ra))
            c_pts.append(ca + u * (cb - ca))
            d_pts.append(d_total * (k + u) / segments)
        d_pts.append(np.array([d_total]))
        inner = bilinear(self.metre_heights(), np.concatenate(r_pts), np.concatenate(c_pts))
        h1 = self.height_at(lat1, lon1) if ground1 is None else ground1
        h2 = self.height_at(lat2, lon2) if ground2 is None else ground2
        return np.concatenate(d_pts), np.concatenate([[h1], inner, [h2]])

    def _bounds_text(self) -> str:
        s, n, w, e = self.bounds
        return f"(latitude {s:.5f} to {n:.5f}, longitude {w:.5f} to {e:.5f})"


def link_loss_db(grid: ElevationGrid, lat1, lon1, agl1_m, lat2, lon2, agl2_m, f_mhz,
                 k: float = K_FACTOR) -> float:
    """Diffraction loss (dB) of the link between antennas ``agl1_m`` and ``agl2_m`` above the
    ground at its two ends, over the grid's terrain (delta-Bullington, effective earth radius
    k x 6371 km)."""
    return link_diffraction(grid, lat1, lon1, None, agl1_m, lat2, lon2, None, agl2_m, f_mhz,
                            k * EARTH_RADIUS_KM)[0]


def link_diffraction(grid: ElevationGrid, lat1, lon1, ground1, agl1_m, lat2, lon2, ground2,
                     agl2_m, f_mhz, ae_km) -> tuple[float, float]:
    """(loss dB, v) of a link over the grid from its readable profile (``profile``), the
    ends at ground heights ``ground1``, ``ground2`` (None: the grid's): what the kernel's
    ``terrain_link_db`` computes in one pass."""
    d, h = grid.profile(lat1, lon1, lat2, lon2, ground1, ground2)
    if d[-1] <= 0.0:
        return 0.0, -math.inf
    loss, v = delta_bullington(d, h, agl1_m, agl2_m, f_mhz, ae_km)
    return float(loss), float(v)


def great_circle_km(lat1, lon1, lat2, lon2) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (math.sin((p2 - p1) / 2) ** 2
         + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2)
    return 2.0 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def great_circle_points(lat1, lon1, lat2, lon2, t) -> tuple[np.ndarray, np.ndarray]:
    """(lats, lons) in degrees of the points fractions ``t`` along the great circle 1 -> 2."""
    p1, l1, p2, l2 = map(math.radians, (lat1, lon1, lat2, lon2))
    a = np.array([math.cos(p1) * math.cos(l1), math.cos(p1) * math.sin(l1), math.sin(p1)])
    b = np.array([math.cos(p2) * math.cos(l2), math.cos(p2) * math.sin(l2), math.sin(p2)])
    delta = great_circle_km(lat1, lon1, lat2, lon2) / EARTH_RADIUS_KM
    t = np.asarray(t, dtype=float)[:, None]
    if delta < 1e-12:
        xyz = np.repeat(a[None, :], t.shape[0], axis=0)
    else:
        xyz = (np.sin((1.0 - t) * delta) * a + np.sin(t * delta) * b) / math.sin(delta)
    lats = np.degrees(np.arctan2(xyz[:, 2], np.hypot(xyz[:, 0], xyz[:, 1])))
    return lats, np.degrees(np.arctan2(xyz[:, 1], xyz[:, 0]))


def crossed_lines(a: float, b: float, include_end: bool) -> np.ndarray:
    """The integer grid lines strictly beyond a toward b, up to b (b itself only when
    ``include_end``), in the order the segment a -> b meets them."""
    if b > a:
        top = math.floor(b) if include_end else math.ceil(b) - 1
        return np.arange(math.floor(a) + 1, top + 1, dtype=float)
    if b < a:
        bottom = math.ceil(b) if include_end else math.floor(b) + 1
        return np.arange(math.ceil(a) - 1, bottom - 1, -1, dtype=float)
    return np.zeros(0)


def bilinear(heights: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear heights at fractional grid coordinates (inside the grid)."""
    rows = np.clip(rows, 0.0, heights.shape[0] - 1.0)
    cols = np.clip(cols, 0.0, heights.shape[1] - 1.0)
    r0 = np.minimum(rows.astype(np.int64), heights.shape[0] - 2)
    c0 = np.minimum(cols.astype(np.int64), heights.shape[1] - 2)
    fr, fc = rows - r0, cols - c0
    def h(r, c):
        return heights[r, c].astype(np.float64)
    top = h(r0, c0) * (1.0 - fc) + h(r0, c0 + 1) * fc
    bottom = h(r0 + 1, c0) * (1.0 - fc) + h(r0 + 1, c0 + 1) * fc
    return top * (1.0 - fr) + bottom * fr


#: The model reads heights to the whole metre, as int16 (SRTM's own form; no elevation model
#: is more accurate than that): a terrain job's speed is bound by how many bytes its profiles
#: pull from memory, and int16 halves them. It reads them in square tiles of TILE cells a side,
#: each stored with its neighbours' first row and column (TILE + 1 values a side) and
#: contiguous: a profile crossing the grid in any direction finds its next points in the cache
#: lines it just read (row-major, a north-south path touches a new line per point), and a
#: cell's bilinear partners are always in its own tile, at a fixed offset.
TILE_BITS = 4
TILE = 1 << TILE_BITS
TILE_MASK = TILE - 1
TILE_SIDE = TILE + 1
TILE_SIZE = TILE_SIDE * TILE_SIDE
HEIGHT_MIN, HEIGHT_MAX = -32768, 32767  # m: int16


def metre_heights(heights: np.ndarray) -> np.ndarray:
    """The heights as the model reads them: rounded to the whole metre (int16)."""
    return np.rint(heights).astype(np.int16)


def tile_heights(heights: np.ndarray) -> np.ndarray:
    """The grid as the kernel reads it: a flat int16 array (``metre_heights``) of tiles in
    row-major order of tiles, each TILE_SIDE x TILE_SIDE values row-major (cells beyond the
    grid are 0, never read). ``_cell_index`` finds a cell in it."""
    rows, cols = heights.shape
    tr, tc = -(-rows // TILE), -(-cols // TILE)
    padded = np.zeros((tr * TILE + 1, tc * TILE + 1), np.int16)
    padded[:rows, :cols] = metre_heights(heights)
    step_r, step_c = padded.strides
    windows = np.lib.stride_tricks.as_strided(
        padded, shape=(tr, tc, TILE_SIDE, TILE_SIDE),
        strides=(TILE * step_r, TILE * step_c, step_r, step_c), writeable=False)
    return np.ascontiguousarray(windows).reshape(-1)


@njit(inline="always")
def _cell_index(tiles_per_row, r, c):
    """Index in ``tile_heights``'s array of cell (r, c) (its partners: + 1 east, + TILE_SIDE
    south, in the same tile)."""
    return (((r >> TILE_BITS) * tiles_per_row + (c >> TILE_BITS)) * TILE_SIZE
            + (r & TILE_MASK) * TILE_SIDE + (c & TILE_MASK))


@njit
def _height_at(tiles, geo, lat, lon):
    """Bilinear height at (lat, lon) on the tiled grid with geo = [north, west, dlat, dlon,
    rows, cols, tiles per row]; NaN outside the grid's cell centres."""
    r = (geo[0] - lat) / geo[2]
    c = (lon - geo[1]) / geo[3]
    rows, cols = int(geo[4]), int(geo[5])
    eps = 1e-9
    if r < -eps or c < -eps or r > rows - 1 + eps or c > cols - 1 + eps:
        return math.nan
    r = min(max(r, 0.0), rows - 1.0)
    c = min(max(c, 0.0), cols - 1.0)
    r0 = min(int(r), rows - 2)
    c0 = min(int(c), cols - 2)
    fr = r - r0
    fc = c - c0
    k = _cell_index(int(geo[6]), r0, c0)
    top = tiles[k] * (1.0 - fc) + tiles[k + 1] * fc
    bottom = tiles[k + TILE_SIDE] * (1.0 - fc) + tiles[k + TILE_SIDE + 1] * fc
    return top * (1.0 - fr) + bottom * fr


#: A profile follows the great circle through exact knots this far apart (km) and straight
#: lines in grid coordinates between them: within 5 m of the great circle, and cheap.
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


@njit(inline="always")
def _crossings(a, b, last):
    """The grid lines (integers) a segment from coordinate a to b crosses, as (first, count,
    increment): those strictly after a and up to b, b itself excluded on the last segment
    (the profile's far end is added apart)."""
    if b > a:
        first = math.floor(a) + 1.0
        stop = math.ceil(b) - 1.0 if last else math.floor(b)
        return first, max(int(stop - first) + 1, 0), 1.0
    if b < a:
        first = math.ceil(a) - 1.0
        stop = math.floor(b) + 1.0 if last else math.ceil(b)
        return first, max(int(first - stop) + 1, 0), -1.0
    return a, 0, 1.0


@njit(inline="always")
def _walk_segment(tiles, tiles_per_row, limit, along_columns, ma, mb, na, nb, da, db, last, d,
                  hts, ce, slope, tim, rim, los, v1, v2, d_prev, h_prev):
    """Extend a profile pass over one segment: its points where it crosses a grid line of its
    major axis (columns when ``along_columns``: major coordinate the column, minor the row),
    each at the height interpolated between the two cells of that line around it.

    Per point, with e its clearance above the direct ray (earth's bulge included) and
    w = 1 / (d_i (d - d_i)), it keeps the largest e (d - d_i) w = e / d_i, e d_i w and
    e |e| w (``profile_pass`` turns them into Bullington's slopes and the LOS parameter), and
    the sums of h and d h, from which P.1812's trapezoid sums over the segment's evenly
    spaced points follow in closed form."""
    first, count, inc = _crossings(ma, mb, last)
    if count == 0:
        return tim, rim, los, v1, v2, d_prev, h_prev, 0
    minor_per = (nb - na) / (mb - ma)
    d_per = (db - da) / (mb - ma)
    major = first
    minor = na + (first - ma) * minor_per
    d_first = di = da + (first - ma) * d_per
    minor_step, d_step = minor_per * inc, d_per * inc
    sum_h = sum_dh = h_first = h = 0.0
    for t in range(count):
        mi = int(major)
        ni = min(int(minor), limit)
        if along_columns:  # between the cells south and north of the point
            k = _cell_index(tiles_per_row, ni, mi)
            h0 = tiles[k]
            h = h0 + (tiles[k + TILE_SIDE] - h0) * (minor - ni)
        else:  # between the cells west and east of it
            k = _cell_index(tiles_per_row, mi, ni)
            h0 = tiles[k]
            h = h0 + (tiles[k + 1] - h0) * (minor - ni)
        dr_ = d - di
        e = h - hts + di * (ce * dr_ - slope)
        w = 1.0 / (di * dr_)
        tim = max(tim, e * dr_ * w)
        rim = max(rim, e * di * w)
        los = max(los, e * abs(e) * w)
        sum_h += h
        sum_dh += di * h
        if t == 0:
            h_first = h
        major += inc
        minor += minor_step
        di += d_step
    d_last = di - d_step
    # The interval from the previous point to the first, then the evenly spaced ones.
    v1 += (d_first - d_prev) * (h_first + h_prev)
    v2 += (d_first - d_prev) * (h_first * (2.0 * d_first + d_prev)
                                + h_prev * (d_first + 2.0 * d_prev))
    v1 += d_step * (2.0 * sum_h - h_first - h)
    v2 += d_step * (6.0 * sum_dh - 3.0 * (d_first * h_first + d_last * h)
                    + d_step * (h_first - h))
    return tim, rim, los, v1, v2, d_last, h, count


@njit
def profile_pass(tiles, geo, lat1, lon1, ground1, hts, lat2, lon2, ground2, hrs, d_km,
                 wavelength_m, ae_km):
    """One pass over the profile of a link, gathering what the delta-Bullington method needs.

    The profile (``ElevationGrid.profile`` builds the same points readably): the two ends at
    the given ground heights, and every point where the path crosses a grid line of its major
    axis, at the height interpolated between the two cells of that line around it (the grid's
    bilinear height there). The path follows the great circle through knots KNOT_KM apart,
    straight in grid coordinates between them; in each stretch the major axis is the one it
    crosses more lines of, so every step moves at most one cell along either axis.

    ``hts``, ``hrs`` are the antennas' heights above sea level. Returns (s_tim, s_rim, q_los,
    start, end, ok): the Bullington slopes and LOS parameter (``itu.bullington_loss_db``;
    -inf when no point lies between the ends), the ends of P.1812's fitted smooth surface
    (``itu.fitted_ends``), and False when the path leaves the grid. This walk is most of a
    random-receiver terrain job's time, and memory-bound: it reads the tiled int16 copy of
    the grid (``tile_heights``), and per point does one division and no trigonometry.
    """
    d = d_km
    segments = max(int(math.ceil(d / KNOT_KM)), 1)
    p1, l1, p2, l2 = math.radians(lat1), math.radians(lon1), math.radians(lat2), math.radians(lon2)
    ax, ay, az = math.cos(p1) * math.cos(l1), math.cos(p1) * math.sin(l1), math.sin(p1)
    bx, by, bz = math.cos(p2) * math.cos(l2), math.cos(p2) * math.sin(l2), math.sin(p2)
    delta = d / EARTH_RADIUS_KM
    ce = 500.0 / ae_km
    slope = (hrs - hts) / d  # of the direct ray, m/km
    north, west, dlat, dlon = geo[0], geo[1], geo[2], geo[3]
    r_max, c_max = geo[4] - 1.0, geo[5] - 1.0
    row_limit, col_limit = int(geo[4]) - 2, int(geo[5]) - 2
    tiles_per_row = int(geo[6])
    tim = rim = los = -math.inf
    v1 = v2 = 0.0
    d_prev, h_prev = 0.0, ground1
    points = 0
    ra, ca = (north - lat1) / dlat, (lon1 - west) / dlon
    for k in range(segments):
        last = k == segments - 1
        if last:
            lat_b, lon_b = lat2, lon2
        else:
            lat_b, lon_b = _great_circle_point(ax, ay, az, bx, by, bz, delta, (k + 1) / segments)
        rb, cb = (north - lat_b) / dlat, (lon_b - west) / dlon
        if not (-1e-9 <= ra <= r_max + 1e-9 and -1e-9 <= ca <= c_max + 1e-9
                and -1e-9 <= rb <= r_max + 1e-9 and -1e-9 <= cb <= c_max + 1e-9):
            return 0.0, 0.0, 0.0, 0.0, 0.0, False
        da, db = d * k / segments, d * (k + 1) / segments
        if abs(cb - ca) >= abs(rb - ra):
            tim, rim, los, v1, v2, d_prev, h_prev, m = _walk_segment(
                tiles, tiles_per_row, row_limit, True, ca, cb, ra, rb, da, db, last, d, hts,
                ce, slope, tim, rim, los, v1, v2, d_prev, h_prev)
        else:
            tim, rim, los, v1, v2, d_prev, h_prev, m = _walk_segment(
                tiles, tiles_per_row, col_limit, False, ra, rb, ca, cb, da, db, last, d, hts,
                ce, slope, tim, rim, los, v1, v2, d_prev, h_prev)
        points += m
        ra, ca = rb, cb
    v1 += (d - d_prev) * (ground2 + h_prev)
    v2 += (d - d_prev) * (ground2 * (2.0 * d + d_prev) + h_prev * (d + 2.0 * d_prev))
    start, end = fitted_ends(d, v1, v2, ground1, ground2)
    if points == 0:
        return -math.inf, -math.inf, -math.inf, start, end, True
    return tim + slope, rim - slope, los * (0.002 * d / wavelength_m), start, end, True


@njit
def terrain_link_db(tiles, geo, lat_t, lon_t, ground_t, agl_t, lat_r, lon_r, ground_r, agl_r,
                    d_km, f_mhz, ae_km):
    """Diffraction loss (dB) of a link over the grid (delta-Bullington), the Fresnel parameter
    of its decisive point (line of sight when <= itu.V_LINE_OF_SIGHT), and False when its
    profile leaves the grid. ``tiles``, ``geo``: ``ElevationGrid.kernel_arrays()``; ends at
    ground heights
    ``ground_*`` with antennas ``agl_*`` above them."""
    hts = ground_t + agl_t
    hrs = ground_r + agl_r
    s_tim, s_rim, q_los, start, end, ok = profile_pass(
        tiles, geo, lat_t, lon_t, ground_t, hts, lat_r, lon_r, ground_r, hrs, d_km,
        SPEED_OF_LIGHT_M_S / (f_mhz * 1e6), ae_km)
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
