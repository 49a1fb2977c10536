// Browser checks of issue 16 (driven by test_issue16_web.py): the Account page's API tokens
// (created with scopes, shown once, working, revoked) and the spec editor (errors with paths
// as you type, a diff against the run's spec, save; the panel keeps showing the run's spec).
// usage: node issue16.mjs <base-url> <artifacts-dir> <scenario-json>
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
const seen = { steps: [] };
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
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
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

async function apiStatus(path, token) {
  const r = await fetch(base + path, { headers: { Authorization: `Bearer ${token}` } });
  return r.status;
}

let exitCode = 0;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
  page.on("pageerror", (e) => consoleErrors.push(e.message));
  page.on("dialog", (d) => void d.accept()); // "Revoke …?" confirmations

  await step("log in", page, async () => {
    await page.goto(base + "/");
    await page.getByRole("tab", { name: "Log in" }).click();
    await page.getByLabel("Email").fill(scenario.email);
    await page.getByLabel("Password").fill(scenario.password);
    await page.getByRole("button", { name: "Log in" }).last().click();
    await page.getByRole("heading", { name: "Projects" }).waitFor();
  });

  // --- API tokens -------------------------------------------------------------------
  await step("account page", page, async () => {
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Account" }).click();
    await page.getByRole("heading", { name: "API tokens" }).waitFor();
    await shot(page, "i16-01-account");
  });
  let token = "";
  await step("create token", page, async () => {
    await page.getByLabel("Name", { exact: true }).fill("ci-nightly");
    await page.getByLabel(/run — create projects/).check();
    await page.getByRole("button", { name: "Create token" }).click();
    await page.getByTestId("token-created").waitFor();
    token = await page.getByTestId("token-value").inputValue();
    seen.token_prefix = token.slice(0, 5);
    await shot(page, "i16-02-token-shown-once");
    seen.token_works = await apiStatus("/api/projects", token);
    await page.getByRole("button", { name: "I have stored it" }).click();
    await page.getByTestId("token-table").waitFor();
    seen.token_still_shown = (await page.content()).includes(token);
    seen.token_rows = await page.getByTestId("token-table").locator("tbody tr").count();
    seen.token_scopes = await page.getByTestId("token-table").locator("tbody tr td").nth(2).innerText();
  });
  await step("revoke token", page, async () => {
    await page.getByRole("button", { name: "Revoke ci-nightly" }).click();
    await page.getByText("None yet.").waitFor();
    await shot(page, "i16-03-token-revoked");
    // the gateway caches an introspected token for a few seconds (AIDP_API_TOKEN_CACHE_SECONDS)
    let status = 200;
    for (let i = 0; i < 40 && status === 200; i++) {
      await new Promise((r) => setTimeout(r, 500));
      status = await apiStatus("/api/projects", token);
    }
    seen.revoked_status = status;
  });

  // --- spec editor ------------------------------------------------------------------
  await step("project spec panel", page, async () => {
    await page.goto(`${base}/#/projects/${scenario.project_id}`);
    await page.getByRole("heading", { name: "Spec of run 1" }).waitFor();
    seen.run_spec_shown = await page.getByTestId("spec-view").innerText();
  });
  await step("edit with a typo", page, async () => {
    await page.getByRole("button", { name: "Edit spec" }).click();
    const editor = page.getByLabel(/YAML, checked by the server/);
    const text = await editor.inputValue();
    await editor.fill(text.replace(/max_steps: \d+/, "max_step: 5"));
    await page.getByTestId("spec-errors").waitFor();
    seen.typo_error = await page.getByTestId("spec-errors").innerText();
    seen.save_disabled = await page.getByRole("button", { name: "Save", exact: true }).isDisabled();
    await shot(page, "i16-04-spec-typo");
    await editor.fill(text.replace(/max_steps: \d+/, "max_steps: 5"));
    await page.getByText("✓ Valid spec").waitFor();
    await page.getByTestId("spec-diff").waitFor();
    seen.diff = await page.getByTestId("spec-diff").innerText();
    await shot(page, "i16-05-spec-valid-diff");
  });
  await step("save", page, async () => {
    await page.getByRole("button", { name: "Save", exact: true }).click();
    await page.getByTestId("spec-changed-note").waitFor();
    seen.after_save_view = await page.getByTestId("spec-view").innerText();
    await shot(page, "i16-06-spec-saved");
  });
  seen.console_errors = consoleErrors;
  await context.close();
} catch (err) {
  seen.error = err.message;
  exitCode = 1;
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
process.exit(exitCode);
