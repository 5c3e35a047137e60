"""Pictures of an iq_raw sample's signal (service/report/signal_plots.py): the numbers they draw
against signals whose spectrum is known (a tone, white noise of a given power), the figures
against those numbers, the PNG route and its errors, the report page's section, and the files
the CLI's report writes."""

from __future__ import annotations

import http.client
import io
import json
import math
import subprocess
import sys
import uuid
from dataclasses import dataclass
from html.parser import HTMLParser

import numpy as np
import pytest

from heimdall_synth.service.engine.request import NotFoundError, NotIQError
from heimdall_synth.service.engine.signals import sample_signal
from heimdall_synth.service.report import plots
from heimdall_synth.service.report.signal_plots import (
    SIGNAL_PLOTS, envelope_dbm, envelope_figure, noise_density_dbm_per_hz, psd_dbm_per_hz,
    render_signal_png, spectrogram_dbm_per_hz, spectrum_figure, write_sample_signal_pngs)
from heimdall_synth.service.storage import jobs
from heimdall_synth.service.storage.database import connect
from heimdall_synth.service.storage.migrations import upgrade
from heimdall_synth.service.engine.loop import run_job
from tests.helpers import ROOT, generate, new_database, submit
from tests.http_client import API, served_client

WIDTH, HEIGHT = (int(v * plots.DPI) for v in plots.FIGSIZE_IN)
FACE = tuple(int(plots.PLOT_FACE[i:i + 2], 16) for i in (1, 3, 5))
#: Small captures keep the tests fast: 20 ms at 25 kHz, 500 IQ samples per receiver.
IQ = {"dataset_type": "iq_raw", "iq_duration_ms": 20, "iq_sample_rate_hz": 25000}


@dataclass
class Datasets:
    url: str
    iq: str        # iq_raw, 3 samples
    plain: str     # feature_based, 3 samples
    empty: str     # iq_raw, its job cancelled before it ran: no samples


@pytest.fixture(scope="module")
def data(pg_server_url):
    """One database for the module, its datasets generated once (the tests only read)."""
    with new_database(pg_server_url, "signal") as url:
        with connect(url) as conn:
            upgrade(conn)
            iq, done = generate(conn, url, "sig", 3, seed=1, **IQ)
            assert done.status == "completed"
            plain, done = generate(conn, url, "plain", 3, seed=2)
            assert done.status == "completed"
            empty = submit(conn, name="sig-empty", num_samples=3, seed=3, **IQ)
            jobs.request_cancel(conn, empty["job_id"])
            assert run_job(url, empty["job_id"]).status == "cancelled"
        yield Datasets(url, str(iq), str(plain), str(empty["dataset_id"]))


@pytest.fixture
def db(data):
    with connect(data.url) as conn:
        yield conn


def decode(png: bytes) -> np.ndarray:
    from PIL import Image
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def check_png(png: bytes, plot: str) -> np.ndarray:
    """The report's size; a spectrum or an envelope has a plot area with lines in it (a
    spectrogram's panels are filled by their colours)."""
    img = decode(png)
    assert img.shape == (HEIGHT, WIDTH, 3), plot
    if plot != "spectrogram":
        face = np.all(img == FACE, axis=2)
        assert face.sum() > 0.1 * img.shape[0] * img.shape[1], plot
        rows, cols = np.flatnonzero(face.any(axis=1)), np.flatnonzero(face.any(axis=0))
        area = img[rows[0] + 1:rows[-1], cols[0] + 1:cols[-1]]
        assert np.mean(np.abs(area - FACE).max(axis=2) > 30) > 0.02, plot
    else:  # colour everywhere in the panels: far from a white page
        assert np.mean(np.abs(img - 255).max(axis=2) > 30) > 0.3
    return img


# ---- the numbers drawn, against signals whose spectrum is known -----------------------------

def complex_noise(rng, n: int, power_mw: float) -> np.ndarray:
    return ((rng.normal(size=n) + 1j * rng.normal(size=n)) * math.sqrt(power_mw / 2.0))


