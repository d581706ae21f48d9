// xsharp console: every page calls the REST API with the token pasted at login (kept in this
// tab's sessionStorage). No framework: a small element builder, one function per page.
"use strict";

const TOKEN_KEY = "xsharp.token";
const FLASH_KEY = "xsharp.flash";
const WAITING = ["QUEUED", "PREEMPTED"];
const ACTIVE = ["RUNNING", "QUEUED", "PREEMPTED", "PAUSED"];
const FINISHED = ["SUCCEEDED", "FAILED", "STOPPED"];
const SEARCHABLE = /^(model\[|pretrain\.|train\.)/;  // the hyper-parameters: module options, pretraining, fine-tuning
const COLORS = ["#2f5bea", "#e8590c", "#2b8a3e", "#ae3ec9", "#1098ad", "#c92a2a", "#5c940d", "#862e9c"];

// ------------------------------------------------------------------------------------------ basics
function h(tag, attrs, ...children) {
  const el = tag.startsWith("svg:") ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const token = () => sessionStorage.getItem(TOKEN_KEY);

class ApiError extends Error {
  constructor(status, detail) {
    const lines = Array.isArray(detail) ? detail.map((d) => (typeof d === "string" ? d : JSON.stringify(d))) : [typeof detail === "string" ? detail : JSON.stringify(detail)];
    super(`${status}: ${lines.join("; ")}`);
    this.status = status;
    this.lines = lines;
  }
}

async function readBody(r) {
  const type = r.headers.get("content-type") || "";
  return r.status === 204 ? null : type.includes("json") ? r.json() : r.text();
}

async function request(method, path, data, bearer = token()) {
  // The response, when it is a success (callers that need its headers); else an ApiError.
  // `data`: an object sent as JSON, or a FormData sent as multipart/form-data (the browser sets its boundary).
  const headers = { Authorization: `Bearer ${bearer || ""}` };
  const form = data instanceof FormData;
  if (data !== undefined && !form) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: data === undefined ? undefined : form ? data : JSON.stringify(data) });
  if (r.status === 401 && document.body.dataset.page !== "login") {
    sessionStorage.removeItem(TOKEN_KEY);
    location.assign(`/ui/login?next=${encodeURIComponent(location.pathname)}`);
    throw new ApiError(401, "log in again");
  }
  if (!r.ok) {
    const detail = await readBody(r).catch(() => null);
    throw new ApiError(r.status, detail && detail.detail !== undefined ? detail.detail : detail || r.statusText);
  }
  return r;
}

async function api(method, path, data, bearer = token()) {
  return readBody(await request(method, path, data, bearer));
}

async function since(path, after) {
  // A polled series: what is new after `after`, and where to ask from next (X-Next-After).
  const r = await request("GET", `${path}${path.includes("?") ? "&" : "?"}after=${after}`);
  return [await readBody(r), Number(r.headers.get("X-Next-After"))];
}

function flash(message) {
  const el = $("#flash");
  el.textContent = message;
  el.hidden = !message;
}

function every(ms, fn) {
  // Run fn now and then ms (a number, or a function giving one) after each run ends; fn returns false to stop.
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    let again = true;
    try { again = (await fn()) !== false; } catch (e) { console.error(e); }
    if (again && !stopped) setTimeout(tick, typeof ms === "function" ? ms() : ms);
  };
  tick();
  return () => { stopped = true; };
}

const fmt = {
  duration(s) {
    if (s === null || s === undefined || !isFinite(s)) return "—";
    s = Math.max(0, Math.round(s));
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
    return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  },
  time(ts) { return ts ? new Date(ts * 1000).toLocaleString() : "—"; },
  num(x, digits = 4) {
    if (x === null || x === undefined) return "—";
    const s = Number(x).toPrecision(digits);
    return s.includes("e") ? s.replace(/\.?0+e/, "e") : s.includes(".") ? s.replace(/\.?0+$/, "") : s;
  },
  pct(x) { return x === null || x === undefined ? "—" : `${(100 * x).toFixed(1)}%`; },
  mib(x) { return x === null || x === undefined ? "—" : x >= 1024 ? `${(x / 1024).toFixed(1)} GiB` : `${Math.round(x)} MiB`; },
  res(job, defaults = {}) {
    // `defaults`: the resources section's defaults (specDefaults), for a spec that leaves them out.
    const r = { ...defaults, ...job.resources };
    return `${r.workers ?? "?"} × ${r.cpus_per_worker ?? "?"} CPU` + (r.gpus_per_worker ? ` + ${r.gpus_per_worker} GPU` : "");
  },
};

function stateBadge(state) { return h("span", { class: `state state-${state}`, text: state }); }

function bar(fraction, hot) {
  const inner = h("span");
  inner.style.width = `${Math.max(0, Math.min(1, fraction || 0)) * 100}%`;
  return h("div", { class: `bar${hot ? " hot" : ""}` }, inner);
}

// ------------------------------------------------------------------------------------------ progress and ETA
// A job's plan, as the server lays out its spec (POST /v1/spec/plan): its phases in order, each with
// its epochs, batch size and share of the work; null for a search, or when the server cannot say.
async function planOf(spec) {
  return spec && !spec.search ? api("POST", "/v1/spec/plan", spec).catch(() => null) : null;
}

function progressOf(job, plan) {
  // {fraction, at(step), label, total}: the share of the job's samples done, and the share done at
  // another step of the current phase (total: the job's samples; null without the plan).
  const p = job.progress;
  if (!p) return null;
  const label = p.phase === "search" ? `${p.step}/${p.steps} trials done` + (p.val_accuracy != null ? ` · best ${fmt.pct(p.val_accuracy)}` : "")
    : p.phase === "pretrain" ? `pretrain layer ${p.layer + 1} · epoch ${p.epoch}/${p.epochs}` : `fine-tune · epoch ${p.epoch}/${p.epochs}`;
  const phases = plan ? plan.phases : [];
  const k = phases.findIndex((ph) => ph.phase === p.phase && (p.phase === "finetune" || ph.layer === p.layer));
  if (k < 0 || !p.steps || !p.epochs) {
    const at = (step) => (p.steps ? step / p.steps : 0);
    return { fraction: at(p.step), at, label, total: null };
  }
  const ph = phases[k];
  const total = (p.steps / p.epochs) * ph.batch_size * plan.epochs;  // the training rows (this phase's steps tell them) x every phase's epochs
  const at = (step) => ph.start + (step / p.steps) * ph.share;
  return { fraction: at(p.step), at, label: `${label} (phase ${k + 1}/${phases.length})`, total };
}

function etaOf(job, progress, history) {
  // Seconds left: the share still to do over the share done per second, measured over the last
  // minute of [time, share done] samples; else over the run's elapsed time when it started from
  // scratch; else at the samples/s the job last reported (its epochs only, so an underestimate).
  if (job.state !== "RUNNING" || !progress) return null;
  const f = progress.fraction;
  const last = history.length ? history[history.length - 1][0] : 0;
  const recent = history.filter(([t]) => t >= last - 60);
  if (recent.length >= 2) {
    const [[t0, f0], [t1, f1]] = [recent[0], recent[recent.length - 1]];
    if (t1 - t0 >= 1 && f1 > f0) return ((1 - f) * (t1 - t0)) / (f1 - f0);
  }
  const elapsed = Date.now() / 1000 - (job.run_started || 0);
  if (job.runs === 1 && job.run_started && f > 0 && elapsed > 0) return (elapsed * (1 - f)) / f;
  const rate = job.progress.samples_per_second;
  return progress.total && rate > 0 ? ((1 - f) * progress.total) / rate : null;
}

function isSearchJob(job) {
  return !!((job.spec && job.spec.search) || (job.progress && job.progress.phase === "search") || (job.result && job.result.trials !== undefined));
}

let schemaCache = null;
function specSchema() {
  // GET /v1/spec/schema, once a page: the JobSpec's JSON Schema, defaults included.
  if (!schemaCache) schemaCache = api("GET", "/v1/spec/schema").catch((e) => { schemaCache = null; throw e; });
  return schemaCache;
}

async function specDefaults(section) {
  // {field: default} of a spec section (resources, train, ...), from the JobSpec's JSON Schema.
  const js = (await specSchema()).jobspec;
  const ref = js.properties[section].$ref || js.properties[section].allOf[0].$ref;
  const props = js.$defs[ref.split("/").pop()].properties || {};
  return Object.fromEntries(Object.entries(props).filter(([, p]) => p.default !== undefined).map(([k, p]) => [k, p.default]));
}

