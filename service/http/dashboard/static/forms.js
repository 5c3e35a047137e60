// The create and expand forms: laid out from the GenerateRequest schema, submitted to
// POST /generate, errors shown next to the field the reply names.

import { post, toJSON } from "./api.js";
import { collect, createControl, describe, el, unreadable } from "./schema_form.js";
import { count } from "./format.js";

// Fields shown open in the create form; every other field of the schema (including fields added
// to the parameter table later) lands in the collapsible "advanced" section, by scope.
const PRIMARY = ["name", "description", "num_samples", "seed", "dataset_type", "frequency_mhz",
                 "tx_power_dbm", "min_snr_db", "min_receivers", "max_gdop"];
const GROUP_TITLES = {
  data: "Data-defining: receivers, area, propagation model",
  filter: "Filters",
  job: "Job knobs",
  request: "Request",
};
// An expansion reads these from the dataset; the seed is stored on the dataset, not in its config.
const FROM_DATASET_ROW = ["seed"];
// The create form's box of the fields of one dataset type (typeOnlyFields), by type.
const TYPE_GROUP_TITLES = { iq_raw: "IQ capture (dataset_type iq_raw only)" };

// Fields that apply to one dataset type only: the parameter table begins their description with
// that type ("iq_raw: IQ sample rate (Hz) ..."). The server refuses them for another type, so a
// form shows them, and sends them, only while its dataset_type is theirs. {name: type}
function typeOnlyFields(schema, names) {
  const types = (schema.properties.dataset_type?.enum || []).filter((t) => t !== null);
  const out = new Map();
  for (const name of names) {
    const text = schema.properties[name]?.description || "";
    const type = types.find((t) => text.startsWith(`${t}:`));
    if (type) out.set(name, type);
  }
  return out;
}