def test_the_psd_of_a_tone_peaks_at_its_offset_and_holds_its_power():
    fs, n = 50_000.0, 10_000
    t = np.arange(n) / fs
    amplitude = 1e-4  # sqrt(mW): -80 dBm
    for offset in (-7_321.0, 0.0, 1_234.5, 3_100.0, 20_000.0):
        tone = (amplitude * np.exp(2j * np.pi * offset * t)).astype(np.complex64)
        freqs, psd = psd_dbm_per_hz(tone, fs)
        df = fs / len(freqs)
        assert np.all(np.diff(freqs) > 0) and freqs[0] == -fs / 2
        assert abs(freqs[np.argmax(psd)] - offset) <= df / 2 + 1e-9, offset
        # its power, summed over the bins (density x bin width), is the tone's: -80 dBm
        total = 10 * np.log10(np.sum(10 ** (psd / 10)) * df)
        assert total == pytest.approx(-80.0, abs=0.01), offset
        # and it stands far above the bins away from it (Hann's sidelobes fall fast)
        far = np.abs(freqs - offset) > 10 * df
        assert psd.max() - np.median(psd[far]) > 60, offset


def test_the_psd_of_white_noise_is_its_power_spread_over_the_sample_rate():
    rng = np.random.default_rng(7)
    fs, n = 25_000.0, 40_000
    for power_dbm in (-120.0, -95.0, -60.0):
        x = complex_noise(rng, n, 10 ** (power_dbm / 10))
        freqs, psd = psd_dbm_per_hz(np.stack([x, 2 * x]), fs)  # 2 x: 6 dB more
        nfft = len(freqs)
        per_bin = psd + 10 * np.log10(fs / nfft)  # dBm in each bin of width fs / nfft
        expected = power_dbm - 10 * np.log10(nfft)
        mean_level = 10 * np.log10(np.mean(10 ** (per_bin[0] / 10)))
        assert mean_level == pytest.approx(expected, abs=0.5), power_dbm
        assert np.mean(per_bin[0]) == pytest.approx(expected, abs=0.5), power_dbm  # flat
        assert np.ptp(per_bin[0]) < 6.0  # averaged: no bin far from the level
        assert np.allclose(psd[1] - psd[0], 20 * np.log10(2))


