"""The dashboard (issue 6) driven in headless Chromium against the real server and database.

Debian's chromium runs under Playwright (executable_path: Playwright never downloads a browser)
with a fresh profile, against a waitress server of this process
(tests/http_client.start_server) on the embedded PostgreSQL. The session fixture ``chromium``
(tests/conftest.py, tests/browser_setup.py) finds it, or installs it when it is missing and the
tests run as root on Debian or Ubuntu. The scenarios: a dataset created through the form (a bad
value answered next to its field and creating nothing), expanded through the expand form while
the page follows the job's event stream to the new total without a reload, equal to the
database's COUNT(*); a big job cancelled from the page with its stop reason in words, then
resumed; the API token; a metadata count that disagrees with COUNT(*) flagged; a dataset's map
with its terrain's relief under the points. The tests save screenshots (dashboard.png,
running-job.png, map-relief.png) on every run, in tests/screenshots/ or where
HEIMDALL_SYNTH_SCREENSHOTS says (docs/img for the README's). Chromium is never skipped: when it
is missing and cannot be installed from here, the tests fail giving the command that installs
it.
"""

from __future__ import annotations

import configparser
import fnmatch
import os
import re
import urllib.error
import urllib.request
import uuid
from decimal import Decimal

import psycopg
import pytest
from playwright.sync_api import expect, sync_playwright

from heimdall_synth.service.http.dashboard import CONTENT_SECURITY_POLICY
from tests.helpers import ROOT, db_state, url_counts
from tests.http_client import API, Client, start_server

# These flags matter on an offline machine: no sandbox (containers, root), no GPU, no QUIC, no
# background traffic to Google's services that would stall waiting for the network.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Every run saves its screenshots in tests/screenshots/ (ignored by git); the README's copies in
# docs/img/ are refreshed on purpose: HEIMDALL_SYNTH_SCREENSHOTS=docs/img .venv/bin/pytest ...
IMAGES = ROOT / os.environ.get("HEIMDALL_SYNTH_SCREENSHOTS", "tests/screenshots")
DASHBOARD = ROOT / "service" / "http" / "dashboard"
WAIT_MS = 30_000
TOKEN = "dashboard-test-token"


# ---------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def browser(chromium, tmp_path_factory):
    """One headless Chromium (a fresh user-data-dir) for the module; each test opens its page."""
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=chromium,
            headless=True, args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000})
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def dash_server(db_url):
    srv = start_server(db_url, KERNEL_THREADS=1)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def token_server(db_url):
    srv = start_server(db_url, KERNEL_THREADS=1, API_TOKEN=TOKEN)
    try:
        yield srv
    finally:
        srv.stop()


class Dashboard:
    """A page on the dashboard, with the requests it made and the errors it threw."""

    def __init__(self, browser, base: str):
        self.page = browser.new_page()
        self.base = base
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.goto(base + "/")
        expect(self.page.locator("body")).to_have_attribute("data-ready", "true", timeout=WAIT_MS)
        # A reload or a navigation would lose this: its survival proves the page never reloaded.
        self.marker = uuid.uuid4().hex
        self.page.evaluate("marker => { window.__dashboardMarker = marker; }", self.marker)

    def assert_not_reloaded(self) -> None:
        assert self.page.evaluate("() => window.__dashboardMarker") == self.marker
        assert self.page.evaluate(
            "() => performance.getEntriesByType('navigation').length") == 1

    def row(self, name: str):
        return self.page.locator("#datasets tbody tr", has=self.page.locator(
            ".dataset-name", has_text=re.compile(f"^{re.escape(name)}$")))

    def card(self, job_id: str):
        return self.page.locator(f"article.job[data-job-id='{job_id}']")

    def field(self, form: str, name: str):
        return self.page.locator(f"#{form}-form [data-field='{name}']")

    def submit(self, form: str) -> None:
        self.page.locator(f"#{form}-form button[type=submit]").click()

    def accepted_job_id(self, form: str) -> str:
        message = self.page.locator(f"#{form}-form .form-message.ok")
        expect(message).to_contain_text("Accepted", timeout=WAIT_MS)
        return re.search(r"job ([0-9a-f-]{36})", message.inner_text()).group(1)

    def close(self) -> None:
        self.page.close()
        assert not self.errors, f"the page threw: {self.errors}"


