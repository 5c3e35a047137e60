"""The report over HTTP: one plot as PNG under the API, and an HTML page for people.

* ``GET /api/training/synthetic/datasets/<dataset_id>/report/<plot>.png``: 200 image/png;
  404 naming ``plot`` for an unknown plot, naming ``dataset_id`` for an unknown dataset;
  422 for an id that is not a UUID or a query parameter (none are taken).
* ``GET /api/training/synthetic/datasets/<dataset_id>/samples/<sample_index>/signal/<plot>.png``:
  a picture of an iq_raw sample's signal (``signal_plots``); 404 naming ``plot``,
  ``dataset_id`` or ``sample_index``; 409 naming ``dataset_type`` (``NotIQError``) for a
  dataset of another type; 422 as above.
* ``GET /api/training/synthetic/datasets/<dataset_id>/baselines``: the dataset's baseline runs
  (``heimdall-synth baseline``), newest first, without their per-sample errors; 404 naming
  ``dataset_id``.
* ``GET /api/training/synthetic/datasets/<dataset_id>/baselines/<run_id>/<plot>.png``: a
  picture of one run (``baseline_plots``); 404 naming ``plot``, ``dataset_id`` or ``run_id``.
* ``GET /datasets/<dataset_id>/report``: the dataset's metadata, counts, quality aggregates,
  jobs, baseline runs and the plots (served by the routes above; an iq_raw dataset's page also shows the
  signal of its first sample). Not part of the API; errors are still the one JSON error body
  of ``http.app``.
"""

from __future__ import annotations

import math

from flask import Blueprint, Response, jsonify, render_template, url_for

from heimdall_synth.service.engine.request import NotFoundError

from heimdall_synth.service.http.common import API_PREFIX, get_db, parse_uuid, query_args
from heimdall_synth.service.storage import datasets, jobs
from heimdall_synth.service.report import PLOT_NAMES, PLOTS
from heimdall_synth.service.report.signal_plots import SIGNAL_PLOTS, SIGNAL_TITLES
from heimdall_synth.service.http.serialize import jsonable

bp = Blueprint("report", __name__, template_folder="templates")

#: quality_metrics keys shown on the page (running aggregates kept by the generation loop).
QUALITY_ROWS = (
    ("mean_mean_snr_db", "mean SNR of the detecting receivers", "dB"),
    ("mean_detected_receivers", "mean detecting receivers", ""),
    ("mean_gdop", "mean GDOP (finite values)", ""),
    ("min_gdop", "smallest GDOP", ""),
    ("max_gdop", "largest GDOP", ""),
    ("mean_hdop", "mean HDOP (finite values)", ""),
    ("mean_crb_m", "mean RSS Cramer-Rao bound (finite values)", "m"),
    ("mean_overall_confidence", "mean overall confidence", "0-1"),
)
JOBS_SHOWN = 100
CONFIG_ROWS = ("frequency_mhz", "tx_power_dbm", "noise_floor_dbm", "min_snr_db", "min_receivers",
               "max_gdop", "max_crb_m", "use_random_receivers", "inside_ratio", "margin_deg",
               "num_chunks")
#: Shown too for an iq_raw dataset (the IQ fields are null for feature_based); bandwidth_hz is
#: the channel the signal pictures shade.
IQ_CONFIG_ROWS = ("bandwidth_hz", "iq_sample_rate_hz", "iq_duration_ms", "iq_storage",
                  "iq_format")
#: The sample whose signal an iq_raw dataset's page shows.
SIGNAL_SAMPLE = 0
#: Baseline runs listed on the page (and by the API).
RUNS_SHOWN = 100


@bp.get(f"{API_PREFIX}/datasets/<dataset_id>/report/<plot>.png")
def plot_png(dataset_id, plot):
    """One plot of the dataset's report as a PNG image."""
    dataset_id = parse_uuid(dataset_id, "dataset_id")
    query_args(())
    _known(plot, PLOT_NAMES, "plot")
    from heimdall_synth.service.report.render import render_png
    return _png(render_png(get_db(), dataset_id, plot))


@bp.get(f"{API_PREFIX}/datasets/<dataset_id>/samples/<int:sample_index>/signal/<plot>.png")
def signal_png(dataset_id, sample_index, plot):
    """A picture of one iq_raw sample's signal as a PNG image."""
    dataset_id = parse_uuid(dataset_id, "dataset_id")
    query_args(())
    _known(plot, SIGNAL_PLOTS, "signal picture")
    from heimdall_synth.service.report.signal_plots import render_signal_png
    return _png(render_signal_png(get_db(), dataset_id, sample_index, plot))


