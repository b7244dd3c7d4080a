import { type Page } from '@playwright/test';
import { test, expect, mockURL, open, pageErrors, screenshot, signUp } from './helpers';

async function send(page: Page, text: string) {
  const box = page.getByLabel('Message', { exact: true });
  await box.fill(text);
  await box.press('Enter');
}

/** On a phone the conversation list hides behind a button: open it when it is hidden. */
async function showSidebar(page: Page) {
  const toggle = page.getByRole('button', { name: 'Conversations' });
  if ((await toggle.isVisible()) && (await toggle.getAttribute('aria-expanded')) === 'false') {
    await toggle.click();
  }
  await expect(page.getByRole('complementary', { name: 'Conversations' })).toBeVisible();
}

function conversationId(page: Page): string {
  const match = new URL(page.url()).pathname.match(/^\/c\/([0-9a-f-]{36})$/);
  expect(match, page.url()).not.toBeNull();
  return match![1];
}

async function stored(page: Page, id: string) {
  const res = await page.request.get(`${mockURL}/conversations/${id}`);
  expect(res.status()).toBe(200);
  return (await res.json()).messages as { role: string; content: string; finish_reason: string | null }[];
}

test.describe('chat in mock mode', () => {
  test('a reply streams, its thinking folds when the answer starts, and the page is readable without WASM', async ({ page }, info) => {
    const errors = pageErrors(page);
    await signUp(page, mockURL, 'chat', info);
    await open(page, `${mockURL}/`);
    await send(page, 'Hello there friend');

    const reply = page.getByTestId('assistant-message').last();
    const thinking = reply.getByTestId('thinking');
    // Open while the reasoning streams, with the footer saying so.
    await expect(thinking).toHaveJSProperty('open', true);
    await expect(page.getByTestId('service-status')).toHaveText('Generating');
    await expect(reply.locator('.answer')).toHaveText('You said: Hello there friend');
    await expect(thinking).toHaveJSProperty('open', false);
    await expect(thinking.locator('summary')).toHaveText(/^Thought for \d+\.\d s$/);
    await expect(thinking.locator('.reasoning')).toHaveText('The user wrote 3 words. Echo them back.');
    await expect(page.getByTestId('service-status')).toHaveText('Ready');

    // The new conversation got its own address and a place in the list.
    await expect(page).toHaveURL(/\/c\/[0-9a-f-]{36}$/);
    const id = conversationId(page);
    await expect(page.getByTestId('conversations').locator('a[aria-current="page"]')).toHaveText('Hello there friend');

    // Stored with the reply: after a reload the summary still says how long it thought.
    await open(page, page.url());
    const again = page.getByTestId('assistant-message').last().getByTestId('thinking');
    await expect(again.locator('summary')).toHaveText(/^Thought for \d+\.\d s$/);

    // Rendered on the server: readable before (or without) the WASM.
    const html = await (await page.request.get(`${mockURL}/c/${id}`)).text();
    expect(html).toContain('You said: Hello there friend');
    expect(html).toContain('The user wrote 3 words.');
    await screenshot(page, 'chat', info);
    expect(errors).toEqual([]);
  });

  test('Stop stops the server generating, and what was said is kept', async ({ page }, info) => {
    await signUp(page, mockURL, 'stop', info);
    await open(page, `${mockURL}/`);
    const long = Array.from({ length: 80 }, (_, i) => `word${i}`).join(' ');
    await send(page, long);
    const answer = page.getByTestId('assistant-message').last().locator('.answer');
    await expect(answer).toContainText('word3');
    await page.getByRole('button', { name: 'Stop' }).click();
    await expect(page.getByRole('button', { name: 'Send' })).toBeVisible();
    await expect(page.getByTestId('assistant-message').last()).toContainText('Stopped.');

    const id = conversationId(page);
    // The server stored the reply as cancelled, cut short, and it does not grow afterwards.
    await expect.poll(async () => (await stored(page, id))[1]?.finish_reason ?? null).toBe('cancelled');
    const first = (await stored(page, id))[1].content;
    expect(first.length).toBeLessThan(`You said: ${long}`.length);
    await page.waitForTimeout(1000);
    expect((await stored(page, id))[1].content).toBe(first);
  });

  test('regenerate and edit replace the last turn, here and on the server', async ({ page }, info) => {
    await signUp(page, mockURL, 'edit', info);
    await open(page, `${mockURL}/`);
    await send(page, 'first message');
    await expect(page.getByTestId('assistant-message').last().locator('.answer')).toHaveText('You said: first message');
    await send(page, 'second message');
    await expect(page.getByTestId('assistant-message').last().locator('.answer')).toHaveText('You said: second message');
    const id = conversationId(page);

    await page.getByRole('button', { name: 'Regenerate' }).click();
    await expect(page.getByRole('button', { name: 'Stop' })).toBeVisible();
    await expect(page.getByRole('button', { name: 'Send' })).toBeVisible();
    await expect(page.getByTestId('assistant-message')).toHaveCount(2);
    await expect.poll(async () => (await stored(page, id)).map((m) => m.content)).toEqual([
      'first message', 'You said: first message', 'second message', 'You said: second message',
    ]);

    await page.getByRole('button', { name: 'Edit' }).click();
    await page.getByLabel('Edit your message').fill('third message');
    await page.getByRole('button', { name: 'Save and send' }).click();
    await expect(page.getByTestId('assistant-message').last().locator('.answer')).toHaveText('You said: third message');
    await expect(page.getByTestId('user-message')).toHaveCount(2);
    await expect.poll(async () => (await stored(page, id)).map((m) => m.content)).toEqual([
      'first message', 'You said: first message', 'third message', 'You said: third message',
    ]);
  });

  test('/imagine puts the picture inline with its progress, and it opens with its parameters', async ({ page }, info) => {
    const errors = pageErrors(page);
    await signUp(page, mockURL, 'imagine', info);
    await open(page, `${mockURL}/`);
    await send(page, '/imagine a red fox in the snow');
    const job = page.getByTestId('image-job');
    await expect(job).toHaveAttribute('data-status', 'running');
    await expect(job).toContainText(/Drawing: step \d+ of 20/);
    const image = page.getByTestId('chat-image');
    await expect(image).toBeVisible({ timeout: 30_000 });
    await expect(job).toHaveCount(0);
    expect(await image.evaluate((img: HTMLImageElement) => img.naturalWidth)).toBe(512);

    await page.getByRole('button', { name: 'Enlarge the picture' }).click();
    const parameters = page.getByTestId('image-parameters');
    await expect(parameters).toContainText('a red fox in the snow');
    await expect(parameters).toContainText('Seed');
    await screenshot(page, 'chat-lightbox', info);
    await page.keyboard.press('Escape');
    await expect(parameters).toBeHidden();
    expect(errors).toEqual([]);
  });

  test('a page opened while a reply\'s picture is being drawn shows its progress, then the picture', async ({ page }, info) => {
    const errors = pageErrors(page);
    await signUp(page, mockURL, 'reattach', info);
    // Asked for elsewhere (an API client, another tab): the reply is stored, its picture queued.
    const res = await page.request.post(`${mockURL}/chat`, { data: { user_id: 'me', message: '/imagine a lighthouse at dusk' } });
    expect(res.status()).toBe(200);
    const { conversation_id } = await res.json();
    await open(page, `${mockURL}/c/${conversation_id}`);
    // The page picks the job up from the stored conversation and follows it.
    const job = page.getByTestId('image-job');
    await expect(job).toContainText(/Drawing: step \d+ of 20|Queued/);
    const image = page.getByTestId('chat-image');
    await expect(image).toBeVisible({ timeout: 30_000 });
    await expect(job).toHaveCount(0);
    expect(errors).toEqual([]);
  });

  test('history search finds a word and opens its conversation; rename and delete', async ({ page }, info) => {
    await signUp(page, mockURL, 'search', info);
    await open(page, `${mockURL}/`);
    await send(page, 'tell me about the zebracorn');
    await expect(page.getByTestId('assistant-message').last().locator('.answer')).toContainText('zebracorn');
    await showSidebar(page);
    await page.getByRole('link', { name: 'New chat' }).click();
    await expect(page.getByTestId('thread')).toContainText('What shall we make?');
    await send(page, 'something else entirely');
    await expect(page.getByTestId('assistant-message').last().locator('.answer')).toContainText('entirely');

    await showSidebar(page);
    const search = page.getByLabel('Search conversations');
    await search.fill('zebra');
    await search.press('Enter');
    const hits = page.getByTestId('search-hits');
    await expect(hits.locator('mark').first()).toHaveText(/zebracorn/i);
    await hits.getByRole('link').first().click();
    await expect(page.getByTestId('user-message')).toHaveText(/tell me about the zebracorn/);

    await showSidebar(page);
    await search.fill('');
    const current = page.getByTestId('conversations').locator('li.current');
    await current.getByRole('button', { name: 'Rename' }).click();
    await page.getByLabel('New title').fill('Zebracorn facts');
    await page.getByLabel('New title').press('Enter');
    await expect(page.getByTestId('conversations').getByRole('link', { name: 'Zebracorn facts' })).toBeVisible();

    page.once('dialog', (d) => d.accept());
    await page.getByTestId('conversations').locator('li.current').getByRole('button', { name: 'Delete' }).click();
    await expect(page).toHaveURL(`${mockURL}/`);
    await expect(page.getByTestId('conversations').getByRole('link', { name: 'Zebracorn facts' })).toHaveCount(0);
  });

  test('the list shows the newest 50 conversations and loads older ones on request', async ({ page }, info) => {
    await signUp(page, mockURL, 'older', info);
    // 55 conversations through the REST API (one token each, so quickly), oldest first.
    for (let i = 0; i < 55; i++) {
      const res = await page.request.post(`${mockURL}/chat`, { data: { user_id: 'me', message: `topic ${i}`, max_tokens: 1 } });
      expect(res.status(), await res.text()).toBe(200);
    }
    await open(page, `${mockURL}/`);
    await showSidebar(page);
    const list = page.getByTestId('conversations');
    await expect(list.getByRole('link')).toHaveCount(50);
    await expect(list.getByRole('link', { name: 'topic 54', exact: true })).toBeVisible();
    await expect(list.getByRole('link', { name: 'topic 4', exact: true })).toHaveCount(0);
    await page.getByRole('button', { name: 'Older conversations' }).click();
    await expect(list.getByRole('link')).toHaveCount(55);
    await expect(list.getByRole('link', { name: 'topic 0', exact: true })).toBeVisible();
    await expect(page.getByRole('button', { name: 'Older conversations' })).toHaveCount(0);
    await list.getByRole('link', { name: 'topic 0', exact: true }).click();
    await expect(page.getByTestId('user-message')).toHaveText(/^topic 0(?!\d)/);
  });

  test('chat settings: chosen before the first message, kept with the conversation, changed later', async ({ page }, info) => {
    const errors = pageErrors(page);
    await signUp(page, mockURL, 'chatsettings', info);
    await open(page, `${mockURL}/`);
    const panel = page.getByTestId('chat-settings');
    await panel.locator('summary').click();
    // Empty fields show what they come to (the mock has no generation_config.json).
    await expect(panel.getByLabel('Temperature')).toHaveAttribute('placeholder', 'model default');
    await expect(panel.getByLabel('Maximum tokens')).toHaveAttribute('placeholder', /^model default: \d+$/);
    await panel.getByLabel('System prompt').fill('Answer like a pirate.');
    await panel.getByLabel('Maximum tokens').fill('2');
    await panel.getByRole('button', { name: 'Save' }).click();
    await expect(panel.getByRole('status')).toHaveText("Kept for this conversation's first message.");
    await screenshot(page, 'chat-settings', info);

    await send(page, 'Hello there friend');
    await expect(page).toHaveURL(/\/c\/[0-9a-f-]{36}$/);
    const id = conversationId(page);
    await expect(page.getByTestId('service-status')).toHaveText('Ready');
    const detail = await (await page.request.get(`${mockURL}/conversations/${id}`)).json();
    expect(detail.conversation.settings).toEqual({ system_prompt: 'Answer like a pirate.', temperature: null, top_p: null, max_tokens: 2 });
    expect(detail.messages[1].finish_reason).toBe('length');
    expect(detail.messages[1].completion_tokens).toBe(2);

    // Changed later: saved at once, and still there after a reload.
    await panel.getByLabel('Maximum tokens').fill('');
    await panel.getByLabel('Temperature').fill('0.5');
    await panel.getByRole('button', { name: 'Save' }).click();
    await expect(panel.getByRole('status')).toHaveText('Saved.');
    const saved = await (await page.request.get(`${mockURL}/conversations/${id}`)).json();
    expect(saved.conversation.settings).toEqual({ system_prompt: 'Answer like a pirate.', temperature: 0.5, top_p: null, max_tokens: null });
    await open(page, `${mockURL}/c/${id}`);
    await panel.locator('summary').click();
    await expect(panel.getByLabel('System prompt')).toHaveValue('Answer like a pirate.');
    await expect(panel.getByLabel('Temperature')).toHaveValue('0.5');
    // Out of range: the browser holds the form back (the server would refuse it too).
    await panel.getByLabel('Temperature').fill('7');
    await panel.getByRole('button', { name: 'Save' }).click();
    expect(await panel.getByLabel('Temperature').evaluate((el: HTMLInputElement) => el.validity.rangeOverflow)).toBe(true);
    const unchanged = await (await page.request.get(`${mockURL}/conversations/${id}`)).json();
    expect(unchanged.conversation.settings.temperature).toBe(0.5);
    await panel.getByRole('button', { name: 'Reset to defaults' }).click();
    await expect(panel.getByRole('status')).toHaveText('Saved.');
    await expect(panel.getByLabel('System prompt')).toHaveValue('');
    expect(errors).toEqual([]);
  });

  test('logged out, the chat sends you to log in and back', async ({ browser }) => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${mockURL}/`);
    await expect(page).toHaveURL(`${mockURL}/login?next=%2F`);
    await context.close();
  });
});

test('chat with the real engine on the fixture model', async ({ page }, info) => {
  const errors = pageErrors(page);
  await signUp(page, '', 'real', info);
  await open(page, '/');
  await send(page, 'Hi');
  await expect(page.getByRole('button', { name: 'Send' })).toBeVisible({ timeout: 60_000 });
  const id = conversationId(page);
  const res = await page.request.get(`/conversations/${id}`);
  const messages = (await res.json()).messages;
  expect(messages.map((m: { role: string }) => m.role)).toEqual(['user', 'assistant']);
  expect(messages[1].model).toContain('tiny-deepseek');
  // Random weights say nothing sensible, but whatever was streamed is what was stored.
  const shown = (await page.getByTestId('assistant-message').last().locator('.answer').innerText()).trim();
  const thought = await page.getByTestId('assistant-message').last().locator('.reasoning').count();
  expect(shown.length + thought).toBeGreaterThan(0);
  expect(errors).toEqual([]);
});
