// The patient's health diary on the phone. Every entry goes into a queue in localStorage
// first, with a UUID made here, and is sent from there: an entry survives a lost link, a
// closed tab or a reload, and the server stores each UUID once however often it is sent.
import { loadCharts } from "./diary-charts.js";

const config = JSON.parse(document.getElementById("diary-config").textContent);
const strings = config.strings;
const specs = Object.fromEntries(config.measures.map((spec) => [spec.measure, spec]));
const KEY = config.queueKey; // per user: two people may share one phone
const KEEP_SENT = 10;
const RETRY_MS = 20000;

const queueList = document.getElementById("diary-queue");
const statusLine = document.getElementById("diary-status");
const offlineNotice = document.getElementById("diary-offline");
const loginNotice = document.getElementById("diary-login");
const sending = new Set();

// --- the queue, always re-read before a change (another tab may have changed it) -----------

function load() {
  try {
    return JSON.parse(localStorage.getItem(KEY)) || [];
  } catch {
    return [];
  }
}

function save(items) {
  const sent = items.filter((item) => item.status === "sent");
  const dropped = new Set(sent.slice(KEEP_SENT).map((item) => item.uuid));
  localStorage.setItem(KEY, JSON.stringify(items.filter((item) => !dropped.has(item.uuid))));
}

function update(uuid, changes) {
  const items = load();
  const item = items.find((entry) => entry.uuid === uuid);
  if (item) Object.assign(item, changes);
  save(items);
}

function newUuid() {
  if (crypto.randomUUID) return crypto.randomUUID(); // secure contexts only
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// --- checking a reading here, with the server's ranges, for instant feedback ---------------

const format = (text, values) => text.replace(/%\((\w+)\)s/g, (_, name) => values[name] ?? "");
const toNumber = (raw) => Number(String(raw).trim().replace(",", "."));

function check(spec, values) {
  if (spec.fields.length === 0) return values.text.trim() ? "" : strings.describe;
  for (const field of spec.fields) {
    const raw = values[field.name].trim();
    if (!raw) return format(strings.enterValue, { what: field.label });
    const number = toNumber(raw);
    if (!Number.isFinite(number) || number < field.low || number > field.high) {
      return format(strings.checkValue, { what: field.label, low: field.low, high: field.high });
    }
  }
  if (spec.fields.length === 2 && toNumber(values.diastolic) >= toNumber(values.systolic)) {
    return strings.diastolicBelow;
  }
  return "";
}

function summary(spec, values) {
  if (spec.fields.length === 0) {
    const text = values.text.trim();
    return text.length > 60 ? `${text.slice(0, 60)}…` : text;
  }
  const numbers = spec.fields.map((field) => values[field.name].trim().replace(",", "."));
  return `${numbers.join("/")} ${spec.unit}`;
}

// --- sending ---------------------------------------------------------------------------------

function csrfToken() {
  const cookie = document.cookie
    .split("; ")
    .find((part) => part.startsWith(`${config.csrfCookieName}=`));
  if (cookie) return decodeURIComponent(cookie.split("=")[1]);
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  return input ? input.value : "";
}

// "next": go on with the queue; "stop": the link or the session is down, try again later.
async function send(item) {
  let response;
  sending.add(item.uuid);
  render();
  try {
    response = await fetch(config.entriesUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        "X-CSRFToken": csrfToken(),
      },
      body: JSON.stringify({
        uuid: item.uuid,
        measure: item.measure,
        values: item.values,
        measured_at: item.measured_at,
      }),
    });
  } catch {
    return "stop"; // no link: the entry stays waiting
  } finally {
    sending.delete(item.uuid);
  }
  let body = {};
  try {
    body = await response.json();
  } catch {
    body = {};
  }
  if (response.ok && body.status === "saved") {
    update(item.uuid, { status: "sent", sent_at: new Date().toISOString(), message: "" });
    loginNotice.hidden = true;
    return "sent";
  }
  if (response.status === 400 && body.status === "refused") {
    update(item.uuid, { status: "refused", message: body.message });
    return "next";
  }
  if (response.status === 401 || response.status === 403) {
    // Logged out, or the CSRF token went stale: keep everything, ask to log in again.
    loginNotice.textContent = strings.loginAgain;
    loginNotice.hidden = false;
  }
  return "stop";
}

