"""The dataset report: the data behind each plot against the stored rows, the PNGs of the CLI
and of HTTP checked for content (size, a plot area that is not blank, marker and bar colours),
the HTML page, and a dataset with no samples."""

from __future__ import annotations

import io
import json
import re
import uuid
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from heimdall_synth.kernel.defaults import DEFAULT_RECEIVERS
from heimdall_synth.kernel.layout import REJECT_REASONS
from heimdall_synth.service.storage import datasets, jobs
from heimdall_synth.service.storage.database import connect
from heimdall_synth.service.engine.loop import run_job
from heimdall_synth.service.storage.migrations import upgrade
from heimdall_synth.service.report import PLOT_NAMES, PLOTS, plots, queries
from heimdall_synth.service.report.render import figures, render_png, write_report
from heimdall_synth.service.engine.request import GenerateRequest, NotFoundError
from tests.helpers import cli, new_database
from tests.http_client import API, Client, served_client

HOSTILE_NAME = 'empty <b>bold</b> & "quoted"'
WIDTH, HEIGHT = (int(v * plots.DPI) for v in plots.FIGSIZE_IN)
FACE = tuple(int(plots.PLOT_FACE[i:i + 2], 16) for i in (1, 3, 5))


@dataclass
class Datasets:
    url: str
    full: str       # 2,500 generated + 1,500 by an expansion: two jobs
    random: str     # random receivers
    rejected: str   # one job whose every attempt was rejected: no samples, 100 attempts
    empty: str      # one job cancelled before it ran: no samples, no attempts (hostile name)


def _submit(conn, **request) -> dict:
    return jobs.create_job(conn, GenerateRequest.from_dict(request))


@pytest.fixture(scope="module")
def data(pg_server_url):
    """One database for the module, its datasets generated once (the tests only read)."""
    with new_database(pg_server_url, "report") as url:
        with connect(url) as conn:
            upgrade(conn)
            made = _submit(conn, name="report-full", num_samples=2500, seed=42)
            assert run_job(url, made["job_id"]).status == "completed"
            more = _submit(conn, expand_dataset_id=made["dataset_id"], num_samples=1500)
            assert run_job(url, more["job_id"]).status == "completed"
            rnd = _submit(conn, name="report-random", num_samples=1500, seed=7,
                          use_random_receivers=True)
            assert run_job(url, rnd["job_id"]).status == "completed"
            rej = _submit(conn, name="report-rejected", num_samples=5, seed=3, min_snr_db=60.0,
                          min_receivers=7)
            assert run_job(url, rej["job_id"]).stopped_reason == "max_attempts"
            empty = _submit(conn, name=HOSTILE_NAME, num_samples=10, seed=1)
            jobs.request_cancel(conn, empty["job_id"])
            assert run_job(url, empty["job_id"]).status == "cancelled"
        yield Datasets(url, made["dataset_id"], rnd["dataset_id"], rej["dataset_id"],
                       empty["dataset_id"])


@pytest.fixture
def db(data):
    with connect(data.url) as conn:
        yield conn


def column(conn, dataset_id, expr) -> np.ndarray:
    """One value per sample, in sample order (float4 read exactly: as float8, not as text)."""
    with conn.transaction():
        rows = conn.execute(f"SELECT ({expr})::float8 FROM heimdall.measurement_features WHERE "
                            "dataset_id = %s ORDER BY sample_index", (dataset_id,)).fetchall()
    return np.array([np.nan if r[0] is None else r[0] for r in rows], dtype=float)


# ---- PNG content ----------------------------------------------------------------------------

def decode(png: bytes) -> np.ndarray:
    from PIL import Image
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def plot_area(img: np.ndarray, least: float = 0.1) -> np.ndarray:
    """The pixels of the plot area: the bounding box of the pixels of its background colour
    (at least ``least`` of the image: the split map covers all but the map's margin)."""
    face = np.all(img == FACE, axis=2)
    assert face.sum() > least * img.shape[0] * img.shape[1], "no plot area found"
    rows, cols = np.flatnonzero(face.any(axis=1)), np.flatnonzero(face.any(axis=0))
    return img[rows[0] + 1:rows[-1], cols[0] + 1:cols[-1]]


def inked(area: np.ndarray) -> float:
    """Share of the plot area's pixels that are not its background."""
    return float(np.mean(np.abs(area - FACE).max(axis=2) > 30))


