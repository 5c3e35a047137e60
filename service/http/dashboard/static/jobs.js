// Job cards: one per job, live from GET /jobs/{id}/events while the job is active.
//
// The job row is the single source of truth for status and progress: every number on a card is
// a field of the job record or of an event the server sent. Two are arithmetic on those fields: the rate over
// the last seconds of progress events (generated and duration_s, both from the server) and the
// ETA, (requested - generated) / that rate.

import { get, parseJSON, post } from "./api.js";
import { ACTIVE, REJECTION_WORDS, RESUMABLE, STATUS_WORDS, count, duration, percent, rate,
         stopHeadline, when } from "./format.js";
import { el } from "./schema_form.js";

const RATE_WINDOW_S = 10;       // rate: samples committed over about the last 10 s
const DISCOVER_EVERY_MS = 5000; // jobs started elsewhere (CLI, another tab) appear within 5 s
const RECENT_JOBS = 20;
const STREAM_RETRY_MS = 3000;

class JobCard {
  constructor(panel, job) {
    this.panel = panel;
    this.job = job;
    this.source = null;
    this.points = [];            // [{t: duration_s, g: generated}] of progress events while running
    this.streamState = "";
    this.notices = [];
    this.errorText = "";
    this.build();
    this.render();
  }

  // The card's elements are made once and updated in place by render(): a button replaced
  // between mousedown and mouseup would swallow the click, and events arrive several a second.
  build() {
    const part = (tag, cls, attrs = {}) => el(tag, { class: cls, ...attrs });
    this.parts = {
      kind: part("span", "kind"), dataset: part("span", "job-dataset"), id: part("code", "job-id"),
      status: part("span", "status badge"), stream: part("span", "stream", { title: "event stream" }),
      created: part("span", "created"), progress: part("p", "progress-text"),
      offsetBar: part("div", "bar-offset"), newBar: part("div", "bar-new"),
      device: part("p", "device"), rejectedCaption: el("caption"), rejectedRows: el("tbody"),
      stopHeadline: part("strong", "stop-headline"), stopMessage: part("p", "stop-message"),
      stopError: part("p", "stop-error"), notices: part("p", "notices"),
      actionError: part("span", "action-error", { role: "alert" }),
    };
    const p = this.parts;
    p.bar = el("div", { class: "bar", role: "img" }, p.offsetBar, p.newBar);
    this.stats = {};
    const stats = el("dl", { class: "stats" });
    for (const key of ["rate", "eta", "acceptance", "attempted", "elapsed", "committed"]) {
      const dt = el("dt");
      const dd = el("dd", { "data-stat": key });
      this.stats[key] = { dt, dd };
      stats.append(dt, dd);
    }
    p.rejections = el("table", { class: "rejections" }, p.rejectedCaption, p.rejectedRows);
    p.stop = el("div", { class: "stop" }, p.stopHeadline, p.stopMessage, p.stopError);
    p.cancel = el("button", { type: "button", class: "cancel danger", text: "Cancel" });
    p.resume = el("button", { type: "button", class: "resume", text: "Resume" });
    p.cancel.addEventListener("click", () => this.cancel());
    p.resume.addEventListener("click", () => this.resume());
    this.node = el("article", { class: "job" },
      el("header", {}, p.kind, p.dataset, p.id, p.status, p.stream, p.created),
      p.progress, p.bar, stats, p.device, p.rejections, p.stop, p.notices,
      el("div", { class: "actions" }, p.cancel, p.resume, p.actionError));
  }

  get id() {
    return this.job.id;
  }

  merge(fields) {
    this.job = { ...this.job, ...fields };
    this.render();
  }

  // A progress event: its counts, and a point of the rate window while the job runs (the window
  // starts again when the job (re)starts running).
  progress(data) {
    if (data.status !== "running" || this.job.status !== "running") this.points = [];
    if (data.status === "running" && data.duration_s !== null && data.duration_s !== undefined) {
      this.points.push({ t: data.duration_s, g: data.generated });
      while (this.points.length > 2 && data.duration_s - this.points[0].t > RATE_WINDOW_S) this.points.shift();
    }
    this.merge(data);
  }

  // Samples per second over the window of progress events, else the job's average
  // (samples_per_second: generated / duration_s, computed by the server).
  currentRate() {
    const p = this.points;
    if (p.length >= 2 && p[p.length - 1].t - p[0].t >= 1) {
      return (p[p.length - 1].g - p[0].g) / (p[p.length - 1].t - p[0].t);
    }
    return this.job.samples_per_second;
  }

