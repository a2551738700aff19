// moola annotation app: the labelling page, the stats page and the runs page.
// No build step and no framework. Every value that comes from data (dataset and batch
// names, notes, run ids) is put into the page with textContent, never as HTML.
"use strict";

const LABEL_KEYS = { "1": "consolidation", "2": "retracement", "3": "neither" };
const GRADE_KEYS = { a: "A", b: "B", c: "C", d: "D" };
const COLORS = {
  up: "#26a69a", down: "#ef5350",
  contextUp: "#b9c3c9", contextDown: "#8d99a1",
  volume: "rgba(38, 166, 154, 0.45)", volumeDown: "rgba(239, 83, 80, 0.45)",
  contextVolume: "rgba(141, 153, 161, 0.35)",
};

// ------------------------------------------------------------------ helpers

function $(id) { return document.getElementById(id); }

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    ...options,
  });
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) {
    const detail = body && body.detail !== undefined ? body.detail : response.statusText;
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return body;
}

function fmt(value) {
  if (value === null || value === undefined) return "-";
  if (typeof value === "number") {
    if (Number.isInteger(value)) return value.toLocaleString("en");
    return String(Number(value.toFixed(4)));  // 0.75, 0.8333, 533.3333: no trailing zeros
  }
  return String(value);
}

function showMessage(text, ok = false) {
  const box = $("message");
  if (!box) return;
  box.textContent = text || "";
  box.className = ok ? "ok" : "";
}

// ------------------------------------------------------------------ labelling

const labeller = {
  batch: null, kind: "normal", view: null, chart: null, candles: null, volume: null,
  markers: null, shownAt: 0, history: [], queue: Promise.resolve(),
};

// Keys are handled one after another, in the order pressed: a fast "1" then "a" labels
// and then grades the same window, never both at once nor out of order.
function enqueue(task) {
  labeller.queue = labeller.queue.then(task).catch((error) => {
    showMessage(error.message);
    document.body.dataset.ready = "true";
  });
}

function makeChart() {
  const LC = window.LightweightCharts;
  const chart = LC.createChart($("chart"), {
    autoSize: true,
    layout: { background: { color: "#ffffff" }, textColor: "#333", attributionLogo: true },
    grid: { vertLines: { color: "#f0f3fa" }, horzLines: { color: "#f0f3fa" } },
    timeScale: { timeVisible: true, secondsVisible: false },
    rightPriceScale: { scaleMargins: { top: 0.05, bottom: 0.25 } },
  });
  labeller.candles = chart.addSeries(LC.CandlestickSeries, {
    upColor: COLORS.up, downColor: COLORS.down, borderVisible: false,
    wickUpColor: COLORS.up, wickDownColor: COLORS.down,
  });
  labeller.volume = chart.addSeries(LC.HistogramSeries, {
    priceFormat: { type: "volume" }, priceScaleId: "volume", lastValueVisible: false,
    priceLineVisible: false,
  });
  chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
  labeller.markers = LC.createSeriesMarkers(labeller.candles, []);
  labeller.chart = chart;
}

function barsOf(columns) {
  // The API sends bars as columns (compact); the chart wants one object per bar.
  return columns.time.map((time, i) => ({
    time, open: columns.open[i], high: columns.high[i], low: columns.low[i],
    close: columns.close[i], volume: columns.volume[i],
  }));
}

function drawWindow(view) {
  const bars = barsOf(view.bars);
  const before = view.context_before;
  const inWindow = (i) => i >= before && i < bars.length - view.context_after;
  const candles = bars.map((bar, i) => {
    const up = bar.close >= bar.open;
    const point = { time: bar.time, open: bar.open, high: bar.high, low: bar.low, close: bar.close };
    if (!inWindow(i)) {
      const color = up ? COLORS.contextUp : COLORS.contextDown;
      point.color = color; point.wickColor = color; point.borderColor = color;
    }
    return point;
  });
  const volume = bars.map((bar, i) => ({
    time: bar.time,
    value: bar.volume,
    color: !inWindow(i) ? COLORS.contextVolume : bar.close >= bar.open ? COLORS.volume : COLORS.volumeDown,
  }));
  labeller.candles.setData(candles);
  labeller.volume.setData(volume);
  const first = bars[before];
  const last = bars[bars.length - 1 - view.context_after];
  const marks = [];
  if (first) marks.push({ time: first.time, position: "belowBar", color: "#0969da", shape: "arrowUp", text: "start" });
  if (last) marks.push({ time: last.time, position: "belowBar", color: "#0969da", shape: "arrowUp", text: "end" });
  labeller.markers.setMarkers(marks);
  labeller.chart.timeScale().fitContent();
}