def colored(area: np.ndarray, rgb: str, tolerance: int = 60) -> int:
    """Pixels near a colour (a marker or bar colour, maybe blended with the background)."""
    target = np.array([int(rgb[i:i + 2], 16) for i in (1, 3, 5)])
    return int(np.sum(np.abs(area - target).max(axis=2) < tolerance))


def bluish(area):
    return int(np.sum((area[..., 2] - area[..., 0] > 50) & (area[..., 2] > 150)))


def reddish(area):
    return int(np.sum((area[..., 0] - area[..., 1] > 80) & (area[..., 0] - area[..., 2] > 80)))


def check_png(png: bytes, plot: str, empty: bool = False) -> np.ndarray:
    """Size and content of one plot; returns the decoded image."""
    img = decode(png)
    assert img.shape == (HEIGHT, WIDTH, 3), plot
    area = plot_area(img, 0.03 if plot == "splits" else 0.1)
    assert area.shape[0] > HEIGHT * 0.4 and area.shape[1] > WIDTH * 0.4, plot
    share = inked(area)
    if plot == "map":  # receivers are drawn from the configuration, even without samples
        assert reddish(area) > 300, plot
        assert (bluish(area) > 1000) != empty, plot
    elif plot == "splits":  # the split of the map is the dataset's, even without samples
        for color in plots.SPLIT_COLORS:
            assert colored(area, color, 40) > 200, (plot, color)
    elif empty:
        assert share < 0.03, (plot, share)  # nothing but the note saying why
    elif plot in ("snr", "gdop", "crb", "detected"):
        assert colored(area, plots.BAR_COLOR, 20) > 0.08 * area.size / 3, plot
    elif plot == "distance_power":
        assert share > 0.08, (plot, share)
    elif plot == "rejections":
        assert colored(area, plots.ACCEPTED_COLOR, 20) > 2000, plot
        assert colored(area, plots.BAR_COLOR, 20) > 500, plot
    return img


# ---- the data behind the plots --------------------------------------------------------------

def test_histograms_of_hand_made_values(conn):
    """Exact bins: the largest value in the last bin, equal values, NULL/inf/NaN/<= 0 left out."""
    dataset_id = uuid.uuid4()
    values = [  # mean_snr_db, gdop, crb_m, num_receivers_detected
        (5.0, 1.0, 10.0, 3), (5.0, 10.0, "Infinity", 3), (5.0, 100.0, "NaN", 4),
        (5.0, 1000.0, 0.0, 7), (5.0, "Infinity", 20.0, 7), (None, 2.0, None, 7)]
    with conn.transaction():
        conn.execute("INSERT INTO heimdall.synthetic_datasets (id, name, seed, config) "
                     "VALUES (%s, 'hand-made', 1, '{}')", (dataset_id,))
        for i, (snr, gdop, crb, det) in enumerate(values):
            conn.execute("INSERT INTO heimdall.measurement_features (recording_session_id, "
                         "dataset_id, sample_index, attempt_index, mean_snr_db, gdop, crb_m, "
                         "num_receivers_detected, split) VALUES (%s, %s, %s, %s, %s, "
                         "%s::float8, %s::float8, %s, 0)", (uuid.uuid4(), dataset_id, i, i, snr,
                                                            gdop, crb, det))
    h = queries.quality_histograms(conn, dataset_id)
    assert {k: (v.total, v.excluded, v.binned) for k, v in h.items()} == {
        "snr": (6, 1, 5), "gdop": (6, 1, 5), "crb": (6, 4, 2), "detected": (6, 0, 6)}
    snr = h["snr"]  # every value the same: one bin of a range widened around it
    assert snr.edges[0] == 4.5 and snr.edges[-1] == 5.5 and snr.counts[20] == 5
    gdop = h["gdop"]  # log bins from 1 to 1000
    assert gdop.log and len(gdop.counts) == 40
    assert gdop.edges[0] == pytest.approx(1.0) and gdop.edges[-1] == pytest.approx(1000.0)
    assert gdop.counts[0] == 1 and gdop.counts[-1] == 1  # 1 first, 1000 (the upper bound) last
    assert gdop.counts[int(np.log10(2.0) / 3 * 40)] == 1 and gdop.counts[13] == 1
    crb = h["crb"]
    assert crb.edges[0] == pytest.approx(10.0) and crb.edges[-1] == pytest.approx(20.0)
    assert (crb.counts[0], crb.counts[-1]) == (1, 1)
    det = h["detected"]
    assert det.edges == (2.5, 3.5, 4.5, 5.5, 6.5, 7.5) and det.counts == (2, 1, 0, 0, 3)


