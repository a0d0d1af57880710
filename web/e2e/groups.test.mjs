// Groups: "New group", and the management of a group from its chat view (members with
// roles, rename, add from people search, remove, leave; "Read by N of M" on own messages).
// Offered only where the server has the conversation API. Against a server without it, the
// test answers the conversation routes itself (fake-conversations.mjs): the browser side is
// what is checked (the dialogs, the requests, the list and the header); against a server
// with it, the same steps run on the real routes and the server's state is checked.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { FakeConversations } from './fake-conversations.mjs';
import { api, connectSocket, emitAck, launch, logInUi, message, openApp, registerApi, screenshot, startServer } from './helpers.mjs';

let server;
let browser;
/** The server has the conversation API. */
let native;

before(async () => {
  server = await startServer();
  browser = await launch();
  const probe = await registerApi(server.base, 'Probe Person');
  native = (await fetch(`${server.base}/conversations?limit=1`, { headers: { Authorization: `Bearer ${probe.accessToken}` } })).ok;
  console.log(`# conversation API: ${native ? 'the server’s' : 'answered by the test (not on this server)'}`);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const list = (page) => page.getByRole('navigation', { name: 'Conversations' });
const entry = (page, title) => list(page).getByRole('link', { name: new RegExp(`^${title}`) });
const info = (page) => page.getByRole('dialog', { name: 'Group info' });
const members = (page) => info(page).getByRole('list', { name: 'Members' }).getByRole('listitem');

test('New group: pick people, name it, it opens under its title', async () => {
  const me = await registerApi(server.base, 'Greta Group');
  const bob = await registerApi(server.base, 'Bob Member');
  const carol = await registerApi(server.base, 'Carol Member');

  const { context, page } = await openApp(browser, server.base);
  const fake = native ? null : new FakeConversations([me.user, bob.user, carol.user]);
  await fake?.bind(context, me.user.id);
  await logInUi(page, me.email, me.password);
  await page.getByRole('button', { name: 'New group' }).click();
  const dialog = page.getByRole('dialog', { name: 'New group' });
  await dialog.getByLabel('Group name').fill('Climbing club');
  for (const name of ['Bob Member', 'Carol Member']) {
    await dialog.getByLabel('Add people').fill(name);
    await dialog.getByRole('checkbox', { name: new RegExp(name) }).check();
  }
  await dialog.getByRole('button', { name: 'Create group' }).click();
  await entry(page, 'Climbing club').waitFor();
  await page.getByRole('heading', { name: 'Climbing club' }).waitFor();
  await page.getByText('3 members').waitFor();
  await page.getByRole('textbox', { name: 'Message' }).waitFor();
  if (fake) {
    const posted = fake.requests.find((r) => r.method === 'POST' && r.path === '/conversations');
    assert.deepEqual(posted.body, { title: 'Climbing club', memberIds: [bob.user.id, carol.user.id] });
  }
  assert.deepEqual(page.errors, []);
  await context.close();
});

describe('managing a group from its chat view', () => {
  let alice;
  let bob;
  let carol;
  let dave;
  let fake;
  let groupId;
  let a;
  let b;

  before(async () => {
    alice = await registerApi(server.base, 'Alice Admin');
    bob = await registerApi(server.base, 'Bob Member');
    carol = await registerApi(server.base, 'Carol Member');
    dave = await registerApi(server.base, 'Dave Newcomer');
    if (native) {
      const c = await api(server.base, 'POST', '/conversations', {
        token: alice.accessToken,
        body: { title: 'Climbing club', memberIds: [bob.user.id, carol.user.id] },
      });
      groupId = c.id;
      // Alice writes; Bob reads it on another device of his: one of two has read it.
      const as = await connectSocket(server.base, alice.accessToken);
      const sent = await emitAck(as, 'NEW_MESSAGE', { conversationId: groupId, content: 'Who is in for Saturday?', tempId: 'sat-1' });
      const bs = await connectSocket(server.base, bob.accessToken);
      await emitAck(bs, 'MESSAGE_READ', { messageId: sent.dbMessageId });
      as.disconnect();
      bs.disconnect();
    } else {
      fake = new FakeConversations([alice.user, bob.user, carol.user, dave.user]);
      groupId = fake.group('Climbing club', alice.user.id, [bob.user.id, carol.user.id]).id;
      fake.message(groupId, alice.user.id, 'Who is in for Saturday?', [bob.user.id]);
    }
    a = await openApp(browser, server.base);
    b = await openApp(browser, server.base);
    await fake?.bind(a.context, alice.user.id);
    await fake?.bind(b.context, bob.user.id);
    await logInUi(a.page, alice.email, alice.password);
    await logInUi(b.page, bob.email, bob.password);
    for (const { page } of [a, b]) {
      await entry(page, 'Climbing club').click();
      await page.getByRole('heading', { name: 'Climbing club' }).waitFor();
    }
  });

  after(async () => {
    assert.deepEqual(a?.page.errors, []);
    assert.deepEqual(b?.page.errors, []);
    await a?.context.close();
    await b?.context.close();
  });

  /** The server's view of the group (as Alice, while she is a member; else as Bob). */
  async function serverGroup(as = alice) {
    if (fake) return fake.groups.get(groupId);
    return api(server.base, 'GET', `/conversations/${groupId}`, { token: as.accessToken });
  }

  test('own messages say how many of the other members have read them', async () => {
    await message(a.page, 'Who is in for Saturday?').getByText('Read by 1 of 2').waitFor();
    // Not everyone has read it: the tick stays short of Read.
    assert.equal(await message(a.page, 'Who is in for Saturday?').locator('[aria-label=Read]').count(), 0);
    // On someone else's message there is no such line.
    assert.equal(await message(b.page, 'Who is in for Saturday?').getByText(/Read by/).count(), 0);
  });

  test('a member sees the members with their roles, and can only leave', async () => {
    await b.page.getByRole('button', { name: 'Group info' }).click();
    await info(b.page).waitFor();
    assert.equal(await members(b.page).count(), 3);
    await members(b.page).filter({ hasText: 'Alice Admin' }).getByText('Admin', { exact: true }).waitFor();
    await members(b.page).filter({ hasText: 'Bob Member (you)' }).getByText('Member', { exact: true }).waitFor();
    assert.equal(await info(b.page).getByRole('button', { name: 'Rename' }).count(), 0);
    assert.equal(await info(b.page).getByRole('button', { name: /^Remove / }).count(), 0);
    assert.equal(await info(b.page).getByLabel('Add people').count(), 0);
    await info(b.page).getByRole('button', { name: 'Leave group' }).waitFor();
    await b.page.keyboard.press('Escape');
    await info(b.page).waitFor({ state: 'detached' });
  });

  test('keyboard only: the admin opens the dialog, renames the group, Escape closes it', async () => {
    const opener = a.page.getByRole('button', { name: 'Group info' });
    await opener.focus();
    await a.page.keyboard.press('Enter');
    await info(a.page).waitFor();
    // Focus moved into the dialog; Tab never reaches what is behind it.
    assert.ok(await a.page.evaluate(() => !!document.activeElement?.closest('dialog')), 'focus is in the dialog');
    for (let i = 0; i < 12; i++) {
      await a.page.keyboard.press('Tab');
      const where = await a.page.evaluate(() => {
        const el = document.activeElement;
        return !el || el === document.body ? 'outside the page' : el.closest('dialog') ? 'dialog' : el.outerHTML.slice(0, 80);
      });
      assert.ok(where === 'dialog' || where === 'outside the page', `Tab reached ${where}`);
    }
    const field = info(a.page).getByLabel('Group name');
    await field.focus();
    await a.page.keyboard.press('ControlOrMeta+a');
    await a.page.keyboard.type('Saturday climbers');
    await a.page.keyboard.press('Enter');
    await a.page.getByRole('heading', { name: 'Saturday climbers' }).first().waitFor();
    await entry(a.page, 'Saturday climbers').waitFor();
    assert.equal((await serverGroup()).title, 'Saturday climbers');
    if (fake) {
      assert.deepEqual(fake.requests.find((r) => r.method === 'PATCH')?.body, { title: 'Saturday climbers' });
    } else {
      // The other members see it at once (CONVERSATION_UPDATED).
      await b.page.getByRole('heading', { name: 'Saturday climbers' }).waitFor();
    }
    await a.page.keyboard.press('Escape');
    await info(a.page).waitFor({ state: 'detached' });
    await a.page.getByRole('heading', { name: 'Saturday climbers' }).waitFor();
    await a.page.waitForFunction(() => document.activeElement?.textContent === 'Group info');
  });

  test('the admin adds someone from people search and removes a member', async () => {
    await a.page.getByRole('button', { name: 'Group info' }).click();
    await info(a.page).getByLabel('Add people').fill('Dave');
    await info(a.page).getByRole('button', { name: 'Add Dave Newcomer' }).click();
    await members(a.page).filter({ hasText: 'Dave Newcomer' }).waitFor();
    assert.equal(await members(a.page).count(), 4);
    await a.page.getByText('4 members').first().waitFor();
    await a.page.mouse.move(0, 0);
    await screenshot(a.page, 'web-group-info.png');

    await info(a.page).getByRole('button', { name: 'Remove Carol Member' }).click();
    await members(a.page).filter({ hasText: 'Carol Member' }).waitFor({ state: 'detached' });
    assert.equal(await members(a.page).count(), 3);
    const ids = (await serverGroup()).members.map((m) => m.user.id).sort();
    assert.deepEqual(ids, [alice.user.id, bob.user.id, dave.user.id].sort());
    if (fake) {
      assert.deepEqual(fake.requests.find((r) => r.method === 'POST' && r.path.endsWith('/members'))?.body, { userIds: [dave.user.id] });
      assert.ok(fake.requests.some((r) => r.method === 'DELETE' && r.path === `/conversations/${groupId}/members/${carol.user.id}`));
    }
    await a.page.keyboard.press('Escape');
    await info(a.page).waitFor({ state: 'detached' });
  });

  test('phone width (375 px): the dialog fits, nothing scrolls sideways', async () => {
    await a.page.setViewportSize({ width: 375, height: 740 });
    try {
      await a.page.getByRole('button', { name: 'Group info' }).click();
      await info(a.page).waitFor();
      const box = await info(a.page).boundingBox();
      assert.ok(box.x >= 0 && box.x + box.width <= 375, `the dialog is inside the screen (${box.x}..${box.x + box.width})`);
      const width = await a.page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(width <= 375, `no horizontal scrolling (content is ${width} px wide)`);
      await a.page.keyboard.press('Escape');
      await info(a.page).waitFor({ state: 'detached' });
    } finally {
      await a.page.setViewportSize({ width: 1280, height: 800 });
    }
  });

  test('leaving: the group goes from the list', async () => {
    await a.page.getByRole('button', { name: 'Group info' }).click();
    await info(a.page).getByRole('button', { name: 'Leave group' }).click();
    await info(a.page).getByRole('button', { name: 'Leave', exact: true }).click();
    await info(a.page).waitFor({ state: 'detached' });
    await entry(a.page, 'Saturday climbers').waitFor({ state: 'detached' });
    await a.page.getByText('Pick a conversation').waitFor();
    const left = await serverGroup(bob);
    assert.ok(!left.members.some((m) => m.user.id === alice.user.id), 'the server no longer has Alice in the group');
    if (fake) {
      assert.ok(fake.requests.some((r) => r.method === 'DELETE' && r.path === `/conversations/${groupId}/members/${alice.user.id}`));
    }
    // A reload does not bring it back.
    await a.page.reload();
    await list(a.page).waitFor();
    await a.page.waitForTimeout(500);
    assert.equal(await entry(a.page, 'Saturday climbers').count(), 0);
  });
});

test('without the conversation API there is no New group button', async (t) => {
  if (native) return t.skip('this server has groups');
  const me = await registerApi(server.base, 'Plain Paul');
  const { context, page } = await openApp(browser, server.base);
  await logInUi(page, me.email, me.password);
  await page.waitForTimeout(300);
  assert.equal(await page.getByRole('button', { name: 'New group' }).count(), 0);
  await context.close();
});