@pytest.fixture
def dash(browser, dash_server):
    page = Dashboard(browser, dash_server.url)
    yield page
    page.close()


def grouped(n: int) -> str:
    return f"{n:,}"


def job_row(db_url, job_id) -> dict:
    with psycopg.connect(db_url, autocommit=True) as conn:
        cur = conn.execute("SELECT status, stopped_reason, generated, dataset_id FROM "
                           "heimdall.generation_jobs WHERE id = %s", (job_id,))
        return dict(zip([c.name for c in cur.description], cur.fetchone()))


def shown_count(locator) -> int:
    return int(locator.inner_text().split()[0].replace(",", ""))


# ---------------------------------------------------------------------------------- scenarios

def test_create_and_expand_through_the_forms_counts_follow_the_events(dash, db_url):
    page = dash.page
    expect(page.locator("#datasets-empty")).to_be_visible()

    # A bad value: the server's 422 is shown next to num_samples, and nothing is created.
    before = db_state(db_url)
    page.fill("#create-name", "dash-base")
    page.fill("#create-num_samples", "0")
    dash.submit("create")
    error = dash.field("create", "num_samples").locator(".field-error")
    expect(error).to_contain_text("num_samples: 0 is out of range", timeout=WAIT_MS)
    expect(page.locator("#create-num_samples")).to_have_attribute("aria-invalid", "true")
    assert page.locator("#create-form .field.has-error").count() == 1
    assert db_state(db_url) == before and before[0] == (0, 0, 0)

    # Fixed: the dataset is created (tx_power_dbm differs from the default, so it is sent) ...
    page.fill("#create-num_samples", "5")
    page.fill("#create-tx_power_dbm", "5")
    dash.submit("create")
    expect(error).to_be_empty()
    create_job = dash.accepted_job_id("create")
    row = dash.row("dash-base")
    expect(row.locator("td[data-col=actual]")).to_have_text("5", timeout=WAIT_MS)
    expect(row.locator("td[data-col=metadata]")).to_have_text("5")
    expect(dash.card(create_job).locator(".stop-headline")).to_have_text(
        "Completed: target reached", timeout=WAIT_MS)
    dataset_id = row.get_attribute("data-dataset-id")
    assert url_counts(db_url, dataset_id) == (5, 5)
    links = row.locator(".links a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert links == [f"/datasets/{dataset_id}/report",
                     f"{API}/datasets/{dataset_id}/export?format=parquet",
                     f"{API}/datasets/{dataset_id}/export?format=npz",
                     f"{API}/datasets/{dataset_id}"]

    # The expand form reads the data-defining fields from the dataset and locks them.
    row.locator("button", has_text="Expand").click()
    expect(page.locator("#expand-expand_dataset_id")).to_have_value(dataset_id)
    expect(page.locator("#expand-tx_power_dbm")).to_have_value("5")
    expect(page.locator("#expand-tx_power_dbm")).to_be_disabled()
    expect(page.locator("#expand-min_snr_db")).to_be_enabled()   # a filter may differ

    page.fill("#expand-num_samples", "1000")
    dash.submit("expand")
    expand_job = dash.accepted_job_id("expand")
    card = dash.card(expand_job)
    expect(card.locator(".progress-text")).to_have_text(
        "1,005 / 1,005 (continued from 5)", timeout=WAIT_MS)
    expect(card.locator(".stop-headline")).to_have_text("Completed: target reached")
    expect(row.locator("td[data-col=actual]")).to_have_text("1,005", timeout=WAIT_MS)
    expect(row.locator("td[data-col=metadata]")).to_have_text("1,005")
    dash.assert_not_reloaded()
    # the page followed the job's event stream, and shows what the database holds
    assert f"{dash.base}{API}/jobs/{expand_job}/events" in dash.requests
    assert url_counts(db_url, dataset_id) == (1005, 1005)
    assert job_row(db_url, expand_job)["status"] == "completed"
    expect(row.locator(".mismatch-flag")).to_be_hidden()
    expect(page.locator("#service-status")).to_have_text("service 0.1.0 · database ok")
    page.evaluate("() => window.scrollTo(0, 0)")
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / "dashboard.png"))

    # The same name again is a 409 shown next to name, creating nothing.
    before = db_state(db_url)
    dash.submit("create")
    expect(dash.field("create", "name").locator(".field-error")).to_contain_text(
        "a dataset named 'dash-base' exists", timeout=WAIT_MS)
    assert db_state(db_url) == before
    dash.assert_not_reloaded()