def test_quality_histograms_cover_every_sample(db, data):
    h = queries.quality_histograms(db, data.full)
    for name, expr in (("snr", "mean_snr_db"), ("gdop", "gdop"), ("crb", "crb_m")):
        values = column(db, data.full, expr)
        assert len(values) == 4000
        shown = values[np.isfinite(values) & (values > 0 if h[name].log else True)]
        hist = h[name]
        assert hist.total == 4000 and hist.binned + hist.excluded == 4000
        assert hist.excluded == 4000 - len(shown)
        assert hist.edges[0] == pytest.approx(shown.min()) and \
            hist.edges[-1] == pytest.approx(shown.max())
        x = np.log10(shown) if hist.log else shown  # the log bins are equal in log10
        expected, _ = np.histogram(x, bins=len(hist.counts), range=(x.min(), x.max()))
        assert list(hist.counts) == expected.tolist(), name
    assert h["gdop"].log and h["crb"].log and not h["snr"].log
    detected = column(db, data.full, "num_receivers_detected").astype(int)
    det = h["detected"]
    values = np.arange(det.edges[0] + 0.5, det.edges[-1])
    assert det.counts == tuple(int(np.sum(detected == v)) for v in values)
    assert values[0] == detected.min() >= 3 and values[-1] == detected.max() <= 7


