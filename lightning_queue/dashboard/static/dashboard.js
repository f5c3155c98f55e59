// lq dashboard: fills the page from /api/... and polls it. Every value goes in through textContent
// (never innerHTML), so rollout inputs and span attributes show as text whatever they contain.
"use strict";

const lq = { charts: {}, last: {} };
window.lqDashboard = lq;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key.startsWith("data-")) node.setAttribute(key, String(value));
    else if (key === "href") node.setAttribute("href", String(value));
    else if (key === "title") node.title = String(value);
    else if (key === "open") node.open = true;
    else throw new Error("unexpected attribute " + key);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function fmtTime(t) {
  return t ? new Date(t * 1000).toLocaleTimeString() : "–";
}

function fmtSeconds(s) {
  if (s === null || s === undefined) return "–";
  return s < 1 ? (s * 1000).toFixed(0) + " ms" : s.toFixed(2) + " s";
}

function fmtNumber(x) {
  return x === null || x === undefined ? "–" : (Number.isInteger(x) ? String(x) : x.toFixed(3));
}

function setText(id, value) {
  const node = document.getElementById(id);
  if (node) node.textContent = value === null || value === undefined ? "–" : String(value);
}

function statusBadge(status) {
  return el("span", { class: "status status-" + status, text: status });
}

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

// Poll `load` every refresh period; errors show in the banner and the polling goes on.
function poll(load) {
  const period = Number(document.body.dataset.refreshMs) || 2000;
  const errorBox = document.getElementById("error");
  const tick = async () => {
    try {
      await load();
      errorBox.hidden = true;
      setText("live", "updated " + new Date().toLocaleTimeString());
      document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
    } catch (err) {
      errorBox.hidden = false;
      errorBox.textContent = "update failed: " + err.message;
    }
    lq.timer = setTimeout(tick, period);
  };
  lq.refresh = () => { clearTimeout(lq.timer); return tick(); };
  tick();
}

// --- charts -------------------------------------------------------------------------------------
function chart(id, series, data) {
  const box = document.getElementById(id);
  box.dataset.points = String(data[0].length);
  if (!window.uPlot) { box.textContent = "(chart library not loaded)"; return; }
  const width = Math.max(320, box.clientWidth || 600);
  if (lq.charts[id]) { lq.charts[id].setData(data); return; }
  const opts = {
    width, height: 220,
    series: [{}, ...series],
    axes: [{}, { size: 60 }],
    scales: { x: { time: true } },
    legend: { live: true },
  };
  lq.charts[id] = new window.uPlot(opts, data, box);
}

// --- overview -----------------------------------------------------------------------------------
async function loadOverview() {
  const o = await getJSON("/api/overview");
  lq.last.overview = o;
  setText("queue-depth", o.queue_depth);
  setText("in-flight", o.in_flight);
  setText("total-rollouts", o.total_rollouts);
  setText("workers-alive", o.workers_alive);
  setText("total-spans", o.total_spans);
  setText("latest-resources", o.latest_resources);
  const body = document.querySelector("#status-counts tbody");
  body.replaceChildren(...Object.entries(o.rollouts_by_status).map(([status, n]) =>
    el("tr", { "data-status": status },
      el("th", {}, el("a", { href: "/rollouts?status=" + encodeURIComponent(status) }, statusBadge(status))),
      el("td", { class: "count", text: n }))));
  const h = o.history;
  chart("chart-queue", [
    { label: "queue depth", stroke: "#3867d6", width: 2 },
    { label: "running", stroke: "#20bf6b", width: 2 },
  ], [h.time, h.queue_depth, h.running]);
  chart("chart-throughput", [{ label: "rollouts/s", stroke: "#8854d0", width: 2 }], [h.time, h.throughput]);
  const r = o.rewards;
  const mean = r.reward.length ? r.reward.reduce((a, b) => a + b, 0) / r.reward.length : null;
  setText("reward-summary", r.reward.length
    ? `${r.reward.length} finished rollouts, mean reward ${fmtNumber(mean)}` : "no finished rollout has a reward yet");
  chart("chart-reward", [{
    label: "reward", stroke: "#eb3b5a", width: 0,
    points: { show: true, size: 6, fill: "#eb3b5a" },
  }], [r.time, r.reward]);
}

// --- rollouts -----------------------------------------------------------------------------------
function rolloutQuery() {
  const params = new URLSearchParams(location.search);
  params.delete("token");
  return params;
}

function syncForm(form, params) {
  const statuses = params.getAll("status").flatMap((s) => s.split(","));
  for (const box of form.querySelectorAll("input[name=status]")) box.checked = statuses.includes(box.value);
  form.elements.mode.value = params.get("mode") || "";
  form.elements.resources_id.value = params.get("resources_id") || "";
  form.elements.limit.value = params.get("limit") || "50";
}

