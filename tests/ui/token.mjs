// The review UI behind a bearer token, run by tests/ui.rs against `shadowdiff proxy` with
// `admin.token_file`. The operator opens http://HOST:PORT/#token=XYZ: the page must load its
// data with `Authorization: Bearer XYZ` on every API request, keep the token in sessionStorage
// only, and strip it from the address bar; the token must never travel in a URL.
//
// Environment: ADMIN_URL (http://127.0.0.1:PORT), ADMIN_TOKEN, PLAYWRIGHT_MODULES (a
// node_modules folder holding playwright-core), CHROMIUM (the browser binary),
// EXPECTED_EXCHANGES (how many exchanges the sidecar has compared).
import assert from "node:assert/strict";
import { env, eventually, launch } from "./lib.mjs";

const base = env("ADMIN_URL");
const TOKEN = env("ADMIN_TOKEN");

let current = "start";
const step = (name) => {
  current = name;
  console.log(`[ui-token] ${name}`);
};

async function api(route) {
  const r = await fetch(base + route, { headers: { Authorization: `Bearer ${TOKEN}` } });
  assert.equal(r.status, 200, `${route} answered ${r.status}`);
  return r.json();
}

// Every request the page makes, with what it carried; and what a reviewer would call broken.
function watch(page) {
  const seen = { requests: [], problems: [] };
  page.on("request", async (r) => {
    const headers = await r.allHeaders();
    seen.requests.push({ url: r.url(), auth: headers["authorization"] ?? null, kind: r.resourceType() });
  });
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") seen.problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => seen.problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => seen.problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on("response", (r) => {
    if (r.status() >= 400) seen.problems.push(`HTTP ${r.status()} for ${r.url()}`);
  });
  return seen;
}

