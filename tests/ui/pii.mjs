// Planted personal data in the review UI (issue 12), run by tests/ui.rs against `shadowdiff
// proxy` fed the planted world of tests/pii/. Opens every event of the feed in the detail view,
// the way a reviewer does (a click on its row), waits until the view shows it, and writes what
// Chromium rendered — the whole page's HTML and its visible text, the tables included — to OUT.
// The Rust side greps that for every planted secret; this side only drives the browser and
// fails on a broken page.
//
// Environment: ADMIN_URL (http://127.0.0.1:PORT), PLAYWRIGHT_MODULES (a node_modules folder
// holding playwright-core), CHROMIUM (the browser binary), OUT (the file to write).
import assert from "node:assert/strict";
import { env, eventually, launch } from "./lib.mjs";
import { writeFileSync } from "node:fs";

const base = env("ADMIN_URL");

const problems = [];
const browser = await launch();
const rendered = [];
try {
  const page = await (await browser.newContext({ viewport: { width: 1400, height: 1000 } })).newPage();
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console error: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()}`));

  const feed = await (await fetch(`${base}/api/v1/mismatches?limit=100`)).json();
  assert.ok(feed.mismatches.length > 0, "no events to review");
  await page.goto(`${base}/#window=all`);
  await eventually(async () => {
    const ids = await page.$$eval("#mismatches tbody tr[data-id]", (rs) => rs.map((r) => r.dataset.id));
    assert.deepEqual(ids.sort(), feed.mismatches.map((m) => m.id).sort(), "the feed shows every event");
  }, "feed");
  for (const ev of feed.mismatches) {
    await page.click(`#mismatches tr[data-id="${ev.id}"]`);
    await eventually(async () => {
      assert.match(await page.textContent("#evid"), new RegExp(ev.id));
      // The differences table is filled for this event (a candidate error may have none).
      const rows = await page.locator("#differences tr[data-path]").count();
      assert.equal(rows, ev.differences.length, "one row per difference");
    }, `detail of ${ev.endpoint}`);
    rendered.push(`[[shadowdiff-detail-view ${ev.id}]]\n${await page.content()}\n${await page.innerText("body")}\n`);
  }
  assert.deepEqual(problems, []);
  console.log(`[ui-pii] rendered ${feed.mismatches.length} detail views`);
} finally {
  writeFileSync(env("OUT"), rendered.join("\n"));
  await browser.close();
}