function renderProgress(progress, index, total) {
  $("position").textContent = `window ${index + 1} of ${total}`;
  $("progress").max = Math.max(progress.total, 1);
  $("progress").value = progress.decided;
  $("progress-text").textContent =
    `${progress.decided} / ${progress.total} done: ${progress.accepted} kept, ` +
    `${progress.rejected} D, ${progress.skipped} skipped`;
}

function renderState(state, decided) {
  $("state-label").textContent = state.label || "-";
  $("state-grade").textContent = state.grade || "-";
  $("state-grade").className = "state" + (state.grade ? ` grade-${state.grade}` : "");
  $("state-note").textContent = state.note || "";
  const status = $("state-status");
  if (state.skipped) status.textContent = "skipped";
  else if (state.grade === "D") status.textContent = "removed (blacklisted)";
  else if (decided) status.textContent = "done";
  else status.textContent = "to do";
  status.className = decided ? "decided" : "";
}

function renderReview(window_) {
  const box = $("review");
  box.hidden = labeller.kind !== "review";
  if (box.hidden) return;
  $("given-label").textContent = window_.given_label || "-";
  const body = $("proba").querySelector("tbody");
  body.replaceChildren();
  const proba = window_.model_proba || {};
  for (const [label, p] of Object.entries(proba).sort((a, b) => b[1] - a[1])) {
    const row = el("tr");
    row.append(el("td", label));
    const cell = el("td");
    const meter = el("span", null, "meter");
    meter.style.width = `${Math.round(p * 60)}px`;
    cell.append(meter, document.createTextNode(` ${p.toFixed(3)}`));
    row.append(cell);
    body.append(row);
  }
}

function render(view) {
  labeller.view = view;
  labeller.shownAt = performance.now();
  const w = view.window;
  $("window-id").textContent = w.window_id;
  $("window-span").textContent =
    `${w.symbol} ${w.start_ts} .. ${w.end_ts} (${w.length} bars, +${view.context_before}/${view.context_after} context)`;
  const source = w.suggestion_source ? ` (${w.suggestion_source})` : "";
  $("suggestion").textContent = w.suggestion ? `${w.suggestion}${source}` : "none";
  renderState(view.state, view.decided);
  renderProgress(view.progress, view.index, view.total);
  renderReview(w);
  drawWindow(view);
  if (view.problems && view.problems.length) showMessage(view.problems.join("; "));
  document.body.dataset.window = String(view.index);
  document.body.dataset.ready = "true";
}

async function loadWindow(index) {
  const b = encodeURIComponent(labeller.batch);
  const path = index === null ? `/api/batches/${b}/next` : `/api/batches/${b}/windows/${index}`;
  document.body.dataset.ready = "false";
  render(await api(path));
}

async function act(kind, fields = {}) {
  if (!labeller.view) return;
  document.body.dataset.ready = "false";
  try {
    const view = labeller.view;
    const body = {
      window_id: view.window.window_id, kind, ...fields,
      elapsed_ms: Math.max(0, Math.round(performance.now() - labeller.shownAt)),
    };
    const result = await api(`/api/batches/${encodeURIComponent(labeller.batch)}/actions`, {
      method: "POST", body: JSON.stringify(body),
    });
    if (kind !== "undo") labeller.history.push(view.index);
    view.state = result.state;
    view.decided = result.decided;
    view.progress = result.progress;
    showMessage(result.message || "", true);
    if (result.decided && kind !== "undo" && kind !== "note" && result.next_index !== null) {
      await loadWindow(result.next_index);
    } else {
      renderState(result.state, result.decided);
      renderProgress(result.progress, view.index, view.total);
      labeller.shownAt = performance.now();
      document.body.dataset.ready = "true";
    }
    if (result.next_index === null && result.progress.decided === result.progress.total) {
      showMessage("Batch done: commit it with `moola annotate commit`.", true);
    }
  } catch (error) {
    showMessage(error.message);
    document.body.dataset.ready = "true";
  }
}

async function undo() {
  // Undo acts on the window shown; with nothing to undo there, it goes back to the
  // window acted on last and undoes its latest action.
  const view = labeller.view;
  if (!view) return;
  if (view.state.seqs.length === 0 && labeller.history.length) {
    await loadWindow(labeller.history.pop());
  } else if (view.state.seqs.length === 0 && view.index > 0) {
    await loadWindow(view.index - 1);
  }
  await act("undo");
}

function openNote() {
  const form = $("note-form");
  const input = $("note-input");
  form.hidden = false;
  input.value = (labeller.view && labeller.view.state.note) || "";
  input.focus();
}

function closeNote() {
  $("note-form").hidden = true;
  $("note-input").blur();
}