// ------------------------------------------------------------------------------------------ charts
// A line chart in inline SVG: series = [{name, points: [[x, y], ...]}]. The svg carries
// data-points, the number of points drawn.
function lineChart(series, { xLabel = "", yLabel = "", maxPoints = 2000, yMin, dots = false } = {}) {
  const W = 560, H = 240, L = 52, R = 12, T = 12, B = 34;
  const svg = h("svg:svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img" });
  const drawn = series.map((s) => ({ ...s, points: thin(s.points, maxPoints) })).filter((s) => s.points.length);
  const all = drawn.flatMap((s) => s.points);
  svg.dataset.points = String(all.length);
  if (!all.length) {
    svg.append(h("svg:text", { x: W / 2, y: H / 2, "text-anchor": "middle", text: "no data yet" }));
    return svg;
  }
  let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [y0, y1] = [yMin ?? Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { const pad = Math.abs(y0) * 0.05 || 0.5; y0 -= pad; y1 += pad; }
  const X = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const Y = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  for (const yv of ticks(y0, y1, false)) {
    svg.append(h("svg:line", { class: "grid", x1: L, x2: W - R, y1: Y(yv), y2: Y(yv) }));
    svg.append(h("svg:text", { x: L - 6, y: Y(yv) + 3, "text-anchor": "end", text: fmt.num(yv, 3) }));
  }
  for (const xv of ticks(x0, x1, all.every((p) => Number.isInteger(p[0])))) {
    svg.append(h("svg:text", { x: X(xv), y: H - B + 14, "text-anchor": "middle", text: fmt.num(xv, 4) }));
  }
  svg.append(h("svg:line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }));
  svg.append(h("svg:line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  svg.append(h("svg:text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle", text: xLabel }));
  svg.append(h("svg:text", { x: 12, y: (T + H - B) / 2, "text-anchor": "middle", transform: `rotate(-90 12 ${(T + H - B) / 2})`, text: yLabel }));
  drawn.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const pts = s.points.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(" ");
    if (!dots) svg.append(h("svg:polyline", { points: pts, stroke: color, "data-series": s.name }));
    if (dots) for (const [x, y] of s.points) svg.append(h("svg:circle", { cx: X(x), cy: Y(y), r: 3.5, fill: color }));
    else if (s.points.length === 1) svg.append(h("svg:circle", { cx: X(s.points[0][0]), cy: Y(s.points[0][1]), r: 2.5, fill: color }));
    if (drawn.length > 1 && i < 8) {
      svg.append(h("svg:rect", { x: W - R - 150, y: T + 4 + i * 14, width: 10, height: 3, fill: color }));
      svg.append(h("svg:text", { x: W - R - 136, y: T + 9 + i * 14, text: s.name }));
    }
  });
  return svg;
}

function ticks(lo, hi, integer, n = 4) {
  // About n round values (1, 2 or 5 times a power of ten apart) from lo to hi; whole numbers on an integer axis.
  const raw = (hi - lo) / n, mag = 10 ** Math.floor(Math.log10(raw)), f = raw / mag;
  const step = Math.max((f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag, integer ? 1 : 0);
  const out = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function thin(points, max) {
  if (points.length <= max) return points;
  const stride = points.length / max;
  const out = [];
  for (let i = 0; i < max - 1; i++) out.push(points[Math.floor(i * stride)]);
  out.push(points[points.length - 1]);
  return out;
}

// ------------------------------------------------------------------------------------------ a search's trials
// The trial table and two plots (each trial's validation curve; the metric by the searched value,
// or by trial) from GET /v1/searches/{id}: the table so far while the search runs, then the one
// it left, with the server's search.png. refresh() returns the search.
function trialPanel(id) {
  const summary = h("p", { class: "muted", id: "trial-summary", text: "Loading the trials…" });
  const table = h("div", { class: "table-wrap" });
  const curves = h("figure", { id: "trial-curves" }), metric = h("figure", { id: "trial-metric" });
  const png = h("figure", { id: "search-png", hidden: true });
  const el = h("div", { id: "trials" }, summary, table, h("div", { class: "charts" }, curves, metric, png));
  let pngShown = false;

  function render(s) {
    const names = s.params || [], list = s.trials || [];
    const done = list.filter((t) => ["SUCCEEDED", "STOPPED", "FAILED"].includes(t.state)).length;
    const running = list.filter((t) => t.state === "RUNNING").length;
    const best = list.find((t) => t.id === s.best);
    summary.textContent = [
      `${(s.settings && s.settings.strategy) || "search"} over ${names.join(", ") || "—"}`,
      list.length ? `${done}/${list.length} trials done` + (running ? `, ${running} running` : "") : "no trial started yet",
      s.seconds != null ? fmt.duration(s.seconds) : null,
      best ? `${s.final ? "best" : "best so far"}: trial ${best.id} (${fmt.pct(best.metric)})` : null,
      s.final ? "final" : FINISHED.includes(s.job.state) ? null : "live",
    ].filter(Boolean).join(" · ");
    table.replaceChildren(h("table", { id: "trial-table", dataset: { final: s.final ? "true" : "false" } },
      h("thead", {}, h("tr", {}, h("th", { text: "Trial" }), names.map((n) => h("th", { class: "param num", text: n })),
        ["State", "Val. accuracy", "Test accuracy", "Epochs", "Time"].map((t) => h("th", { text: t })))),
      h("tbody", {}, list.map((t) => h("tr", { dataset: { trial: t.id, state: t.state }, class: t.id === s.best ? "best" : null, title: t.error || null },
        h("td", { class: "num", text: t.id === s.best ? `${t.id} ★` : t.id }), names.map((n) => h("td", { class: "num mono", title: JSON.stringify(t.params[n]), text: typeof t.params[n] === "number" ? fmt.num(t.params[n]) : JSON.stringify(t.params[n]) })),
        h("td", {}, stateBadge(t.state)), h("td", { class: "num metric", text: fmt.pct(t.metric) }), h("td", { class: "num", text: fmt.pct(t.test_accuracy) }),
        h("td", { class: "num epochs", text: t.epochs }), h("td", { class: "num", text: t.state === "PENDING" ? "—" : fmt.duration(t.seconds) }))))));
    const one = names.length === 1 && list.every((t) => typeof t.params[names[0]] === "number");
    const byX = list.filter((t) => t.metric != null).map((t) => [one ? t.params[names[0]] : t.id, t.metric]).sort((a, b) => a[0] - b[0]);
    curves.replaceChildren(h("figcaption", { text: "Validation accuracy of each trial, by epoch" }),
      lineChart(list.filter((t) => (t.curve || []).length).map((t) => ({ name: `trial ${t.id}`, points: t.curve.map((v, i) => [i + 1, v]) })), { xLabel: "epoch", yLabel: "accuracy" }));
    metric.replaceChildren(h("figcaption", { text: one ? `Validation accuracy by ${names[0]}` : "Validation accuracy by trial" }),
      lineChart([{ name: "accuracy", points: byX }], { xLabel: one ? names[0] : "trial", yLabel: "accuracy", dots: !one }));
  }

  async function showPng() {
    // A plain <img src> cannot send the token: fetch the plot and show it as a blob.
    try {
      const r = await request("GET", `/v1/jobs/${id}/artifacts/search.png`);
      png.replaceChildren(h("figcaption", { text: "The search's plot (search.png)" }), h("img", { src: URL.createObjectURL(await r.blob()), alt: "validation accuracy over the searched values" }));
      png.hidden = false;
    } catch (e) { /* no trial finished: no plot */ }
  }

  async function refresh() {
    const s = await api("GET", `/v1/searches/${id}`);
    render(s);
    if (s.final && !pngShown) { pngShown = true; await showPng(); }
    return s;
  }
  return { el, refresh };
}

// ------------------------------------------------------------------------------------------ YAML (what the form submits)
function yamlScalar(v) {
  if (v === null || v === undefined) return "null";
  if (typeof v === "boolean") return String(v);
  if (typeof v === "number") return String(v).replace(/^(-?\d+)e/, "$1.0e");  // YAML 1.1 reads 1e-7 as a string, 1.0e-7 as a number
  const s = String(v);
  const plain = /^[A-Za-z_/.][A-Za-z0-9_./-]*$/.test(s) && !/^(true|false|null|yes|no|on|off|y|n|~)$/i.test(s);
  return plain ? s : JSON.stringify(s);
}
const isScalar = (v) => v === null || typeof v !== "object";
function flow(v) {
  if (isScalar(v)) return yamlScalar(v);
  if (Array.isArray(v)) return `[${v.map(flow).join(", ")}]`;
  return `{${Object.entries(v).map(([k, x]) => `${k}: ${flow(x)}`).join(", ")}}`;
}
function toYAML(obj, pad = "") {
  const out = [];
  for (const [k, v] of Object.entries(obj)) {
    if (isScalar(v) || (Array.isArray(v) && v.every(isScalar)) || "range" in v || "grid" in v) out.push(`${pad}${k}: ${flow(v)}`);  // a search value on one line
    else if (Array.isArray(v)) {
      out.push(`${pad}${k}:`);
      for (const item of v) {
        const keys = isScalar(item) ? [] : Object.keys(item);
        out.push(keys.length === 1 && !Array.isArray(item) ? `${pad}  - ${keys[0]}: ${flow(item[keys[0]])}` : `${pad}  - ${flow(item)}`);
      }
    } else if (!Object.keys(v).length) out.push(`${pad}${k}: {}`);
    else out.push(`${pad}${k}:`, toYAML(v, pad + "  "));
  }
  return out.join("\n");
}

// ------------------------------------------------------------------------------------------ pages
const pages = {};

pages.login = async (main) => {
  const input = h("input", { id: "token", type: "password", autocomplete: "off", placeholder: "xs_…" });
  const error = h("p", { class: "error", id: "login-error" });
  const go = async () => {
    error.textContent = "";
    const t = input.value.trim();
    try {
      await api("GET", "/v1/me", undefined, t);
      sessionStorage.setItem(TOKEN_KEY, t);
      const next = new URLSearchParams(location.search).get("next");
      location.assign(next && next.startsWith("/ui/") ? next : "/ui/jobs");
    } catch (e) { error.textContent = e.message; }
  };
  input.addEventListener("keydown", (e) => { if (e.key === "Enter") go(); });
  main.append(h("section", { class: "card login" },
    h("h1", { text: "Log in to xsharp" }),
    h("p", { class: "muted" }, "Paste your API token. ", h("code", { text: "xsharp users add NAME" }), " on the server host prints one."),
    h("div", { class: "field" }, h("label", { for: "token", text: "Token" }), input),
    h("p", {}, h("button", { class: "primary", id: "login-button", type: "button", onclick: go, text: "Log in" })),
    error));
  input.focus();
};

pages.jobs = async (main) => {
  const active = h("tbody"), finished = h("tbody"), summary = h("p", { class: "muted", id: "jobs-summary" });
  const error = h("div", { class: "error-box" });
  main.append(
    h("h1", { text: "Jobs" }), summary, error,
    h("section", { class: "card" }, h("h2", { text: "Queue and running" }),
      h("table", { id: "active-jobs" }, h("thead", {}, h("tr", {}, ["ID", "Name", "User", "State", "Priority", "Resources", "Progress", "ETA", "Time in state"].map((t) => h("th", { text: t })))), active)),
    h("section", { class: "card" }, h("h2", { text: "Finished" }),
      h("table", { id: "finished-jobs" }, h("thead", {}, h("tr", {}, ["ID", "Name", "User", "State", "Priority", "Finished", "Ran for", "Test accuracy"].map((t) => h("th", { text: t })))), finished)));
  const plans = new Map(), histories = new Map();
  const resources = await specDefaults("resources").catch(() => ({}));
  every(2000, async () => {
    let jobs;
    try { jobs = await api("GET", "/v1/jobs?limit=10000"); error.textContent = ""; } catch (e) { error.textContent = e.message; return; }
    const now = Date.now() / 1000;
    const order = { RUNNING: 0, QUEUED: 1, PREEMPTED: 1, PAUSED: 2 };
    const act = jobs.filter((j) => ACTIVE.includes(j.state))
      .sort((a, b) => order[a.state] - order[b.state] || b.priority - a.priority || a.queued_at - b.queued_at || a.id - b.id);
    for (const j of act) {
      if (j.progress && !plans.has(j.id)) plans.set(j.id, await planOf((await api("GET", `/v1/jobs/${j.id}`).catch(() => ({}))).spec));
    }
    let queuePos = 0;
    active.replaceChildren(...act.map((j) => {
      const est = progressOf(j, plans.get(j.id));
      const history = j.state === "RUNNING" && est ? histories.get(j.id) || [] : [];
      if (est && (!history.length || history[history.length - 1][1] !== est.fraction)) history.push([now, est.fraction]);
      histories.set(j.id, history.filter(([t]) => t >= now - 120));
      const eta = etaOf(j, est, history);
      const since = j.state === "RUNNING" ? j.run_started : WAITING.includes(j.state) ? j.queued_at : null;
      const where = WAITING.includes(j.state) ? ` · #${++queuePos} in queue` : "";
      return h("tr", { dataset: { job: j.id, state: j.state } },
        h("td", {}, h("a", { href: `/ui/jobs/${j.id}`, text: `#${j.id}` })),
        h("td", { text: j.name }), h("td", { text: j.user }), h("td", {}, stateBadge(j.state), j.request ? h("span", { class: "muted", text: ` (${j.request} requested)` }) : null),
        h("td", { class: "num", text: j.priority }), h("td", { text: fmt.res(j, resources) }),
        h("td", { class: "progress-cell" }, est ? [bar(est.fraction), h("div", { class: "muted", text: `${fmt.pct(est.fraction)} · ${est.label}` })] : h("span", { class: "muted", text: "—" })),
        h("td", { class: "num eta", text: eta !== null ? fmt.duration(eta) : "—" }),
        h("td", { text: since ? fmt.duration(now - since) + where : "" }));
    }));
    if (!act.length) active.append(h("tr", {}, h("td", { colspan: 9, class: "muted", text: "Nothing queued or running." })));
    const fin = jobs.filter((j) => FINISHED.includes(j.state)).sort((a, b) => (b.finished || 0) - (a.finished || 0)).slice(0, 100);
    finished.replaceChildren(...fin.map((j) => h("tr", { dataset: { job: j.id, state: j.state } },
      h("td", {}, h("a", { href: `/ui/jobs/${j.id}`, text: `#${j.id}` })),
      h("td", { text: j.name }), h("td", { text: j.user }), h("td", {}, stateBadge(j.state)), h("td", { class: "num", text: j.priority }),
      h("td", { text: fmt.time(j.finished) }), h("td", { text: j.started && j.finished ? fmt.duration(j.finished - j.started) : "—" }),
      h("td", { class: "num", text: j.result && j.result.test_accuracy !== undefined ? fmt.pct(j.result.test_accuracy) : j.error ? "error" : "—" }))));
    if (!fin.length) finished.append(h("tr", {}, h("td", { colspan: 8, class: "muted", text: "No finished jobs." })));
    const running = jobs.filter((j) => j.state === "RUNNING").length, waiting = jobs.filter((j) => WAITING.includes(j.state)).length;
    summary.textContent = `${running} running · ${waiting} waiting · ${jobs.length} in all`;
  });
};

pages.job = async (main) => {
  const id = document.body.dataset.job;
  const title = h("h1", {}, `Job #${id}`);
  const error = h("div", { class: "error-box", id: "job-error" });
  main.append(title, error);
  let job;
  try { job = await api("GET", `/v1/jobs/${id}`); } catch (e) { error.textContent = e.message; return; }
  const [plan, resources] = await Promise.all([planOf(job.spec), specDefaults("resources").catch(() => ({}))]);
  const facts = h("dl", { class: "facts" });
  const actionError = h("div", { class: "error-box", id: "action-error" });
  const button = (act, label, cls) => h("button", { type: "button", class: cls, id: `${act}-button`, dataset: { action: act }, text: label, onclick: () => doAction(act) });
  const buttons = { pause: button("pause", "Pause"), resume: button("resume", "Resume"), stop: button("stop", "Stop", "danger"), delete: button("delete", "Delete", "danger") };
  // A pretraining chart only for a job with a pretraining phase (a pretrainable module and
  // pretrain.epochs > 0, or a solved module), or, without the plan, once a pretraining metric arrives.
  const pretrains = plan ? plan.phases.some((ph) => ph.phase === "pretrain") : false;
  const charts = { pretrain: pretrains ? h("figure", { id: "pretrain-chart" }) : null, finetune: h("figure", { id: "loss-chart" }), accuracy: h("figure", { id: "accuracy-chart" }) };
  const chartBox = h("div", { class: "charts" }, Object.values(charts).filter(Boolean));
  const searching = isSearchJob(job);
  const panel = searching ? trialPanel(id) : null;
  const metricsTable = h("tbody"), log = h("pre", { class: "log", id: "log" }), artifacts = h("ul", { id: "artifacts" }), events = h("ul", { class: "events" });
  const spec = h("pre", { class: "spec", text: toYAML(job.spec) });
  const grafana = h("span");
  main.append(
    h("section", { class: "card" }, h("div", { class: "actions" }, Object.values(buttons), grafana), actionError, facts),
    searching ? h("section", { class: "card" }, h("h2", { text: "Trials" }), panel.el)
      : h("section", { class: "card" }, h("h2", { text: "Training curves" }), chartBox),
    h("div", { class: "row" },
      h("section", { class: "card grow" }, h("h2", { text: "Metrics" }),
        h("table", {}, h("thead", {}, h("tr", {}, ["Phase", "Epoch", "Step", "Loss", "Val. accuracy", "Samples/s"].map((t) => h("th", { text: t })))), metricsTable)),
      h("section", { class: "card grow" }, h("h2", { text: "Artifacts" }), artifacts, h("h2", { text: "Events" }), events)),
    h("section", { class: "card" }, h("h2", { text: "Log" }), log),
    h("section", { class: "card" }, h("h2", { text: "Spec" }), spec));
  api("GET", "/v1/cluster/dashboards").then((boards) => {
    const training = boards.find((b) => b.uid === "xsharp-training");
    if (training) grafana.append(h("a", { href: `${training.url}?var-job_id=${id}`, target: "_blank", rel: "noopener", id: "grafana-link", text: "Open in Grafana" }));
  }).catch(() => {});

  async function doAction(act) {
    actionError.textContent = "";
    if (act === "delete" && !confirm(`Delete job #${id} and its artifacts?`)) return;
    try {
      if (act === "delete") {
        await api("DELETE", `/v1/jobs/${id}`);
        sessionStorage.setItem(FLASH_KEY, `Job #${id} deleted.`);
        location.assign("/ui/jobs");
        return;
      }
      job = { ...job, ...(await api("POST", `/v1/jobs/${id}/${act}`)) };
      flash(job.state === "RUNNING" ? `${act} requested: the job checkpoints at its next step.` : `Job #${id} is ${job.state}.`);
      render();
    } catch (e) { actionError.textContent = e.message; }
  }

  let history = [];  // [time, share done] of the current run's phase, from the metric rows' timestamps
  function render() {
    const est = progressOf(job, plan);
    const eta = etaOf(job, est, history);
    title.replaceChildren(`${job.name} `, h("small", { text: `#${job.id}` }), " ", stateBadge(job.state));
    document.title = `#${job.id} ${job.name} · xsharp`;
    const fin = FINISHED.includes(job.state);
    buttons.pause.disabled = !["RUNNING", "QUEUED", "PREEMPTED"].includes(job.state) || !!job.request;
    buttons.resume.disabled = job.state !== "PAUSED";
    buttons.stop.disabled = fin || job.request === "stop";
    buttons.delete.disabled = !fin;  // the API deletes only a finished job (409 otherwise)
    buttons.delete.title = fin ? `Delete job #${job.id} and its artifacts` : `A ${job.state.toLowerCase()} job cannot be deleted: stop it first`;
    const rows = [
      ["State", [stateBadge(job.state), job.request ? ` ${job.request} requested` : ""]], ["User", job.user], ["Priority", job.priority], ["Mode", job.mode],
      ["Resources", fmt.res(job, resources)], ["Submitted", fmt.time(job.submitted)], ["Started", fmt.time(job.started)], ["Runs", job.runs],
      ["Progress", est ? [bar(est.fraction), `${fmt.pct(est.fraction)} · ${est.label}`] : "—"],
      ["ETA", eta !== null ? fmt.duration(eta) : "—"],
      ["Loss", job.progress ? fmt.num(job.progress.loss) : "—"],
      ["Samples/s", job.progress && job.progress.samples_per_second != null ? Math.round(job.progress.samples_per_second).toLocaleString() : "—"],
    ];
    if (job.finished) rows.push(["Finished", fmt.time(job.finished)]);
    if (job.result && job.result.test_accuracy !== undefined) rows.push(["Test accuracy", fmt.pct(job.result.test_accuracy)]);
    if (job.error) rows.push(["Error", h("span", { class: "error", text: job.error })]);
    facts.replaceChildren(...rows.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { dataset: { fact: k.toLowerCase() } }, v)]));
    events.replaceChildren(...(job.events || []).slice(-12).map((e) => h("li", {}, h("span", { class: "muted", text: new Date(e.ts * 1000).toLocaleTimeString() + " " }), e.message)));
  }

  function renderMetrics(rows) {
    const kinds = (job.spec.model || []).map((l) => (typeof l === "string" ? l : Object.keys(l)[0]));
    const pre = new Map();
    const fine = [], acc = [];
    for (const r of rows) {
      if (r.loss === null) continue;
      if (r.phase === "pretrain") {
        const name = `layer ${r.layer + 1} (${kinds[r.layer] || "?"})`;
        if (!pre.has(name)) pre.set(name, []);
        pre.get(name).push([r.step, r.loss]);
      } else {
        fine.push([r.step, r.loss]);
        if (r.val_accuracy !== null) acc.push([r.epoch, r.val_accuracy]);
      }
    }
    if (!charts.pretrain && pre.size) {
      charts.pretrain = h("figure", { id: "pretrain-chart" });
      chartBox.prepend(charts.pretrain);
    }
    if (charts.pretrain) charts.pretrain.replaceChildren(h("figcaption", { text: "Pretraining: reconstruction error" }),
      lineChart([...pre].map(([name, points]) => ({ name, points })), { xLabel: "step", yLabel: "error" }));
    charts.finetune.replaceChildren(h("figcaption", { text: "Fine-tuning: loss" }), lineChart([{ name: "loss", points: fine }], { xLabel: "step", yLabel: "loss" }));
    charts.accuracy.replaceChildren(h("figcaption", { text: "Validation accuracy" }), lineChart([{ name: "accuracy", points: acc }], { xLabel: "epoch", yLabel: "accuracy" }));
    metricsTable.replaceChildren(...rows.slice(-8).reverse().map((r) => h("tr", {},
      h("td", { text: r.phase === "pretrain" ? `pretrain ${r.layer + 1}` : r.phase === "search" ? "search" : "fine-tune" }), h("td", { class: "num", text: r.epoch }), h("td", { class: "num", text: r.step }),
      h("td", { class: "num", text: fmt.num(r.loss) }), h("td", { class: "num", text: r.val_accuracy === null ? "—" : fmt.pct(r.val_accuracy) }),
      h("td", { class: "num", text: r.samples_per_second === null ? "—" : Math.round(r.samples_per_second).toLocaleString() }))));
  }

  async function renderArtifacts() {
    const list = await api("GET", `/v1/jobs/${id}/artifacts`);
    artifacts.replaceChildren(...list.map((a) => h("li", {},
      h("a", { href: "#", dataset: { artifact: a.path }, text: a.path, onclick: (ev) => { ev.preventDefault(); download(a.path); } }),
      h("span", { class: "muted", text: ` ${(a.size / 1024).toFixed(1)} KiB` }))));
    if (!list.length) artifacts.append(h("li", { class: "muted", text: "none yet" }));
  }

  async function download(path) {
    // A plain link cannot send the bearer token, so fetch the file and hand the browser a blob.
    const r = await fetch(`/v1/jobs/${id}/artifacts/${path.split("/").map(encodeURIComponent).join("/")}`, { headers: { Authorization: `Bearer ${token()}` } });
    if (!r.ok) { actionError.textContent = new ApiError(r.status, (await r.json().catch(() => ({}))).detail ?? r.statusText).message; return; }
    const url = URL.createObjectURL(await r.blob());
    const a = h("a", { href: url, download: path.split("/").pop() });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  render();
  // Metrics and log lines are polled with after=: each tick fetches only what is new.
  const rows = [], lines = [];
  let rowsAfter = 0, logAfter = 0, lastState = null, delay = 1000;
  every(() => delay, async () => {
    try {
      const [fresh, [newRows, nextRows], [text, nextLog]] = await Promise.all([
        api("GET", `/v1/jobs/${id}`), since(`/v1/jobs/${id}/metrics`, rowsAfter), since(`/v1/jobs/${id}/logs`, logAfter)]);
      job = fresh;
      error.textContent = "";
      for (const r of newRows) rows.push(r);
      rowsAfter = nextRows;
      logAfter = nextLog;
      const p = job.progress, est = progressOf(job, plan);
      history = p && est ? rows.filter((r) => r.ts >= (job.run_started || 0) && r.phase === p.phase && (r.phase === "finetune" || r.layer === p.layer)).map((r) => [r.ts, est.at(r.step)]) : [];
      render();
      if (newRows.length || lastState === null) renderMetrics(rows);
      delay = rows.length > 20000 ? 3000 : 1000;  // redrawing the charts costs with the rows held
      if (text) {
        for (const line of text.replace(/\n$/, "").split("\n")) lines.push(line);
        lines.splice(0, Math.max(0, lines.length - 400));
        const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
        log.textContent = lines.join("\n");
        if (atBottom) log.scrollTop = log.scrollHeight;
      }
      if (panel && (job.state === "RUNNING" || job.state !== lastState)) await panel.refresh();
      if (job.state !== lastState) { lastState = job.state; await renderArtifacts(); }
    } catch (e) {
      error.textContent = e.message;
      if (e.status === 404 || e.status === 403) return false;
    }
    return !FINISHED.includes(job.state) || lastState !== job.state;
  });
};

// ---------------------------------------------------------------- submit: a form generated from the JSON Schemas
pages.submit = async (main) => {
  const [schema, modules, recipes, modes] = await Promise.all([specSchema(), api("GET", "/v1/modules"), api("GET", "/v1/recipes"), api("GET", "/v1/spec/modes")]);
  const parallelModes = modes.filter((m) => m.parallel).map((m) => m.name);  // the modes the parallel section lays out
  const js = schema.jobspec, defs = js.$defs || {};
  const byKind = Object.fromEntries(modules.map((m) => [m.kind, m]));
  const resolve = (prop) => {
    const ref = prop.$ref || (prop.allOf && prop.allOf[0] && prop.allOf[0].$ref);
    return ref ? { ...defs[ref.split("/").pop()], ...prop } : prop;
  };
  const yaml = h("pre", { id: "yaml" });
  const errors = h("div", { class: "error-box", id: "submit-errors" });
  let counter = 0;

  // One input for one schema property; data-path is the spec path errors name. The YAML holds
  // only values that differ from the schema's default, so it reads like a hand-written spec.
  function field(path, name, prop, required, { choices } = {}) {
    let p = resolve(prop);
    let nullable = false;
    if (p.anyOf) {
      const real = p.anyOf.filter((a) => a.type !== "null");
      nullable = real.length < p.anyOf.length;
      if (real.length !== 1) return input(path, name, prop, required, "json");
      p = { ...prop, ...resolve(real[0]), description: prop.description || real[0].description };
      delete p.anyOf;
    }
    if (p.properties) return group(path, name, p);
    if (choices || p.enum || p.const !== undefined) return input(path, name, p, required, "enum", choices || p.enum || [p.const], nullable);
    if (p.type === "boolean") return input(path, name, p, required, p.default === true || p.default === false ? "boolean" : "tristate", null, nullable);
    if (p.type === "integer" || p.type === "number") return input(path, name, p, required, p.type, null, nullable);
    if (p.type === "array") {
      const item = resolve(p.items || {});
      return ["string", "integer", "number"].includes(item.type) ? input(path, name, p, required, "list", null, nullable, item.type) : input(path, name, p, required, "json");
    }
    if (p.type === "string") return input(path, name, p, required, "string", null, nullable);
    return input(path, name, p, required, "json");
  }

  function input(path, name, p, required, type, options, nullable, itemType) {
    const id = `f${++counter}`;
    const def = p.default;
    let el;
    if (type === "enum") {
      el = h("select", { id }, nullable || def === undefined || def === null ? h("option", { value: "", text: "—" }) : null, options.map((o) => h("option", { value: o, text: o })));
    } else if (type === "tristate") {
      el = h("select", { id }, ["", "true", "false"].map((o) => h("option", { value: o, text: o || "—" })));
    } else if (type === "boolean") {
      el = h("input", { id, type: "checkbox" });
    } else if (type === "json") {
      el = h("textarea", { id, rows: 2, placeholder: "JSON, e.g. [{\"standardize\": {}}]" });
    } else {
      el = h("input", { id, type: type === "integer" || type === "number" ? "number" : "text", step: type === "integer" ? "1" : type === "number" ? "any" : null,
        placeholder: type === "list" ? "comma-separated" : nullable ? "default" : "" });
      const lo = p.minimum ?? p.exclusiveMinimum, hi = p.maximum ?? p.exclusiveMaximum;
      el.title = [lo !== undefined ? `${p.exclusiveMinimum !== undefined ? ">" : "≥"} ${lo}` : "", hi !== undefined ? `${p.exclusiveMaximum !== undefined ? "<" : "≤"} ${hi}` : ""].filter(Boolean).join(", ");
    }
    Object.assign(el.dataset, { path, type, key: name });
    if (itemType) el.dataset.items = itemType;
    if (def !== undefined) el.dataset.default = JSON.stringify(def);
    setValue(el, def);
    const title = p.title || name;
    const hint = p.description ? h("span", { class: "hint", text: p.description }) : null;
    const label = type === "boolean" ? h("label", { for: id }, el, ` ${title}`, hint) : h("label", { for: id }, title, required ? " *" : "", hint);
    const hp = (type === "integer" || type === "number") && SEARCHABLE.test(path) ? searchControls(name, type) : null;
    return h("div", { class: hp ? "field hp" : "field", dataset: { field: path } }, label,
      hp ? h("div", { class: "hp-row" }, hp.mode, el, hp.controls) : type === "boolean" ? null : el, h("div", { class: "field-error" }));
  }

  // A hyper-parameter is a fixed value, a range (low, high, an optional step; log scale), a grid
  // of values, or auto (where the server has a prior for options of that name). Any but a fixed
  // value makes the spec a search, which the search section configures.
  function searchControls(name, type) {
    const prior = schema.auto[name];
    const mode = h("select", { class: "hp-mode", "aria-label": `${name}: fixed, range, grid or auto` },
      ["fixed", "range", "grid", ...(prior ? ["auto"] : [])].map((m) => h("option", { value: m, text: m })));
    const num = (role) => h("input", { type: "number", step: type === "integer" ? "1" : "any", class: "hp-num", placeholder: role, "aria-label": `${name} ${role}`, dataset: { hp: role } });
    const controls = [
      h("span", { class: "hp-range", hidden: true }, num("low"), h("span", { class: "muted", text: "to" }), num("high"), h("span", { class: "muted", text: "step" }), num("step"),
        h("label", { class: "hp-log", title: "draw on a log scale" }, h("input", { type: "checkbox", dataset: { hp: "log" } }), "log")),
      h("input", { type: "text", class: "hp-grid", placeholder: "values, comma-separated", "aria-label": `${name} values`, dataset: { hp: "grid" }, hidden: true }),
      h("span", { class: "hp-auto muted", hidden: true,
        text: prior ? `${prior.log ? "log-uniform" : "uniform"} ${fmt.num(prior.low)} to ${fmt.num(prior.high)}${prior.integer ? ", whole numbers" : ""}` : "" }),
    ];
    return { mode, controls };
  }
  function showMode(f) {
    const mode = $(".hp-mode", f).value;
    $("[data-path]", f).hidden = mode !== "fixed";
    $(".hp-range", f).hidden = mode !== "range";
    $(".hp-grid", f).hidden = mode !== "grid";
    $(".hp-auto", f).hidden = mode !== "auto";
  }

  function group(path, name, p) {
    const required = p.required || [];
    return h("details", { class: "group", dataset: { field: path } },
      h("summary", {}, h("strong", { text: name }), p.description ? h("span", { class: "hint", text: ` ${p.description}` }) : null),
      h("div", { class: "field-error section-error" }),
      h("div", { class: "fields" }, Object.entries(p.properties).map(([k, sub]) => field(`${path}.${k}`, k, sub, required.includes(k)))));
  }

  function sectionFields(section, props, required = [], special = {}) {
    return h("div", { class: "fields" }, Object.entries(props).map(([k, prop]) => special[k] ? special[k]() : field(section ? `${section}.${k}` : k, k, prop, required.includes(k))));
  }
  const sectionSchema = (name) => resolve(js.properties[name]);
  function section(name, title, body, extra = {}) {
    return h("section", { class: "card", dataset: { field: name }, ...extra }, h("h2", { text: title }), h("div", { class: "field-error section-error" }), body);
  }

  // ---- model stack
  const stack = h("ol", { id: "stack" });
  function addModule(kind, options = {}) {
    const m = byKind[kind];
    const props = m.options.properties || {}, required = m.options.required || [];
    const card = h("li", { class: "module", dataset: { kind } },
      h("div", { class: "module-head" }, h("strong", { text: kind }), m.pretrainable ? h("span", { class: "badge", text: "pretrained" }) : null, h("span", { class: "summary", text: m.summary }),
        h("span", { class: "tools" },
          h("button", { type: "button", class: "small", title: "move up", text: "↑", onclick: () => { card.previousElementSibling && stack.insertBefore(card, card.previousElementSibling); changed(); } }),
          h("button", { type: "button", class: "small", title: "move down", text: "↓", onclick: () => { card.nextElementSibling && stack.insertBefore(card.nextElementSibling, card); changed(); } }),
          h("button", { type: "button", class: "small danger", title: "remove", text: "✕", onclick: () => { card.remove(); changed(); } }))),
      h("div", { class: "field-error section-error" }),
      h("div", { class: "fields" }, Object.entries(props).map(([k, prop]) => field(`model[?].${kind}.${k}`, k, prop, required.includes(k)))));
    stack.append(card);
    for (const el of $$("[data-path]", card)) setValue(el, getPath(options, relative(el)));
    changed();
    return card;
  }
  function renumber() {
    $$(".module", stack).forEach((card, i) => {
      card.dataset.field = `model[${i}]`;
      for (const el of $$("[data-field]", card)) el.dataset.field = el.dataset.field.replace(/^model\[[^\]]*\]/, `model[${i}]`);
      for (const el of $$("[data-path]", card)) el.dataset.path = el.dataset.path.replace(/^model\[[^\]]*\]/, `model[${i}]`);
    });
  }
  const kindSelect = h("select", { id: "module-kind" }, modules.map((m) => h("option", { value: m.kind, title: m.summary, text: m.pretrainable ? `${m.kind} (pretrained)` : m.kind })));

  // ---- the other sections
  const data = sectionSchema("data");
  // The common data fields first; the format-specific ones (csv, wav, idx, features) folded away.
  const common = ["dataset", "path", "format", "limit", "test_fraction", "validation_fraction"];
  const pick = (keep) => Object.fromEntries(Object.entries(data.properties).filter(([k]) => common.includes(k) === keep));
  const dataSpecial = {
    dataset: () => field("data.dataset", "dataset", data.properties.dataset, false, { choices: schema.datasets }),
    format: () => field("data.format", "format", data.properties.format, false, { choices: schema.formats }),
  };
  const dataBody = [sectionFields("data", pick(true), data.required, dataSpecial),
    h("details", { class: "group more" }, h("summary", {}, h("strong", { text: "more" }), h("span", { class: "hint", text: " format-specific options: csv columns, wav audio, idx labels, feature steps, augmentation" })),
      sectionFields("data", pick(false), data.required))];
  const phase = (name) => sectionFields(name, sectionSchema(name).properties, sectionSchema(name).required);
  const searchSection = section("search", "Search: how to try the values of the fields set to a range, a grid or auto",
    sectionFields("search", schema.search.properties, schema.search.required || []), { hidden: true });
  const runProps = { mode: js.properties.mode, priority: js.properties.priority, seed: js.properties.seed };
  const parallelSection = section("parallel", "Parallel layout", phase("parallel"));
  const recipeSelect = h("select", { id: "recipe" }, h("option", { value: "", text: "— compose a model —" }), recipes.map((r) => h("option", { value: r.name, disabled: !r.spec,
    text: r.kind === "search" ? `${r.name} (hyper-parameter search)` : r.error ? `${r.name} (invalid: ${r.error})` : r.name })));
  const recipeInfo = h("p", { class: "muted", id: "recipe-info" });
  const title = h("h1", { text: "Submit job" });
  const submitButton = h("button", { type: "button", class: "primary", id: "submit-button", text: "Submit job", onclick: submit });
  const nameField = field("name", "name", js.properties.name, false);
  const form = h("div", { class: "form", id: "spec-form" },
    h("section", { class: "card start" }, h("h2", { text: "Start from" }), h("div", { class: "row" }, h("div", { class: "field grow" }, h("label", { for: "recipe", text: "Recipe" }), recipeSelect), h("div", { class: "grow" }, nameField)), recipeInfo),
    section("data", "Data", dataBody),
    section("model", "Model: modules in order, input first", [stack, h("div", { class: "add-module" }, kindSelect, h("button", { type: "button", id: "add-module", text: "Add module", onclick: () => addModule(kindSelect.value) }))]),
    section("pretrain", "Pretraining (greedy, per unsupervised module)", phase("pretrain")),
    section("train", "Fine-tuning", phase("train")),
    searchSection,
    section("run", "Run", sectionFields("", runProps, [])),
    section("resources", "Resources", phase("resources")),
    parallelSection,
    h("div", { class: "submit-bar" }, submitButton, errors));
  main.append(title, h("div", { class: "submit-grid" }, form, h("aside", { class: "card" }, h("h2", { text: "YAML it will submit" }), yaml)));

  // ---- values
  function readValue(el) {
    const t = el.dataset.type;
    if (t === "boolean") return el.checked;
    const raw = el.value.trim();
    if (raw === "") return undefined;
    if (t === "tristate") return raw === "true";
    if (t === "integer" || t === "number") return isNaN(Number(raw)) ? raw : Number(raw);
    if (t === "list") {
      const numeric = el.dataset.items !== "string";
      return raw.split(/\s*,\s*|\s+/).filter(Boolean).map((x) => (numeric && !isNaN(Number(x)) ? Number(x) : x));
    }
    if (t === "json") { try { return JSON.parse(raw); } catch { return raw; } }
    return raw;
  }
  const isSearchValue = (v) => v === "auto" || (!!v && typeof v === "object" && !Array.isArray(v) && ("range" in v || "grid" in v));
  function searchValue(el) {
    // What the spec holds in place of a number: undefined for a fixed value.
    const f = el.closest(".field.hp");
    const mode = f ? $(".hp-mode", f).value : "fixed";
    if (mode === "fixed") return undefined;
    if (mode === "auto") return "auto";
    const num = (raw) => (raw === "" ? null : isNaN(Number(raw)) ? raw : Number(raw));
    if (mode === "grid") return { grid: $('[data-hp="grid"]', f).value.split(/\s*,\s*|\s+/).filter(Boolean).map(num) };
    const v = { range: ["low", "high"].map((r) => num($(`[data-hp="${r}"]`, f).value.trim())) };
    const step = num($('[data-hp="step"]', f).value.trim());
    if (step !== null) v.step = step;
    if ($('[data-hp="log"]', f).checked) v.log = true;
    return v;
  }
  function setSearch(f, v) {
    const mode = v === "auto" ? "auto" : "grid" in v ? "grid" : "range";
    $(".hp-mode", f).value = mode;
    if (mode === "grid") $('[data-hp="grid"]', f).value = (Array.isArray(v.grid) ? v.grid : [v.grid]).join(", ");
    if (mode === "range") {
      const [low, high] = Array.isArray(v.range) ? v.range : [];
      for (const [role, x] of [["low", low], ["high", high], ["step", v.step]]) $(`[data-hp="${role}"]`, f).value = x ?? "";
      $('[data-hp="log"]', f).checked = !!v.log;
    }
    showMode(f);
  }
  function setValue(el, v) {
    if (v === undefined) return;
    const f = el.closest(".field.hp");
    if (f && isSearchValue(v)) return setSearch(f, v);
    if (f && $(".hp-mode", f).value !== "fixed") { $(".hp-mode", f).value = "fixed"; showMode(f); }
    const t = el.dataset.type;
    if (t === "boolean") el.checked = !!v;
    else if (t === "json") el.value = v === null ? "" : JSON.stringify(v);
    else el.value = v === null ? "" : Array.isArray(v) ? v.join(", ") : String(v);
  }
  const changedValue = (el) => {
    const search = searchValue(el);
    if (search !== undefined) return search;
    const v = readValue(el);
    return v !== undefined && JSON.stringify(v) !== el.dataset.default ? v : undefined;
  };
  const relative = (el) => el.dataset.path.replace(/^model\[[^\]]*\]\.[^.]+\./, "");
  function getPath(obj, path) { return path.split(".").reduce((o, k) => (o && typeof o === "object" ? o[k] : undefined), obj); }
  function setPath(obj, path, v) {
    const keys = path.split(".");
    let o = obj;
    for (const k of keys.slice(0, -1)) o = o[k] = o[k] || {};
    o[keys[keys.length - 1]] = v;
  }
  const usesParallel = () => parallelModes.includes($('[data-path="mode"]', form).value);
  const isSearching = () => $$(".hp-mode", form).some((m) => m.value !== "fixed");
  function collect() {
    const spec = {}, searching = isSearching();
    for (const el of $$("[data-path]", form)) {
      if (el.closest("#stack") || (el.closest('[data-field="parallel"]') && !usesParallel()) || (el.closest('[data-field="search"]') && !searching)) continue;
      const v = changedValue(el);
      if (v !== undefined) setPath(spec, el.dataset.path, v);
    }
    if (searching) spec.search = { strategy: $('[data-path="search.strategy"]', form).value, ...spec.search };
    spec.model = $$(".module", stack).map((card) => {
      const opts = {};
      for (const el of $$("[data-path]", card)) { const v = changedValue(el); if (v !== undefined) setPath(opts, relative(el), v); }
      return { [card.dataset.kind]: opts };
    });
    const order = [...Object.keys(js.properties), "search"];  // the JobSpec's field order, as a hand-written spec has it
    return Object.fromEntries(order.filter((k) => spec[k] !== undefined).map((k) => [k, spec[k]]));
  }
  function changed() {
    renumber();
    parallelSection.hidden = !usesParallel();
    searchSection.hidden = !isSearching();
    submitButton.textContent = title.textContent = asWritten || isSearching() ? "Submit search" : "Submit job";
    yaml.textContent = asWritten ? asWritten.yaml : toYAML(collect());
  }
  function searchPaths(obj, path = "") {
    // ["path=value", ...] for every search value in a spec, to tell whether the form holds them all.
    if (isSearchValue(obj) && (obj !== "auto" || schema.auto[path.split(".").pop()])) return [`${path}=${JSON.stringify(obj)}`];
    if (!obj || typeof obj !== "object") return [];
    return Object.entries(obj).flatMap(([k, v]) => (path === "" && k === "search" ? [] : searchPaths(v, Array.isArray(obj) ? `${path}[${k}]` : path ? `${path}.${k}` : k)));
  }
  function load(spec) {
    stack.replaceChildren();
    for (const el of $$("[data-path]", form)) {
      if (el.closest("#stack")) continue;
      const v = getPath(spec, el.dataset.path);
      setValue(el, v !== undefined ? v : el.dataset.default !== undefined ? JSON.parse(el.dataset.default) : null);
    }
    for (const layer of spec.model || []) {
      const [kind, opts] = typeof layer === "string" ? [layer, {}] : Object.entries(layer)[0];
      if (byKind[kind]) addModule(kind, opts || {});
    }
    changed();
  }
  // A search recipe loads into the form like any other; one that searches a field the form
  // cannot vary (data, seed) is submitted as written to /v1/searches, and the form steps aside.
  let asWritten = null;
  recipeSelect.addEventListener("change", () => {
    const r = recipes.find((x) => x.name === recipeSelect.value);
    recipeInfo.textContent = r ? r.description : "";
    asWritten = null;
    if (r && r.spec) load(r.spec);
    const wanted = r && r.kind === "search" ? searchPaths(r.spec).sort() : [];
    if (r && r.kind === "search" && JSON.stringify(searchPaths(collect()).sort()) !== JSON.stringify(wanted)) asWritten = r;
    form.classList.toggle("search-mode", !!asWritten);
    changed();
    clearErrors();
  });
  form.addEventListener("input", (ev) => {
    const f = ev.target.closest(".field");
    const box = f && $(":scope > .field-error", f);
    if (box) { f.classList.remove("invalid"); box.textContent = ""; }
    if (box && !$(".invalid", form)) errors.textContent = "";  // every problem the server named is being fixed
    if (f && ev.target.classList.contains("hp-mode")) showMode(f);
    changed();
  });

  // ---- the server's 422: each line names a field path (model[1].rbm.hidden: must be > 0, got -3)
  function clearErrors() {
    errors.textContent = "";
    for (const el of $$(".field-error", form)) el.textContent = "";
    for (const el of $$(".invalid", form)) el.classList.remove("invalid");
  }
  function targetFor(path) {
    let p = path;
    while (p) {
      const el = $$("[data-field]", form).find((e) => e.dataset.field === p && !e.hidden);
      if (el) return el;
      const m = p.match(/^(.*?)(\.[^.[\]]+|\[\d+\])$/);
      if (!m) break;
      p = m[1];
    }
    return null;
  }
  function showErrors(lines) {
    clearErrors();
    const unplaced = [];
    for (const line of lines) {
      // A search's trial names its values first: "trial 3 (train.learning_rate=0): train.learning_rate: must be > 0.0, got 0"
      const trial = line.match(/^(trial \d+ \(.*?\)): (.*)$/);
      const text = trial ? trial[2] : line;
      const i = text.indexOf(": ");
      const [path, msg] = i > 0 ? [text.slice(0, i), (trial ? `${trial[1]}: ` : "") + text.slice(i + 2)] : ["", line];
      const target = targetFor(path);
      if (!target) { unplaced.push(line); continue; }
      const box = $(":scope > .field-error", target) || $(":scope > .section-error", target);
      const rest = path.slice(target.dataset.field.length).replace(/^\./, "");  // model[0].rbm.hidden.range -> range
      box.textContent += (box.textContent ? "\n" : "") + (rest ? `${rest}: ${msg}` : msg);
      target.classList.add("invalid");
      for (let d = target.closest("details"); d; d = d.parentElement.closest("details")) d.open = true;
    }
    errors.textContent = `The server refused the spec (${lines.length} problem${lines.length === 1 ? "" : "s"}${unplaced.length ? "" : ", marked on the form"}).` + (unplaced.length ? "\n" + unplaced.join("\n") : "");
    const first = $(".invalid", form);
    if (first) first.scrollIntoView({ block: "center" });
  }
  async function submit() {
    clearErrors();
    const btn = submitButton;
    btn.disabled = true;
    try {
      const searching = !!asWritten || isSearching();
      const job = await api("POST", searching ? "/v1/searches" : "/v1/jobs", asWritten ? asWritten.spec : collect());
      sessionStorage.setItem(FLASH_KEY, `${searching ? "Search" : "Job"} #${job.id} submitted.`);
      location.assign(searching ? `/ui/searches/${job.id}` : `/ui/jobs/${job.id}`);
    } catch (e) {
      if (e.status === 422) showErrors(e.lines);
      else errors.textContent = e.message;
    } finally {
      btn.disabled = false;
    }
  }

  // A blank model to start from: one RBM and the classifier head, on the first named dataset.
  for (const kind of ["rbm", "softmax"]) if (byKind[kind]) addModule(kind);
  if (schema.datasets.length) $('[data-path="data.dataset"]', form).value = schema.datasets[0];
  changed();
};