def test_a_big_job_is_followed_live_cancelled_and_resumed(dash, db_url):
    page = dash.page
    page.fill("#create-name", "dash-big")
    page.fill("#create-num_samples", "50000000")
    dash.submit("create")
    job_id = dash.accepted_job_id("create")
    card = dash.card(job_id)
    row = dash.row("dash-big")
    expect(card).to_have_attribute("data-status", "running", timeout=WAIT_MS)

    # While the job runs, the datasets table's counts move (no reload) and agree with each other.
    metadata = row.locator("td[data-col=metadata]")
    expect(metadata).to_be_visible(timeout=WAIT_MS)
    expect(metadata).not_to_have_text(re.compile(r"^(—|0)$"), timeout=WAIT_MS)
    first = shown_count(metadata)
    expect(metadata).not_to_have_text(grouped(first), timeout=WAIT_MS)
    assert job_row(db_url, job_id)["status"] == "running"
    assert shown_count(metadata) > first > 0
    expect(card.locator("[data-stat=rate]")).to_have_text(re.compile(r"^[\d,]+ samples/s$"))
    expect(card.locator("[data-stat=eta]")).not_to_have_text("—")
    expect(card.locator(".rejections tr[data-reason=tx_off]")).to_be_visible()
    assert re.fullmatch(r"[\d,]+ / 50,000,000", card.locator(".progress-text").inner_text())
    page.evaluate("() => window.scrollTo(0, 0)")
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / "running-job.png"))

    # Cancel: the card says why it stopped, in words, and the table shows the committed rows.
    card.locator("button.cancel").click()
    expect(card).to_have_attribute("data-status", "cancelled", timeout=WAIT_MS)
    expect(card.locator(".stop-headline")).to_have_text("Cancelled by request")
    expect(card.locator(".stop-message")).to_contain_text("the job was cancelled")
    expect(card.locator("button.cancel")).to_be_hidden()
    stopped = job_row(db_url, job_id)
    assert (stopped["status"], stopped["stopped_reason"]) == ("cancelled", "cancelled")
    dataset_id = str(stopped["dataset_id"])
    at_cancel = url_counts(db_url, dataset_id)
    assert at_cancel[0] == at_cancel[1] == stopped["generated"] > 0
    expect(row.locator("td[data-col=actual]")).to_have_text(grouped(at_cancel[1]), timeout=WAIT_MS)
    expect(metadata).to_have_text(grouped(at_cancel[0]))

    # Resume: the same card runs again, past the cancelled count; cancel it again to end.
    card.locator("button.resume").click()
    expect(card).to_have_attribute("data-status", "running", timeout=WAIT_MS)
    expect(card.locator(".stop")).to_be_hidden()
    expect(card.locator("button.resume")).to_be_hidden()
    expect(metadata).not_to_have_text(grouped(at_cancel[0]), timeout=WAIT_MS)
    assert shown_count(metadata) > at_cancel[0]
    card.locator("button.cancel").click()
    expect(card).to_have_attribute("data-status", "cancelled", timeout=WAIT_MS)
    expect(card.locator(".stop-headline")).to_have_text("Cancelled by request")
    final = url_counts(db_url, dataset_id)
    assert final[0] == final[1] > at_cancel[1]
    expect(row.locator("td[data-col=actual]")).to_have_text(grouped(final[1]), timeout=WAIT_MS)
    expect(metadata).to_have_text(grouped(final[0]))
    expect(card.locator("[data-stat=committed]")).to_have_text(grouped(final[0]))
    dash.assert_not_reloaded()


