// The review UI's charts (issue 14): SVG drawn by hand from GET /api/v1/charts, no library.
// Put into ui.html in place of its "charts.js" marker when the page is served (src/admin/mod.rs);
// it uses the page's own helpers ($, get, q, fail). Every drawn mark carries the API figure it
// stands for in data-* attributes (tests/ui/charts.mjs checks them against the API).
"use strict";
const CHART = { w: 380, h: 210, left: 52, right: 10, top: 22, bottom: 34 };
const CHART_COLORS = { primary: "#1e63c4", candidate: "#e07b00", delta: "#6a1b9a", rate: "#b00020" };
let chartGeneration = 0;

function chartSvg(cls, title) {
  const s = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  s.setAttribute("class", cls);
  s.setAttribute("width", CHART.w);
  s.setAttribute("height", CHART.h);
  s.setAttribute("viewBox", "0 0 " + CHART.w + " " + CHART.h);
  s.setAttribute("role", "img");
  s.setAttribute("aria-label", title);
  chartText(s, CHART.left, 14, title, { "font-weight": 600 });
  return s;
}
function chartEl(parent, tag, attrs) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  parent.appendChild(e);
  return e;
}
function chartText(parent, x, y, text, attrs) {
  const t = chartEl(parent, "text", Object.assign({ x, y, "font-size": 11, fill: "#333" }, attrs || {}));
  t.textContent = text;
  return t;
}
function chartMs(us) { return (us / 1000).toFixed(us < 10000 && us > -10000 ? 2 : 0) + " ms"; }
function chartPct(x) { return (x * 100).toFixed(x < 0.1 ? 2 : 1) + "%"; }
// Plot area in pixels.
function chartArea() {
  return { x0: CHART.left, x1: CHART.w - CHART.right, y0: CHART.h - CHART.bottom, y1: CHART.top };
}
function chartAxes(s, xLabels, yLabels) {
  const a = chartArea();
  chartEl(s, "line", { x1: a.x0, y1: a.y0, x2: a.x1, y2: a.y0, stroke: "#888" });
  chartEl(s, "line", { x1: a.x0, y1: a.y0, x2: a.x0, y2: a.y1, stroke: "#888" });
  for (const [x, label, anchor] of xLabels) chartText(s, x, a.y0 + 14, label, { "text-anchor": anchor || "middle" });
  for (const [y, label] of yLabels) chartText(s, a.x0 - 4, y + 4, label, { "text-anchor": "end" });
}
function chartNote(parent, text) {
  const p = document.createElement("p");
  p.className = "muted chart-empty";
  p.textContent = text;
  parent.appendChild(p);
}

// Primary and candidate latency on shared log-spaced bins, each as a share of its own count.
function chartLatency(ep) {
  const L = ep.latency;
  const s = chartSvg("chart-latency", "latency, share per bin (log time)");
  const a = chartArea();
  if (!L.bins.length) { chartText(s, a.x0 + 8, a.y1 + 40, "no latency recorded"); return s; }
  const lo = L.bins[0].lo_us, hi = Math.max(L.bins[L.bins.length - 1].hi_us, lo + 1);
  const lx = (v) => a.x0 + (a.x1 - a.x0) * (Math.log(Math.max(v, lo) / lo) / Math.log(hi / lo));
  let top = 0;
  for (const b of L.bins) {
    if (L.primary_count) top = Math.max(top, b.primary / L.primary_count);
    if (L.candidate_count) top = Math.max(top, b.candidate / L.candidate_count);
  }
  top = top || 1;
  const y = (share) => a.y0 - (a.y0 - a.y1) * (share / top);
  for (const side of ["primary", "candidate"]) {
    const n = L[side + "_count"];
    for (const b of L.bins) {
      if (!b[side]) continue;
      const x0 = lx(b.lo_us), x1 = L.bins.length === 1 ? a.x1 : lx(b.hi_us);
      const r = chartEl(s, "rect", {
        x: x0, y: y(b[side] / n), width: Math.max(x1 - x0, 1), height: a.y0 - y(b[side] / n),
        fill: CHART_COLORS[side], "fill-opacity": 0.45, stroke: CHART_COLORS[side], "stroke-width": 0.5,
        "data-side": side, "data-lo": b.lo_us, "data-hi": b.hi_us, "data-count": b[side],
      });
      chartEl(r, "title", {}).textContent = side + " " + chartMs(b.lo_us) + "–" + chartMs(b.hi_us) + ": " + b[side];
    }
  }
  chartAxes(s, [[a.x0, chartMs(lo), "start"], [a.x1, chartMs(hi), "end"]], [[a.y0, "0"], [a.y1, chartPct(top)]]);
  let lx0 = a.x0 + 60;
  for (const side of ["primary", "candidate"]) {
    chartEl(s, "rect", { x: lx0, y: a.y0 + 20, width: 10, height: 8, fill: CHART_COLORS[side], "fill-opacity": 0.6 });
    chartText(s, lx0 + 13, a.y0 + 28, side + " n=" + L[side + "_count"], { class: "chart-legend", "data-side": side });
    lx0 += 115;
  }
  return s;
}

