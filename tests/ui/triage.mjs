// Triage in the review UI (issue 16), run by tests/ui.rs against `shadowdiff proxy` with
// `admin.token_file`: a reviewer picks the one cluster, acknowledges it as expected with who and
// why (left out of the gate), and the page must show it as expected (never hidden), the
// suggested diff-rules snippet with its pre-check, the expected counts, and a field tree whose
// fields filter the feed. Every figure is checked against the JSON API.
//
// Environment: ADMIN_URL, ADMIN_TOKEN, PLAYWRIGHT_MODULES, CHROMIUM, EXPECTED_EXCHANGES.
import assert from "node:assert/strict";
import { env, eventually, launch } from "./lib.mjs";

const base = env("ADMIN_URL");
const TOKEN = env("ADMIN_TOKEN");
const N = Number(env("EXPECTED_EXCHANGES"));
const step = (name) => console.log(`[ui-triage] ${name}`);

async function api(route) {
  const r = await fetch(base + route, { headers: { Authorization: `Bearer ${TOKEN}` } });
  assert.equal(r.status, 200, `${route} answered ${r.status}`);
  return r.json();
}

const browser = await launch();
try {
  const page = await (await browser.newContext({ viewport: { width: 1400, height: 1000 } })).newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("response", (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()}`); });
  await page.goto(`${base}/#window=all&token=${encodeURIComponent(TOKEN)}`);

  step("the field tree groups the differing fields, with raw / noise counts");
  const summary = await api("/api/v1/summary?window=all&top=1000");
  const fields = summary.totals.top_fields;
  assert.ok(fields.some((f) => f.field === "/total"), "the candidate differs in /total");
  await eventually(async () => {
    const shown = await page.$$eval("#field-tree button.field", (bs) => bs.map((b) => b.dataset.field));
    assert.deepEqual(shown.sort(), fields.map((f) => f.field).sort(), "one button per field");
    const root = await page.textContent("#field-tree > details > summary");
    const raw = fields.reduce((a, f) => a + f.count, 0), noise = fields.reduce((a, f) => a + f.noise, 0);
    assert.match(root, new RegExp(`${raw} / ${noise}`), "the root sums its fields");
  }, "field tree");

  step("a field of the tree filters the clusters and the feed");
  await page.click('#field-tree button[data-field="/total"]');
  await eventually(async () => {
    assert.match(page.url(), /field=%2Ftotal/, "the filter is in the fragment");
    const feed = await api("/api/v1/mismatches?field=%2Ftotal&limit=50");
    const ids = await page.$$eval("#mismatches tbody tr", (rs) => rs.map((r) => r.dataset.id));
    assert.deepEqual(ids, feed.mismatches.map((m) => m.id), "feed filtered by field");
  }, "field filter");

  step("pick the cluster, acknowledge it as expected with who and why");
  const sigs = await api("/api/v1/signatures");
  assert.equal(sigs.signatures.length, 1, "one cluster");
  const sig = sigs.signatures[0].signature;
  await page.click(`#signatures tr[data-signature="${sig}"]`);
  await eventually(async () => assert.equal(await page.inputValue("#ack-signature"), sig), "the form takes the cluster");
  await page.fill("#ack-by", "qa reviewer");
  await page.fill("#ack-reason", "price change agreed");
  await page.check("#ack-exclude");
  await page.click("#ack-submit");

  step("it is listed, marked expected (not hidden), with its rule and pre-check");
  await eventually(async () => {
    const acks = await api("/api/v1/acknowledgements");
    assert.equal(acks.acknowledgements.length, 1, "acknowledged through the API");
    assert.equal(acks.acknowledgements[0].by, "qa reviewer");
    assert.equal(acks.acknowledgements[0].exclude_from_gate, true);
    const rows = await page.$$eval("#acks tbody tr", (rs) => rs.map((r) => r.dataset.signature));
    assert.deepEqual(rows, [sig], "acknowledgements table");
    const cluster = await page.textContent(`#signatures tr[data-signature="${sig}"]`);
    assert.match(cluster, /expected/i, "the cluster stays listed, marked expected");
  }, "acknowledged");
  const rule = await api(`/api/v1/suggested-rule?signature=${sig}`);
  assert.match(rule.yaml, /tolerance:/, "a number that moved gets a tolerance");
  assert.equal(rule.precheck.summary, `absorbs ${N} of ${N} events of this signature, and 0 others`);
  await eventually(async () => {
    assert.equal(await page.textContent("#ack-rule"), rule.yaml, "the snippet as the API gives it");
    assert.match(await page.textContent("#ack-precheck"), new RegExp(rule.precheck.summary));
  }, "suggested rule");

  step("the expected counts match the gate's");
  const gate = await api("/api/v1/gate");
  assert.equal(gate.expected.excluded_from_gate, N, "left out of the gate");
  await eventually(async () => {
    assert.match(await page.textContent("#expected-facts"),
      new RegExp(`${gate.expected.exchanges} exchanges since start, ${gate.expected.excluded_from_gate} left out`));
  }, "expected facts");

  step("picking the acknowledgement shows its rule again");
  await page.click("#ack-rule"); // nothing happens: plain text
  await page.click(`#acks tr[data-signature="${sig}"]`);
  await eventually(async () => assert.equal(await page.textContent("#ack-rule"), rule.yaml), "rule from the table");
  assert.equal(await page.textContent("#error"), "", "no error shown");
  assert.deepEqual(problems, [], "no page errors or failed requests");
  await page.screenshot({ path: "target/ui-test/triage.png", fullPage: true });
} finally {
  await browser.close();
}