  watch() {
    if (this.source || !ACTIVE.includes(this.job.status)) return;
    const source = new EventSource(this.job.events_url);
    this.source = source;
    this.setStream("connecting");
    source.onopen = () => this.setStream("live");
    source.addEventListener("status", (e) => this.merge(parseJSON(e.data)));
    source.addEventListener("progress", (e) => {
      const data = parseJSON(e.data);
      this.progress(data);
      this.panel.datasetMoved(data.dataset_id ?? this.job.dataset_id, false);
    });
    source.addEventListener("batch", (e) => {
      const data = parseJSON(e.data);
      this.merge({ generated: data.generated, attempted: data.attempted,
                   rejections: data.rejections, samples_offset: data.samples_offset,
                   requested: data.requested, committed_count: data.committed_count,
                   dataset_num_samples: data.committed_count, progress: data.message,
                   workers: data.workers, shards_done: data.shards_done });
      this.panel.datasetMoved(this.job.dataset_id, false);
    });
    source.addEventListener("final", (e) => {
      this.close();
      this.merge(parseJSON(e.data));
      this.panel.datasetMoved(this.job.dataset_id, true);
    });
    source.addEventListener("error", (e) => {
      if (e.data) {               // the server's own error event; the stream has ended
        const data = parseJSON(e.data);
        this.close();
        this.setStream(`stream ended: ${data.message}`);
        // Only a deleted job is gone for good; after a database hiccup (or a server bug) the
        // job may still run: read it again in a moment and follow it anew while it is active.
        if (data.error !== "not_found") {
          setTimeout(() => this.panel.reread(this.id), STREAM_RETRY_MS);
        }
      } else if (source.readyState === EventSource.CONNECTING) {
        this.setStream("reconnecting…");
      } else {
        // The server refused the stream (e.g. 503: too many open streams): read the job again
        // in a moment and follow it anew while it is active.
        this.close();
        this.setStream("stream closed; retrying");
        setTimeout(() => this.panel.reread(this.id), STREAM_RETRY_MS);
      }
    });
  }

  close() {
    if (this.source) this.source.close();
    this.source = null;
    this.setStream("");
  }

  setStream(state) {
    this.streamState = state;
    this.render();
  }

  async cancel() {
    this.actionError("");
    const reply = await post(`/jobs/${this.id}/cancel`);
    if (reply.ok) this.merge(reply.body);
    else this.refused(reply);
  }

  async resume() {
    this.actionError("");
    const reply = await post(`/jobs/${this.id}/resume`);
    if (!reply.ok) {
      this.refused(reply);
      return;
    }
    this.merge({ status: reply.body.status, stopped_reason: null, stop_message: null, error: null,
                 cancel_requested: false });
    this.watch();
  }

  refused(reply) {
    this.panel.onError(reply);
    this.actionError(`Refused (${reply.status} ${reply.body?.error ?? ""}): ${reply.body?.message ?? ""}`);
  }

  actionError(text) {
    this.errorText = text;
    this.render();
  }

