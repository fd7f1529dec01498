// A real browser for the end-to-end tests: playwright-core driving Debian's Chromium
// (/usr/bin/chromium, or $CHROMIUM). playwright-core downloads no browser of its own.
// Chromium missing is a failure (install it with WITH_BROWSER=1 bash scripts/setup.sh), not a skip.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

/** The Chromium binary, or a clear error telling how to install it. */
export function chromiumPath() {
  const bin = process.env.CHROMIUM || "/usr/bin/chromium";
  try {
    fs.accessSync(bin, fs.constants.X_OK);
  } catch {
    throw new Error(`Chromium not found at ${bin}: run \`WITH_BROWSER=1 bash scripts/setup.sh\` (Debian package chromium) or set CHROMIUM`);
  }
  return bin;
}

/** Launches headless Chromium; resolves to playwright's Browser (close it in `after`). */
export async function launchBrowser({ timeoutMs = 30000 } = {}) {
  return chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    timeout: timeoutMs,
    args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
  });
}

let fallbackDir = null;
/** Where screenshots go: $TEST_OUTPUT_DIR (scripts/test.sh sets it), else one temp dir per run. */
export function outputDir() {
  if (process.env.TEST_OUTPUT_DIR) {
    fs.mkdirSync(process.env.TEST_OUTPUT_DIR, { recursive: true });
    return process.env.TEST_OUTPUT_DIR;
  }
  fallbackDir ??= fs.mkdtempSync(path.join(os.tmpdir(), "socket-gateway-test-output-"));
  return fallbackDir;
}

/** Saves a full-page screenshot of `page` as <outputDir>/<name>.png; resolves to its path. */
export async function screenshot(page, name) {
  const file = path.join(outputDir(), `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/**
 * Collects the page's console errors and uncaught exceptions (for assertion messages and to fail
 * on script errors). Returns the live list.
 */
export function pageErrors(page) {
  const errors = [];
  page.on("pageerror", (err) => errors.push(`pageerror: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") errors.push(`console: ${msg.text()}`);
  });
  return errors;
}