def test_the_spectrogram_and_the_envelope_follow_a_signal_switched_on_half_way():
    rng = np.random.default_rng(3)
    fs, n = 25_000.0, 20_000
    noise_mw, tone_mw = 1e-12, 1e-8   # -120 and -80 dBm
    x = complex_noise(rng, n, noise_mw)
    t = np.arange(n) / fs
    x[n // 2:] += math.sqrt(tone_mw) * np.exp(2j * np.pi * 2_000.0 * t[n // 2:])
    edges, freqs, grid = spectrogram_dbm_per_hz(x, fs)
    assert grid.shape == (1, len(freqs), len(edges) - 1)
    assert edges[0] == 0 and edges[-1] <= n / fs and np.all(np.diff(edges) > 0)
    at_tone = np.argmin(np.abs(freqs - 2_000.0))
    before, after = edges[1:] < 0.4 * n / fs, edges[:-1] > 0.6 * n / fs
    assert grid[0, at_tone, after].min() - grid[0, at_tone, before].max() > 30
    quiet = 10 * np.log10(np.mean(10 ** (grid[0][:, before] / 10)))  # in mW/Hz, then dB
    assert quiet == pytest.approx(-120 - 10 * np.log10(fs), abs=0.5)
    centres, dbm, block = envelope_dbm(x, fs, max_points=100)
    assert block == 200 and dbm.shape == (1, 100)
    assert np.allclose(centres, (np.arange(100) * 200 + 100) / fs)
    assert np.median(dbm[0, :45]) == pytest.approx(-120, abs=1.0)
    assert np.median(dbm[0, 55:]) == pytest.approx(-80, abs=0.1)


# ---- the figures draw those numbers, for a generated sample ---------------------------------

def test_the_figures_draw_the_samples_numbers(db, data):
    signal = sample_signal(db, data.iq, 0)
    receivers = len(signal.receivers)
    fig = spectrum_figure(signal, "sig")
    ax = fig.axes[0]
    freqs, psd = psd_dbm_per_hz(signal.iq, signal.sample_rate_hz)
    lines = [line for line in ax.lines if len(line.get_xdata()) == len(freqs)]
    assert len(lines) == receivers
    for k, line in enumerate(lines):
        assert np.allclose(line.get_xdata(), freqs / 1e3) and np.allclose(line.get_ydata(), psd[k])
    noise = [line for line in ax.lines if "noise floor" in line.get_label()]
    assert len(noise) == 1 and noise[0].get_ydata()[0] == pytest.approx(
        signal.noise_floor_dbm - 10 * math.log10(signal.bandwidth_hz))
    assert noise_density_dbm_per_hz(signal) == pytest.approx(noise[0].get_ydata()[0])
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert all(any(rx["name"] in text for text in legend) for rx in signal.receivers)
    title = ax.get_title()
    carrier = f"{signal.frequency_hz / 1e6:.4f} MHz"
    assert "sample 0" in title and "dataset sig" in title and carrier in title
    # the noise the synthesizer adds is at that density: the weakest receiver's median bin
    weakest = int(np.argmin([rx["snr_db"] for rx in signal.receivers]))
    assert np.median(psd[weakest]) == pytest.approx(noise[0].get_ydata()[0], abs=3.0)

    fig = envelope_figure(signal, "sig")
    ax = fig.axes[0]
    edges_ms = 1e3 * signal.window_edges / signal.sample_rate_hz
    vertical = sorted(line.get_xdata()[0] for line in ax.lines
                      if line.get_xdata()[0] == line.get_xdata()[1] and len(line.get_xdata()) == 2
                      and line.get_linestyle() == ":")
    assert np.allclose(vertical, edges_ms) and len(vertical) == signal.windows + 1
    labels = [t.get_text() for t in ax.texts]
    assert labels == [f"window {w + 1}" for w in range(signal.windows)]
    _, dbm, _ = envelope_dbm(signal.iq, signal.sample_rate_hz)
    drawn = [line.get_ydata() for line in ax.lines if len(line.get_ydata()) == dbm.shape[1]]
    assert len(drawn) == receivers and all(np.allclose(d, e) for d, e in zip(drawn, dbm))


def test_signal_plots_import_neither_numpy_nor_matplotlib():
    """The app and the OpenAPI document import SIGNAL_PLOTS: that must stay cheap."""
    code = ("import sys; import heimdall_synth.service.report.signal_plots as s; "
            "import heimdall_synth.service.report.views; "
            "assert s.SIGNAL_PLOTS == ('spectrum', 'spectrogram', 'envelope'); "
            "heavy = [m for m in ('numpy', 'matplotlib') if m in sys.modules]; "
            "assert not heavy, heavy")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


# ---- the files the CLI's report writes ------------------------------------------------------

def test_write_sample_signal_pngs_writes_the_three_pictures(db, data, tmp_path):
    out = tmp_path / "nested" / "out"
    paths = write_sample_signal_pngs(db, data.iq, out, sample_index=1)
    assert paths == [out / f"sample-1-{plot}.png" for plot in SIGNAL_PLOTS]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)  # no .partial
    for path, plot in zip(paths, SIGNAL_PLOTS):
        img = check_png(path.read_bytes(), plot)
        # the same pixels as the HTTP route's renderer
        assert np.array_equal(decode(render_signal_png(db, data.iq, 1, plot)), img), plot
    first = write_sample_signal_pngs(db, data.iq, out)  # the default: sample 0, beside it
    assert [p.name for p in first] == [f"sample-0-{plot}.png" for plot in SIGNAL_PLOTS]
    assert len(list(out.iterdir())) == 6

    with pytest.raises(NotIQError) as err:
        write_sample_signal_pngs(db, data.plain, tmp_path / "plain")
    assert err.value.field == "dataset_type"
    for dataset_id, index, field in ((data.iq, 3, "sample_index"),
                                     (data.empty, 0, "sample_index"),
                                     (uuid.uuid4(), 0, "dataset_id")):
        with pytest.raises(NotFoundError) as err:
            write_sample_signal_pngs(db, dataset_id, tmp_path / "missing", sample_index=index)
        assert err.value.field == field
    with pytest.raises(NotFoundError) as err:
        render_signal_png(db, data.iq, 0, "waterfall")
    assert err.value.field == "plot"


