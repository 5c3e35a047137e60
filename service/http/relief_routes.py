"""A dataset's terrain as a shaded-relief PNG, for the dashboard's map.

* ``GET /api/training/synthetic/datasets/<dataset_id>/relief.png?west=&east=&south=&north=``:
  200 image/png covering exactly that extent (degrees; each bound optional, defaulting to the
  dataset's map extent, ``relief.map_extent``: the same as the report's map), north up,
  transparent beyond the terrain's grid, at most ``relief.MAX_PX`` pixels a side. 404 naming
  ``dataset_id`` for an unknown dataset, one whose configuration names no terrain, or one whose
  terrain is no longer registered; 422 naming the parameter for a bound that is not a number,
  out of range, or an empty extent (west >= east, south >= north).

The shading is ``service.report.relief`` (shared with the report). PNGs are cached by the
terrain's SHA-256 and the extent.
"""

from __future__ import annotations

import math
import re

from flask import Blueprint, Response

from heimdall_synth.kernel.config import ConfigError
from heimdall_synth.service.engine.request import NotFoundError

from heimdall_synth.service.http.common import API_PREFIX, get_db, parse_uuid, query_args
from heimdall_synth.service.storage import datasets

bp = Blueprint("relief", __name__, url_prefix=API_PREFIX)

#: name -> (lowest, highest) value, degrees
BOUNDS = {"west": (-180.0, 180.0), "east": (-180.0, 180.0), "south": (-90.0, 90.0),
          "north": (-90.0, 90.0)}
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")


def _bound(args: dict, name: str) -> float | None:
    if name not in args:
        return None
    text, (lo, hi) = args[name], BOUNDS[name]
    if not _NUMBER.fullmatch(text):
        raise ConfigError(name, f"must be a number of degrees, got {text!r}")
    value = float(text)
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ConfigError(name, f"{text} is out of range [{lo:g}, {hi:g}]")
    return value


@bp.get("/datasets/<dataset_id>/relief.png")
def relief_png(dataset_id):
    """The dataset's terrain as shaded relief over a lat/lon extent."""
    from heimdall_synth.service.report import queries, relief

    dataset_id = parse_uuid(dataset_id, "dataset_id")
    args = query_args(tuple(BOUNDS))
    given = {name: _bound(args, name) for name in BOUNDS}
    conn = get_db()
    with queries.snapshot(conn):
        dataset = datasets.get_dataset(conn, dataset_id, with_count=False)
        config = dataset["config"] or {}
        name = relief.terrain_name(config)
        if name is None:
            raise NotFoundError(f"dataset {dataset_id} uses no terrain: it has no relief",
                                field="dataset_id")
        row = relief.terrain_row(conn, name)
        if row is None:
            raise NotFoundError(f"the terrain {name!r} of dataset {dataset_id} is no longer "
                                "registered: it has no relief", field="dataset_id")
        default = relief.map_extent(queries.map_boxes(config)[2])
        extent = tuple(default[i] if given[k] is None else given[k]
                       for i, k in enumerate(BOUNDS))
        if extent[0] >= extent[1]:
            raise ConfigError("east" if given["east"] is not None else "west",
                              f"the extent is empty: west ({extent[0]:g}) must be less than "
                              f"east ({extent[1]:g})")
        if extent[2] >= extent[3]:
            raise ConfigError("north" if given["north"] is not None else "south",
                              f"the extent is empty: south ({extent[2]:g}) must be less than "
                              f"north ({extent[3]:g})")

        def load_grid():
            from heimdall_synth.service.storage.terrains import get_terrain
            try:
                return get_terrain(conn, name)
            except NotFoundError:  # deleted since the row was read
                raise NotFoundError(f"the terrain {name!r} of dataset {dataset_id} is no "
                                    "longer registered: it has no relief",
                                    field="dataset_id") from None

        png = relief.relief_png(row["sha256"], extent, load_grid)
    return Response(png, mimetype="image/png", headers={"Cache-Control": "no-cache"})