def test_with_an_api_token_the_page_asks_for_it_and_says_when_it_is_missing_or_wrong(
        browser, token_server, db_url):
    dash = Dashboard(browser, token_server.url)
    page = dash.page
    try:
        expect(page.locator("#api-token")).to_be_visible()
        page.fill("#create-name", "dash-token")
        page.fill("#create-num_samples", "5")
        before = db_state(db_url)

        dash.submit("create")
        expect(page.locator("#banner")).to_contain_text("401 unauthorized", timeout=WAIT_MS)
        expect(page.locator("#api-token-error")).to_contain_text("401 unauthorized")
        assert db_state(db_url) == before

        page.fill("#api-token", "not-the-token")
        page.locator("#token-form button[type=submit]").click()
        expect(page.locator("#banner")).to_be_hidden()
        dash.submit("create")
        expect(page.locator("#banner")).to_contain_text("403 forbidden", timeout=WAIT_MS)
        assert db_state(db_url) == before

        page.fill("#api-token", TOKEN)
        page.locator("#token-form button[type=submit]").click()
        assert page.evaluate("() => Object.values(sessionStorage)") == [TOKEN]
        dash.submit("create")
        job_id = dash.accepted_job_id("create")
        expect(dash.card(job_id).locator(".stop-headline")).to_have_text(
            "Completed: target reached", timeout=WAIT_MS)
        expect(dash.row("dash-token").locator("td[data-col=actual]")).to_have_text("5")
        expect(page.locator("#banner")).to_be_hidden()
        dash.assert_not_reloaded()
    finally:
        dash.close()


def test_a_metadata_count_that_disagrees_with_count_star_is_flagged(dash_server, browser, db_url):
    """The old system's confusion (the page said 5, the database held 1005): when the dataset
    row's num_samples and COUNT(*) of its rows differ, the page says so on the row and on top."""
    api = Client(dash_server.url)
    created = api.generate(name="dash-honest", num_samples=5, seed=3)
    api.wait(created["job_id"])
    with psycopg.connect(db_url, autocommit=True) as conn:  # the old bug, made by hand
        conn.execute("UPDATE heimdall.synthetic_datasets SET num_samples = 1005 WHERE id = %s",
                     (created["dataset_id"],))
    dash = Dashboard(browser, dash_server.url)
    try:
        row = dash.row("dash-honest")
        expect(row).to_have_class(re.compile(r"\bmismatch\b"))
        expect(row.locator("td[data-col=metadata]")).to_have_text("1,005")
        expect(row.locator("td[data-col=actual] .actual-count")).to_have_text("5")
        expect(row.locator(".mismatch-flag")).to_contain_text("the dataset row says 1,005")
        expect(dash.page.locator("#datasets-mismatch")).to_contain_text("dash-honest")
    finally:
        dash.close()