# ---- HTTP -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def api(data):
    with served_client(data.url) as client:
        yield client


def signal_url(dataset_id, sample_index, plot) -> str:
    return f"{API}/datasets/{dataset_id}/samples/{sample_index}/signal/{plot}.png"


def test_the_signal_pictures_over_http(api, data):
    for plot in SIGNAL_PLOTS:
        reply = api.get(signal_url(data.iq, 2, plot))
        assert reply.status == 200, reply
        assert reply.headers["Content-Type"] == "image/png"
        check_png(reply.raw, plot)

    unknown = api.get(signal_url(data.iq, 0, "waterfall"))
    assert unknown.status == 404 and unknown.json["field"] == "plot"
    assert all(plot in unknown.json["message"] for plot in SIGNAL_PLOTS)
    for index in (3, 10**12):
        missing = api.get(signal_url(data.iq, index, "spectrum"))
        assert missing.status == 404 and missing.json["field"] == "sample_index", missing
    no_samples = api.get(signal_url(data.empty, 0, "spectrum"))
    assert no_samples.status == 404 and no_samples.json["field"] == "sample_index"
    no_dataset = api.get(signal_url(uuid.uuid4(), 0, "spectrum"))
    assert no_dataset.status == 404 and no_dataset.json["field"] == "dataset_id"
    bad_id = api.get(signal_url("not-a-uuid", 0, "spectrum"))
    assert bad_id.status == 422 and bad_id.json["field"] == "dataset_id"
    query = api.get(signal_url(data.iq, 0, "spectrum") + "?dpi=300")
    assert query.status == 422 and query.json["field"] == "dpi"
    # a feature_based dataset has no IQ: a conflict naming its type, not a missing thing
    plain = api.get(signal_url(data.plain, 0, "spectrum"))
    assert plain.status == 409 and plain.json["field"] == "dataset_type", plain


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])


def get_page(api, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection(api.host, api.port, timeout=60)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def test_the_report_page_of_an_iq_raw_dataset_shows_its_first_samples_signal(api, data):
    status, text = get_page(api, f"/datasets/{data.iq}/report")
    assert status == 200
    page = _Images()
    page.feed(text)
    signals = [signal_url(data.iq, 0, plot) for plot in SIGNAL_PLOTS]
    assert page.images[-3:] == signals and "Signals of sample 0" in text
    for src in signals:  # served
        reply = api.get(src)
        assert reply.status == 200 and reply.headers["Content-Type"] == "image/png"
    # its IQ parameters among the configuration rows
    for key, value in (("iq_sample_rate_hz", "25,000"), ("iq_duration_ms", "20"),
                       ("iq_storage", "regenerate"), ("iq_format", "ci16")):
        assert f'<tr><th><code>{key}</code></th><td class="num">{value}</td></tr>' in text, key

    for dataset_id in (data.plain, data.empty):  # feature_based; iq_raw without samples
        status, text = get_page(api, f"/datasets/{dataset_id}/report")
        assert status == 200
        page = _Images()
        page.feed(text)
        assert page.images and not any("/signal/" in src for src in page.images)
        assert "Signals of sample" not in text
        assert ("<code>iq_format</code>" in text) == (dataset_id == data.empty)
    status, text = get_page(api, f"/datasets/{uuid.uuid4()}/report")
    assert status == 404 and json.loads(text)["field"] == "dataset_id"