function onKey(event) {
  if (event.target && event.target.id === "note-input") {
    if (event.key === "Escape") { event.preventDefault(); closeNote(); }
    return;
  }
  if (event.ctrlKey || event.metaKey || event.altKey || !labeller.view) return;
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  const step = (delta) => async () => {
    const view = labeller.view;
    const index = view.index + delta;
    if (index >= 0 && index < view.total) {
      showMessage("");
      await loadWindow(index);
    }
  };
  if (LABEL_KEYS[key]) enqueue(() => act("label", { label: LABEL_KEYS[key] }));
  else if (GRADE_KEYS[key]) enqueue(() => act("grade", { grade: GRADE_KEYS[key] }));
  else if (key === "n") openNote();
  else if (key === "s") enqueue(() => act("skip"));
  else if (key === "u" || key === "Backspace") enqueue(undo);
  else if (key === "ArrowRight") enqueue(step(1));
  else if (key === "ArrowLeft") enqueue(step(-1));
  else return;
  event.preventDefault();
}

async function showBatches() {
  $("batches").hidden = false;
  const body = $("batch-table").querySelector("tbody");
  const batches = await api("/api/batches");
  body.replaceChildren();
  for (const batch of batches) {
    const row = el("tr");
    const link = el("a", batch.name);
    link.href = `/label?batch=${encodeURIComponent(batch.name)}`;
    const name = el("td");
    name.append(link);
    row.append(name, el("td", batch.kind), el("td", batch.raw), el("td", batch.windows),
      el("td", `${batch.progress.decided} / ${batch.progress.total}`), el("td", batch.created_at));
    body.append(row);
  }
  if (!batches.length) body.append(el("tr", "No batches yet."));
  document.body.dataset.ready = "true";
}

async function startLabelling() {
  const params = new URLSearchParams(window.location.search);
  labeller.batch = params.get("batch") || document.body.dataset.batch || null;
  if (!labeller.batch) return showBatches();
  const batches = await api("/api/batches");
  const info = batches.find((b) => b.name === labeller.batch);
  if (!info) throw new Error(`no batch ${labeller.batch}`);
  labeller.kind = info.kind;
  $("title").textContent = `${info.kind === "review" ? "review" : "labelling"}: ${info.name} (${info.raw})`;
  $("labeller").hidden = false;
  makeChart();
  $("note-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const note = $("note-input").value;
    closeNote();
    enqueue(() => act("note", { note }));
  });
  document.addEventListener("keydown", onKey);
  await loadWindow(null);
}

// ------------------------------------------------------------------ stats

function flat(row) {
  // {classes: {a: 1}} -> {"classes.a": 1}: one level, so counts get their own columns.
  const out = {};
  for (const [key, value] of Object.entries(row)) {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      for (const [inner, item] of Object.entries(value)) out[`${key}.${inner}`] = item;
    } else out[key] = value;
  }
  return out;
}

function tableOf(rawRows) {
  // rows: a list of objects; columns: the union of their keys, in first-seen order.
  const rows = rawRows.map(flat);
  const columns = [];
  for (const row of rows) for (const key of Object.keys(row)) if (!columns.includes(key)) columns.push(key);
  const table = el("table");
  const head = el("tr");
  for (const c of columns) head.append(el("th", c));
  table.append(el("thead")); table.tHead.append(head);
  const body = el("tbody");
  for (const row of rows) {
    const tr = el("tr");
    for (const c of columns) {
      const v = row[c];
      const text = v !== null && typeof v === "object" ? JSON.stringify(v) : fmt(v);
      tr.append(el("td", text, typeof v === "number" ? "num" : ""));
    }
    body.append(tr);
  }
  table.append(body);
  return table;
}

function statsSection(title, value) {
  const section = el("section");
  section.append(el("h3", title));
  if (Array.isArray(value)) {
    section.append(value.length ? tableOf(value) : el("p", "none yet", "hint"));
  } else if (value && typeof value === "object") {
    const entries = Object.entries(value);
    const nested = entries.length && entries.every(([, v]) => v && typeof v === "object" && !Array.isArray(v));
    const rows = nested
      ? entries.map(([k, v]) => ({ "": k, ...v }))
      : entries.map(([k, v]) => ({ "": k, value: v }));
    section.append(rows.length ? tableOf(rows) : el("p", "none yet", "hint"));
  } else {
    section.append(el("p", fmt(value)));
  }
  return section;
}

async function startStats() {
  const stats = await api("/api/stats");
  const box = $("stats");
  box.replaceChildren();
  for (const [title, value] of Object.entries(stats)) {
    box.append(statsSection(title.replaceAll("_", " "), value));
  }
  document.body.dataset.ready = "true";
}

// ------------------------------------------------------------------ runs

const runsState = { sort: "line", order: "desc", selected: new Set() };

function option(select, value) {
  if ([...select.options].some((o) => o.value === value)) return;
  select.append(new Option(value, value));
}

