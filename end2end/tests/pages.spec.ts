import { test, expect, mockURL, open, pageErrors, screenshot, signUp } from './helpers';

// Every page, logged in, at the project's width (desktop 1280, phone 375): no error, nothing
// wider than the screen, a main landmark and a heading; a screenshot of each for review.
const pages = [
  ['/', 'page-chat'],
  ['/studio', 'page-studio'],
  ['/pictures', 'page-gallery'],
  ['/models', 'page-models'],
  ['/settings', 'page-settings'],
  ['/admin', 'page-admin'],
];

test('every page fits the screen and has a heading', async ({ page }, info) => {
  const errors = pageErrors(page);
  await signUp(page, mockURL, 'pages', info);
  for (const [path, name] of pages) {
    await open(page, `${mockURL}${path}`);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    expect(overflow, `${path} is wider than the screen`).toBeLessThanOrEqual(0);
    await expect(page.getByRole('main')).toBeVisible();
    await expect(page.getByRole('heading').first()).toBeVisible();
    await screenshot(page, name, info);
  }
  await page.context().clearCookies();
  for (const path of ['/login', '/register']) {
    await open(page, `${mockURL}${path}`);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    expect(overflow, `${path} is wider than the screen`).toBeLessThanOrEqual(0);
    await screenshot(page, `page${path.replace('/', '-')}`, info);
  }
  expect(errors).toEqual([]);
});
