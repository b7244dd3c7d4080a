import { test, expect, mockURL, open, pageErrors, screenshot, signUp } from './helpers';

/** The page's background colour as the browser resolved it. */
const rootBackground = (page: import('@playwright/test').Page) =>
  page.evaluate(() => getComputedStyle(document.documentElement).backgroundColor);
const DARK = 'rgb(22, 24, 29)';
const LIGHT = 'rgb(247, 247, 249)';

test('theme: follows the system, the button picks light or dark, and the choice survives a reload', async ({ browser }, info) => {
  const context = await browser.newContext({ ...info.project.use, colorScheme: 'dark' });
  const page = await context.newPage();
  const errors = pageErrors(page);
  await signUp(page, mockURL, 'theme', info);
  await open(page, `${mockURL}/`);
  const button = page.getByTestId('theme');
  // The system says dark: dark without a choice.
  await expect(button).toHaveAttribute('aria-label', 'Colour theme: System (change)');
  expect(await rootBackground(page)).toBe(DARK);
  await button.click();
  await expect(button).toHaveAttribute('aria-label', 'Colour theme: Light (change)');
  expect(await rootBackground(page)).toBe(LIGHT);
  await button.click();
  await expect(button).toHaveAttribute('aria-label', 'Colour theme: Dark (change)');
  expect(await rootBackground(page)).toBe(DARK);

  // Rendered dark by the server from the cookie, before any script runs.
  const html = await (await page.request.get(`${mockURL}/`)).text();
  expect(html).toMatch(/<html[^>]*data-theme="dark"/);
  await open(page, `${mockURL}/`);
  await expect(button).toHaveAttribute('aria-label', 'Colour theme: Dark (change)');
  await screenshot(page, 'chat-dark', info);

  // A light system with the dark choice stays dark; back to System follows it again.
  await page.emulateMedia({ colorScheme: 'light' });
  expect(await rootBackground(page)).toBe(DARK);
  await button.click();
  await expect(button).toHaveAttribute('aria-label', 'Colour theme: System (change)');
  expect(await rootBackground(page)).toBe(LIGHT);
  expect(await page.evaluate(() => document.documentElement.hasAttribute('data-theme'))).toBe(false);
  expect(errors).toEqual([]);
  await context.close();
});

test('the header and the footer take one line each; on a phone the pages are behind Menu', async ({ page }, info) => {
  const errors = pageErrors(page);
  await signUp(page, mockURL, 'phonebar', info);
  await open(page, `${mockURL}/`);
  const header = page.locator('header.topbar');
  const footer = page.locator('footer.status-footer');
  await expect(page.getByTestId('service-status')).toHaveText('Ready');
  expect((await header.boundingBox())!.height).toBeLessThanOrEqual(64);
  expect((await footer.boundingBox())!.height).toBeLessThanOrEqual(40);
  const nav = page.getByRole('navigation', { name: 'Pages' });
  const menu = page.getByRole('button', { name: 'Menu' });
  if (info.project.name === 'desktop') {
    // Wide enough: every page's link in the header, no menu.
    await expect(menu).toBeHidden();
    await expect(nav.getByRole('link', { name: 'Gallery' })).toBeVisible();
    expect(errors).toEqual([]);
    return;
  }
  await expect(nav.getByRole('link', { name: 'Gallery' })).toBeHidden();
  await menu.click();
  await expect(menu).toHaveAttribute('aria-expanded', 'true');
  await screenshot(page, 'menu', info);
  await nav.getByRole('link', { name: 'Gallery' }).click();
  await expect(page).toHaveURL(/\/pictures$/);
  await expect(nav.getByRole('link', { name: 'Gallery' })).toBeHidden();
  // Reached without a page load: the browser asked the server function for an unfiltered gallery.
  await expect(page.getByTestId('gallery-empty')).toBeVisible();
  await expect(page.getByRole('alert')).toHaveCount(0);
  // The conversation gets the rest: the message box sits within the screen.
  await open(page, `${mockURL}/`);
  const box = page.getByLabel('Message', { exact: true });
  expect((await box.boundingBox())!.y + 40).toBeLessThanOrEqual(page.viewportSize()!.height);
  expect(errors).toEqual([]);
});