// ------------------------------------------------------------------------------------------ searches
// The searches (GET /v1/searches) and, below, one search's trial table and plots, updated while
// it runs: the one in the address (/ui/searches/ID), else the first running, else the latest.
pages.searches = async (main) => {
  const body = h("tbody"), error = h("div", { class: "error-box" });
  const detail = h("section", { class: "card", id: "search-detail", hidden: true });
  main.append(h("h1", { text: "Searches" }), error,
    h("p", { class: "muted" }, "A hyper-parameter search runs as one job: its trials share the job's reservation. Submit one on ",
      h("a", { href: "/ui/submit", text: "Submit" }), " (set a field to a range, a grid or auto), with ", h("code", { text: "POST /v1/searches" }), ", or run one with ", h("code", { text: "xsharp run SEARCH.yaml" }), "."),
    h("section", { class: "card" }, h("table", { id: "searches" },
      h("thead", {}, h("tr", {}, ["ID", "Name", "User", "State", "Trials", "Best val. accuracy", "Test accuracy", "Submitted"].map((t) => h("th", { text: t })))), body)),
    detail);
  let chosen = document.body.dataset.job ? Number(document.body.dataset.job) : null;
  let panel = null, shown = null;
  const choose = (id) => {
    chosen = id;
    history.replaceState(null, "", `/ui/searches/${id}`);
    tick();
  };
  const tick = async () => {
    let found;
    try { found = (await api("GET", "/v1/searches")).reverse(); error.textContent = ""; } catch (e) { error.textContent = e.message; return; }
    body.replaceChildren(...found.map((j) => {
      const p = j.progress || {}, r = j.result || {};
      return h("tr", { dataset: { job: j.id }, class: j.id === chosen ? "chosen" : null },
        h("td", {}, h("a", { href: `/ui/jobs/${j.id}`, title: "the job", text: `#${j.id}` })),
        h("td", {}, h("a", { href: `/ui/searches/${j.id}`, class: "choose", text: j.name, onclick: (ev) => { ev.preventDefault(); choose(j.id); } })),
        h("td", { text: j.user }), h("td", {}, stateBadge(j.state)),
        h("td", { class: "num trials", text: r.trials !== undefined ? `${r.trials}` : p.steps ? `${p.step}/${p.steps}` : "—" }),
        h("td", { class: "num", text: fmt.pct(r.val_accuracy ?? p.val_accuracy) }), h("td", { class: "num", text: fmt.pct(r.test_accuracy) }), h("td", { text: fmt.time(j.submitted) }));
    }));
    if (!found.length) body.append(h("tr", {}, h("td", { colspan: 8, class: "muted", text: "No searches yet." })));
    if (chosen === null && found.length) chosen = (found.find((j) => j.state === "RUNNING") || found[0]).id;
    if (chosen === null) return;
    if (shown !== chosen) {
      shown = chosen;
      panel = trialPanel(chosen);
      panel.state = null;
      const j = found.find((x) => x.id === chosen);
      detail.replaceChildren(h("h2", {}, `Trials of ${j ? j.name : "search"} `, h("a", { href: `/ui/jobs/${chosen}`, text: `#${chosen}` })), panel.el);
      detail.hidden = false;
    }
    const state = (found.find((x) => x.id === chosen) || {}).state;
    if (state === "RUNNING" || state !== panel.state) {  // while it runs, and once on each change of state
      panel.state = state;
      try { await panel.refresh(); } catch (e) { panel.el.replaceChildren(h("p", { class: "error", text: e.message })); }
    }
  };
  every(1500, tick);
};

