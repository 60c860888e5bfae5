"""HTML of the live view: the ``/eval`` dashboard (inline JS + <canvas>, no CDN) and the index."""

from __future__ import annotations

import html

from lss_bev_ros.visualization import (
    REFERENCE_LABELS,
    bev_legend,
    probability_rgb,
)


def _css(rgb: tuple[int, int, int]) -> str:
    return "rgb({}, {}, {})".format(*rgb)


def bev_legend_html() -> str:
    """Legend of the /bev and /fused pictures (the colours they are drawn with)."""
    ramp = ", ".join(_css(probability_rgb(p)) for p in (0.0, 0.35, 0.7, 1.0))
    items = [f'<span data-entry="probability"><i style="width:36px;background:'
             f'linear-gradient(90deg, {ramp})"></i>occupancy p 0..1</span>']
    for label, rgb in bev_legend(reference=True, observed=True,
                                 unknown="unknown: no camera (/bev), -1 (/fused)"):
        if rgb is not None:
            items.append(f'<span data-entry="{html.escape(label)}" data-rgb='
                         f'"{",".join(map(str, rgb))}"><i style="background:{_css(rgb)}"></i>'
                         f'{html.escape(label)}</span>')
    return "".join(items)


_REF_LABELS_JS = "{" + ", ".join(f'{k}: "{v}"' for k, v in REFERENCE_LABELS.items()) + "}"

_STYLE = """
:root { --bg:#11151c; --panel:#1a202b; --line:#2c3544; --fg:#e6e9ef; --dim:#9aa5b5;
        --ok:#66bb6a; --warn:#ffa726; --bad:#ef5350; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
       font:14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
header { display:flex; align-items:center; gap:16px; padding:12px 20px;
         border-bottom:1px solid var(--line); background:var(--panel); }
header h1 { font-size:18px; margin:0; font-weight:600; }
header nav a { color:var(--dim); margin-right:12px; text-decoration:none; }
header nav a:hover { color:var(--fg); }
.pill { padding:2px 10px; border-radius:10px; font-size:12px; font-weight:600; }
.pill.ok { background:#1f3d25; color:var(--ok); }
.pill.bad { background:#4a1f1f; color:var(--bad); }
.pill.warn { background:#4a3a1a; color:var(--warn); }
main { padding:16px 20px; display:grid; gap:16px; }
.kpis { display:grid; grid-template-columns:repeat(auto-fit, minmax(150px, 1fr)); gap:12px; }
.kpi { background:var(--panel); border:1px solid var(--line); border-radius:8px;
       padding:10px 14px; }
.kpi .label { color:var(--dim); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.kpi .value { font-size:24px; font-weight:600; margin-top:2px; font-variant-numeric:tabular-nums; }
.kpi .sub { color:var(--dim); font-size:12px; }
.grid2 { display:grid; grid-template-columns:repeat(auto-fit, minmax(460px, 1fr)); gap:16px; }
.card { background:var(--panel); border:1px solid var(--line); border-radius:8px;
        padding:12px 14px; }
.card h2 { font-size:15px; margin:0 0 8px 0; font-weight:600; }
.card h2 small { color:var(--dim); font-weight:400; margin-left:6px; }
canvas.chart { width:100%; height:260px; display:block; }
.legend { display:flex; flex-wrap:wrap; gap:4px 14px; margin-top:6px; font-size:12px;
          color:var(--dim); }
.legend i { display:inline-block; width:12px; height:12px; border-radius:2px; margin-right:5px;
            vertical-align:-2px; }
table { width:100%; border-collapse:collapse; font-variant-numeric:tabular-nums; }
th, td { text-align:left; padding:4px 8px; border-bottom:1px solid var(--line); font-size:13px;
         overflow-wrap:anywhere; }
td:first-child, th:first-child { white-space:nowrap; overflow-wrap:normal; }
th { color:var(--dim); font-weight:500; }
td.num, th.num { text-align:right; }
.empty { color:var(--dim); font-style:italic; }
.live { display:flex; flex-wrap:wrap; gap:16px; align-items:flex-start; }
.live figure { margin:0; } .live figcaption { color:var(--dim); font-size:12px; margin-bottom:4px; }
.live img { max-width:100%; border:1px solid var(--line); border-radius:4px; background:#000; }
#bev-card .legend { margin-top:8px; }
"""

