// What the browser scripts run by tests/ui.rs share: their settings from the environment, the
// browser, and a wait for the page to catch up.
import { createRequire } from "node:module";
import path from "node:path";

// A setting tests/ui.rs passes in the environment.
export const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set (tests/ui.rs sets it)`);
  return v;
};

// Headless Chromium (CHROMIUM) through playwright-core (from PLAYWRIGHT_MODULES).
export async function launch() {
  const require = createRequire(path.join(env("PLAYWRIGHT_MODULES"), "_"));
  const { chromium } = require("playwright-core");
  return chromium.launch({
    executablePath: env("CHROMIUM"),
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
}

// Retries an assertion until it holds or 10 s pass: the page renders after its own fetches, so
// each check waits for the page to catch up instead of sleeping a fixed time.
export async function eventually(check, what) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      return await check();
    } catch (e) {
      if (Date.now() > deadline) {
        e.message = `${what}: ${e.message}`;
        throw e;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