def test_map_data_is_the_stored_transmitters_and_configured_receivers(db, data):
    m = queries.map_data(db, datasets.get_dataset(db, data.full))
    lat, lon = column(db, data.full, "tx_latitude"), column(db, data.full, "tx_longitude")
    assert (m.sample.count, m.sample.stride) == (4000, 1)
    assert np.array_equal(m.tx_lat, lat) and np.array_equal(m.tx_lon, lon)
    assert [r["name"] for r in m.receivers] == [r["name"] for r in DEFAULT_RECEIVERS]
    assert m.inner_box == (44.395, 45.478, 7.238, 9.123)
    assert m.outer_box == pytest.approx((43.895, 45.978, 6.738, 9.623))
    lat0, lat1, lon0, lon1 = m.outer_box
    assert np.all((lat >= lat0) & (lat <= lat1) & (lon >= lon0) & (lon <= lon1))

    sampled = queries.map_data(db, datasets.get_dataset(db, data.full), limit=1000)
    assert (sampled.sample.stride, sampled.sample.size) == (4, 1000)
    assert np.array_equal(sampled.tx_lat, lat[::4]) and np.array_equal(sampled.tx_lon, lon[::4])

    rnd = queries.map_data(db, datasets.get_dataset(db, data.random), receiver_limit=100)
    assert rnd.receivers == () and rnd.inner_box == (44.0, 46.0, 7.0, 10.0)
    stride = -(-1500 // 100)
    counts = column(db, data.random, "cardinality(rx_lat)")[::stride]
    assert len(rnd.random_rx_lat) == counts.sum() and len(rnd.tx_lat) == 1500
    assert rnd.random_rx_lat[0] == column(db, data.random, "rx_lat[1]")[0]  # in sample order


def test_link_power_grid_bins_every_detecting_link(db, data):
    dataset = datasets.get_dataset(db, data.full)
    with db.transaction():
        links = db.execute(
            "SELECT l.d::float8, l.p::float8 FROM heimdall.measurement_features f CROSS JOIN "
            "LATERAL unnest(f.distance_km, f.rssi_dbm, f.signal_present) AS l(d, p, present) WHERE "
            "f.dataset_id = %s AND l.present", (data.full,)).fetchall()
    d, p = np.array(links).T
    grid = queries.link_power_grid(db, dataset)
    assert grid.links == len(links) == int(grid.counts.sum()) and grid.samples_read == 4000
    assert grid.counts.shape == (queries.DISTANCE_BINS, queries.POWER_BINS)
    assert grid.distance_edges_km[0] == pytest.approx(d.min())
    assert grid.distance_edges_km[-1] == pytest.approx(d.max())
    assert grid.power_edges_dbm[0] == pytest.approx(p.min())
    assert grid.power_edges_dbm[-1] == pytest.approx(p.max())
    per_power, _ = np.histogram(p, bins=np.asarray(grid.power_edges_dbm))
    assert grid.counts.sum(axis=0).tolist() == per_power.tolist()
    assert grid.thresholds_dbm == (-117.0,)  # noise floor -120 + min_snr_db 3
    assert (grid.tx_power_dbm, grid.frequency_mhz) == (37.0, 145.0)
    assert p.min() >= -117.0 - 1e-3  # detecting links are above the threshold

    half = queries.link_power_grid(db, dataset, limit=2000)
    present = column(db, data.full, "cardinality(array_positions(signal_present, true))")
    assert half.samples_read == 2000 and half.links == int(present[::2].sum())


def test_outcomes_sum_the_rejections_of_every_job(db, data):
    for dataset_id, n_jobs, samples in ((data.full, 2, 4000), (data.rejected, 1, 0),
                                        (data.empty, 1, 0)):
        job_rows = jobs.list_jobs(db, dataset_id)
        out = queries.outcomes(db, dataset_id)
        assert out.jobs == len(job_rows) == n_jobs
        assert list(out.rejected) == list(REJECT_REASONS)
        for reason in REJECT_REASONS:
            assert out.rejected[reason] == sum(j["rejections"].get(reason, 0) for j in job_rows)
        assert out.accepted == samples == datasets.get_dataset(db, dataset_id)["actual_count"]
        assert out.total == out.attempted == sum(j["attempted"] for j in job_rows)
    full = queries.outcomes(db, data.full)
    assert full.rejected["tx_off"] > 0 and full.total > 4000
    rejected = queries.outcomes(db, data.rejected)
    assert rejected.total == 100 and rejected.rejected["min_receivers"] > 0
    assert queries.outcomes(db, data.empty).total == 0


# ---- the figures ----------------------------------------------------------------------------

def test_figures_have_titles_units_and_named_receivers(db, data):
    figs = figures(db, data.full)
    assert list(figs) == list(PLOT_NAMES)
    for name, fig in figs.items():
        ax = fig.axes[0]
        assert ax.get_title().startswith(PLOTS[name]), name
        assert ax.get_xlabel() and ax.get_ylabel(), name
    labels = {name: (f.axes[0].get_xlabel(), f.axes[0].get_ylabel()) for name, f in figs.items()}
    assert labels["map"] == ("longitude (deg E)", "latitude (deg N)")
    assert "(dB)" in labels["snr"][0] and "(m, log scale)" in labels["crb"][0]
    assert "(km, log scale)" in labels["distance_power"][0]
    assert "(dBm" in labels["distance_power"][1]
    assert figs["gdop"].axes[0].get_xscale() == "log"
    assert "all 4,000 samples" in figs["snr"].axes[0].get_title()
    names = {t.get_text() for t in figs["map"].axes[0].texts}
    assert names == {r["name"] for r in DEFAULT_RECEIVERS}
    legend = [t.get_text() for t in figs["map"].legends[0].get_texts()]
    assert any("limit of transmitter positions" in t for t in legend)
    bars = {t.get_text() for t in figs["rejections"].axes[0].get_yticklabels()}
    assert bars == {"accepted", *(f"rejected: {r}" for r in REJECT_REASONS)}


def test_empty_dataset_gives_a_clear_report(db, data, tmp_path):
    figs = figures(db, data.empty)
    for name, fig in figs.items():
        notes = " ".join(t.get_text() for t in fig.axes[0].texts)
        assert "No samples" in notes or "No attempts" in notes, name
    paths = write_report(db, data.empty, tmp_path / "empty")
    assert [p.name for p in paths] == [f"{n}.png" for n in PLOT_NAMES]
    for path in paths:
        check_png(path.read_bytes(), path.stem, empty=True)
    # every attempt rejected: no samples, but the outcome chart has its bars
    rejected = write_report(db, data.rejected, tmp_path / "rejected")
    for path in rejected:
        if path.stem == "rejections":
            area = plot_area(decode(path.read_bytes()))
            assert colored(area, plots.BAR_COLOR, 20) > 2000
        else:
            check_png(path.read_bytes(), path.stem, empty=True)
    with pytest.raises(NotFoundError) as err:
        render_png(db, uuid.uuid4(), "map")
    assert err.value.field == "dataset_id"


def test_png_cache_until_the_data_changes(conn, db_url, monkeypatch):
    from heimdall_synth.service.report import render
    made = _submit(conn, name="cached", num_samples=300, seed=5)
    run_job(db_url, made["job_id"])
    drawn, real = [], render.figures
    monkeypatch.setattr(render, "figures", lambda *a: drawn.append(a[2]) or real(*a))
    first = render_png(conn, made["dataset_id"], "rejections")
    assert render_png(conn, made["dataset_id"], "rejections") == first and len(drawn) == 1
    assert render_png(conn, made["dataset_id"], "snr") and len(drawn) == 2  # per plot
    more = _submit(conn, expand_dataset_id=made["dataset_id"], num_samples=50)
    run_job(db_url, more["job_id"])
    second = render_png(conn, made["dataset_id"], "rejections")
    assert len(drawn) == 3 and second != first  # 350 samples now
    _submit(conn, expand_dataset_id=made["dataset_id"], num_samples=5)  # a job not yet run
    third = render_png(conn, made["dataset_id"], "rejections")
    assert len(drawn) == 4 and third != second  # "in 3 jobs"
    assert render_png(conn, made["dataset_id"], "rejections") == third and len(drawn) == 4


def test_random_receivers_map(db, data):
    img = check_png(render_png(db, data.random, "map"), "map")
    assert reddish(plot_area(img)) > 1000  # a cloud of receiver positions


# ---- the CLI --------------------------------------------------------------------------------

def test_cli_report_writes_pngs_with_content(data, tmp_path, monkeypatch):
    monkeypatch.setenv("HEIMDALL_SYNTH_DATA_DIR", str(tmp_path / "never-used"))
    out = tmp_path / "out" / "nested"
    res = cli(data.url, "report", "report-full", "--out", out)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [str(out / f"{n}.png") for n in PLOT_NAMES]
    images = {}
    for name in PLOT_NAMES:
        images[name] = check_png((out / f"{name}.png").read_bytes(), name)
    with connect(data.url) as conn:  # the same pixels as the HTTP route's renderer
        png = render_png(conn, data.full, "gdop")
    assert np.array_equal(decode(png), images["gdop"])
    # by id, --json, a dataset without samples
    res = cli(data.url, "--json", "report", data.empty, "--out", tmp_path / "empty")
    assert res.returncode == 0, res.stderr
    listed = json.loads(res.stdout)
    assert listed["dataset_id"] == data.empty and listed["name"] == HOSTILE_NAME
    assert listed["files"] == [str(tmp_path / "empty" / f"{n}.png") for n in PLOT_NAMES]
    for name in PLOT_NAMES:
        check_png((tmp_path / "empty" / f"{name}.png").read_bytes(), name, empty=True)

    missing = cli(data.url, "report", "no-such-dataset", "--out", tmp_path / "x")
    assert missing.returncode == 3 and "no-such-dataset" in missing.stderr
    a_file = tmp_path / "file.png"
    a_file.write_bytes(b"")
    refused = cli(data.url, "report", "report-full", "--out", a_file)
    assert refused.returncode == 2 and "out:" in refused.stderr
    assert not (tmp_path / "x").exists()


# ---- HTTP -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def api(data):
    with served_client(data.url) as client:
        yield client


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "a":
            self.links.append(attrs["href"])


def get_page(api: Client, path: str):
    reply = api.page(path)
    return reply.status, reply.headers, reply.raw


def test_http_plots(api, data):
    for name in PLOT_NAMES:
        reply = api.get(f"/datasets/{data.full}/report/{name}.png")
        assert reply.status == 200, reply
        assert reply.headers["Content-Type"] == "image/png"
        check_png(reply.raw, name)
        reply = api.get(f"/datasets/{data.empty}/report/{name}.png")
        assert reply.status == 200, reply
        check_png(reply.raw, name, empty=True)

    unknown = api.get(f"/datasets/{data.full}/report/pie.png")
    assert unknown.status == 404 and unknown.json["field"] == "plot"
    assert "map" in unknown.json["message"]
    no_dataset = api.get(f"/datasets/{uuid.uuid4()}/report/map.png")
    assert no_dataset.status == 404 and no_dataset.json["field"] == "dataset_id"
    bad_id = api.get("/datasets/not-a-uuid/report/map.png")
    assert bad_id.status == 422 and bad_id.json["field"] == "dataset_id"
    query = api.get(f"/datasets/{data.full}/report/map.png?dpi=300")
    assert query.status == 422 and query.json["field"] == "dpi"

    doc = api.get("/api/openapi.json").json
    op = doc["paths"][f"{API}/datasets/{{dataset_id}}/report/{{plot}}.png"]["get"]
    plot_param = next(p for p in op["parameters"] if p["name"] == "plot")
    assert plot_param["schema"]["enum"] == list(PLOT_NAMES)
    assert list(op["responses"]["200"]["content"]) == ["image/png"]
    assert {"404", "422"} <= set(op["responses"])


def test_http_report_page(api, data):
    status, headers, body = get_page(api, f"/datasets/{data.full}/report")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    text = body.decode()
    assert "<h1>report-full</h1>" in text and data.full in text
    assert 'id="num-samples">4,000<' in text and 'id="actual-count">4,000<' in text
    assert "mean GDOP" in text and "rejected: tx_off" in text and 'id="no-samples"' not in text
    quality = text[text.index('<table id="quality">'):]
    cells = re.findall(r'<td class="num">([^<]*)</td>', quality[:quality.index("</table>")])
    with connect(data.url) as conn:
        metrics = datasets.get_dataset(conn, data.full)["quality_metrics"]
    assert len(cells) == 8 and "-" not in cells  # every aggregate is shown
    assert cells[0] == f"{metrics['mean_mean_snr_db']:.4g}"
    assert cells[2] == f"{metrics['mean_gdop']:.4g}"
    page = _Page()
    page.feed(text)
    with connect(data.url) as conn:
        job_ids = {str(j["id"]) for j in jobs.list_jobs(conn, data.full)}
    assert len(job_ids) == 2  # both jobs listed, each linking to its record
    assert {link for link in page.links if link.startswith(f"{API}/jobs/")} == {
        f"{API}/jobs/{j}" for j in job_ids}
    assert page.images == [f"{API}/datasets/{data.full}/report/{n}.png" for n in PLOT_NAMES]
    for src in page.images:  # the page's images are served
        reply = api.get(src)
        assert reply.status == 200 and reply.headers["Content-Type"] == "image/png"
    assert f"{API}/datasets/{data.full}" in page.links
    assert not any(link.startswith("http") for link in page.links)  # no external assets
    assert "<script" not in text and "<link" not in text

    status, _, body = get_page(api, f"/datasets/{data.empty}/report")
    text = body.decode()
    assert status == 200 and 'id="num-samples">0<' in text and 'id="no-samples"' in text
    assert "empty &lt;b&gt;bold&lt;/b&gt; &amp; &#34;quoted&#34;" in text
    assert "<b>bold</b>" not in text

    status, headers, body = get_page(api, f"/datasets/{uuid.uuid4()}/report")
    assert status == 404 and json.loads(body)["field"] == "dataset_id"


# ---- packaging ------------------------------------------------------------------------------

def test_every_package_and_the_templates_ship():
    from setuptools.config.setupcfg import read_configuration
    root = Path(__file__).resolve().parent.parent
    options = read_configuration(root / "setup.cfg")["options"]
    packages = set(options["packages"])
    on_disk = {".".join(("heimdall_synth", *p.parent.relative_to(root).parts))
               for top in ("kernel", "service") for p in (root / top).rglob("__init__.py")}
    assert on_disk <= packages, sorted(on_disk - packages)
    assert "matplotlib>=3.8" in options["install_requires"]
    patterns = options["package_data"]["heimdall_synth.service.report"]
    templates = [p.relative_to(root / "service" / "report")
                 for p in (root / "service" / "report" / "templates").rglob("*") if p.is_file()]
    assert templates and all(any(t.match(pat) for pat in patterns) for t in templates)


def test_receiver_names_are_drawn_as_typed_never_as_mathtext(conn, db_url):
    """Found in review: matplotlib reads '$...$' as a formula, so a receiver named '$\\frac{$'
    made the map fail (a 500 over HTTP) and 'Site $5 to $10' was drawn as maths."""
    receivers = [dict(r) for r in DEFAULT_RECEIVERS]
    receivers[0]["name"], receivers[1]["name"] = "$\\frac{$", "Site $5 to $10"
    made = _submit(conn, name="dollars", num_samples=50, seed=5, receivers=receivers)
    assert run_job(db_url, made["job_id"]).status == "completed"
    fig = figures(conn, made["dataset_id"], names=("map",))["map"]
    assert {t.get_text() for t in fig.axes[0].texts} == {r["name"] for r in receivers}
    png = render_png(conn, made["dataset_id"], "map")
    assert png.startswith(b"\x89PNG")