async function loadRuns() {
  const params = new URLSearchParams({ sort: runsState.sort, order: runsState.order });
  for (const [name, id] of [["kind", "filter-kind"], ["model", "filter-model"], ["search", "filter-search"]]) {
    if ($(id).value) params.set(name, $(id).value);
  }
  const page = await api(`/api/runs?${params}`);
  for (const kind of page.kinds) option($("filter-kind"), kind);
  for (const model of page.models) option($("filter-model"), model);
  $("runs-problems").textContent = page.problems.join("; ");
  const metrics = page.metrics;
  const columns = ["line", "run_id", "kind", "model", "dataset", ...metrics];
  const head = el("tr");
  head.append(el("th", ""));
  for (const c of columns) {
    const th = el("th", c);
    if (c === runsState.sort) th.className = `sorted-${runsState.order}`;
    th.addEventListener("click", () => {
      runsState.order = runsState.sort === c && runsState.order === "desc" ? "asc" : "desc";
      runsState.sort = c;
      loadRuns().catch((e) => { $("runs-problems").textContent = e.message; });
    });
    head.append(th);
  }
  head.append(el("th", "report"));
  const table = $("runs-table");
  table.tHead.replaceChildren(head);
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const row of page.rows) {
    const tr = el("tr");
    const box = el("input");
    box.type = "checkbox";
    box.checked = runsState.selected.has(row.line);
    box.addEventListener("change", () => {
      if (box.checked) runsState.selected.add(row.line); else runsState.selected.delete(row.line);
    });
    const pick = el("td"); pick.append(box); tr.append(pick);
    for (const c of ["line", "run_id", "kind", "model", "dataset"]) tr.append(el("td", row[c], c === "run_id" ? "mono" : ""));
    for (const m of metrics) tr.append(el("td", fmt(row.metrics[m]), "num"));
    tr.append(reportCell(row));
    body.append(tr);
  }
  $("title").textContent = `${page.rows.length} of ${page.total} results`;
  document.body.dataset.ready = "true";
}

function reportCell(row) {
  const cell = el("td");
  if (row.has_report) {
    const link = el("a", "report");
    link.href = `/runs/${encodeURIComponent(row.run_id)}/report`;
    link.target = "_blank";
    cell.append(link);
  }
  return cell;
}

async function compareRuns() {
  const lines = [...runsState.selected];
  const box = $("comparison");
  box.replaceChildren();
  if (lines.length < 1) { box.append(el("p", "Tick runs to compare.", "hint")); return; }
  const params = new URLSearchParams();
  for (const line of lines) params.append("lines", String(line));
  const comparison = await api(`/api/runs/compare?${params}`);
  const table = el("table");
  const head = el("tr");
  head.append(el("th", "metric"));
  for (const row of comparison.rows) head.append(el("th", `${row.run_id} (${row.kind})`, "mono"));
  table.append(el("thead")); table.tHead.append(head);
  const body = el("tbody");
  for (const field of ["model", "dataset"]) {
    const tr = el("tr"); tr.append(el("td", field));
    for (const row of comparison.rows) tr.append(el("td", row[field]));
    body.append(tr);
  }
  for (const metric of comparison.metrics) {
    const tr = el("tr"); tr.append(el("td", metric));
    comparison.rows.forEach((row, i) => {
      tr.append(el("td", fmt(row.metrics[metric]), comparison.best[metric] === i ? "num best" : "num"));
    });
    body.append(tr);
  }
  const files = el("tr"); files.append(el("td", "files"));
  for (const row of comparison.rows) {
    const cell = el("td");
    if (row.has_report) { cell.append(reportCell(row).firstChild || ""); cell.append(el("br")); }
    for (const name of row.files) {
      const link = el("a", name);
      link.href = `/runs/${encodeURIComponent(row.run_id)}/files/${name.split("/").map(encodeURIComponent).join("/")}`;
      cell.append(link, el("br"));
    }
    files.append(cell);
  }
  body.append(files);
  table.append(body);
  box.append(el("h3", "Comparison"), table);
}

async function startRuns() {
  for (const id of ["filter-kind", "filter-model"]) $(id).addEventListener("change", () => loadRuns());
  $("filter-search").addEventListener("input", () => loadRuns());
  $("compare").addEventListener("click", () => compareRuns().catch((e) => { $("runs-problems").textContent = e.message; }));
  await loadRuns();
}

// ------------------------------------------------------------------ start

async function start() {
  const view = document.body.dataset.view;
  const main = $(`view-${view}`);
  if (main) main.hidden = false;
  const nav = $(`nav-${view}`);
  if (nav) nav.classList.add("active");
  const starts = { label: startLabelling, stats: startStats, runs: startRuns };
  try {
    await (starts[view] || startLabelling)();
  } catch (error) {
    $("title").textContent = `error: ${error.message}`;
    document.body.dataset.ready = "error";
  }
}

document.addEventListener("DOMContentLoaded", start);
