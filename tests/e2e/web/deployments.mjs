// The Deployments page in Chromium (driven by test_deployments_web.py, issue 16): two
// deployments of one project listed with state, version, replicas and the live marker;
// "Make live" moves the marker; "Stop…" asks first and stops; "Start" starts it again.
// usage: node deployments.mjs <base-url> <artifacts-dir> <scenario-json>
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
const seen = { steps: [], screenshots: [] };
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

const row = (page, id) => page.locator(`tr[data-deployment="${id}"]`);

async function waitStatus(page, id, statuses, timeout = 150_000) {
  const wanted = statuses.map((s) => `[data-status="${s}"]`).join(", ");
  await page.locator(`tr[data-deployment="${id}"]`).and(page.locator(wanted)).waitFor({ timeout });
}

let exitCode = 0;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
  page.on("pageerror", (e) => consoleErrors.push(e.message));

  await step("log in", page, async () => {
    await page.goto(base + "/");
    await page.getByRole("tab", { name: "Log in" }).click();
    await page.getByLabel("Email").fill(scenario.email);
    await page.getByLabel("Password").fill(scenario.password);
    await page.getByRole("button", { name: "Log in" }).last().click();
    await page.getByRole("heading", { name: "Projects" }).waitFor();
  });

  await step("deployments page", page, async () => {
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Deployments" }).click();
    await page.getByRole("heading", { name: "Deployments" }).waitFor();
    await row(page, scenario.live).waitFor();
    await row(page, scenario.other).waitFor();
    seen.rows = await page.locator("tr[data-deployment]").count();
    seen.live_before = await row(page, scenario.live).getByTestId("live").count();
    seen.other_live_before = await row(page, scenario.other).getByTestId("live").count();
    seen.live_row_text = await row(page, scenario.live).innerText();
    seen.other_row_text = await row(page, scenario.other).innerText();
    await shot(page, "deployments-01-list");
  });

  await step("make live", page, async () => {
    await row(page, scenario.other).getByRole("button", { name: /^Make .* live$/ }).click();
    await row(page, scenario.other).getByTestId("live").waitFor();
    await row(page, scenario.live).getByTestId("live").waitFor({ state: "detached" });
    seen.notice_promote = await page.getByTestId("notice").innerText();
  });

  await step("stop asks first", page, async () => {
    await row(page, scenario.live).getByRole("button", { name: /^Stop / }).click();
    const confirm = row(page, scenario.live).getByRole("group", { name: /Confirm stopping/ });
    await confirm.waitFor();
    seen.confirm_text = await confirm.innerText();
    seen.still_running_while_asking = await row(page, scenario.live).getAttribute("data-status");
    await shot(page, "deployments-02-confirm-stop");
    await confirm.getByRole("button", { name: "Stop", exact: true }).click();
    await waitStatus(page, scenario.live, ["stopped"]);
    seen.start_buttons = await row(page, scenario.live).getByRole("button", { name: /^Start / }).count();
    await shot(page, "deployments-03-stopped");
  });

  await step("start again", page, async () => {
    await row(page, scenario.live).getByRole("button", { name: /^Start / }).click();
    await waitStatus(page, scenario.live, ["running"]);
    seen.final_status = await row(page, scenario.live).getAttribute("data-status");
    seen.page_width = await page.evaluate(() => document.documentElement.scrollWidth);
    await shot(page, "deployments-04-started");
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
