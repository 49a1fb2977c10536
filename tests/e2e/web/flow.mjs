// Browser end-to-end flow against a running aidp (driven by test_web_flow.py).
// usage: node flow.mjs <base-url> <artifacts-dir> <scenario-json>
// Prints one JSON line with what it saw; exits 1 on the first failed step (with a screenshot).
import { createRequire } from "node:module";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(resolve(here, "../../../web/package.json"));
const { chromium } = require("playwright-core");

const [base, artifacts, scenarioJson] = process.argv.slice(2);
const scenario = JSON.parse(scenarioJson);
const TRAIN_TIMEOUT = (scenario.train_timeout_s ?? 600) * 1000;
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

async function newUser(label, viewport) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(`${label}: ${m.text()}`));
  page.on("pageerror", (e) => consoleErrors.push(`${label}: ${e.message}`));
  return { context, page };
}

async function signUp(page, email, password, shotName) {
  await page.goto(base + "/");
  await page.getByRole("tab", { name: "Create account" }).waitFor();
  if (shotName) await shot(page, shotName);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Create account" }).last().click();
  await page.getByRole("heading", { name: "Projects" }).waitFor();
}

let exitCode = 0;
try {
  // --- user 1: sign up, create a project, watch it, try it ----------------------------
  const a = await newUser("alice", { width: 1280, height: 900 });
  const page = a.page;
  await step("sign up", page, () => signUp(page, scenario.alice, scenario.password, "01-sign-up"));
  await step("empty projects", page, async () => {
    await page.getByRole("heading", { name: "Train your first model" }).waitFor();
    await shot(page, "02-projects-empty");
  });
  await step("new project form", page, async () => {
    await page.getByRole("link", { name: "+ New project" }).click();
    await page.getByLabel("Project name").fill("bad name!");
    await page.getByText("Lowercase letters, digits and dashes (start").waitFor(); // validated as you type
    const f = scenario.form;
    // a dataset file upload shows its progress and yields an upload:// URI
    await page.getByText("Upload a file").click();
    await page.getByLabel("Dataset file").setInputFiles({
      name: "reviews.csv", mimeType: "text/csv", buffer: Buffer.from("text,label\ngood film,pos\nbad film,neg\n"),
    });
    await page.getByText(/uploaded · upload:\/\//).waitFor({ timeout: 30_000 });
    seen.upload_yaml = (await page.getByTestId("yaml-preview").innerText()).match(/dataset: (upload:\/\/\S+)/)?.[1];
    await page.getByText("HuggingFace", { exact: true }).click();
    await page.getByLabel("Project name").fill(f.name);
    await page.getByLabel("HuggingFace model id").fill(f.model);
    await page.getByLabel("Revision").first().fill("main");
    await page.getByLabel("HuggingFace dataset id").fill(f.dataset);
    await page.getByLabel("Epochs").fill(String(f.epochs));
    await page.getByLabel("Learning rate").fill(String(f.learning_rate));
    await page.getByLabel("Batch size").fill(String(f.batch_size));
    await page.getByLabel("Max steps").fill(String(f.max_steps));
    await page.getByLabel("Checkpoint every (steps)").fill(String(f.checkpoint_every));
    const yaml = await page.getByTestId("yaml-preview").innerText();
    if (!yaml.includes(`model: hf://${f.model}@main`)) throw new Error(`YAML preview wrong:\n${yaml}`);
    seen.yaml = yaml;
    await page.getByText("✓ Valid spec").waitFor();
    await shot(page, "03-new-project");
    await page.getByRole("button", { name: "Create and start training" }).click();
    await page.waitForURL(/#\/projects\/[0-9a-f-]{36}$/);
    seen.project_id = page.url().split("/").pop();
  });
  await step("live progress", page, async () => {
    await page.getByText("● live").waitFor({ timeout: 30_000 });
    // a stage becomes active or done: events arrived over the WebSocket
    await page.locator('.stage[data-status="active"], .stage[data-status="done"]').first().waitFor({ timeout: 120_000 });
    await shot(page, "04-preparing");
    await page.waitForFunction(() => {
      const el = document.querySelector('[data-testid="step"]');
      return el && /^[1-9]/.test(el.textContent ?? "");
    }, null, { timeout: TRAIN_TIMEOUT });
    seen.saw_step = await page.getByTestId("step").innerText();
    await shot(page, "05-training");
  });
  await step("deployed", page, async () => {
    await page.locator('.topbar ~ #main .badge[data-status="deployed"]').first().waitFor({ timeout: TRAIN_TIMEOUT });
    await page.getByTestId("deployment").waitFor();
    seen.loss_points = await page.locator('[data-testid="loss-chart"]').count();
    seen.log_text = (await page.getByTestId("log-panel").innerText()).slice(0, 400);
    await shot(page, "06-deployed");
  });
  await step("predict", page, async () => {
    await page.getByRole("button", { name: "Predict" }).click();
    await page.getByTestId("predictions").waitFor({ timeout: 60_000 });
    seen.predictions = await page.getByTestId("predictions").locator("tbody tr").count();
    await shot(page, "07-predict");
  });
  await step("projects list badge", page, async () => {
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Projects" }).click();
    await page.locator(`[data-project="${scenario.form.name}"] .badge[data-status="deployed"]`).waitFor();
    await shot(page, "08-projects");
  });

  await step("secrets", page, async () => {
    await page.getByRole("link", { name: "Secrets" }).click();
    await page.getByLabel("Name").fill("HF_TOKEN");
    await page.getByLabel("Value").fill("hf_e2e_very_secret_value");
    await page.getByRole("button", { name: "Save secret" }).click();
    await page.getByText("HF_TOKEN saved.").waitFor();
    await page.getByRole("button", { name: "Delete HF_TOKEN" }).waitFor();
    seen.secret_value_shown = (await page.content()).includes("hf_e2e_very_secret_value");
    await shot(page, "09-secrets");
  });

  // --- user 2: cannot see user 1's project ------------------------------------------------
  const b = await newUser("bob", { width: 390, height: 844 }); // a phone: responsive layout
  await step("second user", b.page, async () => {
    await signUp(b.page, scenario.bob, scenario.password);
    await b.page.getByRole("heading", { name: "Train your first model" }).waitFor();
    seen.bob_projects = await b.page.locator(".project-item").count();
    await b.page.goto(`${base}/#/projects/${seen.project_id}`);
    await b.page.getByRole("alert").first().waitFor();
    seen.bob_error = await b.page.getByRole("alert").first().innerText();
    await shot(b.page, "10-other-user-404");
  });
  await step("invite as viewer", page, async () => {
    await page.goto(`${base}/#/projects/${seen.project_id}`);
    await page.getByLabel("Email").fill(scenario.bob);
    await page.getByLabel("Role").selectOption("viewer");
    await page.getByRole("button", { name: "Invite", exact: true }).click();
    await page.getByText(`Invitation sent to ${scenario.bob} as viewer.`).waitFor();
    // pending until bob accepts: listed with a withdraw button, not among the members
    await page.getByRole("button", { name: `Withdraw the invitation of ${scenario.bob}` }).waitFor();
    seen.member_before_accept = await page.locator(`[data-member="${scenario.bob}"]`).count();
    await shot(page, "11-invited");
  });
  await step("viewer accepts", b.page, async () => {
    // bob logs out and back in: the invitation waits on his projects page
    await b.page.goto(`${base}/#/`);
    await b.page.getByRole("button", { name: "Log out" }).click();
    await b.page.getByRole("tab", { name: "Log in" }).click();
    await b.page.getByLabel("Email").fill(scenario.bob);
    await b.page.getByLabel("Password").fill(scenario.password);
    await b.page.getByRole("button", { name: "Log in" }).last().click();
    await b.page.getByRole("heading", { name: "Projects" }).waitFor();
    seen.bob_projects_before_accept = await b.page.locator(".project-item").count();
    const invitation = b.page.getByTestId("invitations");
    await invitation.getByText(scenario.form.name).waitFor();
    await shot(b.page, "12-invitation");
    await invitation.getByRole("button", { name: `Accept the invitation to ${scenario.form.name}` }).click();
    await b.page.locator(`[data-project="${scenario.form.name}"]`).waitFor();
    seen.invitations_left = await b.page.getByTestId("invitations").count();
  });
  await step("viewer is read-only", b.page, async () => {
    await b.page.locator(`[data-project="${scenario.form.name}"] a`).click();
    await b.page.getByRole("heading", { name: "Pipeline" }).waitFor();
    await b.page.getByText("You are viewer").waitFor();
    await b.page.getByTestId("members").locator(`[data-member="${scenario.bob}"]`).waitFor();
    seen.viewer_can_delete = await b.page.getByRole("button", { name: /Delete this project/ }).count();
    seen.viewer_can_rerun = await b.page.getByRole("button", { name: /Re-run/ }).count();
    seen.viewer_can_invite = await b.page.getByRole("button", { name: "Invite", exact: true }).count();
    seen.viewer_can_remove = await b.page.getByRole("button", { name: /^Remove / }).count();
    await shot(b.page, "13-viewer");
  });
  await step("owner sees the member", page, async () => {
    await page.reload();
    await page.getByTestId("members").locator(`[data-member="${scenario.bob}"]`).waitFor();
    seen.pending_after_accept = await page.getByRole("button", { name: `Withdraw the invitation of ${scenario.bob}` }).count();
    // removing asks first; keeping it changes nothing
    await page.getByRole("button", { name: `Remove ${scenario.bob}` }).click();
    await page.getByRole("group", { name: `Confirm removing ${scenario.bob}` }).getByRole("button", { name: "Keep" }).click();
    seen.member_kept = await page.locator(`[data-member="${scenario.bob}"]`).count();
  });
  await step("logout", page, async () => {
    await page.getByRole("button", { name: "Log out" }).click();
    await page.getByRole("tab", { name: "Log in" }).waitFor();
  });
} catch (err) {
  seen.error = err.message;
  exitCode = 1;
} finally {
  seen.console_errors = consoleErrors;
  await browser.close();
}
writeFileSync(join(artifacts, "result.json"), JSON.stringify(seen, null, 2));
console.log(JSON.stringify(seen));
process.exit(exitCode);
