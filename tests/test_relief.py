"""The terrain's shaded relief under the maps: the shading itself on synthetic grids, the
report's map of a dataset with a terrain (and of one without), and the relief PNG the dashboard
asks for over HTTP."""

from __future__ import annotations

import io
import struct
import uuid
from dataclasses import dataclass

import numpy as np
import pytest

from heimdall_synth.kernel.terrain import ElevationGrid
from heimdall_synth.service.report import relief
from heimdall_synth.service.report.render import figures, render_png
from heimdall_synth.service.storage import datasets
from heimdall_synth.service.storage.database import connect
from heimdall_synth.service.storage.migrations import upgrade
from heimdall_synth.service.storage.terrains import add_terrain, delete_terrain
from tests.helpers import generate, new_database
from tests.http_client import API, served_client

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A 0.01-degree grid over the default receivers (44.39-45.48 N, 7.23-9.13 E) and their margins.
NORTH, WEST, STEP, ROWS, COLS = 46.5, 6.0, 0.01, 301, 451
RIDGE_LAT = 45.0


def ridge_grid(north=NORTH, west=WEST, step=STEP, rows=ROWS, cols=COLS, lat=RIDGE_LAT,
               top_m=2000.0, width_deg=0.3) -> ElevationGrid:
    """One east-west ridge along latitude ``lat``: its north flank faces the light (north-west),
    its south flank faces away."""
    lats = north - np.arange(rows) * step
    heights = top_m * np.exp(-((lats - lat) / width_deg) ** 2)
    return ElevationGrid.from_array(np.repeat(heights[:, None], cols, axis=1), north, west, step,
                                    step)


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk."""
    assert png[:8] == PNG_SIGNATURE
    assert png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


def brightness(rgba) -> np.ndarray:
    return rgba[..., :3].mean(axis=-1)


# ---- the shading ----------------------------------------------------------------------------

def test_a_ridge_is_lit_on_its_north_flank_over_exactly_the_extent_asked():
    grid = ridge_grid()
    extent = (7.0, 9.0, 44.0, 46.0)
    shaded = relief.shade(grid, extent)
    assert shaded.extent == extent
    width, height = shaded.size
    assert shaded.rgba.shape == (height, width, 4)
    assert relief.MIN_PX <= max(width, height) <= relief.MAX_PX
    assert np.all(shaded.rgba[..., 3] == 1.0)  # the grid covers the whole extent

    def row(lat):  # the image's row at a latitude (row 0 is the north edge)
        return int((extent[3] - lat) / (extent[3] - extent[2]) * height)

    north_flank = brightness(shaded.rgba[row(RIDGE_LAT + 0.15)]).mean()
    south_flank = brightness(shaded.rgba[row(RIDGE_LAT - 0.15)]).mean()
    assert north_flank > south_flank + 0.2, (north_flank, south_flank)
    # the same heights on both flanks: the difference is the light, not the colour map
    assert grid.height_at(RIDGE_LAT + 0.15, 8.0) == pytest.approx(
        grid.height_at(RIDGE_LAT - 0.15, 8.0), rel=1e-4)
    # an east-west ridge is the same along every row
    assert np.allclose(shaded.rgba[:, 0], shaded.rgba[:, -1])
    # a 0.01-degree grid (about 1 km) is exaggerated; a 1" one far less
    assert shaded.vert_exag > 3.0
    assert relief.vertical_exaggeration(30.0) == 1.0


def test_beyond_the_grid_is_transparent_and_a_big_grid_is_subsampled():
    grid = ridge_grid()
    extent = (5.0, 7.0, 46.0, 47.0)  # the grid's north-west corner at (46.5, 6.0)
    shaded = relief.shade(grid, extent)
    width, height = shaded.size
    alpha = shaded.rgba[..., 3]
    assert alpha[0, 0] == 0.0 and alpha[-1, -1] == 1.0
    # half of the columns and half of the rows lie on the grid (half a cell of slack)
    assert abs(alpha[-1].mean() - 0.5) < 0.01 and abs(alpha[:, -1].mean() - 0.5) < 0.01

    big = ElevationGrid.from_array(np.zeros((3601, 2401), np.float32), 46.0, 7.0, 1 / 3600,
                                   1 / 3600)
    shaded = relief.shade(big, (7.0, 7.6, 45.0, 46.0))
    assert shaded.size == (600, 1000)  # the grid's proportions, 1000 pixels at most
    png = relief.to_png(shaded)
    assert png_size(png) == (600, 1000)
    assert relief.map_extent((43.9, 46.0, 6.7, 9.6)) == pytest.approx(
        (6.7 - 0.145, 9.6 + 0.145, 43.9 - 0.145, 46.0 + 0.145))
    with pytest.raises(ValueError):
        relief.shade(grid, (8.0, 7.0, 44.0, 45.0))


# ---- the report and the route, on a database ------------------------------------------------

@dataclass
class Data:
    url: str
    with_terrain: str
    plain: str
    sha256: str


@pytest.fixture(scope="module")
def data(pg_server_url):
    with new_database(pg_server_url, "relief") as url:
        with connect(url) as conn:
            upgrade(conn)
            with_terrain, _ = generate(conn, url, "relief-ridge", 200, seed=4)
            plain, _ = generate(conn, url, "relief-none", 200, seed=5)
            row = add_terrain(conn, "ridge", ridge_grid())
            with conn.transaction():
                conn.execute("UPDATE heimdall.synthetic_datasets SET config = config || "
                             "'{\"terrain\": \"ridge\"}' WHERE id = %s", (with_terrain,))
        yield Data(url, with_terrain, plain, row["sha256"])


@pytest.fixture
def db(data):
    with connect(data.url) as conn:
        yield conn


def map_of(db, dataset_id):
    fig = figures(db, dataset_id, ("map",))["map"]
    return fig, fig.axes[0]


def test_the_report_map_draws_the_relief_under_the_points_over_its_extent(db, data):
    fig, ax = map_of(db, data.with_terrain)
    assert len(ax.images) == 1
    image = ax.images[0]
    west, east = ax.get_xlim()
    south, north = ax.get_ylim()
    assert tuple(image.get_extent()) == pytest.approx((west, east, south, north))
    config = datasets.get_dataset(db, data.with_terrain, with_count=False)["config"]
    from heimdall_synth.service.report.queries import map_boxes
    assert (west, east, south, north) == relief.map_extent(map_boxes(config)[2])
    drawn = ax.collections + ax.patches + ax.texts  # transmitters, receivers, boxes, names
    assert drawn and image.get_zorder() < min(a.get_zorder() for a in drawn)
    title = ax.get_title()
    assert "terrain ridge" in title and data.sha256[:12] in title
    # a dataset without a terrain: no image, and its title does not speak of one
    plain_fig, plain_ax = map_of(db, data.plain)
    assert len(plain_ax.images) == 0 and "terrain" not in plain_ax.get_title()
    png = render_png(db, data.with_terrain, "map")
    assert png[:8] == PNG_SIGNATURE


def test_a_deleted_terrain_draws_no_relief_and_says_so(data):
    with connect(data.url) as conn:
        before = render_png(conn, data.with_terrain, "map")
        # rolled back on leaving: the module's data stay as made
        with conn.transaction(force_rollback=True):
            delete_terrain(conn, "ridge")
            fig, ax = map_of(conn, data.with_terrain)
            assert len(ax.images) == 0
            assert "terrain ridge: no longer registered, no relief drawn" in ax.get_title()
            # not the map cached with its relief
            assert render_png(conn, data.with_terrain, "map") != before


@pytest.fixture(scope="module")
def api(data):
    with served_client(data.url) as client:
        yield client


def test_the_report_page_names_the_terrain(api, data):
    import http.client
    conn = http.client.HTTPConnection(api.host, api.port, timeout=30)
    try:
        conn.request("GET", f"/datasets/{data.with_terrain}/report")
        text = conn.getresponse().read().decode()
        conn.request("GET", f"/datasets/{data.plain}/report")
        plain = conn.getresponse().read().decode()
    finally:
        conn.close()
    assert (f'<td id="terrain"><code>ridge</code> (SHA-256 <code>{data.sha256[:12]}</code>): '
            "shown as shaded relief under the map</td>") in text
    assert '<td id="terrain">none</td>' in plain


def test_http_relief_png(api, data):
    reply = api.get(f"/datasets/{data.with_terrain}/relief.png")
    assert reply.status == 200, reply
    assert reply.headers["Content-Type"] == "image/png"
    width, height = png_size(reply.raw)
    assert relief.MIN_PX <= max(width, height) <= relief.MAX_PX
    from PIL import Image
    with Image.open(io.BytesIO(reply.raw)) as image:
        assert image.mode == "RGBA" and image.size == (width, height)

    asked = api.get(f"/datasets/{data.with_terrain}/relief.png?west=7&east=9&south=44"
                    "&north=46")
    assert asked.status == 200 and png_size(asked.raw) == relief.shade(
        ridge_grid(), (7, 9, 44, 46)).size

    for dataset_id in (data.plain, str(uuid.uuid4())):
        missing = api.get(f"/datasets/{dataset_id}/relief.png")
        assert missing.status == 404 and missing.headers["Content-Type"] == "application/json"
        assert missing.json["error"] == "not_found" and missing.json["field"] == "dataset_id"
    assert "uses no terrain" in api.get(f"/datasets/{data.plain}/relief.png").json["message"]

    for query, field in (("west=abc", "west"), ("north=91", "north"), ("west=9&east=8", "east"),
                         ("south=nan", "south"), ("zoom=2", "zoom")):
        bad = api.get(f"/datasets/{data.with_terrain}/relief.png?{query}")
        assert bad.status == 422 and bad.json["field"] == field, (query, bad)

    with connect(data.url) as conn:  # the terrain deleted since: no relief, a 404
        with conn.transaction():
            conn.execute("UPDATE heimdall.synthetic_datasets SET config = config || "
                         "'{\"terrain\": \"gone\"}' WHERE id = %s", (data.plain,))
        try:
            gone = api.get(f"/datasets/{data.plain}/relief.png")
            assert gone.status == 404 and "no longer registered" in gone.json["message"]
        finally:
            with conn.transaction():
                conn.execute("UPDATE heimdall.synthetic_datasets SET config = config - "
                             "'terrain' WHERE id = %s", (data.plain,))

    op = api.get("/api/openapi.json").json["paths"][
        f"{API}/datasets/{{dataset_id}}/relief.png"]["get"]
    assert list(op["responses"]["200"]["content"]) == ["image/png"]
    assert {p["name"] for p in op["parameters"]} == {"dataset_id", "west", "east", "south",
                                                     "north"}