  render() {
    const j = this.job;
    const p = this.parts;
    const dataset = this.panel.datasets.get(j.dataset_id);
    const active = ACTIVE.includes(j.status);
    const show = (node, visible) => { node.hidden = !visible; };
    this.node.className = `job status-${j.status}`;
    this.node.dataset.jobId = j.id;
    this.node.dataset.status = j.status;

    p.kind.textContent = j.kind === "expand" ? "Expand" : "Create";
    p.dataset.textContent = dataset ? dataset.name : (j.dataset_id ?? "");
    p.id.textContent = j.id.slice(0, 8);
    p.id.title = `job ${j.id}`;
    p.status.className = `status badge status-${j.status}`;
    p.status.textContent = j.status;
    p.status.title = STATUS_WORDS[j.status] ?? "";
    p.stream.textContent = this.streamState;
    show(p.stream, Boolean(this.streamState));
    p.created.textContent = when(j.created_at);
    p.created.title = j.created_at || "";

    // The bar: the rows the dataset held before the job, then the rows this job committed.
    p.progress.textContent = j.progress ?? "";
    p.bar.setAttribute("aria-label", j.progress ?? "");
    const target = Number(j.target_count) || 0;
    const generated = Number(j.generated) || 0;
    const offset = Number(j.samples_offset ?? target - Number(j.requested)) || 0;
    p.offsetBar.style.width = `${target ? (100 * offset) / target : 0}%`;
    p.newBar.style.width = `${target ? (100 * generated) / target : 0}%`;
    p.offsetBar.title = `already stored before this job: ${count(offset)}`;
    p.newBar.title = `committed by this job: ${count(generated)}`;

    const jobRate = active ? this.currentRate() : j.samples_per_second;
    const eta = j.status === "running" && jobRate > 0 ? (Number(j.requested) - generated) / jobRate : null;
    const stat = (key, label, value, visible = true) => {
      this.stats[key].dt.textContent = label;
      this.stats[key].dd.textContent = value;
      show(this.stats[key].dt, visible);
      show(this.stats[key].dd, visible);
    };
    stat("rate", active ? "rate" : "average rate", rate(jobRate));
    stat("eta", "ETA", eta === null ? "—" : duration(eta), active);
    stat("acceptance", "acceptance", percent(j.success_rate));
    stat("attempted", "attempted", count(j.attempted));
    stat("elapsed", "elapsed", duration(j.duration_s));
    stat("committed", "committed", count(j.committed_count));
    // a job on a Dask cluster: its batch events count the shards its workers evaluated
    const shards = j.shards_done != null ? ` · ${count(j.shards_done)} shards done` : "";
    p.device.textContent = j.device ? `device: ${j.device}${shards}` : "";
    show(p.device, Boolean(j.device));

    const reasons = Object.entries(j.rejections || {}).sort((a, b) => Number(b[1]) - Number(a[1]));
    const rejected = reasons.reduce((sum, [, n]) => sum + Number(n), 0);
    p.rejectedCaption.textContent = `Rejected attempts by reason (${count(rejected)})`;
    p.rejectedRows.replaceChildren(...reasons.map(([reason, n]) => el("tr", { "data-reason": reason },
      el("th", { scope: "row", title: reason, text: REJECTION_WORDS[reason] ?? reason }),
      el("td", { class: "num", text: count(n) }),
      el("td", { class: "num", text: j.attempted ? percent(Number(n) / Number(j.attempted)) : "—" }))));
    show(p.rejections, reasons.length > 0);

    // A job that ended: why, in words, then the job's own sentence (counts and advice) and error.
    p.stop.className = `stop stop-${j.stopped_reason ?? j.status}`;
    p.stopHeadline.textContent = active ? "" : stopHeadline(j);
    p.stopMessage.textContent = active ? "" : (j.stop_message ?? "");
    p.stopError.textContent = !active && j.error ? `Error: ${j.error}` : "";
    show(p.stop, !active);
    show(p.stopMessage, Boolean(p.stopMessage.textContent));
    show(p.stopError, Boolean(p.stopError.textContent));

    p.notices.textContent = this.notices.join(" ");
    show(p.notices, this.notices.length > 0);
    p.cancel.textContent = j.cancel_requested ? "Cancelling…" : "Cancel";
    p.cancel.disabled = Boolean(j.cancel_requested);
    show(p.cancel, active);
    show(p.resume, RESUMABLE.includes(j.status));
    p.actionError.textContent = this.errorText;
  }
}

export class JobsPanel {
  constructor(container, emptyNote, datasets) {
    this.container = container;
    this.emptyNote = emptyNote;
    this.datasets = datasets;
    this.cards = new Map();
    this.onError = () => {};
    datasets.onChange(() => { for (const card of this.cards.values()) card.render(); });
  }

  datasetMoved(datasetId, urgent) {
    this.datasets.refresh(datasetId, urgent);
  }

  upsert(job) {
    let card = this.cards.get(job.id);
    if (card) {
      card.merge(job);
    } else {
      card = new JobCard(this, job);
      this.cards.set(job.id, card);
      // newest first
      const older = [...this.container.children].find(
        (node) => (this.cards.get(node.dataset.jobId)?.job.created_at || "") < (job.created_at || ""));
      this.container.insertBefore(card.node, older || null);
    }
    this.emptyNote.hidden = this.cards.size > 0;
    if (!this.datasets.get(job.dataset_id)) this.datasets.refresh(job.dataset_id, true);
    return card;
  }

  async reread(jobId) {
    const reply = await get(`/jobs/${jobId}`);
    if (reply.ok) this.upsert(reply.body).watch();
    // the server or its database is not back yet: try again (a deleted job is not retried)
    else if (reply.status !== 404) setTimeout(() => this.reread(jobId), STREAM_RETRY_MS);
  }

  // A job the page just started (the 202 of /generate or /resume): read it, show it, follow it.
  async track(accepted) {
    const reply = await get(accepted.status_url);
    if (!reply.ok) {
      this.onError(reply);
      return;
    }
    const card = this.upsert(reply.body);
    card.notices = accepted.notices || [];
    card.render();
    card.watch();
  }

  async discover() {
    const reply = await get(`/jobs?limit=${RECENT_JOBS}`);
    if (!reply.ok) {
      this.onError(reply);
      return;
    }
    for (const job of reply.body.jobs.slice().reverse()) {
      const card = this.cards.get(job.id);
      if (card && card.source) continue;   // its event stream is more recent than this list
      this.upsert(job).watch();
    }
  }

  start() {
    this.discover();
    setInterval(() => this.discover(), DISCOVER_EVERY_MS);
  }
}
