// Talking to the service's HTTP API: JSON that keeps big integers exact, and the API token.
//
// Seeds go up to 2^63-1 and some schema bounds are 2^62 or 2^63-1: JSON.parse would round them
// to the nearest double, so the page would show (and could send back) a different seed. Integers
// beyond 2^53 are parsed as BigInt from their source text, and BigInts are written back as raw
// JSON numbers.

export const API = document.body.dataset.api || "/api/training/synthetic";
const TOKEN_KEY = "heimdall-synth.api-token";

export function parseJSON(text) {
  return JSON.parse(text, (key, value, context) => {
    if (typeof value === "number" && !Number.isSafeInteger(value) && context
        && /^-?\d+$/.test(context.source)) {
      return BigInt(context.source);
    }
    return value;
  });
}

export function toJSON(value, indent) {
  return JSON.stringify(value, (key, v) => (typeof v === "bigint" ? JSON.rawJSON(v.toString()) : v),
                        indent);
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export function apiPath(path) {
  return path.startsWith("/api") ? path : API + path;
}

// One request. Never throws: the reply is {ok, status, body}; a network failure is status 0
// with an error body of the API's shape, so callers show every failure the same way.
export async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && getToken()) headers.Authorization = `Bearer ${getToken()}`;
  let response;
  try {
    response = await fetch(apiPath(path), {
      method, headers, body: body === undefined ? undefined : toJSON(body), cache: "no-store",
    });
  } catch (err) {
    return { ok: false, status: 0,
             body: { error: "network_error", message: `the service does not answer (${err.message})` } };
  }
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? parseJSON(text) : null;
  } catch {
    parsed = { error: "bad_response", message: `HTTP ${response.status}: ${text.slice(0, 200)}` };
  }
  return { ok: response.ok, status: response.status, body: parsed };
}

export const get = (path) => call("GET", path);
export const post = (path, body) => call("POST", path, body);