function field(controls, name) {
  return controls.get(name.split(/[.[]/)[0]);
}

class RequestForm {
  constructor(form, schema, components, idPrefix, names, required) {
    this.form = form;
    this.controls = new Map();
    for (const name of names) {
      this.controls.set(name, createControl(name, schema.properties[name], components, idPrefix,
                                            required.includes(name)));
    }
    this.message = el("p", { class: "form-message", role: "status" });
    this.preview = el("pre", { class: "preview-body" });
    this.submit = el("button", { type: "submit" });
    this.onAccepted = () => {};
    this.missing = () => null;
    this.onAuthError = () => {};
    this.typeOnly = typeOnlyFields(schema, names);
    this.typeBoxes = [];                 // boxes holding nothing but such fields
    this.locked = () => false;           // the expand form locks the data-defining fields
    form.replaceChildren();
    form.addEventListener("input", () => this.updatePreview());
    form.addEventListener("change", () => this.updatePreview());
    form.addEventListener("submit", (event) => { event.preventDefault(); this.send(); });
  }

  group(title, names, { open = true, className = "" } = {}) {
    const fields = names.map((n) => this.controls.get(n)).filter(Boolean).map((c) => c.root);
    if (!fields.length) return null;
    if (open) return el("fieldset", { class: className }, el("legend", { text: title }), ...fields);
    return el("details", { class: `advanced ${className}` }, el("summary", { text: title }),
              el("div", { class: "fields" }, ...fields));
  }

  // Show and enable (so send) the fields of the dataset_type the form holds now; hide and disable
  // the others. Called when dataset_type changes, and when the expand form loads a dataset.
  showTypeFields() {
    const type = this.controls.get("dataset_type")?.read();
    for (const [name, only] of this.typeOnly) {
      const control = this.controls.get(name);
      if (!control) continue;
      const applies = only === type;
      control.root.hidden = !applies;
      control.setDisabled(!applies || this.locked(name));
      if (!applies) control.clearError();
    }
    for (const box of this.typeBoxes) {
      box.hidden = [...box.querySelectorAll(".field")].every((f) => f.hidden);
    }
  }

  finish() {
    const typeControl = this.controls.get("dataset_type");
    if (typeControl && this.typeOnly.size) {
      // before the form's own listeners: the preview then shows what Submit sends
      for (const event of ["input", "change"]) {
        typeControl.inputs()[0].addEventListener(event, () => this.showTypeFields());
      }
    }
    this.showTypeFields();
    this.form.append(
      el("details", { class: "preview" }, el("summary", { text: "Request body (what Submit sends)" }), this.preview),
      el("div", { class: "submit-row" }, this.submit, this.message));
    this.updatePreview();
  }

  body() {
    return collect(this.controls, ["num_samples"]);
  }

  updatePreview() {
    this.preview.textContent = `POST /api/training/synthetic/generate\n${toJSON(this.body(), 2)}`;
  }

  clearErrors() {
    for (const control of this.controls.values()) control.clearError();
    this.message.textContent = "";
    this.message.className = "form-message";
  }

  say(text, kind) {
    this.message.textContent = text;
    this.message.className = `form-message ${kind}`;
  }

  // Put the reply's message next to each field it names (a 409 may name several), opening the
  // advanced section that holds it; without a known field, in the form's message line.
  showError(reply) {
    const { status, body } = reply;
    const message = body?.message || `HTTP ${status}`;
    if (status === 401 || status === 403) this.onAuthError(reply);
    const named = body?.fields?.length ? body.fields : (body?.field ? [body.field] : []);
    const shown = [];
    for (const path of named) {
      const control = field(this.controls, path);
      if (!control) continue;
      const target = control.showError(path, message);
      const details = control.root.closest("details");
      if (details) details.open = true;
      shown.push(target);
    }
    const code = body?.error ? ` ${body.error}` : "";
    if (shown.length) {
      this.say(`Refused (${status}${code}): see the field marked below.`, "error");
      shown[0].focus();
    } else {
      this.say(`Refused (${status}${code}): ${message}`, "error");
    }
  }

  async send() {
    this.clearErrors();
    const bad = unreadable(this.controls);
    if (bad.length) {
      for (const { control, input } of bad) {
        control.showError(input.name, `${input.name}: not a number (the browser cannot read what is typed here)`);
      }
      this.say("Not sent: a number field holds text that is not a number.", "error");
      return;
    }
    const missing = this.missing();
    if (missing) {
      missing.control.showError(missing.control.name, missing.message);
      this.say("Not sent: choose the dataset to expand.", "error");
      return;
    }
    const body = this.body();
    this.submit.disabled = true;
    this.say("Sending…", "pending");
    try {
      const reply = await post("/generate", body);
      if (reply.ok) {
        const accepted = reply.body;
        const notices = accepted.notices?.length ? ` ${accepted.notices.join(" ")}` : "";
        this.say(`Accepted: ${accepted.kind} job ${accepted.job_id} (${accepted.status}).${notices}`, "ok");
        this.onAccepted(accepted);
      } else {
        this.showError(reply);
      }
    } finally {
      this.submit.disabled = false;
    }
  }
}

export function createForm(form, schema, components) {
  const names = Object.keys(schema.properties).filter(
    (n) => n !== "expand_dataset_id" && n !== "allow_parameter_override");
  // a new dataset needs name too (the schema's if/else: required unless expand_dataset_id is set)
  const f = new RequestForm(form, schema, components, "create", names,
                            [...(schema.required || []), ...(schema.else?.required || [])]);
  f.submit.textContent = "Create dataset";
  const rest = names.filter((n) => !PRIMARY.includes(n) && !f.typeOnly.has(n));
  form.append(f.group("New dataset", PRIMARY.filter((n) => names.includes(n))));
  // each type's own fields right under dataset_type, shown while it is chosen
  for (const type of new Set(f.typeOnly.values())) {
    const box = f.group(TYPE_GROUP_TITLES[type] || `dataset_type ${type} only`,
                        [...f.typeOnly].filter(([, t]) => t === type).map(([n]) => n),
                        { className: "type-only" });
    if (!box) continue;
    box.dataset.datasetType = type;
    f.typeBoxes.push(box);
    form.append(box);
  }
  const advanced = el("details", { class: "advanced" }, el("summary", { text: "Advanced" }));
  for (const scope of Object.keys(GROUP_TITLES)) {
    const inScope = rest.filter((n) => schema.properties[n]["x-scope"] === scope);
    const group = f.group(GROUP_TITLES[scope], inScope);
    if (group) advanced.append(group);
  }
  const unscoped = rest.filter((n) => !(schema.properties[n]["x-scope"] in GROUP_TITLES));
  if (unscoped.length) advanced.append(f.group("Other", unscoped));
  form.append(advanced);
  f.finish();
  return f;
}

// The expand form: the dataset, the number of NEW samples, the fields an expansion may change for
// its own job (filters, job knobs), and the data-defining fields shown as the dataset stores them,
// locked unless allow_parameter_override is ticked.
export function expandForm(form, schema, components, datasets) {
  const props = schema.properties;
  const scopeOf = (n) => props[n]["x-scope"];
  const mayDiffer = Object.keys(props).filter((n) => scopeOf(n) === "filter" || scopeOf(n) === "job");
  const defining = Object.keys(props).filter((n) => scopeOf(n) === "data" || FROM_DATASET_ROW.includes(n));
  const names = ["expand_dataset_id", "num_samples", ...mayDiffer, "allow_parameter_override", ...defining];
  const f = new RequestForm(form, schema, components, "expand", names.filter((n) => n !== "expand_dataset_id"),
                            [...(schema.required || []), "expand_dataset_id"]);
  f.submit.textContent = "Expand dataset";
  f.missing = () => (select.value ? null
    : { control: picker, message: "expand_dataset_id: choose the dataset to expand" });

  // expand_dataset_id: a select of the datasets on the page, laid out like a generated field.
  const select = el("select", { id: "expand-expand_dataset_id", name: "expand_dataset_id" });
  const picker = createControl("expand_dataset_id", props.expand_dataset_id, components, "expand", true);
  picker.root.querySelector(".help").textContent =
    `${describe(props.expand_dataset_id).help} · required · an expansion appends; it never `
    + "rewrites the rows already stored";
  picker.node.replaceWith(select);
  select.setAttribute("aria-describedby", "expand-expand_dataset_id-help expand-expand_dataset_id-error");
  picker.inputs = picker.allInputs = () => [select];
  picker.inputFor = () => select;
  picker.read = () => select.value || undefined;
  picker.set = () => {};
  picker.changed = () => true;
  f.controls = new Map([["expand_dataset_id", picker], ...f.controls]);

  const override = f.controls.get("allow_parameter_override");
  f.locked = (n) => defining.includes(n) && !override.read();
  const lockDefining = () => {
    const locked = !override.read();
    for (const n of defining) f.controls.get(n).setDisabled(locked);
    f.showTypeFields();   // the fields of another type than the dataset's stay hidden, unsent
  };
  override.inputs()[0].addEventListener("change", lockDefining);

  const current = el("p", { class: "help current-count" });
  form.append(el("fieldset", {}, el("legend", { text: "Dataset" }), picker.root, current,
                 f.controls.get("num_samples").root,
                 el("p", { class: "help",
                           text: "name and description belong to the dataset: an expansion never renames it." })));
  form.append(f.group("May differ for this job (recorded on the job as overrides)", mayDiffer));
  const definingBox = f.group("Data-defining: read from the dataset", ["allow_parameter_override", ...defining],
                              { open: false, className: "defining" });
  form.append(definingBox);
  f.finish();

  // Baselines: what the dataset stores (data-defining fields and filters), the table's defaults
  // for the job knobs. Only fields that differ from them are sent.
  function loadDataset() {
    const dataset = datasets.get(select.value);
    for (const n of [...mayDiffer, ...defining]) {
      const control = f.controls.get(n);
      const stored = n === "seed" ? dataset?.seed : dataset?.config?.[n];
      control.setBaseline(dataset && stored !== undefined ? stored : props[n].default);
    }
    override.setBaseline(false);
    lockDefining();
    current.textContent = dataset ? holds(dataset) : "";
    f.clearErrors();
    f.updatePreview();
  }

  const holds = (d) => `It holds ${count(d.num_samples)} samples now; new rows continue from there.`;

  // Keep the options in step with the datasets table (in place: an open select stays open).
  function fillSelect() {
    const chosen = select.value;
    if (!select.options.length) select.append(el("option", { value: "", text: "— choose a dataset —" }));
    const ids = new Set(datasets.list().map((d) => d.id));
    for (const option of [...select.options]) if (option.value && !ids.has(option.value)) option.remove();
    for (const d of datasets.list()) {
      const option = [...select.options].find((o) => o.value === d.id)
        || select.appendChild(el("option", { value: d.id }));
      option.textContent = `${d.name} (${count(d.num_samples)} samples)`;
    }
    if (chosen && !ids.has(chosen)) loadDataset();   // it was deleted
    else if (chosen) current.textContent = holds(datasets.get(chosen));
  }

  select.addEventListener("change", loadDataset);
  datasets.onChange(fillSelect);
  fillSelect();
  loadDataset();

  f.choose = (datasetId) => {
    select.value = datasetId;
    loadDataset();
    form.scrollIntoView({ behavior: "smooth", block: "start" });
    f.controls.get("num_samples").focus();
  };
  return f;
}