let flushing = false;

async function flush() {
  if (flushing) return;
  flushing = true;
  let anySent = false;
  try {
    for (;;) {
      const next = load().find((item) => item.status === "waiting" && !sending.has(item.uuid));
      if (!next) break;
      const outcome = await send(next);
      if (outcome === "sent") anySent = true;
      if (outcome === "stop") break;
    }
  } finally {
    flushing = false;
    render();
  }
  if (anySent) {
    if (!load().some((item) => item.status === "waiting")) statusLine.textContent = "";
    loadCharts();
  }
}

// --- the page --------------------------------------------------------------------------------

function when(iso) {
  try {
    return new Date(iso).toLocaleString(document.documentElement.lang || undefined, {
      dateStyle: "short",
      timeStyle: "short",
    });
  } catch {
    return iso;
  }
}

function render() {
  const items = load();
  queueList.textContent = "";
  if (items.length === 0) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = strings.nothingYet;
    queueList.append(li);
  }
  for (const item of items) {
    const status = sending.has(item.uuid) ? "sending" : item.status;
    const li = document.createElement("li");
    li.className = `diary-entry diary-${status}`;
    li.dataset.uuid = item.uuid;
    li.dataset.status = status;
    const head = document.createElement("div");
    head.className = "diary-entry-head";
    const what = document.createElement("strong");
    const spec = specs[item.measure];
    what.textContent = `${spec ? spec.label : item.measure}: ${item.summary}`;
    const badge = document.createElement("span");
    badge.className = "diary-badge";
    badge.textContent = strings[status] || status;
    head.append(what, badge);
    const time = document.createElement("small");
    time.className = "muted";
    time.textContent = when(item.measured_at);
    li.append(head, time);
    if (item.status === "refused") {
      const reason = document.createElement("div");
      reason.className = "error";
      reason.textContent = item.message;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "link";
      remove.textContent = strings.remove;
      remove.addEventListener("click", () => {
        save(load().filter((entry) => entry.uuid !== item.uuid));
        render();
      });
      li.append(reason, remove);
    }
    queueList.append(li);
  }
}

function showForm(measure) {
  for (const tab of document.querySelectorAll(".diary-tab")) {
    tab.setAttribute("aria-pressed", String(tab.dataset.measure === measure));
  }
  for (const form of document.querySelectorAll(".diary-form")) {
    form.hidden = form.dataset.measure !== measure;
  }
  const first = document.querySelector(`.diary-form[data-measure="${measure}"] input, .diary-form[data-measure="${measure}"] textarea`);
  if (first) first.focus();
}

function onSubmit(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const spec = specs[form.dataset.measure];
  const values = Object.fromEntries(new FormData(form).entries());
  const error = form.querySelector("[data-role=error]");
  const problem = check(spec, values);
  error.textContent = problem;
  error.hidden = !problem;
  if (problem) return;
  const items = load();
  items.unshift({
    uuid: newUuid(),
    measure: spec.measure,
    values,
    measured_at: new Date().toISOString(),
    summary: summary(spec, values),
    status: "waiting",
  });
  save(items);
  form.reset();
  statusLine.textContent = navigator.onLine ? strings.saved : strings.savedOffline;
  render();
  flush();
}

function showConnection() {
  offlineNotice.hidden = navigator.onLine;
}

for (const tab of document.querySelectorAll(".diary-tab")) {
  tab.addEventListener("click", () => showForm(tab.dataset.measure));
}
for (const form of document.querySelectorAll(".diary-form")) {
  form.addEventListener("submit", onSubmit);
}
window.addEventListener("online", () => {
  showConnection();
  flush();
});
window.addEventListener("offline", showConnection);
window.addEventListener("storage", (event) => {
  if (event.key === KEY) render();
});
setInterval(() => {
  if (navigator.onLine && load().some((item) => item.status === "waiting")) flush();
}, RETRY_MS);

showConnection();
render();
flush();
loadCharts();

if ("serviceWorker" in navigator && config.serviceWorkerUrl) {
  navigator.serviceWorker.register(config.serviceWorkerUrl).catch(() => {});
}
