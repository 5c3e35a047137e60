"""The report's plots as PNG: every plot to files (``write_report``, the CLI) or one plot to
bytes (``render_png``, HTTP). Each reads its data in one database snapshot."""

from __future__ import annotations

import threading
from pathlib import Path

from heimdall_synth.service.report import PLOT_NAMES, PLOTS
from heimdall_synth.service.report import plots, queries
from heimdall_synth.service.report.relief import PngCache

# matplotlib keeps module-level caches (fonts, text layout) that are not safe to fill from
# several threads at once; the HTTP server renders in its request threads.
_RENDER_LOCK = threading.Lock()
_HISTOGRAMS = ("snr", "gdop", "crb", "detected")


def figures(conn, dataset_id, names=PLOT_NAMES) -> dict:
    """{name: matplotlib Figure} for the named plots of a dataset (NotFoundError naming
    dataset_id when there is none). The quality histograms share their two scans."""
    from heimdall_synth.service.storage.datasets import get_dataset

    unknown = [n for n in names if n not in PLOTS]
    if unknown:
        raise ValueError(f"unknown plot {unknown[0]!r}; plots: {', '.join(PLOT_NAMES)}")
    out = {}
    with queries.snapshot(conn):
        dataset = get_dataset(conn, dataset_id, with_count=False)
        wanted = [n for n in _HISTOGRAMS if n in names]
        hists = queries.quality_histograms(conn, dataset["id"], wanted) if wanted else {}
        data = {}
        for name in names:
            if name == "map":
                data[name] = queries.map_data(conn, dataset)
            elif name == "distance_power":
                data[name] = queries.link_power_grid(conn, dataset)
            elif name == "rejections":
                data[name] = queries.outcomes(conn, dataset["id"])
            else:
                data[name] = hists[name]
    with _RENDER_LOCK:
        for name in names:
            out[name] = _draw(name, data[name])
    return out


def _draw(name: str, data):
    if name == "map":
        return plots.map_figure(data)
    if name == "distance_power":
        return plots.distance_power_figure(data)
    if name == "rejections":
        return plots.outcomes_figure(data)
    if name == "detected":
        return plots.detected_figure(data)
    return plots.histogram_figure(name, data)


# The latest PNGs by (plot, data version; the map also by its terrain's name and hash): a page
# opened again, or a dataset's plots fetched by several clients, costs no scan of its samples
# until the dataset changes.
PNG_CACHE = PngCache(128)  # PNGs are 20-100 KB


def render_png(conn, dataset_id, plot: str) -> bytes:
    """One plot of a dataset as PNG bytes (from ``PNG_CACHE`` while its data is unchanged)."""
    from heimdall_synth.service.storage.ids import uuid_of

    with queries.snapshot(conn):
        dataset_uuid = uuid_of(dataset_id, "dataset_id")
        key = (plot, *queries.data_version(conn, dataset_uuid))
        if plot == "map":  # its relief: the terrain the dataset names, as registered now
            key += queries.terrain_version(conn, dataset_uuid)
        png = PNG_CACHE.get(key)
        if png is None:
            fig = figures(conn, dataset_id, (plot,))[plot]
    if png is None:
        with _RENDER_LOCK:
            png = plots.to_png(fig)
        PNG_CACHE.put(key, png)
    return png


def write_report(conn, dataset_id, out_dir) -> list[Path]:
    """Every plot of a dataset as ``out_dir/<plot>.png`` (the folder is created; files of the
    same names are replaced). Returns the paths written, in report order."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in figures(conn, dataset_id).items():
        path = out_dir / f"{name}.png"
        with _RENDER_LOCK:
            png = plots.to_png(fig)
        partial = path.with_name(f".{path.name}.partial")  # no half-written PNG under the name
        partial.write_bytes(png)
        partial.replace(path)
        written.append(path)
    return written
