import { type Page } from '@playwright/test';
import { test, expect, adminURL, open, pageErrors, screenshot, signUp } from './helpers';

const admin = { username: 'root-admin', password: 'a long password' };

/** Log in as the admin server's first account (made by whichever test comes first). */
async function asAdmin(request: Page['request']) {
  let res = await request.post(`${adminURL}/auth/register`, { data: admin });
  if (res.status() === 409) res = await request.post(`${adminURL}/auth/login`, { data: admin });
  expect(res.ok(), await res.text()).toBe(true);
  expect((await res.json()).role, 'the first account of the admin server must be the admin').toBe('admin');
}

/** The Pages navigation's links, opening the Menu first where it hides them (a phone). */
async function pagesNav(page: Page) {
  const menu = page.getByRole('button', { name: 'Menu' });
  if (await menu.isVisible()) await menu.click();
  return page.getByRole('navigation', { name: 'Pages' });
}

test('admin: list accounts, make one, disable it (its log-in stops), enable it again', async ({ page, browser }, info) => {
  const errors = pageErrors(page);
  await asAdmin(page.request);
  await open(page, `${adminURL}/`);
  await (await pagesNav(page)).getByRole('link', { name: 'Admin' }).click();
  await expect(page).toHaveURL(/\/admin$/);
  await expect(page.getByRole('heading', { name: 'Accounts' })).toBeVisible();
  const table = page.getByTestId('accounts');
  await expect(table.getByRole('row', { name: /root-admin admin/ })).toBeVisible();

  const name = `carol-${info.project.name}-${Date.now() % 1_000_000}`;
  await page.getByLabel('Username').fill(name);
  await page.getByLabel('Password').fill('carols password');
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page.getByTestId('account-created')).toHaveText(`Account ${name} created.`);
  const row = table.getByRole('row', { name: new RegExp(`${name} user`) });
  await expect(row).toContainText('active');
  await screenshot(page, 'admin', info);

  const carol = await browser.newContext();
  const login = () => carol.request.post(`${adminURL}/auth/login`, { data: { username: name, password: 'carols password' } });
  expect((await login()).status()).toBe(200);
  await page.getByRole('button', { name: `Disable ${name}` }).click();
  await expect(row).toContainText('disabled');
  expect((await carol.request.get(`${adminURL}/auth/me`)).status(), 'her session ends at once').toBe(401);
  expect((await login()).status()).toBe(403);
  await page.getByRole('button', { name: `Enable ${name}` }).click();
  await expect(row).toContainText('active');
  expect((await login()).status()).toBe(200);
  await carol.close();

  // A taken name is refused with the API's message.
  await page.getByLabel('Username').fill(name);
  await page.getByLabel('Password').fill('carols password');
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page.getByRole('alert')).toBeVisible();
  expect(errors).toEqual([]);
});

test('admin: anyone else gets no Admin link and the page says so', async ({ page, browser }, info) => {
  const errors = pageErrors(page);
  // The admin exists first, so this account is not it.
  const other = await browser.newContext();
  await asAdmin(other.request);
  await other.close();
  await signUp(page, adminURL, 'notadmin', info);
  await open(page, `${adminURL}/settings`);
  const nav = await pagesNav(page);
  await expect(nav.getByRole('link', { name: 'Settings' })).toBeVisible();
  await expect(nav.getByRole('link', { name: 'Admin' })).toHaveCount(0);
  await open(page, `${adminURL}/admin`);
  await expect(page.getByRole('alert').first()).toBeVisible();
  await expect(page.getByTestId('accounts')).toHaveCount(0);
  expect(errors).toEqual([]);
});
