// Sending images over a weak link. Each file goes in small chunks through our resumable
// protocol (imaging/upload_views.py): a dropped connection is retried with backoff and the
// upload continues at the offset the server reports; upload URLs are kept in localStorage,
// so after a reload the same files, picked again, continue where they stopped. Then the
// page follows the processing of what arrived (indexed, failed and why).

const config = JSON.parse(document.getElementById("upload-config").textContent);
const S = config.strings;
const $ = (id) => document.getElementById(id);
const format = (text, values) => text.replace(/%\((\w+)\)s/g, (_, name) => values[name] ?? "");
const BACKOFF_S = [1, 2, 4, 8, 15, 30];

let picked = []; // {file, path, key, sent, li}
let running = false;

class Refused extends Error {}
class SessionEnded extends Error {}

// --- what is remembered across reloads ------------------------------------------------------

function loadState() {
  try {
    return JSON.parse(localStorage.getItem(config.storageKey));
  } catch {
    return null;
  }
}

function saveState(state) {
  if (state) localStorage.setItem(config.storageKey, JSON.stringify(state));
  else localStorage.removeItem(config.storageKey);
}

// --- talking to the server ------------------------------------------------------------------

function request(url, options = {}) {
  return fetch(url, {
    credentials: "same-origin",
    cache: "no-store",
    ...options,
    headers: { "X-CSRFToken": config.csrfToken, ...(options.headers || {}) },
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function pause(item, attempt) {
  const seconds = BACKOFF_S[Math.min(attempt, BACKOFF_S.length - 1)];
  for (let left = seconds; left > 0; left--) {
    if (item) setStatus(item, format(S.retrying, { seconds: left }));
    await sleep(1000);
  }
  if (item) setStatus(item, S.sending);
}

// A request retried until the server answers (network errors and 5xx are passing trouble).
async function answered(item, makeRequest) {
  for (let attempt = 0; ; attempt++) {
    let response = null;
    try {
      response = await makeRequest();
    } catch {
      response = null; // offline, connection reset
    }
    if (response && response.status === 401) throw new SessionEnded(S.sessionEnded);
    if (response && response.status < 500) return response;
    await pause(item, attempt);
  }
}

async function refusal(response) {
  const data = await response.json().catch(() => ({}));
  return new Refused(data.error || response.statusText);
}

async function ensureBatch(state) {
  if (state && state.batch && state.patient === config.patient) return state;
  const response = await answered(null, () =>
    request(config.batchesUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ patient: config.patient }),
    }),
  );
  if (!response.ok) throw await refusal(response);
  const batch = await response.json();
  const fresh = { batch, patient: config.patient, uploads: {} };
  saveState(fresh);
  return fresh;
}

async function currentState(item, url) {
  const response = await answered(item, () => request(url));
  if (!response.ok) return null; // unknown or expired: send the file again
  return response.json();
}

async function declare(item, state) {
  const response = await answered(item, () =>
    request(state.batch.files_url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name: item.file.name, path: item.path, size: item.file.size }),
    }),
  );
  if (!response.ok) throw await refusal(response);
  return response.json();
}

async function sendChunk(url, offset, body) {
  return request(url, {
    method: "PATCH",
    headers: { "Upload-Offset": String(offset), "Content-Type": "application/offset+octet-stream" },
    body,
  });
}

async function uploadOne(item, state, isRetry = false) {
  let upload = state.uploads[item.key] ? await currentState(item, state.uploads[item.key]) : null;
  if (upload && upload.offset > 0) {
    setStatus(item, format(S.resumed, { percent: `${Math.floor((100 * upload.offset) / upload.size)}%` }));
  }
  if (!upload) {
    upload = await declare(item, state);
    state.uploads[item.key] = upload.url;
    saveState(state);
  }
  const url = state.uploads[item.key];
  let offset = upload.offset;
  let isComplete = upload.is_complete;
  for (let attempt = 0; !isComplete; ) {
    item.sent = offset;
    showProgress();
    let response = null;
    try {
      response = await sendChunk(url, offset, item.file.slice(offset, offset + config.chunkBytes));
    } catch {
      response = null;
    }
    if (response && response.status === 401) throw new SessionEnded(S.sessionEnded);
    if (response && (response.ok || response.status === 409)) {
      const data = await response.json();
      offset = Number(response.headers.get("Upload-Offset") ?? data.offset);
      isComplete = response.ok ? data.is_complete : offset === item.file.size && (await currentState(item, url))?.is_complete;
      attempt = 0;
      setStatus(item, S.sending);
      continue;
    }
    if (response && (response.status === 404 || response.status === 410) && !isRetry) {
      // Expired or unknown (removed after a day): the file is sent again from the start.
      delete state.uploads[item.key];
      saveState(state);
      return uploadOne(item, state, true);
    }
    if (response && response.status < 500 && response.status !== 429) throw await refusal(response);
    // The chunk may or may not have arrived: wait, then ask the server where we stand.
    await pause(item, attempt++);
    const known = await currentState(item, url);
    if (!known && !isRetry) {
      delete state.uploads[item.key];
      saveState(state);
      return uploadOne(item, state, true);
    }
    if (!known) throw new Refused(S.failed);
    offset = known.offset;
    isComplete = known.is_complete;
  }
  item.sent = item.file.size;
  delete state.uploads[item.key];
  saveState(state);
}

// --- the page -------------------------------------------------------------------------------

function setStatus(item, text) {
  item.li.querySelector(".status").textContent = text;
}

