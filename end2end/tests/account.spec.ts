import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from './helpers';

const screenshots = join(__dirname, '..', 'screenshots');

test('sign up, log out, a wrong password is refused, log in again', async ({ page }, info) => {
  const name = `alice-${info.project.name}`;
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));

  await page.goto('/register');
  await expect(page.locator('.app[data-hydrated="true"]')).toBeVisible();
  await page.getByLabel('Username').fill(name);
  await page.getByLabel('Password').fill('a long password');
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.getByTestId('signed-in-as')).toHaveText(name);

  await page.getByRole('button', { name: 'Log out' }).click();
  await expect(page).toHaveURL(/\/login$/);
  await expect(page.getByRole('link', { name: 'Log in' })).toBeVisible();
  mkdirSync(screenshots, { recursive: true });
  await page.screenshot({ path: join(screenshots, `login-${info.project.name}.png`), fullPage: true });

  await page.getByLabel('Username').fill(name);
  await page.getByLabel('Password').fill('not my password');
  await page.getByRole('button', { name: 'Log in' }).click();
  await expect(page.getByRole('alert')).toHaveText('wrong username or password');

  await page.getByLabel('Password').fill('a long password');
  await page.getByRole('button', { name: 'Log in' }).click();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.getByTestId('signed-in-as')).toHaveText(name);
  expect(errors).toEqual([]);
});

test('the log-in form works without JavaScript', async ({ browser }, info) => {
  const name = `nojs-${info.project.name}`;
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  const made = await page.request.post('/auth/register', { data: { username: name, password: 'a long password' } });
  expect(made.status()).toBe(201);
  await context.clearCookies();

  await page.goto('/login?next=/');
  await page.getByLabel('Username').fill(name);
  await page.getByLabel('Password').fill('a long password');
  await page.getByRole('button', { name: 'Log in' }).click();
  await expect(page).toHaveURL(/\/$/);
  // Rendered on the server from the new session cookie.
  await expect(page.getByTestId('signed-in-as')).toHaveText(name);
  await context.close();
});
