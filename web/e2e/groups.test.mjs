// "New group": offered only where the server has the conversation API. Until that API is on
// this server the test answers its routes itself (the browser side is what is checked): the
// dialog, the POST body, the group in the list under its title, its header.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch, logInUi, openApp, registerApi, startServer } from './helpers.mjs';

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

test('New group: pick people, name it, it opens under its title', async () => {
  const me = await registerApi(server.base, 'Greta Group');
  const bob = await registerApi(server.base, 'Bob Member');
  const carol = await registerApi(server.base, 'Carol Member');
  const native = (await fetch(`${server.base}/conversations?limit=1`, { headers: { Authorization: `Bearer ${me.accessToken}` } })).ok;

  const { context, page } = await openApp(browser, server.base);
  let posted = null;
  if (!native) {
    await context.route('**/conversations?limit=1', (r) => r.fulfill({ json: { conversations: [], nextCursor: null } }));
    await context.route('**/conversations', async (r) => {
      if (r.request().method() !== 'POST') return r.fallback();
      posted = r.request().postDataJSON();
      const users = { [me.user.id]: me.user, [bob.user.id]: bob.user, [carol.user.id]: carol.user };
      const members = [me.user.id, ...posted.memberIds].map((id, i) => ({ user: users[id], role: i ? 'member' : 'admin', joinedAt: new Date().toISOString() }));
      await r.fulfill({ status: 201, json: { id: '01a2-group-1', type: 'group', title: posted.title, members, createdAt: new Date().toISOString() } });
    });
    await context.route('**/conversations/01a2-group-1/messages**', (r) => r.fulfill({ json: { messages: [], nextCursor: null } }));
  }
  await logInUi(page, me.email, me.password);
  await page.getByRole('button', { name: 'New group' }).click();
  const dialog = page.getByRole('dialog', { name: 'New group' });
  await dialog.getByLabel('Group name').fill('Climbing club');
  for (const name of ['Bob Member', 'Carol Member']) {
    await dialog.getByLabel('Add people').fill(name);
    await dialog.getByRole('checkbox', { name: new RegExp(name) }).check();
  }
  await dialog.getByRole('button', { name: 'Create group' }).click();
  await page.getByRole('navigation', { name: 'Conversations' }).getByRole('link', { name: /^Climbing club/ }).waitFor();
  await page.getByRole('heading', { name: 'Climbing club' }).waitFor();
  await page.getByText('3 members').waitFor();
  await page.getByRole('textbox', { name: 'Message' }).waitFor();
  if (!native) assert.deepEqual(posted, { title: 'Climbing club', memberIds: [bob.user.id, carol.user.id] });
  assert.deepEqual(page.errors, []);
  await context.close();
});

test('without the conversation API there is no New group button', async (t) => {
  const me = await registerApi(server.base, 'Plain Paul');
  const native = (await fetch(`${server.base}/conversations?limit=1`, { headers: { Authorization: `Bearer ${me.accessToken}` } })).ok;
  if (native) return t.skip('this server has groups');
  const { context, page } = await openApp(browser, server.base);
  await logInUi(page, me.email, me.password);
  await page.waitForTimeout(300);
  assert.equal(await page.getByRole('button', { name: 'New group' }).count(), 0);
  await context.close();
});