// ------------------------------------------------------------------------------------------ cluster
pages.cluster = async (main) => {
  const error = h("div", { class: "error-box" });
  const resources = h("div", { id: "resources" }), nodes = h("tbody"), queue = h("tbody"), states = h("p", { id: "states" });
  const gpus = h("div", { id: "gpus" }), dashboards = h("div", { id: "dashboards" });
  const usage = h("tbody"), halfLife = h("p", { class: "muted" });
  main.append(h("h1", { text: "Cluster" }), error,
    h("div", { class: "row" },
      h("section", { class: "card grow" }, h("h2", { text: "Resources" }), resources, h("h2", { text: "Jobs by state" }), states),
      h("section", { class: "card grow" }, h("h2", { text: "Nodes" }), h("table", { id: "nodes" }, h("thead", {}, h("tr", {}, ["Node", "Address", "CPUs", "GPUs"].map((t) => h("th", { text: t })))), nodes))),
    h("section", { class: "card" }, h("h2", { text: "GPUs" }), gpus),
    h("section", { class: "card" }, h("h2", { text: "Queue" }), h("table", { id: "queue" }, h("thead", {}, h("tr", {}, ["#", "Job", "User", "State", "Priority", "Needs", "Waiting"].map((t) => h("th", { text: t })))), queue)),
    h("section", { class: "card" }, h("h2", { text: "Fair share: recent usage" }), halfLife,
      h("table", { id: "usage" }, h("thead", {}, h("tr", {}, ["User", "CPU-hours", "GPU-hours", "Share of the cluster (hours)"].map((t) => h("th", { text: t })))), usage)),
    h("section", { class: "card" }, h("h2", { text: "Grafana" }), dashboards));
  api("GET", "/v1/cluster/dashboards").then((list) => {
    dashboards.replaceChildren(list.length ? h("ul", {}, list.map((d) => h("li", {}, h("a", { href: d.url, target: "_blank", rel: "noopener", text: d.title }))))
      : h("p", { class: "muted" }, "No Grafana configured: start the server with ", h("code", { text: "--grafana-url URL" }), " to link xsharp's dashboards here."));
  }).catch((e) => { dashboards.textContent = e.message; });
  every(3000, async () => {
    const [c, g] = await Promise.all([api("GET", "/v1/cluster"), api("GET", "/v1/cluster/gpus")]).catch((e) => { error.textContent = e.message; return []; });
    if (!c) return;
    error.textContent = "";
    const now = Date.now() / 1000;
    resources.replaceChildren(h("table", {}, h("thead", {}, h("tr", {}, ["", "Used", "Free", "Total", ""].map((t) => h("th", { text: t })))),
      h("tbody", {}, ["CPU", "GPU", "memory"].filter((k) => c.total[k] !== undefined).map((k) => {
        const total = c.total[k], free = c.free[k] ?? 0, show = (x) => (k === "memory" ? fmt.mib(x / 2 ** 20) : fmt.num(x, 3));
        return h("tr", { dataset: { resource: k } }, h("th", { text: k }), h("td", { class: "num", text: show(total - free) }), h("td", { class: "num free", text: show(free) }),
          h("td", { class: "num", text: show(total) }), h("td", {}, bar(total ? (total - free) / total : 0)));
      }))));
    states.replaceChildren(...Object.entries(c.jobs_by_state).filter(([, n]) => n).map(([s, n]) => h("span", {}, stateBadge(s), ` ${n}  `)));
    if (!states.childNodes.length) states.textContent = "No jobs yet.";
    nodes.replaceChildren(...c.nodes.map((n) => h("tr", {}, h("td", { class: "mono", text: n.node_id ? n.node_id.slice(0, 12) : "(admins only)" }), h("td", { text: n.address || "" }), h("td", { class: "num", text: n.cpus }), h("td", { class: "num", text: n.gpus }))));
    queue.replaceChildren(...c.queue.map((j, i) => h("tr", {}, h("td", { class: "num", text: i + 1 }), h("td", {}, h("a", { href: `/ui/jobs/${j.id}`, text: `#${j.id} ${j.name}` })),
      h("td", { text: j.user }), h("td", {}, stateBadge(j.state)), h("td", { class: "num", text: j.priority }), h("td", { text: fmt.res(j) }), h("td", { text: fmt.duration(now - j.queued_at) }))));
    if (!c.queue.length) queue.append(h("tr", {}, h("td", { colspan: 7, class: "muted", text: "The queue is empty." })));
    halfLife.textContent = `Within a priority the user with the least recent usage goes first. Usage counts half after ${fmt.num(c.usage_half_life_hours, 3)} h.`;
    usage.replaceChildren(...c.usage.map((u) => h("tr", { dataset: { user: u.user } }, h("td", { text: u.user }), h("td", { class: "num", text: fmt.num(u.cpu_hours, 3) }),
      h("td", { class: "num", text: fmt.num(u.gpu_hours, 3) }), h("td", { class: "num", text: fmt.num(u.share, 3) }))));
    if (!c.usage.length) usage.append(h("tr", {}, h("td", { colspan: 4, class: "muted", text: "No usage yet." })));
    if (!g.exporters) {
      gpus.replaceChildren(h("p", { class: "muted" }, "No exporter configured: start the server with ", h("code", { text: "--exporter-url HOST:9400" }), " (once per node) to see GPU utilisation, memory and temperature."));
    } else {
      gpus.replaceChildren(
        h("table", { id: "gpu-table" }, h("thead", {}, h("tr", {}, ["Host", "GPU", "Model", "Utilisation", "", "Memory", "", "Temp.", "Power", "Jobs"].map((t) => h("th", { text: t })))),
          h("tbody", {}, g.gpus.map((x) => h("tr", { dataset: { uuid: x.uuid } },
            h("td", { text: x.hostname }), h("td", { class: "num", text: x.gpu }), h("td", { text: x.model }),
            h("td", { class: "num util", text: x.utilization === null ? "—" : `${Math.round(x.utilization)}%` }), h("td", {}, bar((x.utilization || 0) / 100)),
            h("td", { class: "num mem", text: `${fmt.mib(x.memory_used)} / ${fmt.mib(x.memory_total)}` }), h("td", {}, bar(x.memory_total ? x.memory_used / x.memory_total : 0)),
            h("td", { class: "num temp", text: x.temperature === null ? "—" : `${Math.round(x.temperature)} °C` }),
            h("td", { class: "num", text: x.power === null ? "—" : `${Math.round(x.power)} W` }), h("td", { text: x.jobs.join(", ") || "—" }))))),
        ...[g.gpus.length ? null : h("p", { class: "muted", text: "The exporters report no GPUs." }),
          g.errors.length ? h("div", { class: "error-box", text: g.errors.join("\n") }) : null].filter(Boolean));
    }
  });
};

