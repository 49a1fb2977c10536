// The chat box of an LLM deployment in headless Chromium (driven by
// tests/e2e/platform/test_openai_serving.py).
// usage: node chat.mjs <base-url> <email> <password> <project-id> <artifacts-dir>
// Prints one JSON line with what it saw; exits 1 on failure (with a screenshot).
import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(resolve(here, "../../../web/package.json"));
const { chromium } = require("playwright-core");

const [base, email, password, projectId, artifacts] = process.argv.slice(2);
mkdirSync(artifacts, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage"],
});
const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
page.setDefaultTimeout(30_000);
const errors = [];
page.on("pageerror", (e) => errors.push(e.message));
let code = 0;
try {
  await page.goto(base + "/");
  await page.getByRole("tab", { name: "Log in" }).click();
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Log in" }).last().click();
  await page.getByRole("heading", { name: "Projects" }).waitFor();
  await page.goto(`${base}/#/projects/${projectId}`);
  const box = page.getByTestId("chatbox");
  await box.waitFor({ timeout: 60_000 });
  await box.getByText(/model model-\d+/).waitFor(); // GET /v1/models answered
  await page.getByLabel("Message").fill("What colour is the apple number 3?");
  await page.getByRole("button", { name: "Send" }).click();
  const reply = page.locator('.chat-msg[data-role="assistant"] .chat-text');
  await page.waitForFunction(
    () => {
      const el = document.querySelector('.chat-msg[data-role="assistant"] .chat-text');
      const send = [...document.querySelectorAll("button")].find((b) => b.textContent === "Send");
      return el && el.textContent.length > 0 && send && !send.disabled;
    },
    null,
    { timeout: 120_000 },
  );
  await box.getByText("Use it from Python (openai client)").click();
  const snippet = await page.getByTestId("openai-snippet").innerText();
  await page.screenshot({ path: join(artifacts, "chat.png"), fullPage: true });
  console.log(JSON.stringify({ reply: await reply.innerText(), snippet, errors }));
} catch (err) {
  await page.screenshot({ path: join(artifacts, "FAILED-chat.png"), fullPage: true }).catch(() => undefined);
  console.error(`chat flow failed: ${err.message}`);
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