def test_the_map_draws_the_terrain_relief_under_its_points(dash_server, browser, db_url):
    """A dataset whose configuration names a registered terrain: its map (the row's Map button)
    lays the relief PNG, loaded, in the very frame of its points, asked for over the report
    map's extent; a dataset without a terrain has no relief."""
    import numpy as np
    from heimdall_synth.kernel.terrain import ElevationGrid
    from heimdall_synth.service.report.queries import map_boxes
    from heimdall_synth.service.report.relief import map_extent
    from heimdall_synth.service.storage.terrains import add_terrain

    api = Client(dash_server.url)
    made = {name: api.generate(name=name, num_samples=20, seed=seed)
            for name, seed in (("dash-ridge", 1), ("dash-flat", 2))}
    for job in made.values():
        api.wait(job["job_id"])
    ridge_id = made["dash-ridge"]["dataset_id"]
    lats = 46.5 - np.arange(301) * 0.01  # an east-west ridge along 45 N
    heights = np.repeat((2000.0 * np.exp(-((lats - 45.0) / 0.3) ** 2))[:, None], 451, axis=1)
    with psycopg.connect(db_url, autocommit=True) as conn:
        add_terrain(conn, "ridge", ElevationGrid.from_array(heights, 46.5, 6.0, 0.01, 0.01))
        conn.execute("UPDATE heimdall.synthetic_datasets SET config = config || "
                     "'{\"terrain\": \"ridge\"}' WHERE id = %s", (ridge_id,))
    config = api.get(f"/datasets/{ridge_id}").json["config"]
    dash = Dashboard(browser, dash_server.url)
    try:
        page = dash.page
        dash.row("dash-ridge").locator("button.map-button").click()
        relief = page.locator("#map-relief")
        expect(relief).to_be_visible()
        page.wait_for_function("() => { const i = document.querySelector('#map-relief'); "
                               "return i.complete && i.naturalWidth > 0; }", timeout=WAIT_MS)
        extent = [float(v) for v in page.locator("#map-frame").get_attribute(
            "data-extent").split(",")]
        assert tuple(extent) == map_extent(map_boxes(config)[2])
        src = relief.get_attribute("src")
        assert src.startswith(f"{API}/datasets/{ridge_id}/relief.png?")
        asked = dict(part.split("=") for part in src.split("?")[1].split("&"))
        assert [float(asked[k]) for k in ("west", "east", "south", "north")] == extent
        assert relief.bounding_box() == page.locator("#map-svg").bounding_box()
        expect(page.locator("#map-svg .map-tx circle")).to_have_count(20, timeout=WAIT_MS)
        expect(page.locator("#map-svg .map-rx path")).to_have_count(len(config["receivers"]))
        expect(page.locator("#map-note")).to_contain_text("relief: terrain ridge")
        IMAGES.mkdir(parents=True, exist_ok=True)
        page.locator("#map-section").screenshot(path=str(IMAGES / "map-relief.png"))

        dash.row("dash-flat").locator("button.map-button").click()
        expect(page.locator("#map-name")).to_have_text("dash-flat")
        expect(relief).to_be_hidden()
        expect(page.locator("#map-note")).to_contain_text("no terrain")
    finally:
        dash.close()


def test_the_forms_are_generated_from_the_openapi_schema(dash):
    """Every GenerateRequest field has its control, with the schema's range, default, choices
    and description; rare fields sit in the collapsed advanced section."""
    schema = Client(dash.base).get("/api/openapi.json").json["components"]["schemas"][
        "GenerateRequest"]
    shown = dash.page.evaluate("""() => [...document.querySelectorAll('#create-form .field')]
        .map(f => {
          const input = f.querySelector('input, select, textarea');
          return {name: f.dataset.field, scope: f.dataset.scope, tag: input.tagName,
                  type: input.type, value: input.type === 'checkbox' ? input.checked : input.value,
                  min: input.getAttribute('min'), max: input.getAttribute('max'),
                  options: [...f.querySelectorAll('option')].map(o => o.value),
                  help: f.querySelector('.help').textContent,
                  advanced: !!f.closest('details.advanced')};
        })""")
    by_name = {f["name"]: f for f in shown}
    expected = [n for n in schema["properties"] if n not in (
        "expand_dataset_id", "allow_parameter_override")]
    assert sorted(by_name) == sorted(expected)
    for name in expected:
        prop, control = schema["properties"][name], by_name[name]
        assert control["scope"] == prop["x-scope"], name
        assert prop["description"].split(" [")[0] in control["help"], name
        kind = prop["type"][0] if isinstance(prop["type"], list) else prop["type"]
        if "enum" in prop:
            assert control["options"] == [c if c is not None else "" for c in prop["enum"]], name
            assert control["value"] == prop["default"], name
        elif kind in ("integer", "number"):
            assert control["type"] == "number", name
            low = prop.get("minimum", prop.get("exclusiveMinimum"))
            assert Decimal(control["min"]) == Decimal(str(low)), name
            assert Decimal(control["max"]) == Decimal(str(prop["maximum"])), name
            default = prop.get("default")
            if default is None:
                assert control["value"] == "", name
            else:
                assert Decimal(control["value"]) == Decimal(str(default)), name
        elif kind == "boolean" and "null" not in prop["type"]:
            assert control["value"] == prop["default"], name
    assert not by_name["num_samples"]["advanced"] and not by_name["name"]["advanced"]
    assert by_name["receivers"]["advanced"] and by_name["batch_size"]["advanced"]
    assert dash.page.locator("#create-form details.advanced").get_attribute("open") is None