// ------------------------------------------------------------------------------------------ datasets
// The service's catalog, as NVIDIA DIGITS showed its datasets: one row per version; for the one
// picked, the rows of each class in each split and a few thumbnails; and an import from a server path.
const SPLIT_NAMES = ["train", "val", "test"];

function classCounts(v) {
  const most = Math.max(1, ...v.classes.map((_, i) => SPLIT_NAMES.reduce((n, s) => n + ((v.counts[s] || [])[i] || 0), 0)));
  return h("table", { id: "class-counts" },
    h("thead", {}, h("tr", {}, h("th", { text: "Class" }), SPLIT_NAMES.map((s) => h("th", { class: "num", text: s })), h("th", { class: "num", text: "All" }), h("th", {}))),
    h("tbody", {}, v.classes.map((c, i) => {
      const n = SPLIT_NAMES.map((s) => (v.counts[s] || [])[i] || 0);
      const all = n.reduce((a, b) => a + b, 0);
      return h("tr", { dataset: { class: c } }, h("td", { text: c }), n.map((x, k) => h("td", { class: `num count-${SPLIT_NAMES[k]}`, text: x })),
        h("td", { class: "num", text: all }), h("td", {}, bar(all / most)));
    })),
    h("tfoot", {}, h("tr", {}, h("th", { text: "rows" }), SPLIT_NAMES.map((s) => h("th", { class: `num total-${s}`, text: v.rows[s] })),
      h("th", { class: "num", text: SPLIT_NAMES.reduce((n, s) => n + v.rows[s], 0) }), h("th", {}))));
}

