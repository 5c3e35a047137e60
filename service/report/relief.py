"""Shaded relief of a dataset's terrain, drawn under the maps of the report and the dashboard.

``shade(grid, extent)`` resamples a ``kernel.terrain.ElevationGrid`` onto an image covering
exactly ``extent`` = (west, east, south, north), degrees (the ``extent`` of matplotlib's
``imshow``): heights bilinear at the pixel centres, at most ``MAX_PX`` pixels a side (a big grid
is subsampled), then hill-shaded with ``matplotlib.colors.LightSource`` (light from the
north-west, azimuth 315 degrees, 45 degrees above the horizon) over a land colour map. Pixels
beyond the grid (half a cell past its outer cell centres) are transparent. ``draw`` puts it
under a map's points (report), ``to_png`` makes the PNG the dashboard lays under its map.

``map_extent`` is the extent of the report's map, the dashboard's default: the box no
transmitter leaves, widened by 5% of its larger side. ``dataset_terrain`` reads the terrain a
dataset names (its config's ``"terrain"``); a terrain deleted since is no relief, never an
error.

matplotlib is imported on first use, like the rest of the report.
"""

from __future__ import annotations

import io
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

AZIMUTH_DEG, ALTITUDE_DEG = 315.0, 45.0   # light from the north-west, 45 degrees up
MAX_PX = 1000       # pixels a side at most (a bigger grid is subsampled)
MIN_PX = 512       # a coarse grid over a small extent is interpolated to this many at least
BLEND_MODE = "soft"
METRES_PER_DEGREE = math.pi / 180.0 * 6_371_000.0
#: imshow's opacity in the report (the points over it stay legible); the dashboard uses the same.
REPORT_ALPHA = 0.75
ZORDER = 0.5        # under every point, box and label of the map (they start at 2)


@dataclass(frozen=True)
class Relief:
    rgba: np.ndarray    # (rows, cols, 4) floats in [0, 1], row 0 northernmost
    extent: tuple       # (west, east, south, north): the image's edges, degrees
    vert_exag: float    # the vertical exaggeration used
    pixel_m: tuple      # (east-west, north-south) size of a pixel, metres

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.rgba.shape[1], self.rgba.shape[0]


def map_extent(outer_box) -> tuple[float, float, float, float]:
    """(west, east, south, north) of a map around ``outer_box`` = (lat_min, lat_max, lon_min,
    lon_max): the box widened by 5% of its larger side (the report's map limits)."""
    lat0, lat1, lon0, lon1 = outer_box
    pad = 0.05 * max(lat1 - lat0, lon1 - lon0)
    return lon0 - pad, lon1 + pad, lat0 - pad, lat1 + pad


def check_extent(extent) -> tuple[float, float, float, float]:
    west, east, south, north = (float(v) for v in extent)
    if not all(math.isfinite(v) for v in (west, east, south, north)):
        raise ValueError("the extent must be finite")
    if not (west < east and south < north):
        raise ValueError(f"the extent {extent} is empty: need west < east and south < north")
    return west, east, south, north


def vertical_exaggeration(scale_m: float) -> float:
    """Slopes sampled every ``scale_m`` metres look flatter the coarser the sampling: 1 at
    30 m (SRTM 1"), sqrt(scale / 30 m) above, at most 10 (about 3 km)."""
    return float(min(max(math.sqrt(max(scale_m, 1e-9) / 30.0), 1.0), 10.0))


def _pixels(grid, extent, max_px: int) -> tuple[int, int]:
    """(width, height): about one pixel per grid cell across the extent, the longer side
    between MIN_PX and max_px, the cells' proportions kept."""
    west, east, south, north = extent
    nx, ny = (east - west) / grid.dlon, (north - south) / grid.dlat
    longest = max(nx, ny)
    if not longest > 0.0:  # an extent far smaller than a cell: square pixels' worth
        nx = ny = longest = 1.0
    side = min(max(longest, MIN_PX), max_px)
    return max(2, int(round(side * nx / longest))), max(2, int(round(side * ny / longest)))


