// Loads each path of the gateway in headless Chromium and reports what the page complained
// about: console errors, uncaught exceptions, failed requests and every
// `securitypolicyviolation` event (the CSP blocking a script, style, font, image or frame).
// Usage: node csp.mjs <base url> <path>... ; prints one JSON line {path: {errors, title}}.
import { createRequire } from "module";
import { fileURLToPath } from "url";
import path from "path";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "..", "..", "..", "web", "package.json"));
const { chromium } = require("playwright-core");

const [base, ...paths] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
const out = {};
try {
  for (const p of paths) {
    const page = await browser.newPage();
    const errors = [];
    page.on("console", (m) => m.type() === "error" && errors.push(`console: ${m.text()}`));
    page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
    page.on("requestfailed", (r) => errors.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`));
    await page.exposeFunction("__aidpViolation", (v) => errors.push(`csp: ${v}`));
    // registered before any page script runs, so a violation during load is seen too
    await page.addInitScript(() =>
      document.addEventListener("securitypolicyviolation", (e) =>
        window.__aidpViolation(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} (${e.sourceFile}:${e.lineNumber})`),
      ),
    );
    const response = await page.goto(base + p, { waitUntil: "networkidle" });
    // the UI and Swagger render after load: wait for their root to have content
    await page.waitForFunction(() => document.body && document.body.innerText.trim().length > 0, null, { timeout: 10000 }).catch(() => errors.push("page rendered nothing"));
    out[p] = {
      status: response ? response.status() : null,
      csp: response ? response.headers()["content-security-policy"] || null : null,
      errors,
      title: await page.title(),
      text: (await page.locator("body").innerText()).slice(0, 200),
    };
    await page.close();
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
