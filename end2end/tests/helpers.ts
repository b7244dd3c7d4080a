import { test as base, expect, type BrowserContext, type Page, type TestInfo } from '@playwright/test';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

/** The server in mock mode (started by playwright.config.ts beside the fixture-model one). */
export const mockURL = process.env.E2E_MOCK_URL ?? 'http://127.0.0.1:3108';

const screenshots = join(__dirname, '..', 'screenshots');

/** Save a full-page screenshot as screenshots/NAME-PROJECT.png. */
export async function screenshot(page: Page, name: string, info: TestInfo) {
  mkdirSync(screenshots, { recursive: true });
  await page.screenshot({ path: join(screenshots, `${name}-${info.project.name}.png`), fullPage: true });
}

/** Make an account on `base` and log this page's browser context in (the session cookie is shared). */
export async function signUp(page: Page, base: string, prefix: string, info: TestInfo): Promise<string> {
  const username = `${prefix}-${info.project.name}-${Date.now() % 1_000_000}`;
  const res = await page.request.post(`${base}/auth/register`, { data: { username, password: 'a long password' } });
  expect(res.status(), await res.text()).toBe(201);
  return username;
}

/** Open a page and wait for the WASM to take over. */
export async function open(page: Page, url: string) {
  await page.goto(url);
  await expect(page.locator('.app[data-hydrated="true"]')).toBeVisible();
}

/** Collect uncaught page errors; the caller expects the list empty at the end. */
export function pageErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));
  return errors;
}

/** The server with no models (accounts off), for error states. */
export const brokenURL = process.env.E2E_BROKEN_URL ?? 'http://127.0.0.1:3109';
export const downloadURL = process.env.E2E_DOWNLOAD_URL ?? 'http://127.0.0.1:3111';
/** A mock-mode server whose first account, made by admin.spec.ts, is its admin. */
export const adminURL = process.env.E2E_ADMIN_URL ?? 'http://127.0.0.1:3112';

/**
 * The suite's `test`: every page of every browser context a test opens is watched for the
 * Content-Security-Policy violations Chromium reports (a blocked script, style or WASM module),
 * and the test fails if there is one.
 */
export const test = base.extend<{ cspViolations: string[] }>({
  cspViolations: [
    async ({ context, browser }, use) => {
      const seen: string[] = [];
      const csp = /Content Security Policy/i;
      // Chromium logs a blocked script or style to the console; a blocked WASM compile also
      // surfaces as the page's uncaught error.
      const watch = (ctx: BrowserContext) => {
        ctx.on('console', (msg) => {
          if (csp.test(msg.text())) seen.push(`${msg.location().url}: ${msg.text()}`);
        });
        ctx.on('weberror', (err) => {
          if (csp.test(err.error().message)) seen.push(err.error().message);
        });
      };
      watch(context);
      const original = browser.newContext.bind(browser);
      browser.newContext = async (...args: Parameters<typeof original>) => {
        const ctx = await original(...args);
        watch(ctx);
        return ctx;
      };
      await use(seen);
      browser.newContext = original;
      expect(seen, 'Content-Security-Policy violations reported by Chromium').toEqual([]);
    },
    { auto: true },
  ],
});

export { expect };
