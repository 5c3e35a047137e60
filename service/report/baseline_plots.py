"""Pictures of a baseline run (``service.training.baseline``): its test error against GDOP and
against the Cramer-Rao bound, and its error map (the median error per area cell).

Both are drawn from the run's stored per-sample errors, joined by sample_index to the test
samples' rows (their GDOP, CRB and transmitter position) in one query that returns arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from heimdall_synth.service.report import plots, queries, relief

#: name (the file and URL stem) -> what it shows
BASELINE_PLOTS = {
    "baseline_errors": "Baseline localizer: test error against GDOP and the Cramer-Rao bound",
    "baseline_error_map": "Baseline localizer: median test error by area cell",
}
#: The error map's cells: about this many across the map's wider side.
MAP_CELLS = 24
#: A cell of the error map is coloured when it holds at least this many test samples.
MIN_PER_CELL = 5
ERROR_CMAP = "viridis"


@dataclass(frozen=True)
class BaselinePoints:
    run: dict                 # the stored run (summary and arrays)
    error_m: np.ndarray       # per test sample, in sample_index order
    gdop: np.ndarray
    crb_m: np.ndarray
    tx_lat: np.ndarray
    tx_lon: np.ndarray
    map: object               # queries.MapData: the frame of the error map


def baseline_points(conn, dataset: dict, run: dict) -> BaselinePoints:
    """A run's errors beside its test samples' GDOP, CRB and positions (one snapshot)."""
    with queries.snapshot(conn):
        gdop, crb, lat, lon = conn.execute(
            "SELECT array_agg(f.gdop ORDER BY t.i), array_agg(f.crb_m ORDER BY t.i), "
            "array_agg(f.tx_latitude ORDER BY t.i), array_agg(f.tx_longitude ORDER BY t.i) "
            f"FROM unnest(%s::int8[]) AS t(i) JOIN {queries.FEATURES} f "
            "ON f.dataset_id = %s AND f.sample_index = t.i",
            (run["test_sample_index"].tolist(), str(dataset["id"]))).fetchone()
        frame = queries.map_data(conn, dataset, limit=1, with_relief=False)
    arrays = [np.array(v if v is not None else [], np.float64) for v in (gdop, crb, lat, lon)]
    if len(arrays[0]) != len(run["test_error_m"]):
        raise ValueError("the run's test samples are not all in the dataset")
    return BaselinePoints(run, run["test_error_m"].astype(np.float64), *arrays, frame)


def km_text(metres) -> str:
    """A distance in metres as km with two decimals ('-' for none)."""
    return "-" if metres is None else f"{metres / 1000:,.2f}"


def run_caption(run: dict) -> str:
    return (f"{run['test_samples']:,} test samples; median {run['median_error_m'] / 1000:.1f} "
            f"km, 90th percentile {run['p90_error_m'] / 1000:.1f} km; seed {run['seed']}")


def errors_figure(points: BaselinePoints):
    """Two panels: the error against GDOP and against the CRB (log axes), with the median
    error in bins of each, and on the CRB panel the line error = CRB."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=plots.FIGSIZE_IN, dpi=plots.DPI, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(f"{BASELINE_PLOTS['baseline_errors']}\n{run_caption(points.run)}",
                 fontsize=11)
    error_km = points.error_m / 1000.0
    for k, (values, label) in enumerate(((points.gdop, "GDOP"),
                                         (points.crb_m / 1000.0, "RSS Cramer-Rao bound (km)"))):
        ax = fig.add_subplot(1, 2, k + 1)
        ax.set_facecolor(plots.PLOT_FACE)
        keep = np.isfinite(values) & (values > 0) & (error_km > 0)
        if not keep.any():
            plots.nothing_to_show(ax, f"no finite {label.split(' (')[0]}")
            continue
        x, y = values[keep], error_km[keep]
        ax.scatter(x, y, s=3, alpha=0.15, color=plots.TX_COLOR, linewidths=0,
                   label=f"test samples ({keep.sum():,})", rasterized=True)
        edges = np.geomspace(x.min(), x.max() * 1.0001, 16)
        which = np.digitize(x, edges) - 1
        mids, medians = [], []
        for b in range(len(edges) - 1):
            in_bin = y[which == b]
            if len(in_bin) >= MIN_PER_CELL:
                mids.append(math.sqrt(edges[b] * edges[b + 1]))
                medians.append(np.median(in_bin))
        ax.plot(mids, medians, "-o", color="black", ms=3, lw=1.5, label="median in bin")
        if k == 1:
            span = np.array([min(x.min(), y.min()), max(x.max(), y.max())])
            ax.plot(span, span, "--", color=plots.RX_COLOR, lw=1.2, label="error = CRB")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label + (" (log scale)" if k == 0 else ", log scale"))
        ax.set_ylabel("localization error (km, log scale)")
        ax.legend(fontsize=7, loc="upper left")
    return fig


def error_map_figure(points: BaselinePoints):
    """The median test error per cell of a grid over the map (cells with fewer than
    MIN_PER_CELL test samples left blank), with the receivers and the transmitter boxes."""
    frame = points.map
    fig, ax = plots.new_figure(BASELINE_PLOTS["baseline_error_map"], run_caption(points.run))
    west, east, south, north = relief.map_extent(frame.outer_box)
    cos_mid = math.cos(math.radians((south + north) / 2.0))
    # square cells on the ground: MAP_CELLS across the wider side
    step_lat = max(north - south, (east - west) * cos_mid) / MAP_CELLS
    lat_edges = np.arange(south, north + step_lat, step_lat)
    lon_edges = np.arange(west, east + step_lat / cos_mid, step_lat / cos_mid)
    rows = np.digitize(points.tx_lat, lat_edges) - 1
    cols = np.digitize(points.tx_lon, lon_edges) - 1
    grid = np.full((len(lat_edges) - 1, len(lon_edges) - 1), np.nan)
    inside = (rows >= 0) & (rows < grid.shape[0]) & (cols >= 0) & (cols < grid.shape[1])
    cell = rows[inside] * grid.shape[1] + cols[inside]
    errors = points.error_m[inside] / 1000.0
    order = np.argsort(cell, kind="stable")
    cell, errors = cell[order], errors[order]
    starts = np.flatnonzero(np.r_[True, np.diff(cell) != 0]) if len(cell) else np.array([], int)
    for a, b in zip(starts, np.r_[starts[1:], len(cell)]):
        if b - a >= MIN_PER_CELL:
            grid.flat[cell[a]] = np.median(errors[a:b])
    if np.isfinite(grid).any():
        mesh = ax.pcolormesh(lon_edges, lat_edges, grid, cmap=ERROR_CMAP, alpha=0.9, zorder=1,
                             shading="flat")
        fig.colorbar(mesh, ax=ax, shrink=0.8, label="median localization error (km)")
    else:
        plots.note(ax, f"no cell holds {MIN_PER_CELL} test samples", y=0.9, size=11)
    plots.draw_map_frame(fig, ax, frame, with_relief=False)
    return fig


def figures(points: BaselinePoints, names=tuple(BASELINE_PLOTS)) -> dict:
    """{name: Figure} of a run (``render`` holds the drawing lock around this)."""
    draw = {"baseline_errors": errors_figure, "baseline_error_map": error_map_figure}
    return {name: draw[name](points) for name in names}
