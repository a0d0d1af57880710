// A seq gap on the socket makes the client catch up through /sync. The page's WebSocket goes
// through Playwright's routeWebSocket, which forwards every frame between the page and the
// real server and loses exactly one: the NEW_MESSAGE of a chosen message (a frame lost on the
// way, as a dropped cluster link or a proxy would lose it). Nothing else would bring that
// message: the socket stays connected, no reconnect, no reload. The next event's seq is one
// too far ahead; the client must see the gap, fetch /sync and show the lost message in place.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { api, launch, logInUi, message, openApp, openChatUi, registerApi, startServer } from './helpers.mjs';

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('a message whose socket frame is lost arrives through /sync when the next event shows the gap', async () => {
  const alice = await registerApi(server.base, 'Alice Sender');
  const bob = await registerApi(server.base, 'Bob Gap');
  const say = (content) => api(server.base, 'POST', '/messages', { token: alice.accessToken, body: { receiverId: bob.user.id, content } });
  await say('Before the loss');

  const { context, page } = await openApp(browser, server.base);
  const dropped = [];
  let lose = null;
  await context.routeWebSocket(/\/socket\.io\//, (ws) => {
    const upstream = ws.connectToServer();
    ws.onMessage((frame) => upstream.send(frame));
    upstream.onMessage((frame) => {
      if (lose && typeof frame === 'string' && lose(frame)) {
        dropped.push(frame);
        lose = null; // only this one
        return;
      }
      ws.send(frame);
    });
  });
  const syncs = [];
  page.on('request', (r) => {
    if (/\/sync\?since=/.test(r.url())) syncs.push(r.url());
  });
  // A fresh page load behind the route.
  await page.reload();
  await logInUi(page, bob.email, bob.password);
  await openChatUi(page, 'Alice Sender');
  await message(page, 'Before the loss').waitFor();
  // Settled: the connect's catch-up (if any) is over.
  await page.waitForTimeout(500);
  const syncsBefore = syncs.length;

  lose = (frame) => frame.includes('"NEW_MESSAGE"') && frame.includes('Lost on the wire');
  await say('Lost on the wire');
  for (let i = 0; i < 50 && dropped.length === 0; i++) await page.waitForTimeout(100);
  assert.equal(dropped.length, 1, 'the frame was lost');
  await page.waitForTimeout(700);
  assert.equal(await message(page, 'Lost on the wire').count(), 0, 'nothing else brought it');
  assert.equal(syncs.length, syncsBefore, 'no catch-up without a reason');

  await say('After the loss');
  await message(page, 'After the loss').waitFor();
  await message(page, 'Lost on the wire').waitFor();
  assert.ok(syncs.length > syncsBefore, 'the gap made the client fetch /sync');
  // In order, each once.
  const texts = await page.getByRole('list', { name: 'Messages' }).getByRole('listitem').allInnerTexts();
  const at = (t) => texts.findIndex((x) => x.includes(t));
  assert.ok(at('Before the loss') < at('Lost on the wire') && at('Lost on the wire') < at('After the loss'), texts.join(' | '));
  assert.equal(texts.filter((x) => x.includes('Lost on the wire')).length, 1);
  assert.deepEqual(page.errors, []);
  await context.close();
});
