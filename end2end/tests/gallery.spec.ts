import { type Page } from '@playwright/test';
import { readFileSync } from 'node:fs';
import { test, expect, mockURL, open, pageErrors, screenshot, signUp } from './helpers';

async function makeImage(page: Page, prompt: string): Promise<string> {
  const res = await page.request.post(`${mockURL}/image?wait=true`, {
    data: { prompt, num_inference_steps: 2, width: 256, height: 256 },
  });
  expect(res.status(), await res.text()).toBe(200);
  return (await res.json()).job_id;
}

const day = (offset: number) => new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10);

test('gallery: search, dates, zip, download, share links that work logged out until revoked, delete, reuse', async ({ page, browser }, info) => {
  const errors = pageErrors(page);
  await signUp(page, mockURL, 'gallery', info);
  const fox = await makeImage(page, 'a red fox');
  await makeImage(page, 'a blue whale');
  await makeImage(page, 'a red barn');

  await open(page, `${mockURL}/pictures`);
  const items = page.getByTestId('gallery-item');
  await expect(items).toHaveCount(3);
  await screenshot(page, 'gallery', info);

  // Search by prompt words: the address carries the filter.
  await page.getByLabel('Prompt words').fill('red');
  await page.getByRole('button', { name: 'Search' }).click();
  await expect(page).toHaveURL(/q=red/);
  await expect(items).toHaveCount(2);

  // Dates: nothing was made before today; everything today.
  await page.getByLabel('Prompt words').fill('');
  await page.getByLabel('To').fill(day(-1));
  await page.getByRole('button', { name: 'Search' }).click();
  await expect(page.getByTestId('gallery-empty')).toBeVisible();
  await page.getByLabel('To').fill('');
  await page.getByLabel('From').fill(day(0));
  await page.getByRole('button', { name: 'Search' }).click();
  await expect(items).toHaveCount(3);

  // Two selected, one zip.
  await page.getByLabel('Select: a red fox').check();
  await page.getByLabel('Select: a blue whale').check();
  await expect(page.getByTestId('selection-bar')).toContainText('2 selected');
  const zipping = page.waitForEvent('download');
  await page.getByRole('button', { name: 'Download as zip' }).click();
  const zip = await zipping;
  expect(zip.suggestedFilename()).toBe('duet-images.zip');
  const bytes = readFileSync(await zip.path());
  expect(bytes.subarray(0, 2).toString()).toBe('PK');
  expect(bytes.toString('latin1').match(/\.png/g)?.length).toBeGreaterThanOrEqual(2);

  // One opened: every parameter, its own download.
  await page.getByRole('button', { name: 'Open: a red fox' }).click();
  const dialog = page.getByRole('dialog', { name: 'Picture' });
  await expect(dialog.getByTestId('image-parameters')).toContainText('a red fox');
  const downloading = page.waitForEvent('download');
  await dialog.getByRole('link', { name: 'Download' }).click();
  expect((await downloading).suggestedFilename()).toMatch(new RegExp(`^duet-\\d+-${fox.slice(0, 8)}\\.png$`));

  // A share link for the time chosen (the picker offers nothing past the server's year) opens in a
  // browser that is not logged in, until it is revoked.
  const lifetime = dialog.getByLabel('Link works for');
  await expect(lifetime.locator('option')).toHaveText(['an hour', 'a day', 'a week', '30 days', 'a year']);
  await expect(lifetime).toHaveValue(String(7 * 86400));
  await lifetime.selectOption({ label: 'an hour' });
  await dialog.getByRole('button', { name: 'Create share link' }).click();
  await expect(dialog.getByTestId('share-expiry').first()).toContainText('until');
  const made = await (await page.request.get(`${mockURL}/gallery/${fox}/shares`)).json();
  expect(made[0].expires_at - made[0].created_at).toBe(3600 * 1000);
  const link = dialog.getByTestId('share-link').first().getByRole('link');
  const href = await link.getAttribute('href');
  expect(href).toMatch(/\/s\//);
  const url = new URL(href!, mockURL).toString();
  const stranger = await browser.newContext();
  const shared = await stranger.request.get(url);
  expect(shared.status()).toBe(200);
  expect(shared.headers()['content-type']).toBe('image/png');
  await dialog.getByRole('button', { name: 'Revoke' }).click();
  await expect(dialog.getByTestId('share-link').first()).toContainText('revoked');
  expect((await stranger.request.get(url)).status()).toBe(404);
  await stranger.close();
  await screenshot(page, 'gallery-viewer', info);

  // Reuse parameters: the studio opens with the picture's settings.
  await dialog.getByRole('link', { name: 'Reuse parameters' }).click();
  await expect(page).toHaveURL(new RegExp(`/studio\\?from=${fox}$`));
  await expect(page.getByLabel('Prompt', { exact: true })).toHaveValue('a red fox');

  // Delete: gone here and on the server.
  await open(page, `${mockURL}/pictures`);
  await page.getByRole('button', { name: 'Open: a red fox' }).click();
  page.once('dialog', (d) => d.accept());
  await page.getByRole('dialog', { name: 'Picture' }).getByRole('button', { name: 'Delete' }).click();
  await expect(items).toHaveCount(2);
  expect((await page.request.get(`${mockURL}/gallery/${fox}`)).status()).toBe(404);
  expect(errors).toEqual([]);
});

test('studio: settings, progress, then the picture; same seed and vary seed', async ({ page }, info) => {
  const errors = pageErrors(page);
  await signUp(page, mockURL, 'studio', info);
  await open(page, `${mockURL}/studio`);
  await page.getByLabel('Prompt', { exact: true }).fill('a lighthouse at dusk');
  await page.getByLabel('Negative prompt').fill('blurry');
  await page.getByLabel('Size').selectOption('768x512');
  await page.getByLabel('Scheduler').selectOption('euler_a');
  await page.getByLabel('Steps').fill('6');
  await page.getByLabel(/Lock the seed/).check();
  await page.getByLabel('Seed', { exact: true }).fill('42');
  await page.getByRole('button', { name: 'Generate' }).click();

  const result = page.getByTestId('studio-result').first();
  await expect(result.getByTestId('studio-status')).toContainText(/Step \d of 6/);
  await expect(result.getByTestId('studio-image')).toBeVisible({ timeout: 30_000 });
  await expect(result).toContainText('seed 42 · 768×512 · 6 steps · euler_a');
  await screenshot(page, 'studio', info);

  await page.getByLabel('Prompt', { exact: true }).fill('something else');
  await result.getByRole('button', { name: 'Same seed' }).click();
  await expect(page.getByLabel('Prompt', { exact: true })).toHaveValue('a lighthouse at dusk');
  await expect(page.getByLabel('Seed', { exact: true })).toHaveValue('42');

  await result.getByRole('button', { name: 'Vary seed' }).click();
  const varied = page.getByTestId('studio-result').first();
  await expect(page.getByTestId('studio-result')).toHaveCount(2);
  await expect(varied.getByTestId('studio-image')).toBeVisible({ timeout: 30_000 });
  await expect(varied).toContainText('768×512 · 6 steps · euler_a');
  await expect(varied).not.toContainText('seed 42 ');
  expect(errors).toEqual([]);
});

test('studio: a page opened while pictures are queued or being drawn shows their progress, then the pictures', async ({ page }, info) => {
  const errors = pageErrors(page);
  await signUp(page, mockURL, 'studio-reattach', info);
  // Asked for elsewhere (an API client, a tab since closed): two pictures, one behind the other.
  const ids: string[] = [];
  for (const seed of [7, 8]) {
    const res = await page.request.post(`${mockURL}/image`, {
      data: { prompt: `a paper crane ${seed}`, num_inference_steps: 30, width: 256, height: 256, seed },
    });
    expect(res.status(), await res.text()).toBe(202);
    ids.push((await res.json()).job_id);
  }
  await open(page, `${mockURL}/studio`);
  const results = page.getByTestId('studio-result');
  await expect(results).toHaveCount(2);
  // Newest first, as the studio lists what it makes: the second waits behind the first.
  await expect(results.nth(1).getByTestId('studio-status')).toContainText(/Step \d+ of 30/);
  await expect(results.first().getByTestId('studio-status')).toContainText(/Queued: 0 ahead|Step \d+ of 30/);
  await expect(results.first()).toContainText('seed 8 · 256×256 · 30 steps');
  for (const [i, id] of [ids[1], ids[0]].entries()) {
    const image = results.nth(i).getByTestId('studio-image');
    await expect(image).toBeVisible({ timeout: 30_000 });
    await expect(image).toHaveAttribute('src', `/images/${id}.png`);
  }
  // Once drawn they are the gallery's: a reload shows the studio empty again.
  await open(page, `${mockURL}/studio`);
  await expect(results).toHaveCount(0);
  expect(errors).toEqual([]);
});
