// Read receipts in bulk: opening a conversation whose newest messages are unread marks it
// read with one MARK_CONVERSATION_READ where the server has it (the conversation API), and
// with one MESSAGE_READ per message against a server without it; the user's other tab
// clears its unread count either way. The frames the page sends are counted.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { api, launch, logInUi, message, openApp, openChatUi, registerApi, startServer } from './helpers.mjs';

let server;
let browser;
let native;

before(async () => {
  server = await startServer();
  browser = await launch();
  const probe = await registerApi(server.base, 'Probe Person');
  native = (await fetch(`${server.base}/conversations?limit=1`, { headers: { Authorization: `Bearer ${probe.accessToken}` } })).ok;
  console.log(`# MARK_CONVERSATION_READ: ${native ? 'expected (the server has the conversation API)' : 'not on this server: per-message MESSAGE_READ expected'}`);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Counts the Socket.IO events a page emits, by name. */
function countEmits(page) {
  const counts = {};
  page.on('websocket', (ws) => {
    ws.on('framesent', ({ payload }) => {
      const m = /^42\/ws,\d*\["([A-Z_]+)"/.exec(String(payload));
      if (m) counts[m[1]] = (counts[m[1]] ?? 0) + 1;
    });
  });
  return counts;
}

async function until(f, what, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await f()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('opening a conversation reads its unread messages at once; the other tab clears its count', async () => {
  const alice = await registerApi(server.base, 'Alice Writer');
  const bob = await registerApi(server.base, 'Bob Reader');
  const texts = ['First of three', 'Second of three', 'Third of three'];
  for (const content of texts) {
    await api(server.base, 'POST', '/messages', { token: alice.accessToken, body: { receiverId: bob.user.id, content } });
  }

  const { context, page } = await openApp(browser, server.base);
  const emits = countEmits(page);
  await logInUi(page, bob.email, bob.password);
  // A second tab of Bob's on the list.
  const other = await context.newPage();
  other.errors = [];
  other.on('pageerror', (e) => other.errors.push(String(e)));
  await other.goto('/');
  const otherEntry = other.getByRole('navigation', { name: 'Conversations' }).getByRole('link', { name: /^Alice Writer/ });
  await otherEntry.getByText('3 unread').waitFor();

  await openChatUi(page, 'Alice Writer');
  await message(page, 'Third of three').waitFor();
  await until(async () => {
    const history = await api(server.base, 'GET', `/messages/conversation/${bob.user.id}?limit=10`, { token: alice.accessToken });
    return history.messages.every((m) => m.readReceipts.some((r) => r.userId === bob.user.id));
  }, 'every message to be read on the server');
  await otherEntry.getByText(/\d+ unread/).waitFor({ state: 'detached' });
  await page.waitForTimeout(500); // nothing more goes out afterwards
  if (native) {
    assert.equal(emits.MARK_CONVERSATION_READ, 1, `one MARK_CONVERSATION_READ (${JSON.stringify(emits)})`);
    assert.equal(emits.MESSAGE_READ ?? 0, 0, `no MESSAGE_READ (${JSON.stringify(emits)})`);
  } else {
    assert.equal(emits.MESSAGE_READ, 3, `one MESSAGE_READ per message (${JSON.stringify(emits)})`);
    assert.equal(emits.MARK_CONVERSATION_READ ?? 0, 0);
  }
  assert.deepEqual(page.errors, []);
  assert.deepEqual(other.errors, []);
  await context.close();
});

test('a reader scrolled up does not read what arrives below', async () => {
  const alice = await registerApi(server.base, 'Alice Chatty');
  const bob = await registerApi(server.base, 'Bob Scroller');
  for (let i = 0; i < 40; i++) {
    await api(server.base, 'POST', '/messages', { token: alice.accessToken, body: { receiverId: bob.user.id, content: `Older message ${i}` } });
  }
  const { context, page } = await openApp(browser, server.base);
  await logInUi(page, bob.email, bob.password);
  await openChatUi(page, 'Alice Chatty');
  await message(page, 'Older message 39').waitFor();
  const scroller = page.getByLabel('Message history');
  await scroller.evaluate((el) => (el.scrollTop = 0));
  await page.getByRole('button', { name: /^Jump to latest/ }).waitFor();
  await api(server.base, 'POST', '/messages', { token: alice.accessToken, body: { receiverId: bob.user.id, content: 'Below the fold' } });
  await page.getByRole('button', { name: 'Jump to latest (1 new)' }).waitFor();
  await page.waitForTimeout(800);
  const unreadOnServer = async () => {
    const history = await api(server.base, 'GET', `/messages/conversation/${bob.user.id}?limit=5`, { token: alice.accessToken });
    return !history.messages.find((m) => m.content === 'Below the fold').readReceipts.some((r) => r.userId === bob.user.id);
  };
  assert.ok(await unreadOnServer(), 'not read while out of view');
  await page.getByRole('button', { name: 'Jump to latest (1 new)' }).click();
  await until(async () => !(await unreadOnServer()), 'the message to be read once in view');
  assert.deepEqual(page.errors, []);
  await context.close();
});