async function loadRollouts() {
  const params = rolloutQuery();
  const page = await getJSON("/api/rollouts?" + params.toString());
  lq.last.rollouts = page;
  const rows = page.items.map((r) => el("tr", { "data-rollout-id": r.rollout_id },
    el("td", {}, el("a", { href: "/rollouts/" + encodeURIComponent(r.rollout_id), text: r.rollout_id })),
    el("td", {}, statusBadge(r.status)),
    el("td", { text: r.mode || "–" }),
    el("td", { text: r.resources_id || "–" }),
    el("td", { class: "num", text: r.attempts }),
    el("td", { text: r.worker_id || "–" }),
    el("td", { text: fmtTime(r.start_time) }),
    el("td", { class: "num", text: fmtSeconds(r.duration) }),
    el("td", { class: "input", text: r.input })));
  document.querySelector("#rollouts tbody").replaceChildren(...rows);
  const first = page.items.length ? page.offset + 1 : 0;
  const last = page.offset + page.items.length;
  const total = page.total === null ? "more than " + last + " (filter scan stopped)" : page.total;
  setText("page-info", `${first}–${last} of ${total}`);
  document.getElementById("prev").disabled = page.offset === 0;
  document.getElementById("next").disabled = page.total !== null && last >= page.total;
}

function initRollouts() {
  const form = document.getElementById("filters");
  syncForm(form, rolloutQuery());
  const go = (params) => {
    history.replaceState(null, "", "/rollouts?" + params.toString());
    lq.refresh();
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    for (const box of form.querySelectorAll("input[name=status]:checked")) params.append("status", box.value);
    for (const name of ["mode", "resources_id"]) if (form.elements[name].value) params.set(name, form.elements[name].value.trim());
    params.set("limit", form.elements.limit.value);
    go(params);
  });
  const move = (direction) => {
    const params = rolloutQuery();
    const limit = Number(params.get("limit") || 50);
    params.set("offset", String(Math.max(0, Number(params.get("offset") || 0) + direction * limit)));
    go(params);
  };
  document.getElementById("prev").addEventListener("click", () => move(-1));
  document.getElementById("next").addEventListener("click", () => move(1));
  poll(loadRollouts);
}