function sampleGrid(s) {
  if (!s.samples.length) return h("p", { class: "muted", text: "No rows in this split." });
  return h("div", { class: "samples" }, s.samples.map((x) => x.png_base64
    ? h("figure", { class: "sample" }, h("img", { src: `data:image/png;base64,${x.png_base64}`, alt: x.class, title: x.class }), h("figcaption", { text: x.class }))
    : h("figure", { class: "sample text" }, h("code", { text: typeof x.value === "string" ? x.value : JSON.stringify(x.value) }), h("figcaption", { text: x.class }))));
}

pages.datasets = async (main) => {
  const me = await api("GET", "/v1/me");
  const error = h("div", { class: "error-box" });
  const list = h("tbody"), detail = h("section", { class: "card", id: "dataset-detail", hidden: true });
  const name = h("input", { id: "import-name", type: "text", placeholder: "pets", required: true });
  const path = h("input", { id: "import-path", type: "text", placeholder: "/data/pets (under a data root)", required: true });
  const height = h("input", { id: "import-height", type: "number", min: 1, max: 2048, step: 1, placeholder: "H" });
  const width = h("input", { id: "import-width", type: "number", min: 1, max: 2048, step: 1, placeholder: "W" });
  const format = h("select", { id: "import-format" }, ["", "images", "audio", "table", "text"].map((f) => h("option", { value: f, text: f || "from the path" })));
  const importError = h("div", { class: "error-box", id: "import-error" }), imports = h("tbody");
  const go = h("button", { class: "primary", id: "import-button", type: "submit", text: "Import" });
  let picked = null, versions = [];

  const field = (id, label, hint, ...els) => h("div", { class: "field" }, h("label", { for: id }, label, h("span", { class: "hint", text: hint })), ...els);
  main.append(h("h1", { text: "Datasets" }), error,
    h("section", { class: "card" }, h("table", { id: "datasets" },
      h("thead", {}, h("tr", {}, ["Dataset", "Owner", "Version", "Kind", "Train", "Val", "Test", "Classes", "Shape", "Shared", ""].map((t) => h("th", { text: t })))), list)),
    detail,
    h("section", { class: "card" }, h("h2", { text: "Import from the server" }),
      h("form", { id: "import-form", onsubmit: (e) => { e.preventDefault(); start(); } },
        h("div", { class: "fields" },
          field("import-name", "Name", "a new version if it exists", name),
          field("import-path", "Path", "a folder of class folders, or a file", path),
          field("import-format", "Format", "", format),
          field("import-height", "Image size", "height × width (images)", h("div", {}, height, " × ", width))),
        h("div", { class: "actions" }, go), importError),
      h("table", { id: "imports" }, h("thead", {}, h("tr", {}, ["#", "Name", "State", "Progress", "", "Result"].map((t) => h("th", { text: t })))), imports)));

  async function pick(v) {
    picked = v.ref;
    for (const tr of $$("tr[data-ref]", list)) tr.classList.toggle("selected", tr.dataset.ref === v.ref);
    const samples = h("div", { id: "samples" }, h("p", { class: "muted", text: "Loading samples…" }));
    const split = h("select", { id: "sample-split" }, SPLIT_NAMES.map((s) => h("option", { value: s, text: s })));
    const tools = [];
    if (v.owner === me.name || me.admin) tools.push(h("button", { class: "danger small", type: "button", id: "delete-version", text: "Delete this version", onclick: async () => {
      if (!confirm(`Delete ${v.ref}?`)) return;
      try { await api("DELETE", `/v1/datasets/${v.owner}/${v.name}?version=${v.version}`); picked = null; detail.hidden = true; await load(); } catch (e) { error.textContent = e.message; }
    } }));
    if (me.admin) tools.push(h("button", { class: "small", type: "button", id: "share-toggle", text: v.shared ? "Unshare" : "Share with every user", onclick: async () => {
      try { await api("POST", `/v1/datasets/${v.owner}/${v.name}/${v.shared ? "unshare" : "share"}`); await load(); } catch (e) { error.textContent = e.message; }
    } }));
    detail.replaceChildren(h("h2", {}, v.ref, " ", h("small", { text: `${v.kind} · ${v.shape.join(" × ") || "text"} · ${v.dtype} · ${v.bytes < 2 ** 20 ? `${Math.ceil(v.bytes / 1024)} KiB` : fmt.mib(v.bytes / 2 ** 20)} in ${v.shard_count} shards` })),
      h("div", { class: "actions" }, tools),
      h("div", { class: "row" }, h("div", { class: "grow" }, h("h2", { text: "Rows per class" }), classCounts(v)),
        h("div", { class: "grow" }, h("h2", {}, "Samples ", split), samples)));
    detail.hidden = false;
    const show = async () => {
      try {
        const s = await api("GET", `/v1/datasets/${v.owner}/${v.name}/samples?version=${v.version}&count=24&split=${split.value}`);
        samples.replaceChildren(sampleGrid(s));
      } catch (e) { samples.replaceChildren(h("p", { class: "error", text: e.message })); }
    };
    split.addEventListener("change", show);
    await show();
  }

  async function load() {
    const all = await api("GET", "/v1/datasets");
    error.textContent = "";
    versions = all.flatMap((d) => d.versions.slice().reverse());
    list.replaceChildren(...versions.map((v) => h("tr", { dataset: { ref: v.ref }, class: v.ref === picked ? "selected" : null },
      h("td", {}, h("a", { href: "#", text: v.name, onclick: (e) => { e.preventDefault(); pick(v); } })), h("td", { text: v.owner }),
      h("td", { class: "num", text: v.version }), h("td", { text: v.kind }),
      SPLIT_NAMES.map((s) => h("td", { class: `num rows-${s}`, text: v.rows[s] })), h("td", { class: "num", text: v.classes.length }),
      h("td", { class: "mono", text: v.shape.join("×") || "—" }), h("td", { text: v.shared ? "shared" : "" }), h("td", { class: "muted", text: fmt.time(v.created) }))));
    if (!versions.length) list.append(h("tr", {}, h("td", { colspan: 11, class: "muted", text: "No datasets yet: import one below (xsharp data import does it on your own machine)." })));
    const again = versions.find((v) => v.ref === picked);
    if (again) await pick(again);
  }

  async function showImports() {
    const recs = await api("GET", "/v1/datasets/imports?limit=10");
    imports.replaceChildren(...recs.map((r) => h("tr", { dataset: { import: r.id, state: r.state } }, h("td", { class: "num", text: r.id }), h("td", { text: r.name }),
      h("td", {}, stateBadge(r.state)), h("td", { class: "num", text: r.total ? `${r.done}/${r.total} ${r.unit}` : r.done ? `${r.done} ${r.unit}` : "—" }),
      h("td", {}, bar(r.total ? r.done / r.total : r.state === "DONE" ? 1 : 0)),
      h("td", { class: r.state === "FAILED" ? "error" : "" }, r.ref ? h("a", { href: "#", text: r.ref, onclick: (e) => { e.preventDefault(); const v = versions.find((x) => x.ref === r.ref); if (v) pick(v); } }) : r.message || ""))));
    if (!recs.length) imports.append(h("tr", {}, h("td", { colspan: 6, class: "muted", text: "No imports yet." })));
    return recs;
  }

  async function start() {
    importError.textContent = "";
    const body = { name: name.value.trim(), path: path.value.trim() };
    if (format.value) body.format = format.value;
    if (height.value || width.value) body.size = [Number(height.value), Number(width.value || height.value)];
    go.disabled = true;
    try {
      const rec = await api("POST", "/v1/datasets", body);
      flash(`import #${rec.id} of ${rec.name} queued`);
      watch();
    } catch (e) { importError.textContent = e.lines ? e.lines.join("\n") : e.message; } finally { go.disabled = false; }
  }

  let watching = false;
  function watch() {
    if (watching) return;
    watching = true;
    every(1000, async () => {
      const recs = await showImports();
      if (recs.some((r) => r.state === "DONE" && r.ref && !versions.some((v) => v.ref === r.ref))) await load();  // a version just made
      if (!recs.some((r) => ["QUEUED", "RUNNING"].includes(r.state))) { watching = false; return false; }
    });
  }

  await load();
  if ((await showImports()).some((r) => ["QUEUED", "RUNNING"].includes(r.state))) watch();
  if (versions.length) await pick(versions[0]);
};

