// A QA review of the mismatch feed in headless Chromium, run by tests/ui.rs against
// `shadowdiff demo`. Every figure read on the page is compared with the JSON API it comes from;
// the only names written here are the demo's planted findings (the tax rounding regression on
// GET /orders/{id}, the noisy /tags order), which a reviewer is expected to find.
//
// Environment: ADMIN_URL (http://127.0.0.1:PORT), PLAYWRIGHT_MODULES (a node_modules folder
// holding playwright-core), CHROMIUM (the browser binary), SCREENSHOT (where to save the page),
// EXPECTED_EXCHANGES (how many exchanges the demo drove).
import assert from "node:assert/strict";
import { env, eventually, launch } from "./lib.mjs";

const base = env("ADMIN_URL");

const ORDERS = "GET /orders/{id}";

let current = "start";
const step = (name) => {
  current = name;
  console.log(`[ui] ${name}`);
};

async function api(route) {
  const r = await fetch(base + route);
  assert.equal(r.status, 200, `${route} answered ${r.status}`);
  return r.json();
}

// The percentages in a cell such as "52.50% [46.19%, 58.73%]", as fractions.
function percents(text) {
  return [...text.matchAll(/(-?\d+(?:\.\d+)?)%/g)].map((m) => Number(m[1]) / 100);
}
function assertRate(text, rate, ci, what) {
  assert.equal(typeof text, "string", `${what}: no divergence shown (missing column or element)`);
  if (rate === null) {
    assert.equal(text.trim(), "–", `${what}: no samples should show a dash`);
    return;
  }
  const got = percents(text);
  assert.equal(got.length, 3, `${what}: rate and 95% interval expected in ${JSON.stringify(text)}`);
  // The page shows two decimals of a percent.
  for (const [g, want] of [[got[0], rate], [got[1], ci[0]], [got[2], ci[1]]]) {
    assert.ok(Math.abs(g - want) <= 0.00006, `${what}: shows ${text}, the API says ${rate} [${ci}]`);
  }
}

// A table's body rows as objects keyed by header text, plus the row's data attributes.
async function tableRows(page, selector) {
  return page.$eval(selector, (t) => {
    const heads = [...t.tHead.rows[0].cells].map((c) => c.textContent.trim());
    return [...t.tBodies[0].rows].map((r) => {
      const o = { $data: { ...r.dataset } };
      [...r.cells].forEach((c, i) => (o[heads[i]] = c.textContent.trim()));
      return o;
    });
  });
}