// --- one rollout --------------------------------------------------------------------------------
function pretty(value) {
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

function messageList(title, messages) {
  if (!messages.length) return null;
  return el("div", { class: "messages" }, el("h4", { text: title }), messages.map((m) =>
    el("div", { class: "message role-" + (m.role || "assistant") },
      el("span", { class: "role", text: m.role || "assistant" }),
      el("pre", { class: "content", text: pretty(m.content ?? m.tool_calls ?? "") }))));
}

function spanNode(span, children, open) {
  const badges = [];
  if (span.llm) badges.push(el("span", { class: "badge llm", text: "LLM" + (span.model ? " " + span.model : "") }));
  if (span.llm) {
    badges.push(el("span", { class: "badge tokens",
      text: `prompt ids ${span.prompt_token_ids ?? "–"} · response ids ${span.response_token_ids ?? "–"}` }));
  }
  if (span.missing_token_ids) {
    badges.push(el("span", { class: "badge warn missing-token-ids", title: "prompt_token_ids or response_token_ids absent: this call cannot be trained on", text: "⚠ no token ids" }));
  }
  if (span.reward !== null) badges.push(el("span", { class: "badge reward", text: "reward " + fmtNumber(span.reward) }));
  if (span.status === "ERROR") badges.push(el("span", { class: "badge error", text: "error" }));
  const duration = span.start_time && span.end_time ? fmtSeconds(span.end_time - span.start_time) : "";
  const details = el("details", { "data-span-id": span.span_id, open: open.has(span.span_id) },
    el("summary", {}, el("span", { class: "span-name", text: span.name }), " ",
      el("span", { class: "muted", text: "#" + span.sequence_id + " " + duration }), " ", badges),
    messageList("Prompt", span.prompt),
    messageList("Completion", span.completion),
    el("pre", { class: "attributes", text: JSON.stringify(span.attributes, null, 2) }));
  return el("li", { class: "span" + (span.llm ? " is-llm" : ""), "data-span-id": span.span_id },
    details, children.length ? el("ul", {}, children) : null);
}

function spanTree(spans, open) {
  const ids = new Set(spans.map((s) => s.span_id));
  const kids = new Map();
  for (const s of spans) {
    const parent = s.parent_id && ids.has(s.parent_id) ? s.parent_id : null;
    if (!kids.has(parent)) kids.set(parent, []);
    kids.get(parent).push(s);
  }
  const seen = new Set();
  const build = (parent) => (kids.get(parent) || []).filter((s) => !seen.has(s.span_id) && seen.add(s.span_id))
    .map((s) => spanNode(s, build(s.span_id), open));
  return build(null);
}

function attemptTimeline(attempts, shown, rolloutId) {
  if (!attempts.length) return [el("p", { class: "muted", text: "no attempt yet (queued)" })];
  const now = Date.now() / 1000;
  const start = Math.min(...attempts.map((a) => a.start_time));
  const end = Math.max(...attempts.map((a) => a.end_time || now));
  const span = Math.max(end - start, 1e-6);
  return attempts.map((a) => {
    const bar = el("span", { class: "bar status-" + a.status });
    bar.style.marginLeft = (100 * (a.start_time - start) / span).toFixed(2) + "%";
    bar.style.width = Math.max(0.5, 100 * ((a.end_time || now) - a.start_time) / span).toFixed(2) + "%";
    const link = el("a", { href: `/rollouts/${encodeURIComponent(rolloutId)}?attempt_id=${encodeURIComponent(a.attempt_id)}`,
      text: "#" + a.sequence_id });
    return el("div", { class: "attempt" + (a.attempt_id === shown ? " shown" : ""), "data-attempt-id": a.attempt_id },
      el("span", { class: "attempt-label" }, link, " ", statusBadge(a.status), " ",
        el("span", { class: "muted", text: (a.worker_id || "no worker") + " · " +
          fmtSeconds((a.end_time || now) - a.start_time) })),
      el("span", { class: "track" }, bar));
  });
}

async function loadRollout() {
  const id = document.body.dataset.rolloutId;
  const attempt = new URLSearchParams(location.search).get("attempt_id");
  const url = "/api/rollouts/" + encodeURIComponent(id) + (attempt ? "?attempt_id=" + encodeURIComponent(attempt) : "");
  const d = await getJSON(url);
  const text = JSON.stringify(d);
  if (text === lq.lastRollout) return;
  lq.lastRollout = text;
  lq.last.rollout = d;
  const status = document.getElementById("rollout-status");
  status.replaceChildren(statusBadge(d.rollout.status));
  setText("rollout-reward", fmtNumber(d.reward));
  setText("rollout-mode", d.rollout.mode);
  setText("rollout-resources", d.rollout.resources_id);
  setText("rollout-spans", d.spans_total);
  setText("rollout-missing", d.llm_spans_missing_token_ids);
  setText("rollout-input", pretty(d.rollout.input));
  setText("shown-attempt", d.attempt_id || "–");
  document.getElementById("attempts").replaceChildren(...attemptTimeline(d.attempts, d.attempt_id, d.rollout.rollout_id));
  const open = new Set([...document.querySelectorAll("#spans details[open]")].map((n) => n.dataset.spanId));
  const tree = spanTree(d.spans, open);
  document.getElementById("spans").replaceChildren(...(tree.length ? tree : [el("li", { class: "muted", text: "no spans" })]));
}

// --- workers, resources -------------------------------------------------------------------------
async function loadWorkers() {
  const d = await getJSON("/api/workers");
  lq.last.workers = d;
  const rows = d.items.map((w) => {
    const s = w.heartbeat_stats || {};
    return el("tr", { "data-worker-id": w.worker_id },
      el("td", { text: w.worker_id }), el("td", {}, statusBadge(w.status)),
      el("td", { text: w.last_heartbeat_time ? fmtSeconds(d.time - w.last_heartbeat_time) + " ago" : "–" }),
      el("td", {}, w.current_rollout_id
        ? el("a", { href: "/rollouts/" + encodeURIComponent(w.current_rollout_id), text: w.current_rollout_id }) : "–"),
      ...["host", "pid", "in_flight", "completed", "cpu_pct", "mem_mb"].map((k) => el("td", { text: s[k] ?? "–" })));
  });
  document.querySelector("#workers tbody").replaceChildren(...rows);
}

async function loadResources() {
  const d = await getJSON("/api/resources");
  lq.last.resources = d;
  const rows = d.items.map((r) => el("tr", { "data-resources-id": r.resources_id, class: r.latest ? "latest" : null },
    el("td", {}, el("a", { href: "/rollouts?resources_id=" + encodeURIComponent(r.resources_id), text: r.resources_id }),
      r.latest ? el("span", { class: "badge", text: "latest" }) : null),
    el("td", { class: "num", text: r.version }),
    el("td", { text: fmtTime(r.create_time) }), el("td", { text: fmtTime(r.update_time) }),
    el("td", {}, el("pre", { class: "block", text: JSON.stringify(r.resources, null, 2) }))));
  document.querySelector("#resources tbody").replaceChildren(...rows);
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "overview") poll(loadOverview);
  else if (page === "rollouts") initRollouts();
  else if (page === "rollout") poll(loadRollout);
  else if (page === "workers") poll(loadWorkers);
  else if (page === "resources") poll(loadResources);
});