@bp.get(f"{API_PREFIX}/datasets/<dataset_id>/baselines")
def baseline_runs(dataset_id):
    """The dataset's baseline runs, newest first."""
    from heimdall_synth.service.storage.baselines import list_runs
    dataset_id = parse_uuid(dataset_id, "dataset_id")
    query_args(())
    conn = get_db()
    datasets.get_dataset(conn, dataset_id, with_count=False)  # 404 naming dataset_id
    runs = list_runs(conn, dataset_id, limit=RUNS_SHOWN)
    return jsonify({"dataset_id": dataset_id, "runs": jsonable(runs), "count": len(runs)})


@bp.get(f"{API_PREFIX}/datasets/<dataset_id>/baselines/<run_id>/<plot>.png")
def baseline_png(dataset_id, run_id, plot):
    """A picture of one baseline run as a PNG image."""
    from heimdall_synth.service.report.baseline_plots import BASELINE_PLOTS
    dataset_id = parse_uuid(dataset_id, "dataset_id")
    run_id = parse_uuid(run_id, "run_id")
    query_args(())
    _known(plot, tuple(BASELINE_PLOTS), "picture")
    from heimdall_synth.service.report.render import render_baseline_png
    return _png(render_baseline_png(get_db(), dataset_id, run_id, plot))


@bp.get("/datasets/<dataset_id>/report")
def page(dataset_id):
    """The report page of a dataset."""
    dataset_id = parse_uuid(dataset_id, "dataset_id")
    query_args(())
    from heimdall_synth.service.report.queries import outcomes, snapshot
    from heimdall_synth.service.report.baseline_plots import BASELINE_PLOTS, km_text
    from heimdall_synth.service.report.relief import dataset_terrain
    from heimdall_synth.service.storage.baselines import list_runs
    conn = get_db()
    with snapshot(conn):
        dataset = datasets.get_dataset(conn, dataset_id)
        job_rows = jobs.list_jobs(conn, dataset_id, limit=JOBS_SHOWN)
        runs = list_runs(conn, dataset_id, limit=RUNS_SHOWN)
        outcome = outcomes(conn, dataset_id)
        terrain = dataset_terrain(conn, dataset["config"], with_grid=False)
    quality = dataset["quality_metrics"] or {}
    config = dataset["config"] or {}
    if config.get("use_random_receivers"):
        receivers = (f"random, {config['min_receivers_count']}-{config['max_receivers_count']} "
                     f"per attempt, {config['receiver_placement']} placement")
    else:
        receivers = ", ".join(r["name"] for r in config.get("receivers", ()))
    iq_raw = dataset["dataset_type"] == "iq_raw"
    rows = CONFIG_ROWS + (IQ_CONFIG_ROWS if iq_raw else ())
    # the first sample's signal: an iq_raw dataset's IQ, as every receiver recorded it
    signals = ([(name, f"{SIGNAL_TITLES[name]}, sample {SIGNAL_SAMPLE}",
                 url_for("report.signal_png", dataset_id=dataset_id, sample_index=SIGNAL_SAMPLE,
                         plot=name)) for name in SIGNAL_PLOTS]
               if iq_raw and dataset["actual_count"] > SIGNAL_SAMPLE else [])
    return render_template(
        "report/page.html", dataset=dataset, jobs=job_rows, jobs_shown=JOBS_SHOWN,
        outcome=outcome, receivers=receivers, terrain=terrain,
        quality=[(label, _number(quality.get(key)), unit) for key, label, unit in QUALITY_ROWS],
        config=[(key, _number(config.get(key))) for key in rows],
        plots=[(name, title, url_for("report.plot_png", dataset_id=dataset_id, plot=name))
               for name, title in PLOTS.items()],
        signals=signals, signal_sample=SIGNAL_SAMPLE, runs=runs, km=km_text,
        baseline_plots=[(name, title, url_for("report.baseline_png", dataset_id=dataset_id,
                                              run_id=runs[0]["id"], plot=name))
                        for name, title in BASELINE_PLOTS.items()] if runs else [],
        api_url=f"{API_PREFIX}/datasets/{dataset_id}", jobs_url=f"{API_PREFIX}/jobs")


def _known(plot: str, names, what: str) -> None:
    """NotFoundError naming ``plot`` unless it is one of ``names``."""
    if plot not in names:
        raise NotFoundError(f"no {what} {plot!r}; they are {', '.join(names)}", field="plot")


def _png(png: bytes) -> Response:
    # Data grows (expansions) and names change (titles show them): caches must ask again.
    return Response(png, mimetype="image/png", headers={"Cache-Control": "no-cache"})


def _number(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}"
    return str(value)
