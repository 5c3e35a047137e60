// Form controls generated from the OpenAPI GenerateRequest schema (itself generated from the one
// parameter table, kernel/defaults.py): type, range, default, choices, description and scope of
// every field come from the schema, never from this file.
//
// The browser does not judge values: forms are `novalidate` and values go to the server as typed
// (a number is sent as the exact text of the input), so the server's 422 names the field and the
// page shows its message next to that field. A control only decides whether it is SENT: a field
// is sent when its value differs from the form's baseline (the schema default for a new dataset,
// the stored value for an expansion); an empty input means "not set" (null for a nullable field).

import { count } from "./format.js";

const JSON_NUMBER = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/;
const SCOPE_NOTE = /\s*\[(data-defining|filter|job execution knob)[^\]]*\]/;
export const SCOPE_BADGE = { data: "data-defining", filter: "filter", job: "job knob" };

// The exact text of a number input as a JSON number ("0.5" stays 0.5, "007" becomes 7,
// 9223372036854775807 stays exact); text that is no number is sent as text: the server refuses it.
export function numberWire(text) {
  if (JSON_NUMBER.test(text)) return JSON.rawJSON(text);
  if (/^-?\d+$/.test(text)) return JSON.rawJSON(BigInt(text).toString());
  const n = Number(text);
  return text !== "" && Number.isFinite(n) ? n : text;
}

