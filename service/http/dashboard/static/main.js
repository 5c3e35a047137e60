// The dashboard's entry point: reads the request schema, the datasets and the jobs from the API,
// builds the forms and keeps the page live. docs/DASHBOARD.md says where each number comes from.

import { get, getToken, setToken } from "./api.js";
import { DatasetsTable } from "./datasets.js";
import { createForm, expandForm } from "./forms.js";
import { JobsPanel } from "./jobs.js";
import { DatasetMap } from "./map.js";

const HEALTH_EVERY_MS = 15000;
const $ = (selector) => document.querySelector(selector);
const banner = $("#banner");

function showBanner(text) {
  banner.textContent = text;
  banner.hidden = !text;
}

// 401/403 from a state-changing request: say so at the top and next to the token field.
function authError(reply) {
  const body = reply.body || {};
  const what = reply.status === 401
    ? "This server needs its API token for changes: enter it in the token field at the top."
    : "The API token in this tab is wrong: enter the right one in the token field at the top.";
  showBanner(`${reply.status} ${body.error}: ${what} (${body.message})`);
  const tokenError = $("#api-token-error");
  if (tokenError) tokenError.textContent = `${reply.status} ${body.error}: ${body.message}`;
}

function apiError(reply) {
  if (reply.status === 401 || reply.status === 403) authError(reply);
  else if (reply.status === 0 || reply.status >= 500) {
    showBanner(`${reply.status || "no answer"}: ${reply.body?.message ?? "the service failed"}`);
  }
}

function setupToken() {
  const form = $("#token-form");
  if (!form) return;
  const input = $("#api-token");
  input.value = getToken();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    $("#api-token-error").textContent = "";
    showBanner("");
    $("#api-token-help").textContent = input.value.trim()
      ? "token set for this tab; sent as Bearer on POST, PATCH and DELETE"
      : "no token set";
  });
}

// The header's line from GET /api/health, read on load and every 15 s. (Its active_jobs counts
// the jobs of this server's pool only, and lags a job's end: the job cards are the jobs' truth.)
async function health() {
  const status = $("#service-status");
  const reply = await get("/api/health");
  const body = reply.body || {};
  status.textContent = reply.ok
    ? `service ${body.version} · database ${body.database}`
    : `service unavailable: ${body.message ?? `HTTP ${reply.status}`}`;
  status.classList.toggle("down", !reply.ok);
}

async function main() {
  setupToken();
  const datasets = new DatasetsTable($("#datasets"), $("#datasets-mismatch"), $("#datasets-empty"));
  datasets.onError = apiError;
  const jobs = new JobsPanel($("#jobs"), $("#jobs-empty"), datasets);
  jobs.onError = apiError;
  $("#datasets-reload").addEventListener("click", () => datasets.loadAll());
  const map = new DatasetMap($("#map-section"));
  datasets.onMap = (id) => map.show(datasets.get(id)).catch(
    (err) => showBanner(`The map failed: ${err.message}`));

  const [openapi] = await Promise.all([get("/api/openapi.json"), datasets.loadAll(), health()]);
  if (!openapi.ok) {
    showBanner(`Cannot read the request schema (GET /api/openapi.json: ${openapi.status}); `
               + "the forms are unavailable.");
    return;
  }
  const schemas = openapi.body.components.schemas;
  const create = createForm($("#create-form"), schemas.GenerateRequest, schemas);
  const expand = expandForm($("#expand-form"), schemas.GenerateRequest, schemas, datasets);
  for (const form of [create, expand]) {
    form.onAuthError = authError;
    form.onAccepted = (accepted) => {
      showBanner("");
      datasets.refresh(accepted.dataset_id, true);
      jobs.track(accepted);
    };
  }
  datasets.onExpand = (id) => expand.choose(id);
  jobs.start();
  setInterval(health, HEALTH_EVERY_MS);
  document.body.dataset.ready = "true";
}

main().catch((err) => showBanner(`The dashboard failed to start: ${err.message}`));
