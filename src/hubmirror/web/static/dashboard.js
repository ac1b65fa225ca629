// hubmirror dashboard: polls the mirror's /-/api/ endpoints and renders them.
// Plain browser JavaScript, no build step and no external assets.
"use strict";

const TOKEN_KEY = "hubmirror-token";
const DOWNLOADS_EVERY_MS = 1000;
const STATUS_EVERY_MS = 3000;
const LISTS_EVERY_MS = 5000;

let knownDownloads = new Set();

function token() {
  return window.localStorage.getItem(TOKEN_KEY) || "";
}

function showMessage(text) {
  const message = document.getElementById("message");
  message.textContent = text;
  message.hidden = !text;
}

async function api(name, params) {
  const query = params ? "?" + new URLSearchParams(params).toString() : "";
  const headers = {};
  if (token()) {
    headers.Authorization = "Bearer " + token();
  }
  const response = await fetch("/-/api/" + name + query, { headers, cache: "no-store" });
  if (response.status === 401) {
    showMessage("This mirror needs a token: enter it above.");
    throw new Error("unauthorized");
  }
  if (!response.ok) {
    let detail = response.statusText;
    try {
      detail = (await response.json()).error || detail;
    } catch (ignored) {
      // not JSON: keep the status text
    }
    const error = new Error(detail);
    error.status = response.status;
    throw error;
  }
  showMessage("");
  return response.json();
}

function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) {
    return "–";
  }
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return (unit === 0 ? value.toString() : value.toFixed(1)) + " " + units[unit];
}

function formatPercent(ratio) {
  return ratio === null || ratio === undefined ? "–" : (ratio * 100).toFixed(1) + " %";
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) {
    td.className = className;
  }
  return td;
}

