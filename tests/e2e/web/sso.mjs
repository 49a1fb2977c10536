// Single sign-on in Chromium against a running aidp and a real OIDC provider (driven by
// test_sso_web.py): the login page offers "Sign in with <label>", the provider's consent
// form is filled in, and the browser lands back in the app, signed in; a person whose
// email the provider has not verified lands back on the login page with the reason.
// usage: node sso.mjs <base-url> <artifacts-dir> <scenario-json>
// Prints one JSON line with what it saw; exits 1 on the first failed step (with a screenshot).
import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(resolve(here, "../../../web/package.json"));
const { chromium } = require("playwright-core");

const [base, artifacts, scenarioJson] = process.argv.slice(2);
const scenario = JSON.parse(scenarioJson);
mkdirSync(artifacts, { recursive: true });
const seen = { screenshots: [], steps: [] };
const consoleErrors = [];

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
  ],
});

async function shot(page, name) {
  const path = join(artifacts, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  seen.screenshots.push(path);
}

async function step(name, page, fn) {
  seen.steps.push(name);
  try {
    return await fn();
  } catch (err) {
    await shot(page, `FAILED-${name}`).catch(() => undefined);
    throw new Error(`step "${name}" failed: ${err.message}`);
  }
}

async function newPage(label) {
  const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  // the mock provider's page links a CDN stylesheet: no network here, fail it at once
  await page.route(/^https?:\/\/(?!127\.0\.0\.1)/, (route) => route.abort());
  page.on("console", (m) => {
    if (m.type() === "error" && page.url().startsWith(base)) consoleErrors.push(`${label}: ${m.text()}`);
  });
  page.on("pageerror", (e) => consoleErrors.push(`${label}: ${e.message}`));
  return { context, page };
}

async function signInAt(page, sub) {
  await page.goto(base + "/");
  const button = page.getByRole("link", { name: `Sign in with ${scenario.label}` });
  await button.waitFor();
  return button;
}

async function consent(page, sub) {
  await page.waitForURL((url) => url.href.startsWith(scenario.issuer), { waitUntil: "commit" });
  await page.locator('input[name="sub"]').fill(sub);
  await page.getByRole("button", { name: "Authorize" }).click();
}

let exitCode = 0;
try {
  const a = await newPage("alice");
  const page = a.page;
  await step("login page offers SSO", page, async () => {
    await signInAt(page, scenario.alice_sub);
    await shot(page, "01-sso-login");
  });
  await step("provider consent", page, async () => {
    await page.getByRole("link", { name: `Sign in with ${scenario.label}` }).click();
    await consent(page, scenario.alice_sub);
    await shot(page, "02-after-consent").catch(() => undefined);
  });
  await step("signed in", page, async () => {
    await page.waitForURL((url) => url.href.startsWith(base), { waitUntil: "commit" });
    await page.getByRole("heading", { name: "Projects" }).waitFor();
    await page.getByTestId("me").filter({ hasText: scenario.alice_email }).waitFor();
    seen.signed_in_email = await page.getByTestId("me").innerText();
    seen.hash_after = new URL(page.url()).hash;
    await shot(page, "03-signed-in");
  });
  await step("session survives a reload", page, async () => {
    await page.reload();
    await page.getByTestId("me").filter({ hasText: scenario.alice_email }).waitFor();
    seen.reload_kept_session = true;
  });
  await step("log out", page, async () => {
    await page.getByRole("button", { name: "Log out" }).click();
    await page.getByRole("link", { name: `Sign in with ${scenario.label}` }).waitFor();
  });

  const b = await newPage("mallory");
  const other = b.page;
  await step("unverified email is refused", other, async () => {
    await signInAt(other, scenario.unverified_sub);
    await other.getByRole("link", { name: `Sign in with ${scenario.label}` }).click();
    await consent(other, scenario.unverified_sub);
    await other.waitForURL((url) => url.href.startsWith(base), { waitUntil: "commit" });
    const alert = other.getByRole("alert").filter({ hasText: "not verified" });
    await alert.waitFor();
    seen.unverified_message = await alert.innerText();
    seen.unverified_signed_in = (await other.getByTestId("me").count()) > 0;
    seen.unverified_hash = new URL(other.url()).hash;
    // the way to try again is still offered
    await other.getByRole("link", { name: `Sign in with ${scenario.label}` }).waitFor();
    await shot(other, "04-unverified-refused");
  });
} catch (err) {
  seen.error = err.message;
  exitCode = 1;
} finally {
  seen.console_errors = consoleErrors;
  console.log(JSON.stringify(seen));
  await browser.close();
}
process.exit(exitCode);
