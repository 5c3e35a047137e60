"""The baseline localizer: on a 200,000-sample default dataset it is far better than predicting
the centre of the area; the same seed gives the same run; runs are stored with their dataset,
listed and drawn (CLI, HTTP, report page); the report's split map is the split function itself
and the error map holds the median error of each cell."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from heimdall_synth.kernel.splits import split_of
from heimdall_synth.service.engine.request import ConflictError
from heimdall_synth.service.report import render
from heimdall_synth.service.report.baseline_plots import BASELINE_PLOTS
from heimdall_synth.service.storage.baselines import get_run, list_runs
from heimdall_synth.service.training.baseline import run_baseline
from tests.helpers import cli, cli_json, generate, rows

PNG = b"\x89PNG\r\n\x1a\n"


def test_200k_default_dataset_beats_the_area_centre(conn, db, tmp_path):
    dataset_id, result = generate(conn, db, "big", 200_000, seed=11)
    assert result.status == "completed"
    plot = tmp_path / "big.png"
    run = cli_json(db, "baseline", "big", "--plot", plot, timeout=300)
    assert run["dataset_samples"] == 200_000
    assert run["train_samples"] + run["test_samples"] < 200_000  # validation left out
    assert 0.09 < run["test_samples"] / 200_000 < 0.11
    # clearly better than predicting the centre: measured about 0.22 and 0.27
    assert run["median_error_m"] < 0.4 * run["centre_median_error_m"]
    assert run["p90_error_m"] < 0.5 * run["centre_p90_error_m"]
    assert run["median_crb_m"] > 0 and run["median_gdop"] >= 1
    assert plot.read_bytes().startswith(PNG)
    stored = cli_json(db, "baseline", "big", "--runs")["runs"]
    assert [r["id"] for r in stored] == [run["id"]]
    assert stored[0]["median_error_m"] == run["median_error_m"]


def test_same_seed_same_run_and_the_seed_matters(conn, db_url):
    generate(conn, db_url, "repeat", 8_000, seed=12)
    first = run_baseline(db_url, "repeat", seed=5, store=False)
    second = run_baseline(db_url, "repeat", seed=5, store=False)
    other = run_baseline(db_url, "repeat", seed=6, store=False)
    assert np.array_equal(first["test_sample_index"], second["test_sample_index"])
    assert first["test_error_m"].tobytes() == second["test_error_m"].tobytes()
    for key in ("median_error_m", "p90_error_m", "centre_median_error_m", "median_crb_m"):
        assert first[key] == second[key], key
    assert first["test_error_m"].tobytes() != other["test_error_m"].tobytes()
    assert list_runs(conn, first["dataset_id"]) == []  # store=False stores nothing


def test_the_test_split_is_the_stored_one_and_errors_are_stored(conn, db_url):
    dataset_id, _ = generate(conn, db_url, "stored", 3000, seed=13)
    run = run_baseline(db_url, "stored", seed=1)
    split = rows(conn, dataset_id, "sample_index, split")
    assert run["test_sample_index"].tolist() == [i for i, s in split if s == 2]
    back = get_run(conn, dataset_id)
    assert back["id"] == run["id"] and back["test_error_m"].tobytes() == \
        run["test_error_m"].tobytes()
    assert back["median_error_m"] == pytest.approx(np.median(run["test_error_m"]), rel=1e-6)
    # a run goes with its dataset
    with conn.transaction():
        conn.execute("DELETE FROM heimdall.synthetic_datasets WHERE id = %s", (dataset_id,))
    with conn.transaction():
        assert conn.execute("SELECT count(*) FROM heimdall.baseline_runs").fetchone()[0] == 0


def test_too_few_samples_is_refused_naming_the_split(conn, db):
    generate(conn, db, "tiny", 40, seed=14)
    with pytest.raises(ConflictError) as err:
        run_baseline(db, "tiny")
    assert err.value.fields == ["split"] and err.value.code == "too_few_samples"
    res = cli(db, "--json", "baseline", "tiny")
    assert res.returncode == 4 and '"field": "split"' in res.stdout + res.stderr
    assert cli(db, "--json", "baseline", "tiny", "--seed", "-1").returncode == 2
    with conn.transaction():
        assert conn.execute("SELECT count(*) FROM heimdall.baseline_runs").fetchone()[0] == 0


def test_iq_raw_baseline_uses_the_features_measured_from_the_iq(conn, db_url):
    generate(conn, db_url, "iq", 600, seed=15, dataset_type="iq_raw",
             iq_sample_rate_hz=25_000, iq_duration_ms=20, split_cell_m=500.0)
    run = run_baseline(db_url, "iq", seed=0)
    assert run["params"]["measurements"] == ["iq_rssi_dbm_mean", "iq_snr_db_mean"]
    assert run["median_error_m"] < run["centre_median_error_m"]


def test_split_map_is_the_split_function(conn, db_url):
    dataset_id, _ = generate(conn, db_url, "splitmap", 2000, seed=16, split_cell_m=5000.0)
    fig = render.figures(conn, dataset_id, ("splits",))["splits"]
    ax = fig.axes[0]
    image = ax.get_images()[0]
    codes = np.asarray(image.get_array())
    west, east, south, north = image.get_extent()
    rows_, cols = codes.shape
    lat = south + (np.arange(rows_) + 0.5) * (north - south) / rows_
    lon = west + (np.arange(cols) + 0.5) * (east - west) / cols
    assert np.array_equal(codes, split_of(lat[:, None], lon[None, :], 5000.0, 0.8, 0.1))
    assert {0, 1, 2} <= set(np.unique(codes))
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    shares = dict(conn.execute("SELECT split, count(*) FROM heimdall.measurement_features "
                               "GROUP BY split").fetchall())
    assert f"train: {shares[0]:,} samples" in " ".join(labels)
    assert f"test: {shares[2]:,} samples" in " ".join(labels)


def test_error_map_cells_hold_the_median_error(conn, db_url):
    dataset_id, _ = generate(conn, db_url, "errmap", 8000, seed=17)
    run = run_baseline(db_url, "errmap", seed=0)
    figs = render.baseline_figures(conn, dataset_id)
    assert list(figs) == list(BASELINE_PLOTS)
    mesh = next(c for c in figs["baseline_error_map"].axes[0].collections
                if hasattr(c, "get_coordinates"))
    grid = np.ma.filled(mesh.get_array(), np.nan).reshape(mesh.get_coordinates().shape[0] - 1,
                                                         -1)
    corners = mesh.get_coordinates()
    lon_edges, lat_edges = corners[0, :, 0], corners[:, 0, 1]
    pos = dict((r[0], (r[1], r[2])) for r in rows(
        conn, dataset_id, "sample_index, tx_latitude, tx_longitude"))
    lat = np.array([pos[i][0] for i in run["test_sample_index"]])
    lon = np.array([pos[i][1] for i in run["test_sample_index"]])
    r = np.digitize(lat, lat_edges) - 1
    c = np.digitize(lon, lon_edges) - 1
    checked = 0
    for (i, j), value in np.ndenumerate(grid):
        here = run["test_error_m"][(r == i) & (c == j)] / 1000.0
        if len(here) >= 5:
            assert value == pytest.approx(np.median(here), rel=1e-5)
            checked += 1
        else:
            assert np.isnan(value)
    assert checked >= 10


def test_runs_over_http_and_on_the_page(conn, db_url, api, tmp_path):
    dataset_id, _ = generate(conn, db_url, "web", 3000, seed=18)
    page = api.page(f"/datasets/{dataset_id}/report")
    assert page.status == 200 and 'id="no-baseline"' in page.raw.decode()
    assert api.get(f"/datasets/{dataset_id}/baselines").json["runs"] == []
    run = run_baseline(db_url, "web", seed=2)
    listed = api.get(f"/datasets/{dataset_id}/baselines").json
    assert listed["count"] == 1 and listed["runs"][0]["id"] == str(run["id"])
    assert listed["runs"][0]["median_error_m"] == pytest.approx(run["median_error_m"])
    for plot in BASELINE_PLOTS:
        reply = api.get(f"/datasets/{dataset_id}/baselines/{run['id']}/{plot}.png")
        assert reply.status == 200 and reply.raw.startswith(PNG)
    text = api.page(f"/datasets/{dataset_id}/report").raw.decode()
    assert 'id="baseline-runs"' in text and f"{run['median_error_m'] / 1000:,.2f}" in text
    for plot in BASELINE_PLOTS:
        assert f"/baselines/{run['id']}/{plot}.png" in text
    missing = api.get(f"/datasets/{dataset_id}/baselines/{uuid.uuid4()}/baseline_errors.png")
    assert missing.status == 404 and missing.json["field"] == "run_id"
    unknown = api.get(f"/datasets/{dataset_id}/baselines/{run['id']}/nope.png")
    assert unknown.status == 404 and unknown.json["field"] == "plot"
    nobody = api.get(f"/datasets/{uuid.uuid4()}/baselines")
    assert nobody.status == 404 and nobody.json["field"] == "dataset_id"
    # the CLI's report writes the newest run's pictures too
    out = tmp_path / "report"
    files = cli_json(db_url, "report", "web", "--out", out)["files"]
    assert [f for f in files if "baseline" in f] == [str(out / f"{p}.png")
                                                     for p in BASELINE_PLOTS]


def test_without_scikit_learn_the_command_names_the_extra(conn, db):
    import os
    import subprocess
    import sys
    generate(conn, db, "noextra", 300, seed=19)
    code = ("import sys; sys.modules['sklearn'] = None; "  # as if the train extra were absent
            "from heimdall_synth.service.cli.main import main; "
            "sys.exit(main(['--json', 'baseline', 'noextra']))")
    res = subprocess.run([sys.executable, "-c", code], env={**os.environ, "DATABASE_URL": db},
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    assert "heimdall-synth[train]" in res.stderr and '"error": "missing_extra"' in res.stdout
    with conn.transaction():
        assert conn.execute("SELECT count(*) FROM heimdall.baseline_runs").fetchone()[0] == 0