def _axis(coords, first, step, n):
    """Bilinear indices along one grid axis: (lower index, weight of the next, inside)."""
    pos = (coords - first) / step
    inside = (pos >= -0.5) & (pos <= n - 0.5)
    pos = np.clip(pos, 0.0, n - 1.0)
    lower = np.minimum(np.floor(pos).astype(np.intp), n - 2)
    return lower, pos - lower, inside


def heights_at_pixels(grid, extent, width: int, height: int):
    """(heights (height, width) float64, inside mask): the grid bilinear at the pixel centres
    of an image covering ``extent``; outside the grid, the nearest edge's height."""
    west, east, south, north = extent
    rows, cols = grid.heights.shape
    lons = west + (np.arange(width) + 0.5) * ((east - west) / width)
    lats = north - (np.arange(height) + 0.5) * ((north - south) / height)
    c0, fc, in_c = _axis(lons, grid.west, grid.dlon, cols)
    r0, fr, in_r = _axis(-lats, -grid.north, grid.dlat, rows)   # rows run southward
    h = grid.heights
    r0, fr = r0[:, None], fr[:, None]
    top = h[r0, c0] * (1.0 - fc) + h[r0, c0 + 1] * fc
    bottom = h[r0 + 1, c0] * (1.0 - fc) + h[r0 + 1, c0 + 1] * fc
    return top * (1.0 - fr) + bottom * fr, in_r[:, None] & in_c[None, :]


def _land_colormap():
    import matplotlib
    from matplotlib.colors import ListedColormap
    # matplotlib's "terrain" from its greens up (its blues are for the sea): lowlands green,
    # hills brown, the highest ground white
    return ListedColormap(matplotlib.colormaps["terrain"](np.linspace(0.25, 1.0, 256)),
                          name="heimdall-land")


def shade(grid, extent, max_px: int = MAX_PX) -> Relief:
    """The shaded relief of ``grid`` over ``extent`` = (west, east, south, north)."""
    from matplotlib.colors import LightSource

    extent = check_extent(extent)
    west, east, south, north = extent
    width, height = _pixels(grid, extent, max_px)
    z, inside = heights_at_pixels(grid, extent, width, height)
    mid = math.radians(min(max((south + north) / 2.0, -89.0), 89.0))
    dx = (east - west) / width * METRES_PER_DEGREE * math.cos(mid)
    dy = (north - south) / height * METRES_PER_DEGREE
    cell_m = min(grid.dlat * METRES_PER_DEGREE, grid.dlon * METRES_PER_DEGREE * math.cos(mid))
    exag = vertical_exaggeration(max(cell_m, dx, dy))
    shown = z[inside] if inside.any() else z.ravel()
    vmin, vmax = float(shown.min()), float(shown.max())
    if vmax - vmin < 1.0:  # flat ground: one colour, not a stretched speck of noise
        vmin, vmax = vmin - 0.5, vmax + 0.5
    light = LightSource(azdeg=AZIMUTH_DEG, altdeg=ALTITUDE_DEG)
    with np.errstate(all="ignore"):
        rgba = light.shade(z, cmap=_land_colormap(), blend_mode=BLEND_MODE, vmin=vmin,
                           vmax=vmax, vert_exag=exag, dx=dx, dy=dy)
    rgba = np.nan_to_num(np.array(rgba, dtype=float), nan=0.5)  # (slopes of an extent of
    rgba[..., 3] = inside                                         # micro-degrees overflow)
    return Relief(rgba, extent, exag, (dx, dy))


def draw(ax, relief: Relief, alpha: float = REPORT_ALPHA, zorder: float = ZORDER):
    """The relief as an image in ``ax``'s data coordinates (lon, lat), under the map's points.
    Leaves the axes' limits and aspect to the caller (set them after). Returns the AxesImage."""
    return ax.imshow(relief.rgba, extent=relief.extent, origin="upper", interpolation="bilinear",
                     alpha=alpha, zorder=zorder, aspect="auto")


