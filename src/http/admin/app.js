// keyward's admin page: manages keys through the JSON API (/v1) with a key the admin pastes.
// The key lives in sessionStorage and travels only as a bearer header. Every text from the
// server is put into the page with textContent, never parsed as HTML. A new key's secret is
// shown once in the secret dialog and wiped from the page when the dialog closes.
//
// The same page is the portal (`/portal`, body marked data-mode="portal"): a product's
// customer in a session opened from a one-time link. There the session's HttpOnly cookie
// authenticates, every call carries the session's CSRF token, and the page offers only what
// the session may do (docs/portal.md).
"use strict";

const PORTAL = document.body.dataset.mode === "portal";

const STORE_KEY = "keyward.adminKey";
const STORE_ACCOUNT = "keyward.account";
const PRESET_TITLES = {
  read_only: "Read-only",
  content_agent: "Content agent",
  full_access: "Full access",
};
const RISK_TITLES = { low: "Low risk", medium: "Medium risk", high: "High risk" };

const state = { me: null, catalog: null, account: null, keys: [], usageKey: null, portal: null };

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

// ---- The API ------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `The server answered ${status}.`);
    this.status = status;
    this.code = body && body.code;
  }
}

async function api(method, path, body) {
  const headers = PORTAL
    ? { "X-CSRF-Token": state.portal ? state.portal.csrfToken : "" }
    : { Authorization: `Bearer ${sessionStorage.getItem(STORE_KEY) || ""}` };
  const init = { method, headers, cache: "no-store", credentials: PORTAL ? "same-origin" : "omit" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let json = null;
  try {
    json = await response.json();
  } catch {
    json = null;
  }
  if (!response.ok) throw new ApiError(response.status, json);
  return json;
}

// ---- Time ---------------------------------------------------------------------------------

function relative(text, missing) {
  if (!text) return missing;
  const delta = (new Date(text).getTime() - Date.now()) / 1000;
  const secs = Math.abs(delta);
  if (secs < 60) return "just now";
  const units = [
    [3600, 60, "minute"],
    [86400, 3600, "hour"],
    [30 * 86400, 86400, "day"],
    [365 * 86400, 30 * 86400, "month"],
    [Infinity, 365 * 86400, "year"],
  ];
  const [, size, unit] = units.find(([limit]) => secs < limit);
  const n = Math.floor(secs / size);
  const label = `${n} ${unit}${n === 1 ? "" : "s"}`;
  return delta < 0 ? `${label} ago` : `in ${label}`;
}

function timeCell(text, missing) {
  const cell = el("span", { text: relative(text, missing) });
  if (text) cell.title = new Date(text).toLocaleString();
  return cell;
}

// ---- Signing in ---------------------------------------------------------------------------

async function signIn(key) {
  sessionStorage.setItem(STORE_KEY, key);
  try {
    const usage = await api("GET", "/v1/usage");
    state.me = usage.data.apiKey;
    state.catalog = (await api("GET", "/v1/scopes")).data;
  } catch (error) {
    sessionStorage.removeItem(STORE_KEY);
    throw error;
  }
  const root = state.me.scopes.includes("root");
  $("who").textContent = `Signed in with ${state.me.name} (${state.me.prefix}…)` +
    (root ? ", a root key" : `, account ${state.me.accountId}`);
  $("sign-in").hidden = true;
  $("keys").hidden = false;
  $("sign-out").hidden = false;
  $("account-form").hidden = !root;
  state.account = root ? sessionStorage.getItem(STORE_ACCOUNT) : state.me.accountId;
  $("account").value = state.account || "";
  await refresh();
}

function signOut() {
  if (PORTAL) {
    portalSignOut();
    return;
  }
  sessionStorage.removeItem(STORE_KEY);
  sessionStorage.removeItem(STORE_ACCOUNT);
  window.location.reload();
}

// ---- The portal ---------------------------------------------------------------------------

// What the session may grant: its scopes and its presets' scopes.
function portalGrantable(session, catalog) {
  const scopes = new Set(session.scopes);
  for (const preset of catalog.presets) {
    if (session.presets.includes(preset.name)) preset.scopes.forEach((s) => scopes.add(s));
  }
  return [...scopes];
}

function portalEnded(text) {
  for (const id of ["keys", "usage", "sign-out"]) $(id).hidden = true;
  $("portal-ended").hidden = false;
  if (text) $("portal-ended-text").textContent = text;
}

async function portalStart() {
  let session;
  try {
    const response = await fetch("/portal/session", { cache: "no-store", credentials: "same-origin" });
    if (!response.ok) throw new Error("ended");
    session = await response.json();
  } catch {
    portalEnded();
    return;
  }
  state.portal = session;
  state.catalog = (await api("GET", "/v1/scopes")).data;
  const grantable = portalGrantable(session, state.catalog);
  state.me = { scopes: grantable, grantAll: false, accountId: session.accountId };
  state.account = session.accountId;
  const product = session.productName || "API keys";
  document.title = `API keys · ${product}`;
  $("page-title").textContent = session.productName ? `${session.productName} API keys` : "API keys";
  if (session.accentColor) document.documentElement.style.setProperty("--accent", session.accentColor);
  if (session.logoUrl) {
    $("brand-logo").src = session.logoUrl;
    $("brand-logo").hidden = false;
  }
  if (session.returnUrl) {
    $("back-link").href = session.returnUrl;
    $("back-link").textContent = `Back to ${session.productName || "the product"}`;
    $("back-link").hidden = false;
  }
  $("who").textContent = session.displayName ? `Signed in as ${session.displayName}` : "";
  $("sign-out").hidden = false;
  $("keys").hidden = false;
  $("account-form").hidden = true;
  for (const id of ["create-grant-all"]) $(id).closest("label").hidden = true;
  $("edit-grant-all").closest("label").hidden = true;
  // Lifetimes the session allows.
  for (const option of [...$("create-expiry").options]) {
    const secs = option.value === "never" ? Infinity : durationSecs(option.value);
    if (session.maxTtlSecs && secs > session.maxTtlSecs) option.remove();
  }
  if (![...$("create-expiry").options].some((o) => o.selected) && $("create-expiry").options.length) {
    $("create-expiry").options[$("create-expiry").options.length - 1].selected = true;
  }
  await refresh();
}

function durationSecs(text) {
  const n = parseInt(text, 10);
  const unit = { d: 86400, y: 365 * 86400, h: 3600 }[text.slice(-1)] || 1;
  return n * unit;
}

async function portalSignOut() {
  try {
    await fetch("/portal/sign-out", { method: "POST", credentials: "same-origin",
      headers: { "X-CSRF-Token": state.portal ? state.portal.csrfToken : "" } });
  } finally {
    state.portal = null;
    portalEnded("You signed out. Open the API keys page from the product to come back.");
  }
}

// ---- The list -----------------------------------------------------------------------------

async function refresh() {
  $("keys-error").textContent = "";
  const rows = $("key-rows");
  if (!state.account) {
    rows.replaceChildren();
    $("key-caption").textContent = "Name an account to see its keys";
    $("no-keys").hidden = true;
    return;
  }
  const params = new URLSearchParams({ accountId: state.account, pageSize: "1000" });
  if ($("unused-filter").checked) params.set("unusedSince", "30d");
  try {
    state.keys = (await api("GET", `/v1/api-keys?${params}`)).data;
  } catch (error) {
    $("keys-error").textContent = error.message;
    state.keys = [];
  }
  $("key-caption").textContent = `Keys of account ${state.account}` +
    ($("unused-filter").checked ? ", unused for 30 days" : "");
  rows.replaceChildren(...state.keys.map(keyRow));
  $("no-keys").hidden = state.keys.length > 0;
  await loadUsage();
}

function keyRow(key) {
  const scopes = key.grantAll ? "All access" : key.scopes.join(", ");
  const actions = el("div", { class: "row-actions" });
  const may = (what) => !state.portal || state.portal[what];
  if (may("maySeeUsage")) {
    actions.append(el("button", { type: "button", text: "Usage", "aria-label": `Usage of ${key.name}`,
      onclick: () => showUsage(key) }));
  }
  if (key.status === "active") {
    actions.append(el("button", { type: "button", text: "Edit", "aria-label": `Edit scopes of ${key.name}`,
      onclick: () => openEdit(key) }));
    if (may("mayRotate")) {
      actions.append(el("button", { type: "button", text: "Rotate", "aria-label": `Rotate ${key.name}`,
        onclick: () => openRotate(key) }));
    }
    if (may("mayRevoke")) {
      actions.append(el("button", { type: "button", class: "danger", text: "Revoke",
        "aria-label": `Revoke ${key.name}`, onclick: () => openRevoke(key) }));
    }
  }
  return el("tr", { "data-key-id": key.id },
    el("td", { "data-label": "Name", class: "name", text: key.name }),
    el("td", { "data-label": "Prefix" }, el("code", { text: `${key.prefix}…` })),
    el("td", { "data-label": "Scopes", class: "scope-list", text: scopes }),
    el("td", { "data-label": "Created" }, timeCell(key.createdAt, "—")),
    el("td", { "data-label": "Expires" }, timeCell(key.expiresAt, "Never")),
    el("td", { "data-label": "Last used" }, timeCell(key.lastUsedAt, "Never")),
    el("td", { "data-label": "Status" },
      el("span", { class: `status status-${key.status}`, text: key.status })),
    el("td", { class: "actions", "data-label": "Actions" }, actions),
  );
}

// ---- Usage -------------------------------------------------------------------------------
// A stacked bar chart of verifications over the chosen period, one colour family per kind of
// outcome, drawn as SVG by this script (no third-party code); the numbers are in the table
// beside it and in each bar's tooltip.

const OUTCOME_FAMILY = {
  VALID: "valid",
  RATE_LIMITED: "limited",
  USAGE_EXCEEDED: "limited",
  INSUFFICIENT_SCOPE: "forbidden",
  ACCOUNT_DISABLED: "forbidden",
  IP_NOT_ALLOWED: "forbidden",
  REFERRER_NOT_ALLOWED: "forbidden",
  METHOD_NOT_ALLOWED: "forbidden",
  PATH_NOT_ALLOWED: "forbidden",
};
const BUCKET_MS = { minute: 60e3, hour: 3600e3, day: 86400e3 };
const SVG = "http://www.w3.org/2000/svg";

function family(code) {
  return OUTCOME_FAMILY[code] || "invalid";
}

function svg(tag, attributes, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function showUsage(key) {
  state.usageKey = key;
  loadUsage().then(() => $("usage").scrollIntoView({ block: "nearest" }));
}

async function loadUsage() {
  $("usage-error").textContent = "";
  if (!state.account || (state.portal && !state.portal.maySeeUsage)) {
    $("usage").hidden = true;
    return;
  }
  $("usage").hidden = false;
  const key = state.usageKey;
  const params = new URLSearchParams({ startTime: $("usage-period").value });
  let path;
  if (key) {
    path = `/v1/api-keys/${encodeURIComponent(key.id)}/usage?${params}`;
  } else {
    params.set("accountId", state.account);
    path = `/v1/usage?${params}`;
  }
  $("usage-subject").textContent = key
    ? `Key ${key.name} (${key.prefix}…)`
    : `All keys of account ${state.account}`;
  $("usage-account").hidden = !key;
  try {
    drawUsage((await api("GET", path)).data);
  } catch (error) {
    $("usage-error").textContent = error.message;
    drawUsage(null);
  }
}

function drawUsage(data) {
  const chart = $("usage-chart");
  chart.replaceChildren(chart.querySelector("title"));
  const series = (data && data.series[0]) || { total: 0, counts: [], buckets: [] };
  chart.dataset.total = String(series.total);
  const codes = series.counts.map((c) => c.code);
  const [width, height, top] = [640, 220, 8];
  chart.append(svg("line", { class: "axis", x1: 0, y1: height - 1, x2: width, y2: height - 1 }));
  if (data) {
    const step = BUCKET_MS[data.granularity];
    const start = new Date(data.startTime).getTime();
    const count = Math.max(1, Math.round((new Date(data.endTime).getTime() - start) / step));
    const peak = Math.max(1, ...series.buckets.map((b) => b.total));
    const barWidth = width / count;
    for (const bucket of series.buckets) {
      const index = Math.round((new Date(bucket.startTime).getTime() - start) / step);
      const x = index * barWidth;
      const label = new Date(bucket.startTime).toLocaleString() + ": " + bucket.total + " (" +
        bucket.counts.map((c) => `${c.code} ${c.count}`).join(", ") + ")";
      const group = svg("g", { "data-total": bucket.total }, svg("title", {}, label));
      let y = height - 1;
      for (const code of codes) {
        const n = (bucket.counts.find((c) => c.code === code) || { count: 0 }).count;
        if (!n) continue;
        const h = ((height - top - 1) * n) / peak;
        y -= h;
        group.append(svg("rect", {
          class: `outcome-${family(code)}`, "data-code": code,
          x: x + barWidth * 0.1, y, width: Math.max(barWidth * 0.8, 0.5), height: h,
        }));
      }
      chart.append(group);
    }
    $("usage-from").textContent = new Date(data.startTime).toLocaleString();
    $("usage-to").textContent = new Date(data.endTime).toLocaleString();
    $("usage-peak").textContent = `peak ${peak} per ${data.granularity}`;
    $("usage-chart-title").textContent =
      `Verifications per ${data.granularity}, ${new Date(data.startTime).toLocaleString()} ` +
      `to ${new Date(data.endTime).toLocaleString()}; peak ${peak}`;
  }
  $("usage-legend").replaceChildren(...series.counts.map((c) =>
    el("span", {}, el("span", { class: `swatch outcome-${family(c.code)}` }), `${c.code} ${c.count}`)));
  $("usage-rows").replaceChildren(...series.counts.map((c) => el("tr", {},
    el("th", { scope: "row", "data-label": "Outcome" },
      el("span", { class: `swatch outcome-${family(c.code)}` }), c.code),
    el("td", { class: "num", "data-label": "Count", text: String(c.count) }))));
  $("usage-total").textContent = String(series.total);
}

// ---- Scope cards --------------------------------------------------------------------------

function holds(scope) {
  const me = state.me;
  return me.scopes.includes("root") || me.grantAll || me.scopes.includes(scope);
}

// Cards grouped by resource, each with its risk badge and an expandable description.
function renderScopeCards(fieldset, prefix, checked) {
  const legend = fieldset.querySelector("legend");
  const groups = new Map();
  for (const scope of state.catalog.scopes) {
    if (scope.name === "root") continue;
    // The portal shows what its session may grant (and what a key already holds).
    if (state.portal && !holds(scope.name) && !checked.includes(scope.name)) continue;
    if (!groups.has(scope.resource)) groups.set(scope.resource, []);
    groups.get(scope.resource).push(scope);
  }
  const nodes = [];
  for (const [resource, scopes] of groups) {
    const group = el("div", { class: "group", role: "group",
      "aria-labelledby": `${prefix}-group-${resource}` });
    group.append(el("h3", { id: `${prefix}-group-${resource}`, text: resource }));
    const cards = el("div", { class: "cards" });
    group.append(cards);
    for (const scope of scopes) {
      const id = `${prefix}-scope-${scope.name.replace(/[^a-z0-9]/gi, "-")}`;
      const box = el("input", { type: "checkbox", id, value: scope.name, name: "scope",
        checked: checked.includes(scope.name), disabled: !holds(scope.name) });
      const card = el("div", { class: "card" },
        el("div", { class: "card-head" },
          box,
          el("label", { for: id, text: scope.name }),
          el("span", { class: `badge risk-${scope.risk}`, text: RISK_TITLES[scope.risk] || scope.risk }),
        ),
        el("details", {},
          el("summary", { text: "What it allows" }),
          el("p", { text: scope.description + (scope.guardrail
            ? ` Guardrail: at most ${scope.guardrail.limit} per ${scope.guardrail.window}.` : "") }),
        ),
      );
      cards.append(card);
    }
    nodes.push(group);
  }
  fieldset.replaceChildren(legend, ...nodes);
}

function checkedScopes(fieldset) {
  return [...fieldset.querySelectorAll("input[name=scope]:checked")].map((box) => box.value);
}

// ---- Create -------------------------------------------------------------------------------

function openCreate() {
  if (!state.account) {
    $("keys-error").textContent = "Name the account to create the key in first.";
    return;
  }
  const form = $("create-form");
  form.reset();
  $("create-error").textContent = "";
  const presets = $("create-presets");
  const offered = state.catalog.presets.filter((preset) =>
    !state.portal || state.portal.presets.includes(preset.name));
  const choices = offered.map((preset) => ({
    value: preset.name,
    title: PRESET_TITLES[preset.name] || preset.name,
    description: preset.description,
  }));
  if (!state.portal || state.portal.scopes.length > 0) {
    choices.push({ value: "custom", title: "Custom", description: "Pick individual scopes." });
  }
  presets.replaceChildren(...choices.map((choice, i) => {
    const id = `create-preset-${choice.value}`;
    return el("div", { class: "preset" },
      el("input", { type: "radio", name: "preset", id, value: choice.value, checked: i === 0,
        onchange: presetChanged }),
      el("label", { for: id },
        el("strong", { text: choice.title }),
        el("span", { class: "hint", text: ` ${choice.description}` })),
    );
  }));
  renderScopeCards($("create-scopes"), "create", []);
  presetChanged();
  grantAllChanged("create");
  $("create-dialog").showModal();
  $("create-name").focus();
}

function selectedPreset() {
  const picked = document.querySelector("input[name=preset]:checked");
  return picked ? picked.value : "custom";
}

function presetChanged() {
  $("create-error").textContent = "";
  const preset = selectedPreset();
  $("create-scopes").hidden = preset !== "custom";
  const grantsAll = state.catalog.presets.some((p) => p.name === preset && p.grantAll);
  $("create-grant-all").checked = grantsAll || (preset === "custom" && $("create-grant-all").checked);
  $("create-grant-all").disabled = preset !== "custom";
  grantAllChanged("create");
}

function grantAllChanged(prefix) {
  $(`${prefix}-grant-all-warning`).hidden = !$(`${prefix}-grant-all`).checked;
}

async function submitCreate(event) {
  event.preventDefault();
  const error = $("create-error");
  error.textContent = "";
  const name = $("create-name").value.trim();
  if (!name) {
    error.textContent = "Give the key a name.";
    $("create-name").focus();
    return;
  }
  const body = { name, expiresIn: $("create-expiry").value, accountId: state.account };
  const preset = selectedPreset();
  if (preset === "custom") {
    body.scopes = checkedScopes($("create-scopes"));
    body.grantAll = $("create-grant-all").checked;
    if (body.scopes.length === 0 && !body.grantAll) {
      error.textContent = "Select at least one scope.";
      return;
    }
  } else {
    body.preset = preset;
  }
  try {
    const created = await api("POST", "/v1/api-keys", body);
    $("create-dialog").close();
    showSecret(created.data.key);
  } catch (e) {
    error.textContent = e.message;
  }
}

// ---- The secret, shown once ---------------------------------------------------------------

function showSecret(secret) {
  $("secret-value").textContent = secret;
  $("secret-copy-status").textContent = "";
  $("secret-dialog").showModal();
  $("secret-copy").focus();
}

async function copySecret() {
  const text = $("secret-value").textContent;
  const status = $("secret-copy-status");
  try {
    await navigator.clipboard.writeText(text);
    status.textContent = "Copied.";
  } catch {
    const range = document.createRange();
    range.selectNodeContents($("secret-value"));
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    status.textContent = "Selected: press Ctrl+C (⌘C) to copy.";
  }
}

function forgetSecret() {
  $("secret-value").textContent = "";
  $("secret-copy-status").textContent = "";
  window.getSelection().removeAllRanges();
}

async function secretDone() {
  forgetSecret();
  $("secret-dialog").close();
  await refresh();
}

// ---- Edit, rotate, revoke -----------------------------------------------------------------

let current = null;

function openEdit(key) {
  current = key;
  $("edit-subject").textContent = `${key.name} (${key.prefix}…)`;
  $("edit-error").textContent = "";
  renderScopeCards($("edit-scopes"), "edit", key.scopes);
  $("edit-grant-all").checked = key.grantAll;
  grantAllChanged("edit");
  $("edit-dialog").showModal();
}

async function submitEdit(event) {
  event.preventDefault();
  const scopes = checkedScopes($("edit-scopes"));
  const grantAll = $("edit-grant-all").checked;
  if (scopes.length === 0 && !grantAll) {
    $("edit-error").textContent = "Select at least one scope.";
    return;
  }
  try {
    await api("PATCH", `/v1/api-keys/${encodeURIComponent(current.id)}`, { scopes, grantAll });
    $("edit-dialog").close();
    await refresh();
  } catch (e) {
    $("edit-error").textContent = e.message;
  }
}

function openRotate(key) {
  current = key;
  $("rotate-subject").textContent = `${key.name} (${key.prefix}…)`;
  $("rotate-error").textContent = "";
  $("rotate-dialog").showModal();
}

async function submitRotate(event) {
  event.preventDefault();
  const grace = $("rotate-grace").value;
  try {
    const rotated = await api("POST", `/v1/api-keys/${encodeURIComponent(current.id)}/rotate`,
      grace ? { gracePeriod: grace } : {});
    $("rotate-dialog").close();
    showSecret(rotated.data.key);
  } catch (e) {
    $("rotate-error").textContent = e.message;
  }
}

function openRevoke(key) {
  current = key;
  $("revoke-subject").textContent = `Revoke ${key.name} (${key.prefix}…)?`;
  $("revoke-error").textContent = "";
  $("revoke-dialog").showModal();
  $("revoke-cancel").focus();
}

async function submitRevoke(event) {
  event.preventDefault();
  try {
    await api("DELETE", `/v1/api-keys/${encodeURIComponent(current.id)}`);
    $("revoke-dialog").close();
    await refresh();
  } catch (e) {
    $("revoke-error").textContent = e.message;
  }
}

// ---- Wiring -------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("admin-key");
    $("sign-in-error").textContent = "";
    try {
      await signIn(input.value.trim());
      input.value = "";
    } catch (e) {
      $("sign-in-error").textContent = e.status === 401
        ? "That key is not valid (unknown, revoked or expired)."
        : e.message;
    }
  });
  $("sign-out").addEventListener("click", signOut);
  $("account-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    state.account = $("account").value.trim();
    state.usageKey = null;
    sessionStorage.setItem(STORE_ACCOUNT, state.account);
    await refresh();
  });
  $("unused-filter").addEventListener("change", refresh);
  $("usage-period").addEventListener("change", loadUsage);
  $("usage-account").addEventListener("click", () => {
    state.usageKey = null;
    loadUsage();
  });
  $("create-open").addEventListener("click", openCreate);
  $("create-form").addEventListener("submit", submitCreate);
  $("create-cancel").addEventListener("click", () => $("create-dialog").close());
  $("create-grant-all").addEventListener("change", () => grantAllChanged("create"));
  $("secret-copy").addEventListener("click", copySecret);
  $("secret-done").addEventListener("click", secretDone);
  // Escape closes the dialog too: the secret goes with it.
  $("secret-dialog").addEventListener("close", forgetSecret);
  $("edit-form").addEventListener("submit", submitEdit);
  $("edit-cancel").addEventListener("click", () => $("edit-dialog").close());
  $("edit-grant-all").addEventListener("change", () => grantAllChanged("edit"));
  $("rotate-form").addEventListener("submit", submitRotate);
  $("rotate-cancel").addEventListener("click", () => $("rotate-dialog").close());
  $("revoke-form").addEventListener("submit", submitRevoke);
  $("revoke-cancel").addEventListener("click", () => $("revoke-dialog").close());
  if (PORTAL) {
    portalStart().catch((e) => portalEnded(e.message));
    return;
  }
  const saved = sessionStorage.getItem(STORE_KEY);
  if (saved) {
    signIn(saved).catch((e) => {
      $("sign-in-error").textContent = e.message;
    });
  }
});
