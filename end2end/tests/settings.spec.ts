import { test, expect, brokenURL, mockURL, open, pageErrors, screenshot, signUp } from './helpers';

test('settings: a password change keeps this session and logs every other one out', async ({ page, browser }, info) => {
  const errors = pageErrors(page);
  const name = await signUp(page, mockURL, 'password', info);
  // The same account logged in on another device.
  const other = await browser.newContext();
  const login = await other.request.post(`${mockURL}/auth/login`, { data: { username: name, password: 'a long password' } });
  expect(login.status()).toBe(200);
  expect((await other.request.get(`${mockURL}/auth/me`)).status()).toBe(200);

  await open(page, `${mockURL}/settings`);
  await page.getByLabel('Current password').fill('not it at all');
  await page.getByLabel('New password').fill('a brand new password');
  await page.getByRole('button', { name: 'Change password' }).click();
  await expect(page.getByRole('alert')).toContainText("current_password: is not this account's password");
  await page.getByLabel('Current password').fill('a long password');
  await page.getByRole('button', { name: 'Change password' }).click();
  await expect(page.getByTestId('password-changed')).toContainText('Every other session of this account is logged out');
  expect((await other.request.get(`${mockURL}/auth/me`)).status()).toBe(401);
  expect((await page.request.get(`${mockURL}/auth/me`)).status()).toBe(200);
  await other.close();
  expect(errors).toEqual([]);
});

test('settings: an API key is shown once, works as a bearer token, and dies when revoked; quota usage', async ({ page, browser }, info) => {
  const errors = pageErrors(page);
  await signUp(page, mockURL, 'settings', info);
  await open(page, `${mockURL}/settings`);
  await page.getByLabel('Key name').fill('my script');
  await page.getByRole('button', { name: 'Create key' }).click();
  const key = (await page.getByTestId('new-key').innerText()).trim();
  expect(key).toMatch(/^duet_/);
  const table = page.getByTestId('api-keys');
  await expect(table).toContainText('my script');
  await expect(table).toContainText(key.slice(0, 8));
  await expect(table).not.toContainText(key);

  const stranger = await browser.newContext();
  const asKey = { headers: { authorization: `Bearer ${key}` } };
  expect((await stranger.request.get(`${mockURL}/auth/me`, asKey)).status()).toBe(200);
  await page.getByRole('button', { name: 'Revoke my script' }).click();
  await expect(table).toContainText('revoked');
  expect((await stranger.request.get(`${mockURL}/auth/me`, asKey)).status()).toBe(401);
  await stranger.close();

  const quota = page.getByTestId('quota');
  await expect(quota).toContainText('Requests in the last minute');
  await expect(quota).toContainText('Images today');
  await screenshot(page, 'settings', info);
  expect(errors).toEqual([]);
});

test('prompt templates: save the text, click to insert, drag into the box, delete', async ({ page }, info) => {
  await signUp(page, mockURL, 'templates', info);
  await open(page, `${mockURL}/`);
  const box = page.getByLabel('Message', { exact: true });
  await box.fill('Write a haiku about');
  await page.getByRole('button', { name: 'Templates' }).click();
  page.once('dialog', (d) => d.accept('Haiku'));
  await page.getByRole('button', { name: 'Save the text as a template' }).click();
  const chip = page.getByTestId('templates').getByRole('button', { name: 'Haiku', exact: true });
  await expect(chip).toBeVisible();

  await box.fill('');
  await chip.click();
  await expect(box).toHaveValue('Write a haiku about');
  // Dragging is a mouse gesture (a phone's touch screen scrolls instead): there, tapping inserts.
  if (info.project.name === 'desktop') {
    await box.fill('');
    await chip.dragTo(box);
    await expect(box).toHaveValue('Write a haiku about');
  }

  // Saved on the server: the studio's prompt box offers it too.
  await open(page, `${mockURL}/studio`);
  await page.getByRole('button', { name: 'Templates' }).click();
  await page.getByTestId('templates').getByRole('button', { name: 'Haiku', exact: true }).click();
  await expect(page.getByLabel('Prompt', { exact: true })).toHaveValue('Write a haiku about');
  await page.getByRole('button', { name: 'Delete template Haiku' }).click();
  await expect(page.getByTestId('templates')).toContainText('No templates yet');
});

test('with the models missing, the footer says so and a message gets a clear error, not a blank page', async ({ page }, info) => {
  const errors = pageErrors(page);
  await open(page, `${brokenURL}/`);
  await expect(page.getByTestId('service-status')).toHaveText('Degraded');
  await expect(page.getByTestId('footer-model-state').first()).toHaveText('missing');
  const box = page.getByLabel('Message', { exact: true });
  await box.fill('Hello?');
  await box.press('Enter');
  const reply = page.getByTestId('assistant-message').last();
  await expect(reply.getByRole('alert')).toContainText('the chat model is missing');
  await expect(page.getByRole('button', { name: 'Send' })).toBeVisible();
  await screenshot(page, 'engine-down', info);
  expect(errors).toEqual([]);
});

test('when the server stops answering, the footer says so instead of going blank', async ({ page }) => {
  await open(page, `${brokenURL}/models`);
  await expect(page.getByTestId('service-status')).toHaveText('Degraded');
  // The footer polls every 5 s; from now on every poll fails as if the server were gone.
  await page.route('**/api/get_health*', (route) => route.abort('connectionrefused'));
  await expect(page.getByTestId('service-status')).toHaveText('Server unreachable', { timeout: 20_000 });
  await expect(page.getByRole('heading', { name: 'Models' })).toBeVisible();
});
