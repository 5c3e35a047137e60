// The datasets table. Both counts of a row come from ONE read of the API (GET /datasets or
// GET /datasets/{id}): num_samples, the dataset row's metadata, and actual_count, a real COUNT(*)
// of its sample rows. The page never computes a count; it re-reads the dataset when a job's event
// says a batch was committed, so the numbers follow the database without a reload.

import { get } from "./api.js";
import { bytes, count, when } from "./format.js";
import { el } from "./schema_form.js";

// At most one read of a dataset per second while its job commits batches: each read is a
// COUNT(*) of its rows in PostgreSQL, and the job's own progress line moves on every event.
const MIN_REFRESH_MS = 1000;

export class DatasetsTable {
  constructor(table, mismatchNote, emptyNote) {
    this.body = table.tBodies[0];
    this.mismatchNote = mismatchNote;
    this.emptyNote = emptyNote;
    this.rows = new Map();       // id -> {dataset, tr}
    this.refreshing = new Map(); // id -> {busy, queued, urgent, timer, last}
    this.listeners = [];
    this.onExpand = () => {};
    this.onMap = () => {};
    this.onError = () => {};
  }

  get(id) {
    return this.rows.get(id)?.dataset;
  }

  list() {
    return [...this.rows.values()].map((r) => r.dataset);
  }

  onChange(listener) {
    this.listeners.push(listener);
  }

  changed() {
    this.emptyNote.hidden = this.rows.size > 0;
    const bad = this.list().filter((d) => d.counts_agree === false);
    this.mismatchNote.hidden = bad.length === 0;
    this.mismatchNote.textContent = bad.length
      ? `Counts disagree for ${bad.map((d) => d.name).join(", ")}: the dataset row's `
        + "num_samples is not the number of rows stored. Run GET /datasets/{id}/validate or "
        + "heimdall-synth validate."
      : "";
    for (const listener of this.listeners) listener();
  }

  async loadAll() {
    const reply = await get("/datasets");
    if (!reply.ok) {
      this.onError(reply);
      return;
    }
    const seen = new Set();
    for (const dataset of reply.body.datasets) {
      seen.add(dataset.id);
      await this.accept(dataset);
    }
    for (const id of [...this.rows.keys()]) if (!seen.has(id)) this.remove(id);
    this.changed();
  }

  // The API reads num_samples and COUNT(*) in one statement (one snapshot), so they agree
  // unless contract C3 (docs/CONTRACTS.md) is broken. A disagreeing pair is still read once
  // more before it is flagged: a warning an operator acts on should not rest on a single read.
  async accept(dataset) {
    if (dataset.counts_agree === false) {
      const again = await get(`/datasets/${dataset.id}`);
      if (again.ok) dataset = again.body;
    }
    this.upsert(dataset);
  }

  async read(id) {
    const reply = await get(`/datasets/${id}`);
    if (reply.status === 404) this.remove(id);
    else if (reply.ok) await this.accept(reply.body);
    else this.onError(reply);
    this.changed();
  }

  // Re-read a dataset soon: coalesced (one read in flight per dataset, at most one a second);
  // `urgent` (a job's final event) reads as soon as the read in flight, if any, is done.
  refresh(id, urgent = false) {
    if (!id) return;
    let s = this.refreshing.get(id);
    if (!s) {
      s = { busy: false, queued: false, urgent: false, timer: null, last: 0 };
      this.refreshing.set(id, s);
    }
    if (s.busy) {
      s.queued = true;
      s.urgent ||= urgent;
      return;
    }
    if (s.timer) {
      if (!urgent) return;
      clearTimeout(s.timer);
    }
    const wait = urgent ? 0 : Math.max(0, s.last + MIN_REFRESH_MS - Date.now());
    s.timer = setTimeout(async () => {
      s.timer = null;
      s.busy = true;
      s.last = Date.now();
      try {
        await this.read(id);
      } finally {
        s.busy = false;
        if (s.queued) {
          const again = s.urgent;
          s.queued = s.urgent = false;
          this.refresh(id, again);
        }
      }
    }, wait);
  }

  remove(id) {
    const row = this.rows.get(id);
    if (row) row.tr.remove();
    this.rows.delete(id);
  }

  upsert(dataset) {
    let row = this.rows.get(dataset.id);
    if (!row) {
      row = this.build(dataset.id);
      this.insertSorted(row.tr, dataset);
      this.rows.set(dataset.id, row);
    }
    row.dataset = dataset;
    this.fill(row, dataset);
  }

  // Oldest first, as GET /datasets lists them.
  insertSorted(tr, dataset) {
    const later = [...this.body.rows].find(
      (row) => (this.get(row.dataset.datasetId)?.created_at || "") > (dataset.created_at || ""));
    this.body.insertBefore(tr, later || null);
  }

  // A row's elements are made once and filled in place by fill(): a link or button replaced
  // under the pointer would swallow the click, and a running job refreshes its row every second.
  build(id) {
    const api = `/api/training/synthetic/datasets/${id}`;
    const expand = el("button", { type: "button", class: "secondary small", text: "Expand…" });
    expand.addEventListener("click", () => this.onExpand(id));
    const map = el("button", { type: "button", class: "secondary small map-button", text: "Map" });
    map.addEventListener("click", () => this.onMap(id));
    const cells = {
      name: el("strong", { class: "dataset-name" }),
      description: el("span", { class: "description" }),
      type: el("td"),
      metadata: el("td", { class: "num", "data-col": "metadata" }),
      actualCount: el("span", { class: "actual-count" }),
      flag: el("span", { class: "mismatch-flag", role: "alert" }),
      size: el("td", { class: "num", "data-col": "size" }),
      created: el("td", { "data-col": "created" }),
    };
    const tr = el("tr", { "data-dataset-id": id },
      el("td", { class: "name" }, cells.name, cells.description,
         el("code", { class: "id", title: "dataset id", text: id })),
      cells.type, cells.metadata,
      el("td", { class: "num", "data-col": "actual" }, cells.actualCount, cells.flag),
      cells.size, cells.created,
      el("td", { class: "links" },
         el("a", { href: `/datasets/${id}/report`, text: "report" }), " · ",
         el("a", { href: `${api}/export?format=parquet`, text: "parquet" }), " · ",
         el("a", { href: `${api}/export?format=npz`, text: "npz" }), " · ",
         el("a", { href: api, text: "JSON" }), " ", expand, " ", map));
    return { tr, cells };
  }

  fill({ tr, cells }, d) {
    const agree = d.counts_agree !== false;
    tr.classList.toggle("mismatch", !agree);
    cells.name.textContent = d.name;
    cells.description.textContent = d.description ?? "";
    cells.description.hidden = !d.description;
    cells.type.textContent = d.dataset_type ?? "—";
    cells.metadata.textContent = count(d.num_samples);
    cells.actualCount.textContent = count(d.actual_count);
    cells.flag.textContent = agree ? "" : ` ⚠ the dataset row says ${count(d.num_samples)}`;
    cells.flag.hidden = agree;
    const size = bytes(d.storage_size_bytes);
    cells.size.textContent = size ?? "—";
    cells.size.title = size ? `${count(d.storage_size_bytes)} bytes`
      : "storage_size_bytes is not recorded for this dataset";
    cells.created.textContent = when(d.created_at);
    cells.created.title = d.created_at || "";
  }
}