function replaceRows(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function repoLink(repoType, repo) {
  const link = document.createElement("a");
  link.href = "#/repo/" + repoType + "/" + repo;
  link.textContent = (repoType === "model" ? "" : repoType + "s/") + repo;
  return link;
}

// status -----------------------------------------------------------------------------
function upstreamHealth(upstream) {
  if (upstream.healthy) return upstream.state + " (healthy)";
  return upstream.state === "closed" ? "unreachable" : upstream.state;
}

function upstreamProbe(probe) {
  if (!probe) return "";
  const age = Math.max(0, Math.round(Date.now() / 1000 - probe.at));
  const outcome = probe.ok ? Math.round(probe.seconds * 1000) + " ms" : probe.detail;
  return outcome + ", " + age + " s ago";
}

function renderStatus(status) {
  document.getElementById("version").textContent = "v" + status.version;
  const mode = document.getElementById("mode");
  mode.textContent = status.mode;
  mode.className = "badge " + status.mode;
  document.getElementById("policy").textContent = "policy: " + status.policy_profile;

  const upstreamRows = status.upstreams.map((upstream) => {
    const row = document.createElement("tr");
    row.append(
      cell(upstream.name),
      cell(upstream.url),
      cell(upstreamHealth(upstream), "state-" + (upstream.healthy ? upstream.state : "open")),
      cell(upstream.active ? "active" : ""),
      cell(upstreamProbe(upstream.last_probe)),
    );
    return row;
  });
  replaceRows(document.querySelector("#upstreams tbody"), upstreamRows);
  document.getElementById("no-upstreams").hidden = status.upstreams.length > 0;

  const cluster = status.cluster;
  document.getElementById("cluster-panel").hidden = !cluster;
  if (cluster) {
    const nodeRows = cluster.nodes.map((node) => {
      const row = document.createElement("tr");
      row.append(cell(node.id), cell(node.url), cell(node.id === cluster.node ? "this node" : ""));
      return row;
    });
    replaceRows(document.querySelector("#nodes tbody"), nodeRows);
  }

  const cache = status.cache;
  const size = document.getElementById("cache-size");
  size.textContent = formatBytes(cache.stored_bytes);
  size.dataset.bytes = String(cache.stored_bytes);
  document.getElementById("cache-limit").textContent = cache.limit_bytes
    ? "of " + formatBytes(cache.limit_bytes)
    : "(no size limit)";
  const fill = document.getElementById("cache-bar-fill");
  const share = cache.limit_bytes ? Math.min(1, cache.stored_bytes / cache.limit_bytes) : 0;
  fill.style.width = (share * 100).toFixed(1) + "%";
  fill.classList.toggle("full", share >= 0.95);
  const blobCount = document.getElementById("blob-count");
  blobCount.textContent = String(cache.blob_count);
  blobCount.dataset.count = String(cache.blob_count);
  document.getElementById("dedup-saving").textContent = formatBytes(cache.dedup_saving_bytes);
  document.getElementById("hit-ratio").textContent = formatPercent(status.traffic.hit_ratio);
  document.getElementById("bandwidth-saved").textContent = formatBytes(status.traffic.saved_bytes);
}

function renderHistory(samples) {
  const canvas = document.getElementById("traffic-chart");
  const context = canvas.getContext("2d");
  const width = canvas.width;
  const height = canvas.height;
  context.clearRect(0, 0, width, height);
  if (samples.length < 2) {
    context.fillStyle = "#66707a";
    context.fillText("collecting samples…", 10, height / 2);
    return;
  }
  const first = samples[0].time;
  const span = Math.max(1, samples[samples.length - 1].time - first);
  const x = (time) => 4 + ((time - first) / span) * (width - 8);
  const maxSaved = Math.max(1, ...samples.map((sample) => sample.saved_bytes));

  context.strokeStyle = "#2f6fde";
  context.lineWidth = 2;
  context.beginPath();
  samples.forEach((sample, index) => {
    const y = height - 4 - (sample.saved_bytes / maxSaved) * (height - 8);
    if (index === 0) {
      context.moveTo(x(sample.time), y);
    } else {
      context.lineTo(x(sample.time), y);
    }
  });
  context.stroke();

  context.fillStyle = "#1f8a4c";
  for (let index = 1; index < samples.length; index += 1) {
    const hits = samples[index].hits - samples[index - 1].hits;
    const misses = samples[index].misses - samples[index - 1].misses;
    if (hits + misses > 0) {
      const y = height - 4 - (hits / (hits + misses)) * (height - 8);
      context.fillRect(x(samples[index].time) - 2, y - 2, 4, 4);
    }
  }
  context.fillStyle = "#66707a";
  const saved = samples[samples.length - 1].saved_bytes;
  context.fillText(saved > 0 ? "saved " + formatBytes(saved) : "no bytes served from cache yet", 6, 12);
}

// downloads --------------------------------------------------------------------------
function downloadRow(download) {
  const row = document.createElement("tr");
  row.dataset.key = download.key;
  const file = document.createElement("td");
  file.append(repoLink(download.repo_type, download.repo), document.createTextNode(" / " + download.path));
  const progressCell = document.createElement("td");
  const progress = document.createElement("progress");
  const text = document.createElement("div");
  text.className = "progress-text";
  progressCell.append(progress, text);
  row.append(file, progressCell, cell("", "speed number"), cell("", "clients number"));
  return row;
}

function updateDownloadRow(row, download) {
  const progress = row.querySelector("progress");
  progress.max = download.size;
  progress.value = download.received;
  const share = download.size ? download.received / download.size : 1;
  row.querySelector(".progress-text").textContent =
    formatBytes(download.received) + " of " + formatBytes(download.size) + " (" + formatPercent(share) + ")";
  row.querySelector(".speed").textContent = formatBytes(download.bytes_per_second) + "/s";
  row.querySelector(".clients").textContent = String(download.clients);
}

function renderDownloads(downloads) {
  const tbody = document.querySelector("#downloads tbody");
  const existing = new Map([...tbody.querySelectorAll("tr")].map((row) => [row.dataset.key, row]));
  const rows = downloads.map((download) => {
    const row = existing.get(download.key) || downloadRow(download);
    updateDownloadRow(row, download);
    return row;
  });
  replaceRows(tbody, rows);
  document.getElementById("no-downloads").hidden = downloads.length > 0;
  const keys = new Set(downloads.map((download) => download.key));
  const finished = [...knownDownloads].some((key) => !keys.has(key));
  knownDownloads = keys;
  return finished;
}

// lists ------------------------------------------------------------------------------
function renderRepos(repos) {
  replaceRows(
    document.querySelector("#top-repos tbody"),
    repos.map((repo) => {
      const row = document.createElement("tr");
      const name = document.createElement("td");
      name.append(repoLink(repo.repo_type, repo.repo));
      row.append(name, cell(String(repo.blobs), "number"), cell(formatBytes(repo.stored_bytes), "number"));
      return row;
    }),
  );
}

function renderAudit(entries) {
  replaceRows(
    document.querySelector("#audit tbody"),
    entries.map((entry) => {
      const row = document.createElement("tr");
      const file = document.createElement("td");
      file.append(repoLink(entry.repo_type, entry.repo), document.createTextNode(" / " + entry.path));
      row.append(
        cell(entry.time.replace("T", " ").slice(0, 19)),
        cell(entry.user),
        file,
        cell(entry.cache),
        cell(formatBytes(entry.bytes), "number"),
        cell(entry.result),
      );
      return row;
    }),
  );
}

// repo page --------------------------------------------------------------------------
function currentRepo() {
  const match = window.location.hash.match(/^#\/repo\/(model|dataset|space|kernel)\/(.+)$/);
  if (!match) {
    return null;
  }
  const [path, query] = match[2].split("?");
  const revision = new URLSearchParams(query || "").get("revision") || "main";
  return { type: match[1], id: decodeURIComponent(path), revision };
}

async function renderRepoPage(repo) {
  document.getElementById("repo-title").textContent =
    (repo.type === "model" ? "" : repo.type + "s/") + repo.id;
  document.getElementById("revision-input").value = repo.revision;
  const tbody = document.querySelector("#repo-files tbody");
  const summary = document.getElementById("repo-summary");
  let answer;
  try {
    answer = await api("repo", { type: repo.type, id: repo.id, revision: repo.revision });
  } catch (error) {
    replaceRows(tbody, []);
    summary.textContent = error.message;
    return;
  }
  const cached = answer.files.filter((file) => file.cached).length;
  const hidden = answer.files.filter((file) => file.hidden).length;
  summary.textContent =
    "commit " + answer.commit.slice(0, 12) + " · " + answer.files.length + " files known" +
    (answer.complete ? "" : " (partial list)") + " · " + cached + " cached · " + hidden +
    " hidden by the policy" + (answer.repo_hidden_by_policy ? " · the whole repo is hidden by the policy" : "");
  replaceRows(
    tbody,
    answer.files.map((file) => {
      const row = document.createElement("tr");
      row.dataset.path = file.path;
      row.classList.toggle("hidden-file", file.hidden);
      row.append(
        cell(file.path),
        cell(formatBytes(file.size), "number"),
        cell(file.cached ? "cached" : "not cached", "cached"),
        cell(file.hidden ? "hidden (" + file.rule + ")" : "served", "policy"),
        cell(file.scan || "", "scan"),
      );
      return row;
    }),
  );
}

// polling ----------------------------------------------------------------------------
async function refreshStatus() {
  const [status, history] = await Promise.all([api("status"), api("history")]);
  renderStatus(status);
  renderHistory(history);
}

async function refreshDownloads() {
  if (renderDownloads(await api("downloads"))) {
    await refreshStatus(); // a download finished: the cache grew
  }
}

async function refreshLists() {
  const [repos, audit] = await Promise.all([api("repos"), api("audit")]);
  renderRepos(repos);
  renderAudit(audit);
  await refreshRequests();
}

const PLURALS = { model: "models", dataset: "datasets", space: "spaces" };

function adminHeaders() {
  const headers = { "Content-Type": "application/json" };
  if (token()) {
    headers.Authorization = "Bearer " + token();
  }
  return headers;
}

// The requests panel: only for an admin token (other viewers never see it).
async function refreshRequests() {
  const panel = document.getElementById("requests-panel");
  if (!token()) {
    panel.hidden = true;
    return;
  }
  const response = await fetch("/-/admin/requests", { headers: adminHeaders(), cache: "no-store" });
  if (!response.ok) {
    panel.hidden = true;
    return;
  }
  renderRequests(await response.json());
  panel.hidden = false;
}

function renderRequests(requests) {
  const rows = requests.map((request) => {
    const row = document.createElement("tr");
    row.dataset.repo = request.repo;
    row.className = "request-" + request.status;
    const note = document.createElement("input");
    note.type = "text";
    note.placeholder = "note";
    note.value = request.note || "";
    note.className = "request-note";
    const noteCell = document.createElement("td");
    noteCell.append(note);
    const repoCell = document.createElement("td");
    repoCell.append(repoLink(request.repo_type, request.repo));
    const actions = document.createElement("td");
    for (const decision of ["approve", "reject"]) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = decision === "approve" ? "Approve" : "Reject";
      button.className = "request-" + decision;
      button.addEventListener("click", () => decide(request, decision, note.value));
      actions.append(button);
    }
    row.append(
      cell(String(request.number)),
      repoCell,
      cell(request.status, "status-" + request.status),
      cell(String(request.times)),
      cell(request.last_asked || "–"),
      cell(request.requester || "–"),
      noteCell,
      actions,
    );
    return row;
  });
  replaceRows(document.querySelector("#requests tbody"), rows);
}

async function decide(request, decision, note) {
  const url = "/-/admin/requests/" + PLURALS[request.repo_type] + "/" + request.repo + "/" + decision;
  const response = await fetch(url, {
    method: "POST",
    headers: adminHeaders(),
    body: JSON.stringify({ note }),
  });
  showMessage(response.ok ? "" : "The decision was refused (" + response.status + ")");
  await refreshRequests();
}

function every(milliseconds, task) {
  const run = async () => {
    try {
      await task();
    } catch (error) {
      // shown by api(); try again on the next tick
    }
    window.setTimeout(run, milliseconds);
  };
  run();
}

function route() {
  const repo = currentRepo();
  document.getElementById("overview").hidden = repo !== null;
  document.getElementById("repo-page").hidden = repo === null;
  if (repo) {
    renderRepoPage(repo);
  }
}

function refreshAll() {
  Promise.allSettled([refreshStatus(), refreshDownloads(), refreshLists()]);
  route();
}

document.addEventListener("DOMContentLoaded", () => {
  const input = document.getElementById("token-input");
  input.value = token();
  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    window.localStorage.setItem(TOKEN_KEY, input.value.trim());
    refreshAll();
  });
  document.getElementById("token-clear").addEventListener("click", () => {
    window.localStorage.removeItem(TOKEN_KEY);
    input.value = "";
    refreshAll();
  });
  document.getElementById("revision-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const repo = currentRepo();
    if (repo) {
      const revision = document.getElementById("revision-input").value.trim() || "main";
      window.location.hash = "#/repo/" + repo.type + "/" + repo.id + "?revision=" + encodeURIComponent(revision);
    }
  });
  window.addEventListener("hashchange", route);
  route();
  every(DOWNLOADS_EVERY_MS, refreshDownloads);
  every(STATUS_EVERY_MS, refreshStatus);
  every(LISTS_EVERY_MS, refreshLists);
});
