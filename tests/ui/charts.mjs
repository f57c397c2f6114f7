// The review UI's charts in headless Chromium, run by tests/ui.rs against `shadowdiff demo`
// (after review.mjs). For every endpoint, each drawn mark must stand for the figure the API
// gives: the latency bars per side and bin, the delta's quantile points, the divergence points
// with their interval. Saves a screenshot of the charts.
//
// Environment: ADMIN_URL, PLAYWRIGHT_MODULES, CHROMIUM, SCREENSHOT (see lib.mjs).
import assert from "node:assert/strict";
import { env, eventually, launch } from "./lib.mjs";

const base = env("ADMIN_URL");
const WINDOW = "15m"; // the page's default window

const problems = [];
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  await page.goto(base + "/");
  await page.locator("#charts-button").click();

  // The figures, as the page itself would fetch them (same origin, same window).
  const api = await (await fetch(`${base}/api/v1/charts?window=${WINDOW}`)).json();
  assert.ok(api.endpoints.length > 0, "the demo's endpoints have charts");

  await eventually(async () => {
    const n = await page.$$eval("#charts .chart-card", (c) => c.length);
    assert.equal(n, api.endpoints.length, "one card per endpoint");
  }, "chart cards");

  const drawn = await page.$$eval("#charts .chart-card", (cards) =>
    cards.map((c) => ({
      endpoint: c.dataset.endpoint,
      bars: [...c.querySelectorAll("svg.chart-latency rect[data-side]")].map((r) => ({
        side: r.dataset.side, lo: Number(r.dataset.lo), hi: Number(r.dataset.hi), count: Number(r.dataset.count),
        height: Number(r.getAttribute("height")),
      })),
      legend: [...c.querySelectorAll("svg.chart-latency .chart-legend")].map((t) => t.textContent),
      delta: [...c.querySelectorAll("svg.chart-delta circle")].map((p) => ({ q: Number(p.dataset.q), us: Number(p.dataset.us) })),
      points: [...c.querySelectorAll("svg.chart-divergence circle")].map((p) => ({
        start: p.dataset.start, rate: Number(p.dataset.rate), lo: Number(p.dataset.lo), hi: Number(p.dataset.hi),
        samples: Number(p.dataset.samples),
      })),
    })),
  );

  let bars = 0;
  for (const ep of api.endpoints) {
    const d = drawn.find((x) => x.endpoint === ep.endpoint);
    assert.ok(d, `no card for ${ep.endpoint}`);
    // Latency: one bar per side and non-empty bin, with its count; taller bars hold more.
    const want = [];
    for (const side of ["primary", "candidate"]) {
      for (const b of ep.latency.bins) if (b[side]) want.push({ side, lo: b.lo_us, hi: b.hi_us, count: b[side] });
    }
    assert.deepEqual(d.bars.map(({ height, ...b }) => b), want, `${ep.endpoint}: latency bars`);
    for (const side of ["primary", "candidate"]) {
      const mine = d.bars.filter((b) => b.side === side);
      const sum = mine.reduce((n, b) => n + b.count, 0);
      assert.equal(sum, ep.latency[side + "_count"], `${ep.endpoint}: ${side} bars add up to its count`);
      for (const a of mine) for (const b of mine) {
        if (a.count > b.count) assert.ok(a.height > b.height, `${ep.endpoint}: ${side} bar heights follow counts`);
      }
      if (ep.latency.bins.length) {
        assert.ok(d.legend.includes(`${side} n=${ep.latency[side + "_count"]}`), `${ep.endpoint}: ${side} legend`);
      }
    }
    bars += d.bars.length;
    // The paired delta: every quantile point.
    assert.deepEqual(d.delta, ep.delta.quantiles.map((p) => ({ q: p.q, us: p.us })), `${ep.endpoint}: delta quantiles`);
    // Divergence: a point (with its interval) per bucket that compared something.
    const seen = ep.divergence.filter((p) => p.samples > 0)
      .map((p) => ({ start: p.start, rate: p.rate, lo: p.ci95[0], hi: p.ci95[1], samples: p.samples }));
    assert.deepEqual(d.points, seen, `${ep.endpoint}: divergence points`);
    for (const p of d.points) assert.ok(p.lo <= p.rate && p.rate <= p.hi, `${ep.endpoint}: rate inside its interval`);
  }
  assert.ok(bars > 0, "some latency bars drawn");
  // The planted regression's endpoint diverges: its chart shows a point above zero.
  const orders = drawn.find((x) => x.endpoint === "GET /orders/{id}");
  assert.ok(orders && orders.points.some((p) => p.rate > 0), "GET /orders/{id} shows its divergence");

  await page.locator("#charts-section").screenshot({ path: env("SCREENSHOT") });
  assert.deepEqual(problems, [], "console and page errors");
  console.log(`[ui] charts: ${api.endpoints.length} endpoints, ${bars} latency bars checked against the API`);
} finally {
  await browser.close();
}