DASHBOARD_HTML = (
    """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>LSS BEV - evaluation dashboard</title>
<style>"""
    + _STYLE
    + """</style></head>
<body>
<header>
  <h1>LSS BEV &middot; live evaluation</h1>
  <span id="status" class="pill warn">connecting&hellip;</span>
  <span id="uptime" class="sub" style="color:var(--dim)"></span>
  <nav style="margin-left:auto"><a href="/">index</a><a href="/cam">/cam</a><a href="/bev">/bev</a>
  <a href="/eval.json">/eval.json</a></nav>
</header>
<main>
  <section class="kpis" id="kpis">
    <div class="kpi"><div class="label" id="kpi-iou-label">IoU (frame)</div>
      <div class="value" id="kpi-iou">&ndash;</div>
      <div class="sub" id="kpi-iou-sub">mean &ndash;</div></div>
    <div class="kpi"><div class="label">Precision</div>
      <div class="value" id="kpi-precision">&ndash;</div>
      <div class="sub" id="kpi-precision-sub">mean &ndash;</div></div>
    <div class="kpi"><div class="label">Recall</div>
      <div class="value" id="kpi-recall">&ndash;</div>
      <div class="sub" id="kpi-recall-sub">mean &ndash;</div></div>
    <div class="kpi"><div class="label">Frames evaluated</div>
      <div class="value" id="kpi-frames">&ndash;</div>
      <div class="sub" id="kpi-frames-sub">unmatched &ndash;</div></div>
    <div class="kpi"><div class="label">BEV backend</div>
      <div class="value" id="kpi-backend">&ndash;</div>
      <div class="sub" id="kpi-backend-sub">&nbsp;</div></div>
    <div class="kpi"><div class="label">Latency p50 / p90</div>
      <div class="value" id="kpi-latency">&ndash;</div>
      <div class="sub" id="kpi-latency-sub">p99 &ndash;</div></div>
    <div class="kpi"><div class="label" title="share of grid cells the reference knows and
      scores (lidar_visibility: cells LiDAR observed; other references: all)">Scored cells</div>
      <div class="value" id="kpi-observed">&ndash;</div>
      <div class="sub" id="kpi-observed-sub">mean &ndash;</div></div>
  </section>
  <section class="card" id="bev-card" style="display:none"><h2>BEV <small>single frame
    (/bev, vs the reference) &middot; fused over time (/fused, fusion_node)</small></h2>
    <div class="live" id="bev-views"></div>
    <div class="legend" id="legend-bev">""" + bev_legend_html() + """</div></section>
  <section class="grid2">
    <div class="card"><h2>Segmentation quality <small id="ref-desc"></small></h2>
      <canvas class="chart" id="chart-quality" data-points="0"></canvas>
      <div class="legend" id="legend-quality"></div></div>
    <div class="card"><h2>End-to-end latency <small>ms, input stamp &rarr; output</small></h2>
      <canvas class="chart" id="chart-latency" data-points="0"></canvas>
      <div class="legend" id="legend-latency"></div></div>
  </section>
  <section class="grid2" id="stage-charts"></section>
  <section class="grid2">
    <div class="card"><h2>Pipelines</h2>
      <table id="table-pipelines"><thead><tr><th>pipeline</th><th>node</th><th>backend</th>
      <th class="num">processed</th><th class="num">dropped</th><th class="num">total ms</th>
      <th class="num" title="input stamp to output (node clock)">latency ms</th>
      <th class="num" title="set complete to published (monotonic): valid with any clock">
      in node ms</th></tr></thead><tbody><tr><td colspan="8" class="empty">
      no timing received yet</td></tr></tbody></table></div>
    <div class="card"><h2>Streams <small>MJPEG clients</small></h2>
      <table id="table-streams"><thead><tr><th>stream</th><th class="num">published</th>
      <th class="num">clients</th><th class="num">sent</th><th class="num">dropped</th>
      <th class="num">MiB sent</th><th class="num">quality</th></tr></thead><tbody></tbody>
      </table></div>
  </section>
  <section class="grid2">
    <div class="card"><h2>Latest metrics</h2><table id="table-metrics"><tbody></tbody></table></div>
    <div class="card"><h2>Info</h2><table id="table-info"><tbody></tbody></table></div>
  </section>
  <section class="card" id="live-card"><h2>Live</h2><div class="live" id="live"></div></section>
</main>
<script>
"use strict";
const QCOL = {iou:"#4fc3f7", precision:"#81c784", recall:"#ffb74d", mean_iou:"#e0e0e0"};
const REF_LABELS = """ + _REF_LABELS_JS + """;
const BEV_STREAMS = ["bev", "fused"];
const PALETTE = ["#4fc3f7","#ba68c8","#ffb74d","#81c784","#f06292","#fff176","#4db6ac",
                 "#9575cd","#a1887f","#90a4ae"];
const stageColor = {};
function colorFor(name) {
  if (!(name in stageColor)) {
    stageColor[name] = PALETTE[Object.keys(stageColor).length % PALETTE.length];
  }
  return stageColor[name];
}
function isNum(v) { return typeof v === "number" && isFinite(v); }
function fmt(v, d) {
  if (isNum(v)) return v.toFixed(d === undefined ? 3 : d);
  return v === null || v === undefined ? "\\u2013" : String(v);
}
const ESC = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"};
function esc(s) { return String(s).replace(/[&<>"']/g, c => ESC[c]); }
function setText(id, v) { const e = document.getElementById(id); if (e) e.textContent = v; }

function prepCanvas(c) {
  const dpr = window.devicePixelRatio || 1, w = c.clientWidth || 600, h = c.clientHeight || 260;
  if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
    c.width = Math.round(w * dpr); c.height = Math.round(h * dpr);
  }
  const ctx = c.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.font = "12px system-ui, sans-serif";
  return {ctx, w, h, L: 48, R: 10, T: 10, B: 26};
}
function niceStep(v) {
  if (!(v > 0)) return 0.25;
  const p = Math.pow(10, Math.floor(Math.log10(v))), m = v / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * p;
}
function niceMax(v) { const st = niceStep(v / 4); return Math.max(st, Math.ceil(v / st) * st); }
function frame(g, x0, x1, y0, y1, xlabel, ylabelFmt, nx) {
  nx = nx || 4;
  const {ctx, w, h, L, R, T, B} = g, pw = w - L - R, ph = h - T - B;
  ctx.strokeStyle = "#2c3544"; ctx.fillStyle = "#9aa5b5"; ctx.lineWidth = 1;
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  const st = niceStep((y1 - y0) / 4), nt = Math.max(1, Math.round((y1 - y0) / st));
  for (let i = 0; i <= nt; i++) {
    const v = y0 + st * i, y = T + ph - ph * (v - y0) / (y1 - y0);
    ctx.beginPath(); ctx.moveTo(L, y + .5); ctx.lineTo(L + pw, y + .5); ctx.stroke();
    ctx.fillText(ylabelFmt(v), L - 6, y);
  }
  ctx.textBaseline = "top";
  for (let i = 0; i <= nx; i++) {
    const v = x0 + (x1 - x0) * i / nx, x = L + pw * i / nx;
    ctx.textAlign = i === 0 ? "left" : i === nx ? "right" : "center";
    ctx.fillText(xlabel(v), x, T + ph + 6);
  }
  return {pw, ph, sx: v => L + (x1 > x0 ? (v - x0) / (x1 - x0) : 0.5) * pw,
          sy: v => T + ph - (y1 > y0 ? (v - y0) / (y1 - y0) : 0) * ph};
}
function noData(g, text) {
  g.ctx.fillStyle = "#9aa5b5"; g.ctx.textAlign = "center"; g.ctx.textBaseline = "middle";
  g.ctx.fillText(text, g.w / 2, g.h / 2);
}
function legend(id, items) {
  document.getElementById(id).innerHTML = items.map(
    ([name, color, extra]) => `<span><i style="background:${color}"></i>${esc(name)}` +
      (extra ? ` <b style="color:#e6e9ef">${esc(extra)}</b>` : "") + "</span>").join("");
}
function drawLines(canvas, series, ymaxFixed, yfmt) {
  const g = prepCanvas(canvas);
  let xs = [], ymax = 0, n = 0;
  for (const s of series) {
    for (const [x, y] of s.pts) {
      xs.push(x);
      if (isNum(y)) { ymax = Math.max(ymax, y); n++; }
    }
  }
  canvas.dataset.points = String(n);
  if (!n) { noData(g, "waiting for data\\u2026"); return; }
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
  const xd = x1 - x0 < 10 ? 1 : 0;
  const f = frame(g, x0, x1, 0, ymaxFixed || niceMax(ymax * 1.1),
                  v => v.toFixed(xd) + " s", yfmt);
  for (const s of series) {
    g.ctx.strokeStyle = s.color; g.ctx.lineWidth = s.width || 1.6;
    g.ctx.setLineDash(s.dash || []); g.ctx.beginPath();
    let pen = false;
    for (const [x, y] of s.pts) {
      if (!isNum(y)) { pen = false; continue; }
      if (pen) g.ctx.lineTo(f.sx(x), f.sy(y)); else { g.ctx.moveTo(f.sx(x), f.sy(y)); pen = true; }
    }
    g.ctx.stroke(); g.ctx.setLineDash([]);
    const last = s.pts.filter(p => isNum(p[1])).slice(-1)[0];
    if (last && s.pts.length < 3) { g.ctx.fillStyle = s.color; g.ctx.beginPath();
      g.ctx.arc(f.sx(last[0]), f.sy(last[1]), 3, 0, 7); g.ctx.fill(); }
  }
}
function drawStages(canvas, hist, maxBars) {
  const g = prepCanvas(canvas);
  const frames = hist.slice(-maxBars);
  canvas.dataset.points = String(frames.length);
  if (!frames.length) { noData(g, "waiting for timing\\u2026"); return []; }
  const names = [];
  for (const fr of frames) {
    for (const k of Object.keys(fr.stages)) if (!names.includes(k)) names.push(k);
  }
  let ymax = 0;
  for (const fr of frames) {
    const s = Object.values(fr.stages).reduce((a, b) => a + b, 0);
    ymax = Math.max(ymax, s, isNum(fr.total_ms) ? fr.total_ms : 0);
  }
  const f = frame(g, 0, frames.length, 0, niceMax(ymax * 1.05),
                  v => (v >= frames.length ? "now" : "-" + (frames.length - v).toFixed(0)),
                  v => v.toFixed(v > 0 && v < 10 ? 1 : 0), Math.min(4, frames.length));
  const bw = f.pw / frames.length, gap = bw > 4 ? 1 : 0;
  frames.forEach((fr, i) => {
    let acc = 0;
    const parts = names.map(k => [k, fr.stages[k] || 0]);
    const other = isNum(fr.total_ms) ? fr.total_ms - parts.reduce((a, p) => a + p[1], 0) : 0;
    if (other > 0.05) parts.push(["other", other]);
    for (const [k, v] of parts) {
      const y0 = f.sy(acc), y1 = f.sy(acc + v);
      g.ctx.fillStyle = k === "other" ? "#546e7a" : colorFor(k);
      g.ctx.fillRect(f.sx(i) + gap, y1, Math.max(1, bw - 2 * gap), y0 - y1);
      acc += v;
    }
  });
  const mean = {};
  for (const k of names) {
    mean[k] = frames.reduce((a, fr) => a + (fr.stages[k] || 0), 0) / frames.length;
  }
  const items = names.map(k => [k, colorFor(k), mean[k].toFixed(2) + " ms"]);
  const other = frames.reduce((a, fr) => a + (isNum(fr.total_ms) ? Math.max(0, fr.total_ms -
    Object.values(fr.stages).reduce((x, y) => x + y, 0)) : 0), 0) / frames.length;
  if (other > 0.05) items.push(["other (glue)", "#546e7a", other.toFixed(2) + " ms"]);
  return items;
}
function stageCard(name) {
  let card = document.getElementById("stages-" + name);
  if (card) return card;
  card = document.createElement("div");
  card.className = "card"; card.id = "stages-" + name;
  card.innerHTML = `<h2>Latency per stage: ${esc(name)} <small class="sub"></small></h2>` +
    `<canvas class="chart" data-points="0"></canvas><div class="legend"></div>`;
  document.getElementById("stage-charts").appendChild(card);
  return card;
}
function rows(tableId, html, cols, emptyText) {
  const tb = document.querySelector("#" + tableId + " tbody");
  tb.innerHTML = html || `<tr><td colspan="${cols}" class="empty">${esc(emptyText)}</td></tr>`;
}

function render(d) {
  const m = d.metrics || {}, hist = d.metrics_history || [], timing = d.timing || {};
  setText("uptime", "up " + fmt(d.uptime_s, 0) + " s");
  setText("kpi-iou", fmt(m.iou));
  setText("kpi-iou-sub", "mean " + fmt(m.mean_iou) + (isNum(m.observed_fraction)
    && m.observed_fraction < 1 ? " \u00b7 scored on " + fmt(100 * m.observed_fraction, 0)
    + " % of cells" : ""));
  setText("kpi-precision", fmt(m.precision));
  setText("kpi-precision-sub", "mean " + fmt(m.mean_precision));
  setText("kpi-recall", fmt(m.recall)); setText("kpi-recall-sub", "mean " + fmt(m.mean_recall));
  setText("kpi-frames", fmt(m.frame_count, 0));
  setText("kpi-frames-sub", "unmatched " + fmt(m.unmatched_count, 0));
  const bev = timing.bev || Object.values(timing)[0];
  setText("kpi-backend", bev ? bev.backend : "\\u2013");
  setText("kpi-backend-sub", Object.entries(timing).map(([k, t]) => k + ": " + t.backend)
    .join(" \\u00b7 ") || "\\u00a0");
  setText("kpi-latency", isNum(m.latency_p50_ms)
    ? fmt(m.latency_p50_ms, 0) + " / " + fmt(m.latency_p90_ms, 0) + " ms" : "\\u2013");
  setText("kpi-latency-sub", "p99 " + (isNum(m.latency_p99_ms) ? fmt(m.latency_p99_ms, 0) + " ms"
    : "\\u2013"));
  setText("ref-desc", m.reference_description ? "vs " + m.reference_description : "");
  const refName = REF_LABELS[m.reference_kind] || m.reference_kind;
  setText("kpi-iou-label", refName ? "IoU vs " + refName : "IoU (frame)");
  setText("kpi-observed", isNum(m.observed_fraction)
    ? fmt(100 * m.observed_fraction, 0) + " %" : "\u2013");
  setText("kpi-observed-sub", "mean " + (isNum(m.mean_observed_fraction)
    ? fmt(100 * m.mean_observed_fraction, 0) + " %" : "\u2013") + " of the grid");

  const keys = ["iou", "precision", "recall", "mean_iou"];
  drawLines(document.getElementById("chart-quality"), keys.map(k => ({
    name: k, color: QCOL[k], dash: k === "mean_iou" ? [6, 4] : null,
    width: k === "mean_iou" ? 2 : 1.6,
    pts: hist.map(p => [p.t, p[k]])})), 1, v => v.toFixed(2));
  legend("legend-quality", keys.map(k => [k.replace("_", " "), QCOL[k], fmt(m[k])]));

  const lat = Object.entries(timing).map(([k, t], i) => ({
    name: k, color: PALETTE[(i * 2) % PALETTE.length],
    pts: (t.history || []).map(p => [p.t, p.latency_ms])}));
  drawLines(document.getElementById("chart-latency"), lat, 0, v => v.toFixed(0));
  legend("legend-latency",
         lat.map(s => [s.name, s.color, fmt(timing[s.name].latency_ms, 1) + " ms"]));

  let prow = "";
  for (const [k, t] of Object.entries(timing)) {
    const card = stageCard(k);
    card.querySelector("small").textContent = "backend " + t.backend + ", last " +
      Math.min(120, (t.history || []).length) + " frames";
    const items = drawStages(card.querySelector("canvas"), t.history || [], 120);
    legend2(card.querySelector(".legend"), items);
    prow += `<tr><td>${esc(k)}</td><td>${esc(t.node || "")}</td>` +
      `<td data-backend="${esc(t.backend)}">${esc(t.backend)}</td>` +
      `<td class="num">${fmt(t.frames_processed, 0)}</td>` +
      `<td class="num">${fmt(t.frames_dropped, 0)}</td>` +
      `<td class="num">${fmt(t.total_ms, 1)}</td><td class="num">${fmt(t.latency_ms, 1)}</td>` +
      `<td class="num">${fmt(t.node_latency_ms, 1)}</td></tr>`;
  }
  rows("table-pipelines", prow, 8, "no timing received yet");

  let srow = "";
  for (const [k, s] of Object.entries(d.streams || {})) {
    const q = (s.clients || []).map(c => c.quality).join(", ");
    srow += `<tr><td><a href="/${esc(k)}" style="color:#4fc3f7">/${esc(k)}</a></td>` +
      `<td class="num">${s.frames_published}</td>` +
      `<td class="num">${s.clients_connected}</td><td class="num">${s.frames_sent}</td>` +
      `<td class="num">${s.frames_dropped}</td>` +
      `<td class="num">${(s.bytes_sent / 1048576).toFixed(2)}</td>` +
      `<td class="num">${esc(q || "\\u2013")}</td></tr>`;
  }
  rows("table-streams", srow, 7, "no streams");

  const mrow = Object.entries(m).filter(([k]) => k !== "reference_description")
    .map(([k, v]) => `<tr><td>${esc(k)}</td><td class="num">` +
      `${esc(isNum(v) && !Number.isInteger(v) ? v.toFixed(4) : v === null ? "\\u2013" : v)}` +
      `</td></tr>`).join("");
  rows("table-metrics", mrow, 2, "no metrics received yet");
  const irow = Object.entries(d.info || {}).map(([k, v]) =>
    `<tr><td>${esc(k)}</td><td>${esc(flat(v))}</td></tr>`).join("");
  rows("table-info", irow, 2, "no info");
  ensureLive(Object.keys(d.streams || {}));
}
function flat(v) {
  if (v === null || v === undefined) return "\\u2013";
  if (Array.isArray(v)) return v.map(flat).join(", ");
  if (typeof v === "object") {
    const e = Object.entries(v);
    return e.length ? e.map(([k, x]) => k + ": " + flat(x)).join(" \\u00b7 ") : "\\u2013";
  }
  return String(v);
}
function legend2(el, items) {
  el.innerHTML = items.map(([name, color, extra]) =>
    `<span><i style="background:${color}"></i>${esc(name)}` +
    ` <b style="color:#e6e9ef">${esc(extra)}</b></span>`).join("");
}
const params = new URLSearchParams(location.search);
const wantLive = params.get("live") !== "0";
const shown = new Set();
let loaded = false;
function ensureLive(names) {
  if (!wantLive) { document.getElementById("live-card").style.display = "none"; return; }
  // /bev and /fused side by side in the BEV card (in this order), the rest under Live
  names = [...names].sort((a, b) => BEV_STREAMS.indexOf(a) - BEV_STREAMS.indexOf(b));
  if (!loaded) return;
  for (const n of names) {
    if (shown.has(n)) continue;
    shown.add(n);
    const fig = document.createElement("figure");
    fig.innerHTML = `<figcaption>/${esc(n)}</figcaption>` +
      `<img alt="${esc(n)}" src="/${encodeURIComponent(n)}?max_fps=10">`;
    const bev = BEV_STREAMS.includes(n);
    document.getElementById(bev ? "bev-views" : "live").appendChild(fig);
    if (bev) document.getElementById("bev-card").style.display = "";
  }
}
let lastOk = 0, okCount = 0;
async function poll() {
  try {
    const url = "/eval.json?history=" + (params.get("history") || 300);
    const r = await fetch(url, {cache: "no-store"});
    if (!r.ok) throw new Error("HTTP " + r.status);
    const d = await r.json();
    render(d);
    lastOk = Date.now(); okCount++;
    document.body.dataset.updates = String(okCount);
    const st = document.getElementById("status");
    st.className = "pill ok"; st.textContent = "live";
  } catch (e) {
    const st = document.getElementById("status");
    st.className = "pill bad"; st.textContent = "disconnected (" + e.message + ")";
  }
}
window.addEventListener("load", () => { loaded = true; poll(); });
poll();
setInterval(poll, Number(params.get("period_ms")) || 1000);
window.addEventListener("resize", () => poll());
</script>
</body></html>
"""
)


def index_html(streams: list[str]) -> str:
    """Index page: links to every endpoint and a live preview of each stream."""
    figs = "".join(
        f'<figure><figcaption><a href="/{html.escape(n)}" style="color:#4fc3f7">/'
        f'{html.escape(n)}</a> &middot; <a href="/{html.escape(n)}.jpg" style="color:#9aa5b5">'
        f'snapshot</a></figcaption><img alt="{html.escape(n)}" src="/{html.escape(n)}"></figure>'
        for n in streams
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>LSS BEV live view'
        f"</title><style>{_STYLE}</style></head><body><header><h1>LSS BEV &middot; live view</h1>"
        '<nav><a href="/eval">/eval dashboard</a><a href="/eval.json">/eval.json</a></nav>'
        f'</header><main><section class="live">{figs}</section></main></body></html>'
    )