function showProgress() {
  const total = picked.reduce((sum, item) => sum + item.file.size, 0) || 1;
  const sent = picked.reduce((sum, item) => sum + (item.sent || 0), 0);
  $("upload-overall").value = sent / total;
  $("upload-overall-text").textContent = `${Math.floor((100 * sent) / total)}% · ${(sent / 2 ** 20).toFixed(1)} / ${(total / 2 ** 20).toFixed(1)} MB`;
  for (const item of picked) item.li.querySelector("progress").value = (item.sent || 0) / (item.file.size || 1);
}

function showPicked() {
  const list = $("upload-list");
  list.replaceChildren();
  for (const item of picked) {
    item.li = document.createElement("li");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = item.path;
    const bar = document.createElement("progress");
    bar.max = 1;
    bar.value = 0;
    const status = document.createElement("span");
    status.className = "status muted";
    status.textContent = S.waiting;
    item.li.append(name, bar, status);
    list.append(item.li);
  }
  $("upload-progress").hidden = picked.length === 0;
  $("upload-send").disabled = picked.length === 0 || running;
  showProgress();
}

function pick(files) {
  if (running) return;
  const known = new Set(picked.map((item) => item.key));
  for (const { file, path } of files) {
    const key = `${path}|${file.size}|${file.lastModified}`;
    if (!known.has(key)) picked.push({ file, path, key, sent: 0 });
    known.add(key);
  }
  showPicked();
}

const fromInput = (input) =>
  [...input.files].map((file) => ({ file, path: file.webkitRelativePath || file.name }));

// A dropped folder is walked through the entries API (every browser that drags folders has it).
async function dropped(dataTransfer) {
  const found = [];
  const walk = async (entry) => {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      found.push({ file, path: entry.fullPath.replace(/^\//, "") });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (batch.length === 0) break;
        for (const child of batch) await walk(child);
      }
    }
  };
  const entries = [...dataTransfer.items].map((item) => item.webkitGetAsEntry?.()).filter(Boolean);
  if (entries.length === 0) return [...dataTransfer.files].map((file) => ({ file, path: file.name }));
  for (const entry of entries) await walk(entry);
  return found;
}

async function send() {
  if (running || picked.length === 0) return;
  running = true;
  $("upload-send").disabled = true;
  $("upload-error").hidden = true;
  $("upload-resume").hidden = true;
  let state = null;
  try {
    state = await ensureBatch(loadState());
    for (const item of picked) {
      if (item.done) continue;
      setStatus(item, S.sending);
      try {
        await uploadOne(item, state);
        item.done = true;
        setStatus(item, S.done);
      } catch (error) {
        if (error instanceof SessionEnded) throw error;
        item.done = true;
        item.li.classList.add("error");
        setStatus(item, `${S.failed}: ${error.message}`);
      }
      showProgress();
    }
  } catch (error) {
    $("upload-error").textContent = error.message;
    $("upload-error").hidden = false;
    running = false;
    $("upload-send").disabled = false;
    return;
  }
  running = false;
  follow(state);
}

// --- what happens to the files after they arrive ---------------------------------------------

function fillList(list, items) {
  list.replaceChildren(
    ...items.map((item) => {
      const li = document.createElement("li");
      li.textContent = `${item.name} — ${item.reason}`;
      return li;
    }),
  );
}

function showIngest(status) {
  const counts = status.counts;
  $("upload-ingest").hidden = false;
  $("upload-ingest-state").textContent = status.is_done ? S.finished : S.processing;
  $("upload-ingest-counts").textContent = format(S.counts, {
    ingested: counts.ingested || 0,
    duplicate: counts.duplicate || 0,
    document: counts.document || 0,
    failed: (counts.failed || 0) + (counts.conflict || 0),
    waiting: counts.received || 0,
  });
  $("upload-archives").replaceChildren(
    ...status.archives
      .filter((archive) => archive.status === "waiting" || archive.status === "unpacking")
      .map((archive) => {
        const li = document.createElement("li");
        li.textContent = format(S.unpacking, { name: archive.name });
        return li;
      }),
  );
  fillList($("upload-failed"), status.failed);
  $("upload-failed-title").hidden = status.failed.length === 0;
  fillList($("upload-skipped"), status.skipped);
  $("upload-skipped-box").hidden = status.skipped.length === 0;
  const studies = $("upload-studies");
  if (studies) studies.hidden = !(status.is_done && status.studies > 0);
}

async function follow(state) {
  for (let round = 0; ; round++) {
    const response = await answered(null, () => request(state.batch.status_url));
    if (!response.ok) return;
    const status = await response.json();
    showIngest(status);
    if (status.is_done) {
      const remembered = loadState();
      if (remembered && remembered.batch.batch === state.batch.batch) saveState(null);
      return;
    }
    await sleep(round < 10 ? 2000 : 6000);
  }
}

// --- wiring ----------------------------------------------------------------------------------

$("upload-files").addEventListener("change", (event) => pick(fromInput(event.target)));
$("upload-folder").addEventListener("change", (event) => pick(fromInput(event.target)));
$("upload-send").addEventListener("click", send);
const drop = $("upload-drop");
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("is-over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("is-over"));
drop.addEventListener("drop", async (event) => {
  event.preventDefault();
  drop.classList.remove("is-over");
  pick(await dropped(event.dataTransfer));
});

const remembered = loadState();
if (remembered && Object.keys(remembered.uploads || {}).length > 0) $("upload-resume").hidden = false;