// The signed paired delta (candidate − primary) by quantile: below zero the candidate was faster.
function chartDelta(ep) {
  const D = ep.delta;
  const s = chartSvg("chart-delta", "paired delta, candidate − primary, by quantile");
  const a = chartArea();
  if (!D.quantiles.length) { chartText(s, a.x0 + 8, a.y1 + 40, "no request answered by both"); return s; }
  let lo = Math.min(0, ...D.quantiles.map((p) => p.us)), hi = Math.max(0, ...D.quantiles.map((p) => p.us));
  if (hi === lo) hi = lo + 1;
  const x = (q) => a.x0 + (a.x1 - a.x0) * q;
  const y = (us) => a.y0 - (a.y0 - a.y1) * ((us - lo) / (hi - lo));
  chartEl(s, "line", { x1: a.x0, y1: y(0), x2: a.x1, y2: y(0), stroke: "#999", "stroke-dasharray": "3 3" });
  chartEl(s, "polyline", {
    points: D.quantiles.map((p) => x(p.q) + "," + y(p.us)).join(" "),
    fill: "none", stroke: CHART_COLORS.delta, "stroke-width": 1.5,
  });
  for (const p of D.quantiles) {
    const c = chartEl(s, "circle", { cx: x(p.q), cy: y(p.us), r: 2, fill: CHART_COLORS.delta, "data-q": p.q, "data-us": p.us });
    chartEl(c, "title", {}).textContent = "q" + Math.round(p.q * 100) + ": " + chartMs(p.us);
  }
  chartAxes(s, [[a.x0, "min", "start"], [x(0.5), "p50"], [a.x1, "max", "end"]], [[y(lo), chartMs(lo)], [y(hi), chartMs(hi)]]);
  const mid = D.quantiles.find((p) => p.q === 0.5);
  chartText(s, a.x0 + 4, a.y0 + 28, "n=" + D.count + (mid ? " · median Δ " + chartMs(mid.us) : ""), { class: "chart-legend" });
  return s;
}

// Divergence per window bucket, with the 95% Wilson interval as a band (and a whisker per point).
function chartDivergence(ep, bucketMs) {
  const P = ep.divergence;
  const s = chartSvg("chart-divergence", "divergence per " + Math.round(bucketMs / 1000) + " s bucket, 95% interval");
  const a = chartArea();
  const seen = P.map((p, i) => ({ p, i })).filter((o) => o.p.samples > 0);
  let top = Math.max(0.01, ...seen.map((o) => o.p.ci95[1]));
  top = Math.min(1, top * 1.1);
  const x = (i) => a.x0 + (a.x1 - a.x0) * (P.length > 1 ? i / (P.length - 1) : 0.5);
  const y = (r) => a.y0 - (a.y0 - a.y1) * (r / top);
  if (seen.length > 1) {
    const band = seen.map((o) => x(o.i) + "," + y(o.p.ci95[1]))
      .concat(seen.slice().reverse().map((o) => x(o.i) + "," + y(o.p.ci95[0])));
    chartEl(s, "polygon", { points: band.join(" "), fill: CHART_COLORS.rate, "fill-opacity": 0.15, class: "chart-band" });
    chartEl(s, "polyline", { points: seen.map((o) => x(o.i) + "," + y(o.p.rate)).join(" "), fill: "none", stroke: CHART_COLORS.rate });
  }
  for (const { p, i } of seen) {
    chartEl(s, "line", { x1: x(i), y1: y(p.ci95[0]), x2: x(i), y2: y(p.ci95[1]), stroke: CHART_COLORS.rate, "stroke-opacity": 0.5, "stroke-width": 3 });
    const c = chartEl(s, "circle", {
      cx: x(i), cy: y(p.rate), r: 3, fill: CHART_COLORS.rate,
      "data-start": p.start, "data-rate": p.rate, "data-lo": p.ci95[0], "data-hi": p.ci95[1], "data-samples": p.samples,
    });
    chartEl(c, "title", {}).textContent = p.start + ": " + chartPct(p.rate) + " [" + chartPct(p.ci95[0]) + ", " +
      chartPct(p.ci95[1]) + "] of " + p.samples;
  }
  const t = (iso) => iso.replace(/^.*T/, "").replace(/:\d\d(\.\d+)?Z$/, "");
  chartAxes(s, P.length ? [[a.x0, t(P[0].start), "start"], [a.x1, t(P[P.length - 1].start), "end"]] : [],
    [[a.y0, "0%"], [a.y1, chartPct(top)]]);
  if (!seen.length) chartText(s, a.x0 + 8, a.y1 + 40, "nothing compared in the window");
  return s;
}

async function loadCharts() {
  const gen = ++chartGeneration;
  const c = await get("/api/v1/charts" + q({ window: $("window").value }));
  if (gen !== chartGeneration) return;
  const root = $("charts");
  root.replaceChildren();
  if (!c.endpoints.length) chartNote(root, "no traffic in the window");
  for (const ep of c.endpoints) {
    const card = document.createElement("div");
    card.className = "chart-card";
    card.dataset.endpoint = ep.endpoint;
    card.style.cssText = "margin: 0 0 10px";
    const h = document.createElement("h3");
    h.textContent = ep.endpoint;
    card.appendChild(h);
    const row = document.createElement("div");
    row.style.cssText = "display: flex; flex-wrap: wrap; gap: 12px";
    row.append(chartLatency(ep), chartDelta(ep), chartDivergence(ep, c.bucket_ms));
    card.appendChild(row);
    root.appendChild(card);
  }
  root.dataset.window = c.window;
}
// Drawn while the dialog is open (opened from the header: the page's tables keep their room).
function refreshCharts() { if ($("charts-dialog").open) loadCharts().catch(fail); }
$("charts-button").addEventListener("click", () => { $("charts-dialog").showModal(); refreshCharts(); });
$("charts-close").addEventListener("click", () => $("charts-dialog").close());
$("refresh").addEventListener("click", refreshCharts);
$("window").addEventListener("change", refreshCharts);
$("auth").addEventListener("submit", refreshCharts);
