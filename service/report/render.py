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
            elif name == "splits":
                data[name] = queries.split_map_data(conn, dataset)
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
    if name == "splits":
        return plots.split_map_figure(data)
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


def baseline_figures(conn, dataset_id, run_id=None, names=None) -> dict:
    """{name: Figure} of a dataset's baseline run (the newest when ``run_id`` is None);
    NotFoundError naming ``run_id`` when it has none."""
    from heimdall_synth.service.report.baseline_plots import (BASELINE_PLOTS, baseline_points,
                                                              figures as draw)
    from heimdall_synth.service.storage.baselines import get_run
    from heimdall_synth.service.storage.datasets import get_dataset

    with queries.snapshot(conn):
        dataset = get_dataset(conn, dataset_id, with_count=False)
        points = baseline_points(conn, dataset, get_run(conn, dataset["id"], run_id))
    with _RENDER_LOCK:
        return draw(points, names or tuple(BASELINE_PLOTS))


def render_baseline_png(conn, dataset_id, run_id, plot: str) -> bytes:
    """One picture of a baseline run as PNG bytes (a run never changes: cached by its id once
    the run is found in the dataset)."""
    from heimdall_synth.service.storage.baselines import check_run
    check_run(conn, dataset_id, run_id)
    key = ("baseline", str(run_id), plot)
    png = PNG_CACHE.get(key)
    if png is None:
        fig = baseline_figures(conn, dataset_id, run_id, (plot,))[plot]
        with _RENDER_LOCK:
            png = plots.to_png(fig)
        PNG_CACHE.put(key, png)
    return png


def write_png(path: Path, fig) -> Path:
    """A figure as a PNG file, never half-written under its name."""
    with _RENDER_LOCK:
        png = plots.to_png(fig)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(png)
    partial.replace(path)
    return path


def write_report(conn, dataset_id, out_dir) -> list[Path]:
    """Every plot of a dataset as ``out_dir/<plot>.png`` (the folder is created; files of the
    same names are replaced), and the pictures of its newest baseline run when it has one.
    Returns the paths written, in report order."""
    from heimdall_synth.service.storage.baselines import list_runs

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [write_png(out_dir / f"{name}.png", fig)
               for name, fig in figures(conn, dataset_id).items()]
    runs = list_runs(conn, dataset_id, limit=1)
    if runs:
        written += [write_png(out_dir / f"{name}.png", fig)
                    for name, fig in baseline_figures(conn, dataset_id, runs[0]["id"]).items()]
    return written
