// Rate limiting as a user meets it: sending faster than RATE_LIMIT_MESSAGES_PER_MINUTE says
// so in words, waits what the server asks, then sends the rest by itself: every message
// arrives, once, in order.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { api, launch, message, openApp, openChatUi, sendUi, signUpUi, startChatUi, startServer } from './helpers.mjs';

const LIMIT = 10;
let server;
let browser;

before(async () => {
  server = await startServer({ RATE_LIMIT_MESSAGES_PER_MINUTE: String(LIMIT) });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('too fast: told so, then everything is sent once, in order', async () => {
  const alice = await openApp(browser, server.base);
  await signUpUi(alice.page, 'Rapid Alice');
  const bob = await openApp(browser, server.base);
  await signUpUi(bob.page, 'Patient Bob');
  await startChatUi(alice.page, 'Patient Bob');
  const total = LIMIT + 2;
  for (let i = 1; i <= total; i++) await sendUi(alice.page, `Burst ${i} of ${total}`);
  await alice.page.getByText(/You are sending too fast\. Waiting \d+ s/).waitFor();
  await message(alice.page, `Burst ${total} of ${total}`).getByLabel('Sending').waitFor();

  // The limit lets one more through every 60/LIMIT s: the last two follow by themselves.
  await message(alice.page, `Burst ${total} of ${total}`).locator('[aria-label=Delivered],[aria-label=Read]').waitFor({ timeout: 30_000 });
  await openChatUi(bob.page, 'Rapid Alice');
  await message(bob.page, `Burst ${total} of ${total}`).waitFor();
  const token = await bob.page.evaluate(() => JSON.parse(localStorage.getItem('nexus.session')).token);
  const aliceId = await alice.page.evaluate(() => JSON.parse(localStorage.getItem('nexus.session')).user.id);
  const { messages } = await api(server.base, 'GET', `/messages/conversation/${aliceId}?limit=50`, { token });
  assert.deepEqual(
    messages.map((m) => m.content),
    Array.from({ length: total }, (_, i) => `Burst ${i + 1} of ${total}`),
  );
  assert.equal(await alice.page.getByLabel('Failed').count(), 0);
});