def to_png(relief: Relief) -> bytes:
    """The relief as an RGBA PNG of ``relief.size`` pixels (north up; transparent off the
    grid), its edges ``relief.extent``."""
    from PIL import Image

    pixels = np.round(np.clip(relief.rgba, 0.0, 1.0) * 255.0).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


# ------------------------------------------------------------------------ a dataset's terrain

@dataclass(frozen=True)
class DatasetTerrain:
    """The terrain a dataset's configuration names, as found now."""

    name: str
    sha256: str | None      # None: not registered (deleted since the dataset was made)
    grid: object = None     # kernel.terrain.ElevationGrid; None when missing or unreadable
    problem: str | None = None  # why no relief is drawn, in words

    @property
    def short_sha(self) -> str | None:
        return self.sha256[:12] if self.sha256 else None

    def caption(self) -> str:
        """'relief: alps (SHA-256 0123456789ab)' or why there is none."""
        if self.grid is not None:
            return f"relief: terrain {self.name} (SHA-256 {self.short_sha})"
        return f"terrain {self.name}: {self.problem}, no relief drawn"


def terrain_name(config) -> str | None:
    """The terrain a dataset's stored configuration names (None, absent or "" for none)."""
    name = (config or {}).get("terrain")
    return name if isinstance(name, str) and name else None


def terrain_row(conn, name: str) -> dict | None:
    """The terrains table's summary row of ``name``; None when it is not registered."""
    from heimdall_synth.service.engine.request import NotFoundError
    from heimdall_synth.service.storage.terrains import get_row
    try:
        return get_row(conn, name)
    except NotFoundError:
        return None


def dataset_terrain(conn, config, with_grid: bool = True) -> DatasetTerrain | None:
    """The terrain named by a dataset's configuration (None when it names none), its grid read
    (``with_grid``) when it is still registered and reads back intact."""
    from heimdall_synth.service.engine.request import ConflictError, NotFoundError
    from heimdall_synth.service.storage.terrains import get_terrain

    name = terrain_name(config)
    if name is None:
        return None
    row = terrain_row(conn, name)
    if row is None:
        return DatasetTerrain(name, None, problem="no longer registered")
    if not with_grid:
        return DatasetTerrain(name, row["sha256"])
    try:
        grid = get_terrain(conn, name)
    except NotFoundError:   # deleted between the two reads
        return DatasetTerrain(name, None, problem="no longer registered")
    except ConflictError:   # its heights do not match its SHA-256
        return DatasetTerrain(name, row["sha256"], problem="its stored heights are corrupted")
    return DatasetTerrain(name, grid.sha256(), grid)


# ------------------------------------------------------------------------ PNG cache (HTTP)

class PngCache:
    """The latest PNGs by key, least recently used dropped first (the report's plots and the
    relief: a relief is keyed by terrain SHA-256 and extent, and never changes under it)."""

    def __init__(self, size: int):
        self.size, self.items, self.lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
            return self.items.get(key)

    def put(self, key, png: bytes) -> None:
        with self.lock:
            self.items[key] = png
            while len(self.items) > self.size:
                self.items.popitem(last=False)


PNG_CACHE = PngCache(32)


def relief_png(sha256: str, extent, load_grid, max_px: int = MAX_PX) -> bytes:
    """The PNG of the terrain whose hash is ``sha256`` over ``extent``, from ``PNG_CACHE`` when
    drawn before; ``load_grid()`` reads the grid otherwise (a big grid is read and hashed only
    then)."""
    extent = check_extent(extent)
    key = (sha256, extent, max_px)
    png = PNG_CACHE.get(key)
    if png is None:
        png = to_png(shade(load_grid(), extent, max_px))
        PNG_CACHE.put(key, png)
    return png