IQ_FIELDS = ("iq_sample_rate_hz", "iq_duration_ms", "iq_storage", "iq_format")


def test_the_iq_fields_are_shown_and_sent_only_for_an_iq_raw_dataset(dash_server, browser):
    """The server refuses the IQ capture's fields for a feature_based dataset: the create form
    shows them, and sends them, only while iq_raw is chosen; the expand form shows them only
    for an iq_raw dataset, with its stored values."""
    api = Client(dash_server.url)
    plain = api.generate(name="dash-plain", num_samples=3, seed=1)
    api.wait(plain["job_id"])
    dash = Dashboard(browser, dash_server.url)
    try:
        page = dash.page
        preview = page.locator("#create-form .preview-body")
        iq_fields = [dash.field("create", name) for name in IQ_FIELDS]
        expect(page.locator("#create-dataset_type")).to_have_value("feature_based")
        for field in iq_fields:
            expect(field).to_be_hidden()
        page.select_option("#create-dataset_type", "iq_raw")
        for field in iq_fields:
            expect(field).to_be_visible()
        expect(page.locator("#create-iq_storage")).to_have_value("regenerate")
        page.fill("#create-name", "dash-iq")
        page.fill("#create-num_samples", "3")
        page.fill("#create-iq_duration_ms", "20")
        page.fill("#create-iq_sample_rate_hz", "25000")
        page.select_option("#create-iq_format", "cf32")
        expect(preview).to_contain_text('"iq_duration_ms": 20')

        # feature_based again: hidden, and left out of the request whatever they hold
        page.select_option("#create-dataset_type", "feature_based")
        for field in iq_fields:
            expect(field).to_be_hidden()
        expect(preview).not_to_contain_text("iq_")
        expect(preview).not_to_contain_text("dataset_type")
        page.select_option("#create-dataset_type", "iq_raw")
        for text in ('"dataset_type": "iq_raw"', '"iq_duration_ms": 20',
                     '"iq_sample_rate_hz": 25000', '"iq_format": "cf32"'):
            expect(preview).to_contain_text(text)
        expect(preview).not_to_contain_text("iq_storage")  # its default: not sent
        dash.submit("create")
        job_id = dash.accepted_job_id("create")
        expect(dash.card(job_id).locator(".stop-headline")).to_have_text(
            "Completed: target reached", timeout=WAIT_MS)
        row = dash.row("dash-iq")
        expect(row.locator("td[data-col=actual]")).to_have_text("3", timeout=WAIT_MS)
        dataset_id = row.get_attribute("data-dataset-id")
        config = api.get(f"/datasets/{dataset_id}").json["config"]
        assert (config["dataset_type"], config["iq_duration_ms"], config["iq_sample_rate_hz"],
                config["iq_format"], config["iq_storage"]) == ("iq_raw", 20, 25000, "cf32",
                                                               "regenerate")

        # the expand form: the iq_raw dataset's stored IQ fields, locked like the other
        # data-defining fields; none for a feature_based dataset
        row.locator("button", has_text="Expand").click()
        expect(page.locator("#expand-expand_dataset_id")).to_have_value(dataset_id)
        expect(page.locator("#expand-iq_duration_ms")).to_have_value("20")
        expect(page.locator("#expand-iq_format")).to_have_value("cf32")
        expect(page.locator("#expand-iq_duration_ms")).to_be_disabled()
        page.locator("#expand-form details.defining > summary").click()
        for name in IQ_FIELDS:
            expect(dash.field("expand", name)).to_be_visible()
        page.select_option("#expand-expand_dataset_id", plain["dataset_id"])
        for name in IQ_FIELDS:
            expect(dash.field("expand", name)).to_be_hidden()
        expect(dash.field("expand", "dataset_type")).to_be_visible()
        page.check("#expand-allow_parameter_override")   # unlocked: still not for this type
        expect(page.locator("#expand-frequency_mhz")).to_be_enabled()
        for name in IQ_FIELDS:
            expect(dash.field("expand", name)).to_be_hidden()
            expect(page.locator(f"#expand-{name}")).to_be_disabled()
        dash.assert_not_reloaded()
    finally:
        dash.close()