// A canonical text of a value, to compare what a control holds with its baseline: numbers by
// value (145 and "145.0" are the same), objects whatever their key order.
export function canon(value) {
  if (value === undefined) return "undefined";
  if (value === null) return "null";
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "number") return Number.isInteger(value) ? BigInt(value).toString() : String(value);
  if (JSON.isRawJSON(value)) {
    const text = value.rawJSON;
    if (/^-?\d+$/.test(text)) return BigInt(text).toString();
    return canon(Number(text));
  }
  if (Array.isArray(value)) return `[${value.map(canon).join(",")}]`;
  if (typeof value === "object") {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canon(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

function types(prop) {
  return Array.isArray(prop.type) ? prop.type : [prop.type];
}

export function isNullable(prop) {
  return types(prop).includes("null");
}

// document.createElement with attributes ("class", "text" for textContent; false/null: absent).
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function bound(value) {
  return typeof value === "bigint" || Number.isInteger(value) ? count(value) : String(value);
}

// "range 1 – 6,000 · default 145" from the schema.
function constraintsText(prop) {
  const parts = [];
  const lo = prop.minimum ?? prop.exclusiveMinimum;
  if (lo !== undefined || prop.maximum !== undefined) {
    const low = prop.exclusiveMinimum !== undefined ? `> ${bound(lo)}` : (lo !== undefined ? bound(lo) : "");
    if (prop.exclusiveMinimum !== undefined) {
      parts.push(prop.maximum !== undefined ? `${low}, at most ${bound(prop.maximum)}` : low);
    } else {
      parts.push(`range ${low} – ${prop.maximum !== undefined ? bound(prop.maximum) : "∞"}`);
    }
  }
  if (prop.minLength !== undefined && prop.maxLength !== undefined) {
    parts.push(`${prop.minLength} to ${count(prop.maxLength)} characters`);
  }
  if ("default" in prop && (prop.default === null || typeof prop.default !== "object")) {
    const shown = typeof prop.default === "number" ? bound(prop.default) : String(prop.default);
    parts.push(prop.default === null ? "empty: null" : `default ${shown}`);
  }
  return parts.join(" · ");
}

// The schema's description without its scope note (the badge says it; its title keeps it).
export function describe(prop) {
  const text = prop.description || "";
  const note = text.match(SCOPE_NOTE);
  return { help: text.replace(SCOPE_NOTE, "").trim(), note: note ? note[0].trim().slice(1, -1) : "" };
}

// ---------------------------------------------------------------------------------- controls

// Every control: {name, prop, root, set(value), read(), setBaseline(value), changed(),
// setDisabled(flag), showError(path, message), clearError(), focus()}. read() returns undefined
// for "not set" (the field is then not sent).
export function createControl(name, prop, components, idPrefix, required = false) {
  const id = `${idPrefix}-${name}`;
  const { help, note } = describe(prop);
  const label = el("label", { for: id }, name);
  if (SCOPE_BADGE[prop["x-scope"]]) {
    label.append(" ", el("span", { class: `badge scope-${prop["x-scope"]}`, title: note,
                                   text: SCOPE_BADGE[prop["x-scope"]] }));
  }
  const error = el("p", { class: "field-error", id: `${id}-error`, role: "alert" });
  const helpText = [help, constraintsText(prop), required ? "required" : ""].filter(Boolean).join(" · ");
  const helpNode = el("p", { class: "help", id: `${id}-help`, text: helpText });
  const root = el("div", { class: "field", "data-field": name, "data-scope": prop["x-scope"] }, label);

  const kind = inputKind(prop, components);
  const control = kind(name, prop, id, components, required);
  control.name = name;
  control.prop = prop;
  control.root = root;
  control.baseline = "default" in prop ? prop.default : undefined;
  root.append(control.node, helpNode, error);
  for (const input of control.inputs()) {
    input.setAttribute("aria-describedby", `${id}-help ${id}-error`);
  }
  control.setBaseline = (value) => { control.baseline = value; control.set(value); };
  control.changed = () => {
    const value = control.read();
    if (value === undefined) return false;        // not set: the server's value stands
    return canon(value) !== canon(control.baseline);
  };
  control.setDisabled = (flag) => {
    for (const input of control.inputs()) input.disabled = flag;
    root.classList.toggle("disabled", flag);
  };
  control.clearError = () => {
    error.textContent = "";
    root.classList.remove("has-error");
    for (const marked of root.querySelectorAll("[aria-invalid]")) marked.removeAttribute("aria-invalid");
  };
  control.showError = (path, message) => {
    error.textContent = message;
    root.classList.add("has-error");
    const target = control.inputFor(path);
    target.setAttribute("aria-invalid", "true");
    return target;
  };
  control.focus = () => control.inputs()[0]?.focus();
  control.set(control.baseline);
  return control;
}

function inputKind(prop, components) {
  const t = types(prop)[0];
  if (prop.enum) return choiceControl;
  if (t === "boolean") return isNullable(prop) ? nullableBoolControl : boolControl;
  if (t === "integer" || t === "number") return numberControl;
  if (t === "array" && prop.items && prop.items.$ref) return receiversControl;
  if (t === "object" && prop.properties) return distControl;
  return textControl;
}

function simple(node, extra) {
  return { node, inputs: () => [node], allInputs: () => [node], inputFor: () => node, ...extra };
}

// What an empty input means: a required field, null, or the server's default (max_gdop).
function placeholder(prop, required) {
  if (required) return "required";
  if (!("default" in prop)) return "server default";
  return prop.default === null ? "null" : "";
}

function numberInput(id, name, prop, required = false) {
  const integer = types(prop)[0] === "integer";
  const lo = prop.minimum ?? prop.exclusiveMinimum;
  // min/max/step only drive the spinner and the keyboard; the form is novalidate.
  return el("input", { id, name, type: "number", inputmode: integer ? "numeric" : "decimal",
                       step: integer ? "1" : "any", min: lo !== undefined ? String(lo) : undefined,
                       max: prop.maximum !== undefined ? String(prop.maximum) : undefined,
                       placeholder: placeholder(prop, required) });
}

function numberControl(name, prop, id, components, required) {
  const input = numberInput(id, name, prop, required);
  return simple(input, {
    set(value) { input.value = value === null || value === undefined ? "" : String(value); },
    read() {
      if (input.value.trim() === "") return isNullable(prop) ? null : undefined;
      return numberWire(input.value.trim());
    },
  });
}

function textControl(name, prop, id) {
  const long = (prop.maxLength ?? 0) > 100;
  const input = long ? el("textarea", { id, name, rows: "2" }) : el("input", { id, name, type: "text" });
  input.spellcheck = false;
  return simple(input, {
    set(value) { input.value = value ?? ""; },
    read() {
      if (input.value === "") return isNullable(prop) ? null : undefined;
      return input.value;
    },
  });
}

function boolControl(name, prop, id) {
  const input = el("input", { id, name, type: "checkbox" });
  return simple(input, {
    set(value) { input.checked = value === true; },
    read() { return input.checked; },
  });
}

function nullableBoolControl(name, prop, id) {
  const select = el("select", { id, name },
                    el("option", { value: "", text: "null (automatic)" }),
                    el("option", { value: "true", text: "true" }),
                    el("option", { value: "false", text: "false" }));
  return simple(select, {
    set(value) { select.value = value === true ? "true" : value === false ? "false" : ""; },
    read() { return select.value === "" ? null : select.value === "true"; },
  });
}

function choiceControl(name, prop, id) {
  const select = el("select", { id, name });
  for (const choice of prop.enum) {
    select.append(el("option", { value: choice ?? "", text: choice ?? "null" }));
  }
  return simple(select, {
    set(value) { select.value = value ?? ""; },
    read() { return select.value === "" ? (isNullable(prop) ? null : undefined) : select.value; },
  });
}

// {type: share} mixes: one number input per type.
function distControl(name, prop, id) {
  const inputs = {};
  const node = el("div", { class: "dist", id });
  for (const [key, sub] of Object.entries(prop.properties)) {
    const input = numberInput(`${id}-${key}`, `${name}.${key}`, sub);
    inputs[key] = input;
    node.append(el("label", { class: "dist-item" }, el("span", { text: key }), input));
  }
  return {
    node,
    inputs: () => Object.values(inputs),
    allInputs: () => Object.values(inputs),
    inputFor: (path) => inputs[path.split(".")[1]] || Object.values(inputs)[0],
    set(value) {
      for (const [key, input] of Object.entries(inputs)) {
        const share = value ? value[key] : undefined;
        input.value = share === undefined || share === null ? "" : String(share);
      }
    },
    read() {
      const out = {};
      for (const [key, input] of Object.entries(inputs)) {
        if (input.value.trim() !== "") out[key] = numberWire(input.value.trim());
      }
      return out;
    },
  };
}

// A list of {name, lat, lon, alt_m} (the Receiver schema) as an editable table.
function receiversControl(name, prop, id, components) {
  const itemSchema = components[prop.items.$ref.split("/").pop()];
  const columns = Object.keys(itemSchema.properties);
  const body = el("tbody");
  const table = el("table", { class: "receivers", id },
                   el("thead", {}, el("tr", {}, ...columns.map(
                     (c) => el("th", { text: c, title: itemSchema.properties[c].description })), el("th"))),
                   body);
  const add = el("button", { type: "button", class: "secondary", text: "Add receiver" });
  const restore = el("button", { type: "button", class: "secondary", text: "Restore" });
  const node = el("div", { class: "receivers-editor" }, table, el("div", { class: "row-buttons" }, add, restore));
  let control;

  function addRow(rx = {}) {
    const cells = columns.map((column) => {
      const sub = itemSchema.properties[column];
      const input = types(sub)[0] === "string"
        ? el("input", { type: "text", name: `${name}.${column}`, class: `rx-${column}` })
        : numberInput(undefined, `${name}.${column}`, sub, (itemSchema.required || []).includes(column));
      input.classList.add(`rx-${column}`);
      input.value = rx[column] === undefined ? "" : String(rx[column]);
      return el("td", {}, input);
    });
    const remove = el("button", { type: "button", class: "secondary small", text: "×",
                                  title: "remove this receiver" });
    remove.addEventListener("click", () => {
      row.remove();
      node.dispatchEvent(new Event("input", { bubbles: true }));
    });
    const row = el("tr", {}, ...cells, el("td", {}, remove));
    body.append(row);
    return row;
  }
  add.addEventListener("click", () => { addRow(); node.dispatchEvent(new Event("input", { bubbles: true })); });
  restore.addEventListener("click", () => {
    control.set(control.baseline);
    node.dispatchEvent(new Event("input", { bubbles: true }));
  });

  const rowInputs = () => [...body.querySelectorAll("input")];
  control = {
    node,
    inputs: () => [...rowInputs(), ...node.querySelectorAll("button")],
    allInputs: rowInputs,
    // "receivers[2].lat" -> that cell
    inputFor(path) {
      const m = path.match(/\[(\d+)\](?:\.(\w+))?/);
      const row = m ? body.rows[Number(m[1])] : null;
      return (row && m[2] && row.querySelector(`.rx-${m[2]}`)) || (row && row.querySelector("input")) || table;
    },
    set(value) {
      body.replaceChildren();
      for (const rx of value || []) addRow(rx);
    },
    read() {
      return [...body.rows].map((row) => {
        const rx = {};
        for (const column of columns) {
          const input = row.querySelector(`.rx-${column}`);
          const text = input.value.trim();
          if (text === "") continue;             // missing: the server says it is required
          rx[column] = input.type === "number" ? numberWire(text) : input.value;
        }
        return rx;
      });
    },
  };
  return control;
}

// ------------------------------------------------------------------------------- the form

// A number input holding text the browser cannot read as a number reports an empty value, so
// the page cannot send what was typed: such inputs are named here and the form is not sent.
export function unreadable(controls) {
  const out = [];
  for (const control of controls.values()) {
    if (control.root.classList.contains("disabled")) continue;
    const bad = control.allInputs().find((input) => input.validity && input.validity.badInput);
    if (bad) out.push({ control, input: bad });
  }
  return out;
}

// The request body of a set of controls: the enabled fields that are set and differ from their
// baseline, plus the ones listed in `always`.
export function collect(controls, always = []) {
  const body = {};
  for (const control of controls.values()) {
    if (control.root.classList.contains("disabled")) continue;
    if (always.includes(control.name) || control.changed()) {
      const value = control.read();
      if (value !== undefined) body[control.name] = value;
    }
  }
  return body;
}