// The token never appears in a URL the browser requested or shows.
function assertNoTokenInUrls(seen, page, what) {
  for (const r of seen.requests) {
    assert.ok(!r.url.includes(TOKEN) && !r.url.includes(encodeURIComponent(TOKEN)), `${what}: token in request URL ${r.url}`);
    assert.ok(!/[#?&]token=/.test(r.url), `${what}: token parameter in request URL ${r.url}`);
  }
  assert.ok(!page.url().includes("token="), `${what}: token left in the address bar: ${page.url()}`);
}

async function assertDataShown(page, what) {
  const summary = await api("/api/v1/summary?window=all");
  const feed = await api("/api/v1/mismatches?limit=50");
  assert.equal(summary.totals.exchanges, Number(env("EXPECTED_EXCHANGES")), "the sidecar's exchanges");
  assert.ok(feed.mismatches.length > 0, "the candidate differs, so the feed has mismatches");
  await eventually(async () => {
    assert.match(await page.textContent("#meta"), new RegExp(`· ${summary.totals.divergence.samples} compared ·`), "header totals");
    const eps = await page.$$eval("#endpoints tbody tr", (rs) => rs.map((r) => r.dataset.endpoint));
    assert.deepEqual(eps, summary.endpoints.map((e) => e.endpoint), "endpoints table");
    const ids = await page.$$eval("#mismatches tbody tr", (rs) => rs.map((r) => r.dataset.id));
    assert.deepEqual(ids, feed.mismatches.map((m) => m.id), "mismatch feed");
    assert.equal(await page.textContent("#error"), "", "no error shown");
  }, what);
  return feed;
}

const browser = await launch();
try {
  step("open the UI with the token in the fragment (percent-encoded), filters kept");
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await context.newPage();
  const seen = watch(page);
  await page.goto(`${base}/#window=all&token=${encodeURIComponent(TOKEN)}`);
  const feed = await assertDataShown(page, "data loaded with the token");
  assertNoTokenInUrls(seen, page, "first load");
  assert.equal(await page.evaluate(() => location.hash), "#window=all", "the other fragment parts stay");
  assert.equal(await page.$eval("#window", (s) => s.value), "all", "the window filter from the fragment");
  assert.equal(await page.evaluate(() => sessionStorage.getItem("shadowdiff.admin-token")), TOKEN, "kept for the tab");
  assert.equal(await page.evaluate(() => localStorage.length), 0, "nothing in localStorage");
  assert.ok(await page.isHidden("#auth"), "no token prompt when the token works");

  step("every API request carried the token, the page itself none");
  const apiReqs = seen.requests.filter((r) => new URL(r.url).pathname.startsWith("/api/"));
  assert.ok(apiReqs.length >= 5, `the page fetched the API (${apiReqs.length} requests)`);
  for (const r of apiReqs) assert.equal(r.auth, `Bearer ${TOKEN}`, `Authorization on ${r.url}`);
  const doc = seen.requests.find((r) => r.kind === "document");
  assert.equal(doc.url, `${base}/`, "the document request carries no fragment");
  assert.equal(doc.auth, null, "the page itself is fetched without the token");

  step("open one mismatch (a fetch of its own) and the suggested rules");
  const id = feed.mismatches[0].id;
  await page.click(`#mismatches tr[data-id="${id}"]`);
  await eventually(async () => assert.match(await page.textContent("#evid"), new RegExp(id)), "mismatch detail");
  await page.click("#noise-rules");
  await eventually(async () => {
    assert.ok(await page.isVisible("#noise-rules-text"), "rules shown in the page");
    assert.match(await page.textContent("#noise-rules-text"), /version: 1/);
  }, "suggested rules fetched with the token");
  assert.equal(page.url().split("#")[0], `${base}/`, "still on the page");

  step("reload: the token comes from sessionStorage, not the URL");
  const before = seen.requests.length;
  await page.reload();
  await assertDataShown(page, "data after reload");
  for (const r of seen.requests.slice(before).filter((r) => new URL(r.url).pathname.startsWith("/api/"))) {
    assert.equal(r.auth, `Bearer ${TOKEN}`, `Authorization after reload on ${r.url}`);
  }
  assertNoTokenInUrls(seen, page, "reload");
  assert.deepEqual(seen.problems, [], "no console errors or failed requests with the token");

  step("a token written raw in the fragment (+ / = unescaped) works too");
  const raw = await browser.newContext();
  const rawPage = await raw.newPage();
  const rawSeen = watch(rawPage);
  await rawPage.goto(`${base}/#token=${TOKEN}`);
  await assertDataShown(rawPage, "raw token");
  assertNoTokenInUrls(rawSeen, rawPage, "raw token");
  assert.equal(await rawPage.evaluate(() => location.hash), "", "nothing left in the fragment");
  assert.deepEqual(rawSeen.problems, []);
  await raw.close();

  step("a new tab without the token: the page asks for it, then loads");
  const fresh = await browser.newContext();
  const asking = await fresh.newPage();
  const askSeen = watch(asking);
  await asking.goto(`${base}/`);
  await eventually(async () => {
    assert.ok(await asking.isVisible("#auth"), "token prompt shown");
    assert.match(await asking.textContent("#error"), /wants a token/);
  }, "token prompt");
  assert.ok(askSeen.problems.some((p) => p.startsWith("HTTP 401")), "the API refused the page without the token");
  await asking.fill("#auth-token", TOKEN);
  await asking.click("#auth button");
  await assertDataShown(asking, "data after entering the token");
  assert.ok(await asking.isHidden("#auth"), "prompt hidden once the token works");
  assertNoTokenInUrls(askSeen, asking, "typed token");
  await fresh.close();

  step("a wrong token in the fragment: refused, and stripped all the same");
  const wrongCtx = await browser.newContext();
  const wrong = await wrongCtx.newPage();
  const wrongSeen = watch(wrong);
  await wrong.goto(`${base}/#token=not-the-token-0123456789`);
  await eventually(async () => {
    assert.match(await wrong.textContent("#error"), /token was refused/);
    assert.ok(await wrong.isVisible("#auth"), "token prompt shown");
  }, "wrong token");
  assert.ok(!wrong.url().includes("token="), `wrong token left in the address bar: ${wrong.url()}`);
  assert.ok(!wrongSeen.requests.some((r) => r.url.includes("not-the-token")), "wrong token in a URL");
  await wrongCtx.close();

  console.log("[ui-token] passed");
} catch (e) {
  console.error(`[ui-token] failed at step "${current}"`);
  throw e;
} finally {
  await browser.close();
}