// ------------------------------------------------------------------------------------------ models
// The model registry: one row per registered version; a model's page shows its lineage, ONNX and
// a "try it" box that sends an upload (or rows) to /predict and shows the top classes.
const UPLOAD_ACCEPT = { image: "image/png,image/jpeg,image/bmp,image/webp,.png,.jpg,.jpeg,.bmp,.webp", audio: ".wav,.flac,audio/wav,audio/x-wav,audio/flac" };

function datasetOf(m) {
  if (m.dataset) return m.dataset_version ? `${m.dataset}@${m.dataset_version}` : m.dataset;
  return m.data_path || "—";
}

function testAccuracy(m) {
  const acc = m.metrics && m.metrics.test_accuracy;
  return acc === undefined || acc === null ? "—" : fmt.pct(acc);
}

async function saveFile(path, fallbackName) {
  // A plain link cannot send the bearer token, so fetch the file and hand the browser a blob.
  const r = await request("GET", path);
  const named = /filename="?([^";]+)"?/.exec(r.headers.get("content-disposition") || "");
  const url = URL.createObjectURL(await r.blob());
  const a = h("a", { href: url, download: named ? named[1] : fallbackName });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function topList(prediction) {
  // One row's classes, most probable first: the label, its probability as text and as a bar.
  return h("ol", { class: "top-classes" }, prediction.top.map((s) => h("li", { dataset: { index: s.index, label: s.label } },
    h("span", { class: "label", text: s.label }), bar(s.probability), h("span", { class: "prob num", text: s.probability.toFixed(3) }))));
}