const problems = [];
// Records what a QA reviewer would call broken: console errors and warnings, script errors,
// failed requests, error answers, and any request that leaves the admin server.
function watch(page) {
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on("request", (r) => {
    if (!r.url().startsWith(base + "/") && !r.url().startsWith("data:")) problems.push(`request off the admin server: ${r.url()}`);
  });
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()}`);
  });
}

const browser = await launch();
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await context.newPage();
  watch(page);

  step("open the review UI");
  await page.goto(base + "/");
  const win = await page.$eval("#window", (s) => s.value);
  const summary = await api(`/api/v1/summary?window=${win}`);
  assert.equal(summary.totals.exchanges, Number(env("EXPECTED_EXCHANGES")), "the demo's exchanges in the summary");

  step("per-endpoint table: samples, verdict counts, divergence with its Wilson interval");
  await eventually(async () => {
    const rows = await tableRows(page, "#endpoints");
    assert.deepEqual(rows.map((r) => r.endpoint), summary.endpoints.map((e) => e.endpoint));
    for (const [i, e] of summary.endpoints.entries()) {
      const r = rows[i];
      assert.equal(Number(r.samples), e.divergence.samples, `${e.endpoint} samples`);
      assert.equal(Number(r.match), e.verdicts.match, `${e.endpoint} match`);
      assert.equal(Number(r.mismatch), e.verdicts.mismatch, `${e.endpoint} mismatch`);
      assert.equal(Number(r["cand. error"]), e.verdicts.candidate_error, `${e.endpoint} candidate errors`);
      assert.equal(Number(r.noise), e.verdicts.noise, `${e.endpoint} noise`);
      assert.equal(Number(r.skipped), e.verdicts.skipped, `${e.endpoint} skipped`);
      assertRate(r["divergence [95% CI]"], e.divergence.rate, e.divergence.ci95, e.endpoint);
    }
  }, "endpoints table");
  const meta = await page.textContent("#meta");
  assertRate(meta.match(/divergence ([^·]*)/)[1], summary.totals.divergence.rate, summary.totals.divergence.ci95, "header totals");

  step("top fields per endpoint (the tax rounding regression on GET /orders/{id})");
  for (const e of summary.endpoints) {
    const shown = await page.$$eval(`#endpoints tr[data-endpoint="${e.endpoint}"] button.field`, (bs) => bs.map((b) => b.textContent));
    const want = e.top_fields.slice(0, shown.length).map((f) => `${f.field} ${f.kind} (${f.count} / ${f.noise})`);
    assert.deepEqual(shown, want, `${e.endpoint} top fields`);
    assert.ok(shown.length >= Math.min(3, e.top_fields.length), `${e.endpoint}: at least the top 3 fields are shown`);
  }
  const ordersFields = summary.endpoints.find((e) => e.endpoint === ORDERS).top_fields.map((f) => f.field);
  for (const f of ["/tax", "/total"]) {
    assert.ok(ordersFields.includes(f), `the API lists ${f} on ${ORDERS}`);
    assert.ok(await page.isVisible(`#endpoints tr[data-endpoint="${ORDERS}"] button.field[data-field="${f}"]`), `${f} shown on ${ORDERS}`);
  }

  step("gate verdict");
  const gate = await api(`/api/v1/gate?window=${win}`);
  await eventually(async () => {
    for (const sel of ["#gate-badge", "#gate-verdict"]) {
      assert.equal(await page.textContent(sel), gate.verdict.replace(/_/g, " "), sel);
      assert.ok((await page.getAttribute(sel, "class")).includes(gate.verdict), `${sel} styled as ${gate.verdict}`);
    }
    assertRate(await page.textContent("#gate-rate"), gate.divergence_rate, gate.ci95, "gate pool");
    assert.match(await page.textContent("#gate-method"), new RegExp(`^${gate.method} `), "how the gate judged");
    assert.match(await page.textContent("#gate-samples"), new RegExp(`^${gate.samples}\\b`));
    const rows = await tableRows(page, "#gate-endpoints");
    assert.deepEqual(rows.map((r) => [r.endpoint, r.verdict, Number(r.samples)]),
      gate.endpoints.map((e) => [e.endpoint, e.verdict.replace(/_/g, " "), e.samples]));
    for (const [i, e] of gate.endpoints.entries()) assertRate(rows[i]["divergence [95% CI]"], e.divergence_rate, e.ci95, `gate ${e.endpoint}`);
  }, "gate section");

  step("learned noise: /tags order on GET /orders/{id}, as the API judges it; /tax is real");
  const noise = await api("/api/v1/noise");
  assert.ok(noise.secondary, "the demo runs with a secondary");
  await eventually(async () => {
    const rows = await tableRows(page, "#noise-fields");
    // A noisy field shows its suggested rule and the evidence for it (issue 16, item 5).
    const want = noise.endpoints.flatMap((ep) => ep.fields.map((f) => [ep.endpoint, f.field, f.raw, f.noise, ep.samples, f.status,
      f.suggestion ? f.suggestion.rule : "", f.suggestion ? f.suggestion.evidence.values : ""]));
    const got = rows.map((r) => [r.endpoint, r.field, Number(r["candidate differs"]), Number(r["secondary differs"]), Number(r.of), r.status,
      r["suggested rule"].split(" ")[0], r["suggested rule"] ? Number(/(\d+) values/.exec(r.evidence)[1]) : ""]);
    const key = (x) => x.slice(0, 2).join(" ");
    assert.deepEqual(got.map(key).sort(), want.map(key).sort(), "noise rows");
    for (const w of want) assert.deepEqual(got.find((g) => key(g) === key(w)), w, `noise row ${key(w)}`);
  }, "learned noise section");
  // The secondary reorders /tags as often as the candidate does, so the API decides between
  // noisy and real from counts that vary run to run: the page must show whichever it says. /tax is
  // never touched by the secondary, so it is always real.
  const ordersNoise = noise.endpoints.find((e) => e.endpoint === ORDERS).fields;
  const tags = ordersNoise.find((f) => f.field === "/tags");
  assert.ok(tags && tags.noise > 0, "the secondary differs on /tags");
  assert.equal(await page.getAttribute(`#noise-fields tr[data-endpoint="${ORDERS}"][data-field="/tags"]`, "data-status"), tags.status);
  assert.equal(ordersNoise.find((f) => f.field === "/tax").status, "real");
  assert.equal(await page.getAttribute(`#noise-fields tr[data-endpoint="${ORDERS}"][data-field="/tax"]`, "data-status"), "real");
  const rulesHref = await page.getAttribute("#noise-rules", "href");
  const rules = await (await fetch(new URL(rulesHref, base))).text();
  if (tags.status === "noisy") assert.match(rules, /"\/tags"/, "the suggested rules name /tags");

  step("filter the feed by endpoint");
  await page.click(`#endpoints tr[data-endpoint="${ORDERS}"] td:first-child`);
  const byEndpoint = await api(`/api/v1/mismatches?endpoint=${encodeURIComponent(ORDERS)}&limit=50`);
  const sigsOrders = (await api(`/api/v1/signatures?endpoint=${encodeURIComponent(ORDERS)}`)).signatures;
  await eventually(async () => {
    assert.ok(await page.isVisible('#filters .chip[data-filter="endpoint"]'), "endpoint filter chip");
    const feed = await tableRows(page, "#mismatches");
    assert.deepEqual(feed.map((r) => r.$data.id), byEndpoint.mismatches.map((m) => m.id), "feed = API page for the endpoint");
    assert.ok(feed.every((r) => r.$data.endpoint === ORDERS), "every feed row is on the endpoint");
    const request = (m) => m.request.method + " " + m.request.path + (m.request.query ? "?" + m.request.query : "");
    assert.deepEqual(feed.map((r) => [r.request, r.verdict]), byEndpoint.mismatches.map((m) => [request(m), m.verdict]), "request and verdict per row");
    const sigs = await tableRows(page, "#signatures");
    assert.deepEqual(sigs.map((r) => [r.signature, Number(r.count)]), sigsOrders.map((s) => [s.signature, s.count]), "clusters of the endpoint");
  }, "endpoint filter");
  if (byEndpoint.next_before) {
    step("page to older mismatches");
    // Older pages append below, as the API pages them.
    const older = await api(`/api/v1/mismatches?endpoint=${encodeURIComponent(ORDERS)}&limit=50&before=${byEndpoint.next_before}`);
    await page.click("#older");
    await eventually(async () => {
      const feed = await tableRows(page, "#mismatches");
      assert.deepEqual(feed.map((r) => r.$data.id), [...byEndpoint.mismatches, ...older.mismatches].map((m) => m.id), "two pages");
      assert.equal(await page.isVisible("#older"), Boolean(older.next_before), "the older button while more remain");
    }, "paging");
  }

  step("filter the clusters by field /tax");
  await page.click(`#endpoints tr[data-endpoint="${ORDERS}"] button.field[data-field="/tax"]`);
  const withTax = sigsOrders.filter((s) => s.fields.some((f) => f.field === "/tax"));
  assert.ok(withTax.length > 0 && withTax.length < sigsOrders.length, "some, not all, clusters of the endpoint touch /tax");
  await eventually(async () => {
    const sigs = await tableRows(page, "#signatures");
    assert.deepEqual(sigs.map((r) => r.signature), withTax.map((s) => s.signature), "clusters with /tax");
    assert.ok(sigs.every((r) => r.fields.includes("/tax")), "every listed cluster names /tax");
  }, "field filter");
  const byField = await api(`/api/v1/mismatches?endpoint=${encodeURIComponent(ORDERS)}&field=${encodeURIComponent("/tax")}&limit=50`);
  assert.ok(byField.mismatches.length > 0, "mismatches with /tax");
  assert.ok(byField.mismatches.every((m) => m.differences.some((d) => d.field === "/tax")), "the API filters by field");
  await eventually(async () => {
    const feed = await tableRows(page, "#mismatches");
    assert.deepEqual(feed.map((r) => r.$data.id), byField.mismatches.map((m) => m.id), "feed = API page for the field");
    assert.ok(await page.isVisible('#filters .chip[data-filter="field"]'), "field filter chip");
  }, "feed filtered by field");

  step("filter the feed by cluster (signature)");
  const sig = withTax[0];
  await page.click(`#signatures tr[data-signature="${sig.signature}"]`);
  const bySig = await api(`/api/v1/mismatches?endpoint=${encodeURIComponent(ORDERS)}&signature=${sig.signature}&limit=50`);
  assert.equal(bySig.mismatches.length, Math.min(50, sig.count), "the API's page for the cluster");
  await eventually(async () => {
    const feed = await tableRows(page, "#mismatches");
    assert.deepEqual(feed.map((r) => r.$data.id), bySig.mismatches.map((m) => m.id), "feed = API page for the signature");
    assert.ok(feed.every((r) => r.$data.signature === sig.signature), "every row is in the cluster");
    assert.ok(await page.isVisible('#filters .chip[data-filter="signature"]'), "signature filter chip");
  }, "signature filter");

  step("open one mismatch: primary and candidate side by side, differing fields highlighted");
  const ev = await api(`/api/v1/mismatches/${bySig.mismatches[0].id}`);
  await page.click(`#mismatches tr[data-id="${ev.id}"]`);
  await eventually(async () => {
    assert.match(await page.textContent("#evid"), new RegExp(ev.id));
    const diffs = await page.$$eval("#differences tr[data-path]", (rs) => rs.map((r) => r.dataset.path));
    assert.deepEqual(diffs, ev.differences.map((d) => d.path), "differences table");
  }, "mismatch detail");
  const p = await page.locator("#side-primary").boundingBox();
  const c = await page.locator("#side-candidate").boundingBox();
  assert.ok(Math.abs(p.y - c.y) < 2 && c.x >= p.x + p.width - 1, `primary ${JSON.stringify(p)} and candidate ${JSON.stringify(c)} side by side`);
  await page.locator("#detail-section").scrollIntoViewIfNeeded();
  for (const d of ev.differences.filter((d) => !d.path.startsWith("@"))) {
    for (const side of ["primary", "candidate"]) {
      const absent = (side === "primary" && d.kind === "added") || (side === "candidate" && d.kind === "missing");
      const mark = page.locator(`#side-${side} .hl[data-path="${d.path}"]`);
      assert.equal(await mark.count(), absent ? 0 : 1, `${side} highlight of ${d.path}`);
      if (absent) continue;
      assert.ok(await mark.isVisible(), `${side} highlight of ${d.path} visible`);
      const bg = await mark.evaluate((e) => getComputedStyle(e).backgroundColor);
      assert.notEqual(bg, "rgba(0, 0, 0, 0)", `${side} ${d.path} has a highlight colour`);
      if (d.kind === "value" && typeof d[side] === "number") {
        const text = await mark.textContent();
        const shown = Number(text.slice(text.lastIndexOf(":") + 1));
        assert.equal(shown, d[side], `${side} ${d.path} shows ${text}`);
      }
    }
  }
  // Only the differences are marked: equal fields are not.
  const marked = new Set(ev.differences.filter((d) => !d.path.startsWith("@") && d.kind !== "added").map((d) => d.path));
  assert.equal(await page.locator("#side-primary .hl").count(), marked.size, "highlights on the primary side");
  // Everything fits: no panel hides a column behind a horizontal scroll bar at 1400 px.
  const clipped = await page.$$eval("section", (ss) => ss.filter((s) => s.scrollWidth > s.clientWidth + 1).map((s) => s.id));
  assert.deepEqual(clipped, [], "sections wider than the page");
  const shot = env("SCREENSHOT");
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`[ui] screenshot ${shot}`);

  step("the page's link reopens the same filters and exchange");
  const link = page.url();
  assert.match(link, /#/, "filters are in the URL");
  const again = await context.newPage();
  watch(again);
  await again.goto(link);
  await eventually(async () => {
    assert.match(await again.textContent("#evid"), new RegExp(ev.id), "the exchange is open");
    const chips = await again.$$eval("#filters .chip", (cs) => cs.map((c) => c.dataset.filter));
    assert.deepEqual(chips, ["endpoint", "field", "signature"]);
    const feed = await tableRows(again, "#mismatches");
    assert.deepEqual(feed.map((r) => r.$data.id), bySig.mismatches.map((m) => m.id), "the same feed");
    assert.equal(await again.locator(`#side-candidate .hl[data-path="/tax"]`).count(), 1, "the same highlight");
  }, "shared link");
  await again.close();

  step("clear the filters, then list candidate errors only");
  await page.click('#filters .chip[data-filter="endpoint"] button');
  await page.selectOption("#verdict", "candidate_error");
  const errors = await api("/api/v1/mismatches?verdict=candidate_error&limit=50");
  assert.ok(errors.mismatches.length > 0, "the demo's candidate answers 500 on some invoices");
  await eventually(async () => {
    assert.equal(await page.locator("#filters .chip").count(), 0, "no filter chip left");
    const feed = await tableRows(page, "#mismatches");
    assert.deepEqual(feed.map((r) => r.$data.id), errors.mismatches.map((m) => m.id), "feed = API candidate errors");
    assert.ok(feed.every((r) => r.verdict === "candidate_error"));
  }, "verdict filter");
  // By keyboard this time: focus the first row, move down one, open it with Enter.
  const err = errors.mismatches[Math.min(1, errors.mismatches.length - 1)];
  await page.focus("#mismatches tbody tr");
  if (errors.mismatches.length > 1) await page.keyboard.press("ArrowDown");
  await page.keyboard.press("Enter");
  await eventually(async () => {
    assert.match(await page.textContent("#evid"), new RegExp(err.id));
    if (err.differences.some((d) => d.path === "@status")) {
      const statuses = await page.$$eval("#bodies th .hl", (s) => s.map((x) => x.textContent));
      assert.deepEqual(statuses, [String(err.primary.status), String(err.candidate.status)], "status difference highlighted");
    }
  }, "candidate error detail");

  step("the window selector: since start");
  await page.selectOption("#window", "all");
  const gateAll = await api("/api/v1/gate?window=all");
  await eventually(async () => {
    assert.equal(await page.textContent("#gate-window"), "all");
    assert.match(await page.textContent("#meta"), /^window all /);
    assertRate(await page.textContent("#gate-rate"), gateAll.divergence_rate, gateAll.ci95, "gate since start");
    assert.match(page.url(), /window=all/, "the window is in the link");
  }, "window since start");

  step("no console errors, no failed or off-host requests");
  assert.deepEqual(problems, []);
  console.log("[ui] review passed");
} catch (e) {
  console.error(`[ui] failed at step "${current}"`);
  if (problems.length) console.error(`[ui] browser problems so far:\n  ${problems.join("\n  ")}`);
  throw e;
} finally {
  await browser.close();
}
