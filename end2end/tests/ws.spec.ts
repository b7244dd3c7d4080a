import { expect, mockURL, open, signUp, test } from './helpers';

/** What ends a conversation over the socket: a frame of this type (and chat event or job status). */
type Until = { type: string; event?: string; status?: string };

/** Run in the page: open /ws with the page's own session, send `frames`, and collect what comes
 *  back until a frame matches `until`. */
async function talk(page: import('@playwright/test').Page, frames: object[], until: Until): Promise<any[]> {
  return page.evaluate(
    ({ frames, until }) =>
      new Promise<any[]>((resolve, reject) => {
        const done = (f: any) =>
          f.type === until.type &&
          (until.event === undefined || f.data?.event === until.event) &&
          (until.status === undefined || f.data?.status === until.status);
        const socket = new WebSocket(location.origin.replace(/^http/, 'ws') + '/ws');
        const seen: any[] = [];
        const timer = setTimeout(() => reject(new Error('no end frame: ' + JSON.stringify(seen))), 20000);
        socket.onopen = () => frames.forEach((f) => socket.send(JSON.stringify(f)));
        socket.onerror = () => reject(new Error('the socket failed'));
        socket.onmessage = (event) => {
          const frame = JSON.parse(event.data);
          seen.push(frame);
          if (done(frame)) {
            clearTimeout(timer);
            socket.close();
            resolve(seen);
          }
        };
      }),
    { frames, until },
  );
}

test('a page talks to the server over /ws with its session, and sees only its own jobs', async ({ browser }, info) => {
  const alice = await browser.newContext({ baseURL: mockURL });
  const page = await alice.newPage();
  await signUp(page, mockURL, 'ws-alice', info);
  await open(page, `${mockURL}/`);

  const chat = { type: 'chat', ref: 'w1', body: { user_id: 'me', message: 'please draw a lighthouse' } };
  const frames = await talk(page, [chat], { type: 'chat', event: 'done' });
  const events = frames.map((f) => f.data.event);
  expect(events[0]).toBe('start');
  for (const name of ['reasoning', 'answer', 'reply', 'image_job', 'done']) expect(events).toContain(name);
  expect(frames.every((f) => f.ref === 'w1')).toBe(true);
  const done = frames[frames.length - 1].data.response;
  expect(done.reply).toBe('You said: please draw a lighthouse');
  const jobId: string = done.image_job.job_id;

  // The job can be followed to its end over a new socket.
  const followed = await talk(page, [{ type: 'subscribe', job_id: jobId }], { type: 'job', status: 'done' });
  expect(followed.every((f) => f.job_id === jobId)).toBe(true);

  // Another account's socket learns nothing of it.
  const bob = await browser.newContext({ baseURL: mockURL });
  const other = await bob.newPage();
  await signUp(other, mockURL, 'ws-bob', info);
  await open(other, `${mockURL}/`);
  const refused = await talk(other, [{ type: 'subscribe', job_id: jobId }], { type: 'error' });
  expect(refused).toEqual([
    expect.objectContaining({ type: 'error', job_id: jobId, error: expect.objectContaining({ code: 'not_found' }) }),
  ]);
  await alice.close();
  await bob.close();
});