function tryBox(id, input) {
  // The input that fits the model's kind: an image or audio file, a text, or JSON rows.
  const result = h("div", { id: "try-result" }), error = h("div", { class: "error-box", id: "try-error" });
  const preview = h("div", { id: "try-preview" });
  const button = h("button", { class: "primary", type: "button", id: "try-button", text: "Predict" });
  let send;  // () => the body to POST: a FormData or {rows}
  const controls = [];
  if (input.kind === "image" || input.kind === "audio") {
    const file = h("input", { type: "file", id: "try-file", accept: UPLOAD_ACCEPT[input.kind] });
    send = () => {
      if (!file.files.length) throw new Error(`file: choose ${input.uploads || "a file"}`);
      const form = new FormData();
      form.append("file", file.files[0], file.files[0].name);
      return form;
    };
    file.addEventListener("change", () => {
      preview.replaceChildren();
      if (input.kind === "image" && file.files.length) {
        const url = URL.createObjectURL(file.files[0]);
        preview.append(h("img", { src: url, alt: file.files[0].name, onload: () => URL.revokeObjectURL(url) }));
      }
      if (file.files.length) go();
    });
    controls.push(h("div", { class: "field" }, h("label", { for: "try-file" }, input.kind === "image" ? "Image" : "Sound",
      h("span", { class: "hint", text: input.uploads || "" })), file));
  } else if (input.kind === "text") {
    const text = h("textarea", { id: "try-text", rows: 4, placeholder: "A text to classify" });
    send = () => ({ rows: [text.value] });
    controls.push(h("div", { class: "field" }, h("label", { for: "try-text" }, "Text", h("span", { class: "hint", text: "sent as one row" })), text));
  } else {
    const shape = input.raw_shape.length ? `[${input.raw_shape.join(", ")}]` : "";
    const rows = h("textarea", { id: "try-rows", rows: 6, placeholder: input.kind === "table" ? '[["red", 0.5]]' : `[[${Array(Math.min(4, input.raw_shape.reduce((a, b) => a * b, 1) || 1)).fill("0.0").join(", ")}, …]]` });
    send = () => {
      let value;
      try { value = JSON.parse(rows.value); } catch (e) { throw new Error(`rows: not valid JSON (${e.message})`); }
      return value !== null && typeof value === "object" && !Array.isArray(value) && "rows" in value ? value : { rows: value };
    };
    controls.push(h("div", { class: "field" }, h("label", { for: "try-rows" }, "Rows as JSON",
      h("span", { class: "hint", text: `a list of rows${shape ? `, each of shape ${shape} (or flat)` : ""}${input.kind === "table" ? ": numbers, strings for category columns, null" : ""}` })), rows));
  }
  async function go() {
    error.textContent = "";
    let body;
    try { body = send(); } catch (e) { error.textContent = e.message; return; }
    button.disabled = true;
    result.replaceChildren(h("p", { class: "muted", text: "Predicting…" }));
    try {
      const answer = await api("POST", `/v1/models/${id}/predict?top_k=5`, body);
      result.replaceChildren(...answer.predictions.map((p, i) => h("div", { class: "prediction", dataset: { row: i } },
        answer.predictions.length > 1 ? h("h3", { text: `Row ${i + 1}` }) : null, topList(p))));
    } catch (e) {
      result.replaceChildren();
      error.textContent = e.lines ? e.lines.join("\n") : e.message;
    } finally { button.disabled = false; }
  }
  button.addEventListener("click", go);
  return h("section", { class: "card", id: "try-it", dataset: { kind: input.kind } },
    h("h2", {}, "Try it ", h("small", { text: `${input.kind} · ${input.classes.length} classes` })),
    h("div", { class: "row" }, h("div", { class: "grow" }, controls, h("div", { class: "actions" }, button), preview), h("div", { class: "grow" }, error, result)));
}

pages.models = async (main) => {
  const error = h("div", { class: "error-box" }), list = h("tbody");
  main.append(h("h1", { text: "Models" }), error,
    h("section", { class: "card" }, h("table", { id: "models" },
      h("thead", {}, h("tr", {}, ["Model", "Version", "User", "Job", "Dataset", "Test accuracy", "Created"].map((t) => h("th", { text: t, class: /^(Version|Test)/.test(t) ? "num" : null })))), list)));
  let models;
  try { models = await api("GET", "/v1/models?limit=10000"); } catch (e) { error.textContent = e.message; return; }
  models.sort((a, b) => b.created - a.created || b.id - a.id);
  list.replaceChildren(...models.map((m) => h("tr", { class: "clickable", dataset: { model: m.id, name: m.name },
    onclick: (e) => { if (!e.target.closest("a")) location.assign(`/ui/models/${m.id}`); } },
    h("td", {}, h("a", { href: `/ui/models/${m.id}`, class: "model-link", text: m.name })), h("td", { class: "num version", text: `v${m.version}` }),
    h("td", { text: m.user }), h("td", {}, h("a", { href: `/ui/jobs/${m.job_id}`, class: "job-link", text: `#${m.job_id}` })),
    h("td", { class: "dataset", text: datasetOf(m) }), h("td", { class: "num accuracy", text: testAccuracy(m) }), h("td", { class: "muted", text: fmt.time(m.created) }))));
  if (!models.length) list.append(h("tr", {}, h("td", { colspan: 7, class: "muted", text: "No models yet: each job that finishes SUCCEEDED registers its model here." })));
};

pages.model = async (main) => {
  const id = document.body.dataset.job;  // the model's id, from /ui/models/{id}
  const title = h("h1", {}, `Model #${id}`), error = h("div", { class: "error-box", id: "model-error" });
  main.append(title, error);
  let m;
  try { m = await api("GET", `/v1/models/${id}`); } catch (e) { error.textContent = e.message; return; }
  document.title = `${m.name} v${m.version} · xsharp`;
  title.replaceChildren(`${m.name} `, h("small", { text: `v${m.version} · #${m.id}` }));
  const actionError = h("div", { class: "error-box", id: "action-error" });
  const onnx = h("button", { type: "button", id: "onnx-button", text: "Download ONNX", onclick: async () => {
    actionError.textContent = "";
    onnx.disabled = true;
    try { await saveFile(`/v1/models/${id}/onnx`, `${m.name}-v${m.version}.onnx`); } catch (e) { actionError.textContent = e.lines ? e.lines.join("\n") : e.message; } finally { onnx.disabled = false; }
  } });
  const del = h("button", { type: "button", class: "danger", id: "delete-button", text: "Delete", onclick: async () => {
    actionError.textContent = "";
    if (!confirm(`Take ${m.name} v${m.version} out of the registry? Its job and artifacts stay.`)) return;
    try {
      await api("DELETE", `/v1/models/${id}`);
      sessionStorage.setItem(FLASH_KEY, `Model ${m.name} v${m.version} deleted.`);
      location.assign("/ui/models");
    } catch (e) { actionError.textContent = e.message; }
  } });
  const metrics = Object.entries(m.metrics || {}).filter(([, v]) => v === null || typeof v !== "object");
  const rows = [
    ["Job", h("a", { href: `/ui/jobs/${m.job_id}`, text: `#${m.job_id}` })], ["User", m.user], ["Created", fmt.time(m.created)],
    [m.dataset ? "Dataset" : "Data path", datasetOf(m)], ["File", h("span", { class: "mono", text: m.path })],
    ...metrics.map(([k, v]) => [k.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase()), typeof v === "number" ? (/accuracy/.test(k) ? fmt.pct(v) : fmt.num(v)) : String(v)]),
  ];
  const facts = h("dl", { class: "facts", id: "lineage" }, rows.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { dataset: { fact: k.toLowerCase().replace(/ /g, "_") } }, v)]));
  const tryIt = h("section", { class: "card", id: "try-it" }, h("h2", { text: "Try it" }), h("p", { class: "muted", text: "Loading what the model takes…" }));
  main.append(
    h("section", { class: "card" }, h("div", { class: "actions" }, onnx, del), actionError, facts),
    tryIt,
    h("section", { class: "card" }, h("h2", { text: "Spec" }), h("pre", { class: "spec", id: "model-spec", text: toYAML(m.spec || {}) })));
  try {
    tryIt.replaceWith(tryBox(id, await api("GET", `/v1/models/${id}/input`)));
  } catch (e) {
    tryIt.replaceChildren(h("h2", { text: "Try it" }), h("div", { class: "error-box", id: "try-error", text: e.message }));
  }
};

// ------------------------------------------------------------------------------------------ start
document.addEventListener("DOMContentLoaded", async () => {
  const page = document.body.dataset.page;
  const main = $("#main");
  main.replaceChildren();
  for (const a of $$("[data-nav]")) a.classList.toggle("active", a.dataset.nav === page || (page === "job" && a.dataset.nav === "jobs") || (page === "model" && a.dataset.nav === "models"));
  if (page !== "login") {
    if (!token()) { location.assign(`/ui/login?next=${encodeURIComponent(location.pathname)}`); return; }
    const logout = $("#logout");
    logout.hidden = false;
    logout.addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); location.assign("/ui/login"); });
    api("GET", "/v1/me").then((me) => { $("#who").textContent = me.admin ? `${me.name} (admin)` : me.name; }).catch(() => {});
    const message = sessionStorage.getItem(FLASH_KEY);
    if (message) { sessionStorage.removeItem(FLASH_KEY); flash(message); }
  }
  try {
    await pages[page](main);
  } catch (e) {
    main.append(h("div", { class: "error-box", text: e.message }));
  }
});