# ------------------------------------------------------------------- the page itself, over HTTP

def fetch(url: str) -> tuple[int, dict, str]:
    """GET outside the API prefix (tests.http_client.Client puts it in front)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as reply:
            return reply.status, dict(reply.headers), reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def test_the_page_and_its_files_are_served_with_no_external_asset(dash_server):
    base = dash_server.url
    status, headers, html = fetch(base + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert f'data-api="{API}"' in html and 'data-auth-required="false"' in html
    assert 'id="api-token"' not in html  # no token configured: no token field
    assets = re.findall(r'(?:href|src)="(/dashboard/static/[^"]+)"', html)
    assert sorted(assets) == ["/dashboard/static/dashboard.css", "/dashboard/static/main.js"]
    modules = {p.name for p in (DASHBOARD / "static").glob("*.js")}
    for path in assets + [f"/dashboard/static/{m}" for m in sorted(modules)]:
        status, headers, text = fetch(base + path)
        assert status == 200, path
        assert not re.search(r"https?://", text), f"{path} names an external URL"
        for imported in re.findall(r'from "\./([\w.]+)"', text):
            assert imported in modules, (path, imported)
    module_type = fetch(base + "/dashboard/static/main.js")[1]["Content-Type"]
    assert module_type.startswith("text/javascript")  # browsers refuse modules of other types
    assert fetch(base + "/dashboard/static/missing.js")[0] == 404


def test_the_dashboard_files_ship_with_the_package():
    """setup.cfg's package_data globs cover every file of service/http/dashboard (so a wheel has the
    page), and the package is listed."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert "heimdall_synth.service.http.dashboard" in cfg["options"]["packages"].split()
    globs = [g.strip() for g in
             cfg["options.package_data"]["heimdall_synth.service.http.dashboard"].split(",")]
    files = [p.relative_to(DASHBOARD).as_posix() for p in DASHBOARD.rglob("*")
             if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".py"]
    assert files and all(any(fnmatch.fnmatch(f, g) for g in globs) for f in files), files
    assert any(r.startswith("playwright") for r in cfg["options.extras_require"]["test"].split())


def test_a_job_on_a_dask_cluster_shows_where_it_runs_and_its_shards(browser, db_url):
    """A service whose jobs run on a Dask cluster (DASK_SCHEDULER): the job's card names the
    cluster and counts the shards its workers evaluated, live."""
    import distributed
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as local:
        srv = start_server(db_url, KERNEL_THREADS=1, DASK_SCHEDULER=local.scheduler_address)
        try:
            dash = Dashboard(browser, srv.url)
            dash.page.fill("#create-name", "dash-cluster")
            dash.page.fill("#create-num_samples", "50000000")
            dash.submit("create")
            card = dash.card(dash.accepted_job_id("create"))
            expect(card.locator(".device")).to_have_text(re.compile(
                rf"^device: dask: {re.escape(local.scheduler_address)} \(1 worker\) · "
                r"[\d,]+ shards done$"), timeout=WAIT_MS)
            card.locator("button.cancel").click()
            expect(card).to_have_attribute("data-status", "cancelled", timeout=WAIT_MS)
            dash.close()
        finally:
            srv.stop()
