import { expect, test } from '@playwright/test';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const screenshots = join(__dirname, '..', 'screenshots');

test('the models page is rendered on the server, readable before WASM loads', async ({ request }) => {
  const res = await request.get('/models');
  expect(res.status()).toBe(200);
  const html = await res.text();
  expect(html).toContain('<title>Duet</title>');
  // Model cards come from the server-side render of get_health, not from the browser.
  expect(html).toContain('tiny-deepseek-r1-distill-qwen-int4-cw-ov');
  expect(html).toContain('tiny-stable-diffusion-v1-5-int8-ov');
  expect(html).toContain('/pkg/duet.wasm');
});

test('the page hydrates, the Refresh button calls the server, both fixture models are ready', async ({ page }, info) => {
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));
  await page.goto('/models');
  // Set by an effect, and effects run only in the browser after hydration.
  await expect(page.locator('.app[data-hydrated="true"]')).toBeVisible();

  const refresh = page.getByRole('button', { name: 'Refresh' });
  await expect(refresh).toHaveAttribute('data-clicks', '0');
  const serverCall = page.waitForRequest((req) => req.url().includes('/api/get_health') && req.method() === 'POST');
  await refresh.click();
  await serverCall;
  await expect(refresh).toHaveAttribute('data-clicks', '1');

  // Models compile in the background; the page polls until both are ready.
  const states = page.getByTestId('model-state');
  await expect(states).toHaveCount(2);
  await expect(states.nth(0)).toHaveText('ready', { timeout: 30_000 });
  await expect(states.nth(1)).toHaveText('ready', { timeout: 30_000 });
  await expect(page.getByTestId('service-status')).toHaveText('Ready');
  await expect(page.locator('.status-footer')).toContainText('OpenVINO 2026.4');
  expect(errors).toEqual([]);

  mkdirSync(screenshots, { recursive: true });
  await page.screenshot({ path: join(screenshots, `models-${info.project.name}.png`), fullPage: true });
});
