import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test, expect, downloadURL, open, pageErrors, screenshot } from './helpers';

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
  // The chat engine says what it holds: the paged KV cache and its use (the image model, nothing).
  const engine = page.getByTestId('model-engine');
  await expect(engine).toHaveCount(1);
  await expect(page.locator('[data-role="llm"]').getByTestId('model-engine')).toContainText(/KV cache: \d+ of \d+ tokens in use/);
  await expect(engine.locator('progress')).toHaveAttribute('max', /^\d+$/);
  expect(errors).toEqual([]);

  mkdirSync(screenshots, { recursive: true });
  await page.screenshot({ path: join(screenshots, `models-${info.project.name}.png`), fullPage: true });
});

test('a model downloading in the background shows file, bytes and progress; a failed one says why', async ({ page }, info) => {
  const errors = pageErrors(page);
  await open(page, `${downloadURL}/models`);
  const llm = page.locator('article[data-role="llm"]');
  await expect(llm.getByTestId('model-state')).toHaveText(/^downloading \d+%$/);
  const download = llm.getByTestId('model-download');
  // The stand-in hub stalls inside openvino_model.xml, the fifth of the eight files Duet fetches.
  await expect(download).toContainText(/openvino_model\.xml [\d.]+ kB of 210\.2 kB \(file 5 of 8\) · [\d.]+ kB of 448\.1 kB in all/);
  // No bytes for a few seconds: the rate and time left give way to saying so.
  await expect(download).toContainText('waiting for data', { timeout: 20_000 });
  await expect(download).not.toContainText('left');
  const value = Number(await download.locator('progress').getAttribute('value'));
  expect(value).toBeGreaterThan(0.3);
  expect(value).toBeLessThan(1);
  const sd = page.locator('article[data-role="sd"]');
  await expect(sd.getByTestId('model-state')).toHaveText('error');
  await expect(sd).toContainText('repository duet-e2e/no-such-sd at revision main was not found');
  await expect(page.getByTestId('footer-model-state').first()).toContainText('downloading');
  await screenshot(page, 'models-downloading', info);

  // Asking for a reply meanwhile gets the REST answer a client can act on.
  const res = await page.request.post(`${downloadURL}/chat`, { data: { user_id: 'e2e', message: 'hi' } });
  expect(res.status()).toBe(503);
  expect(res.headers()['retry-after']).toBe('30');
  expect((await res.json()).error.message).toMatch(/the chat model is downloading \(\d+%\)/);
  expect(errors).toEqual([]);
});
