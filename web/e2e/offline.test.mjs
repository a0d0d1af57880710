// Offline and reconnect: a message written offline is queued in IndexedDB and delivered
// exactly once when the network returns, also across a reload made while offline (the
// service worker serves the app shell); what the other side edited and deleted meanwhile
// shows after reconnect (/sync); two tabs of one user stay consistent.
//
// Chromium's offline emulation keeps an open WebSocket and holds its frames, so nothing
// here relies on the socket closing: the app goes by the browser's online/offline state.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { api, launch, message, openApp, openChatUi, sendUi, signUpUi, startChatUi, startServer } from './helpers.mjs';

let server;
let browser;
let alice;
let bob;

const token = (page) => page.evaluate(() => JSON.parse(localStorage.getItem('nexus.session')).token);
const userId = (page) => page.evaluate(() => JSON.parse(localStorage.getItem('nexus.session')).user.id);
const offlineBanner = (page) => page.getByRole('status').filter({ hasText: 'offline' });

/** How many stored messages of the conversation have this content (server's view). */
async function storedCount(viewer, other, content) {
  const page = await api(server.base, 'GET', `/messages/conversation/${await userId(other)}?limit=200`, {
    token: await token(viewer),
  });
  return page.messages.filter((m) => m.content === content).length;
}

async function settle(ms = 1500) {
  await new Promise((r) => setTimeout(r, ms));
}

before(async () => {
  server = await startServer();
  browser = await launch();
  alice = await openApp(browser, server.base);
  await signUpUi(alice.page, 'Alice Offline');
  bob = await openApp(browser, server.base);
  await signUpUi(bob.page, 'Bob Online');
  await startChatUi(alice.page, 'Bob Online');
  await sendUi(alice.page, 'First, while online');
  await openChatUi(bob.page, 'Alice Offline');
  await message(bob.page, 'First, while online').waitFor();
  // The service worker has the shell before anyone goes offline.
  await alice.page.evaluate(() => navigator.serviceWorker.ready);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

describe('offline and reconnect', () => {
  test('a message written offline waits, then arrives exactly once', async () => {
    await alice.context.setOffline(true);
    await offlineBanner(alice.page).waitFor();
    await sendUi(alice.page, 'Written while offline');
    await message(alice.page, 'Written while offline').getByLabel('Sending').waitFor();
    await settle(1000);
    assert.equal(await message(bob.page, 'Written while offline').count(), 0, 'nothing leaves while offline');

    await alice.context.setOffline(false);
    await message(bob.page, 'Written while offline').waitFor();
    await message(alice.page, 'Written while offline').locator('[aria-label=Read]').waitFor();
    assert.equal(await offlineBanner(alice.page).count(), 0);
    await settle();
    assert.equal(await message(bob.page, 'Written while offline').count(), 1);
    assert.equal(await message(alice.page, 'Written while offline').count(), 1);
    assert.equal(await storedCount(bob.page, alice.page, 'Written while offline'), 1);
  });

  test('queued, reloaded while offline, sent once when the network returns', async () => {
    await alice.context.setOffline(true);
    await offlineBanner(alice.page).waitFor();
    await sendUi(alice.page, 'Queued before the reload');
    await message(alice.page, 'Queued before the reload').getByLabel('Sending').waitFor();
    await alice.page.reload();
    // The shell came from the service worker, the rest from IndexedDB.
    await offlineBanner(alice.page).waitFor();
    await alice.page.getByRole('navigation', { name: 'Conversations' }).getByRole('link', { name: /^Bob Online/ }).waitFor();
    await message(alice.page, 'Queued before the reload').getByLabel('Sending').waitFor();
    await message(alice.page, 'First, while online').waitFor();
    assert.equal(await message(bob.page, 'Queued before the reload').count(), 0);

    await alice.context.setOffline(false);
    await message(bob.page, 'Queued before the reload').waitFor();
    await message(alice.page, 'Queued before the reload').locator('[aria-label=Read]').waitFor();
    await settle();
    assert.equal(await message(bob.page, 'Queued before the reload').count(), 1);
    assert.equal(await storedCount(bob.page, alice.page, 'Queued before the reload'), 1);
  });

  test("the other side's edits, deletes and receipts made while offline show after reconnect", async () => {
    await sendUi(bob.page, 'Will be edited');
    await sendUi(bob.page, 'Will be deleted');
    await message(alice.page, 'Will be deleted').waitFor();
    await alice.context.setOffline(true);
    await offlineBanner(alice.page).waitFor();
    await sendUi(alice.page, 'Read me later');

    const bobToken = await token(bob.page);
    const history = await api(server.base, 'GET', `/messages/conversation/${await userId(alice.page)}?limit=50`, { token: bobToken });
    const byContent = (c) => history.messages.find((m) => m.content === c);
    await api(server.base, 'PATCH', `/messages/${byContent('Will be edited').id}`, { token: bobToken, body: { content: 'Edited while you were away' } });
    await api(server.base, 'DELETE', `/messages/${byContent('Will be deleted').id}`, { token: bobToken });

    await settle(500);
    await alice.context.setOffline(false);
    await message(alice.page, 'Edited while you were away').getByText('edited', { exact: true }).waitFor();
    const list = alice.page.getByRole('list', { name: 'Messages' });
    await list.getByText('This message has been deleted').first().waitFor();
    assert.equal(await message(alice.page, 'Will be deleted').count(), 0);
    assert.equal(await message(alice.page, 'Will be edited').count(), 0);
    await message(alice.page, 'Read me later').locator('[aria-label=Read]').waitFor();
  });

  test('own edits and deletes made offline wait (also across a reload) and are applied once on reconnect', async () => {
    await sendUi(alice.page, 'Fix me when offline');
    await sendUi(alice.page, 'Remove me when offline');
    await message(bob.page, 'Remove me when offline').waitFor();
    await message(alice.page, 'Remove me when offline').locator('[aria-label=Read]').waitFor();
    const bobToken = await token(bob.page);
    // What Alice's page emits from here on (its socket after the reload).
    const emitted = [];
    const record = (ws) => ws.on('framesent', ({ payload }) => /"(EDIT|DELETE)_MESSAGE"/.test(String(payload)) && emitted.push(String(payload)));
    alice.page.on('websocket', record);

    await alice.context.setOffline(true);
    await offlineBanner(alice.page).waitFor();
    const fix = message(alice.page, 'Fix me when offline');
    await fix.hover();
    await fix.getByRole('button', { name: 'Edit' }).click();
    await alice.page.getByRole('textbox', { name: 'Edit text' }).fill('Fixed while offline');
    await alice.page.getByRole('textbox', { name: 'Edit text' }).press('Enter');
    const fixed = message(alice.page, 'Fixed while offline');
    await fixed.getByText('waiting for the connection').waitFor();
    const doomed = message(alice.page, 'Remove me when offline');
    await doomed.hover();
    await doomed.getByRole('button', { name: 'Delete' }).click();
    await doomed.waitFor({ state: 'detached' });
    await offlineBanner(alice.page).filter({ hasText: '2 edits or deletes will be sent' }).waitFor();

    // Kept in IndexedDB: a reload while offline still shows them, still waiting.
    await alice.page.reload();
    await offlineBanner(alice.page).waitFor();
    await message(alice.page, 'Fixed while offline').getByText('waiting for the connection').waitFor();
    assert.equal(await message(alice.page, 'Remove me when offline').count(), 0);
    await settle(500);
    assert.equal(await message(bob.page, 'Fix me when offline').count(), 1, 'nothing leaves while offline');
    assert.equal(await message(bob.page, 'Remove me when offline').count(), 1);

    await alice.context.setOffline(false);
    await message(bob.page, 'Fixed while offline').getByText('edited', { exact: true }).waitFor();
    await message(bob.page, 'Remove me when offline').waitFor({ state: 'detached' });
    await message(alice.page, 'Fixed while offline').getByText('waiting for the connection').waitFor({ state: 'detached' });
    await settle();
    assert.equal(await offlineBanner(alice.page).count(), 0);
    const history = await api(server.base, 'GET', `/messages/conversation/${await userId(alice.page)}?limit=50`, { token: bobToken });
    const fixedOnServer = history.messages.filter((m) => m.content === 'Fixed while offline');
    assert.equal(fixedOnServer.length, 1);
    assert.equal(fixedOnServer[0].isEdited, true);
    assert.equal(history.messages.filter((m) => m.content === 'Remove me when offline' || m.content === 'Fix me when offline').length, 0);
    // Sent once each.
    alice.page.off('websocket', record);
    assert.equal(emitted.filter((f) => f.includes('"EDIT_MESSAGE"')).length, 1, emitted.join('\n'));
    assert.equal(emitted.filter((f) => f.includes('"DELETE_MESSAGE"')).length, 1, emitted.join('\n'));
  });

  test('two tabs of one user stay consistent, and send a shared queue once', async () => {
    const second = await alice.context.newPage();
    await second.goto('/');
    await openChatUi(second, 'Bob Online');
    await message(second, 'Edited while you were away').waitFor();

    await sendUi(alice.page, 'From the first tab');
    await message(second, 'From the first tab').locator('[aria-label=Read]').waitFor();
    assert.equal(await message(second, 'From the first tab').count(), 1);

    const mine = message(second, 'From the first tab');
    await mine.hover();
    await mine.getByRole('button', { name: 'Edit' }).click();
    await second.getByRole('textbox', { name: 'Edit text' }).fill('Edited in the second tab');
    await second.getByRole('textbox', { name: 'Edit text' }).press('Enter');
    await message(alice.page, 'Edited in the second tab').getByText('edited', { exact: true }).waitFor();
    await message(bob.page, 'Edited in the second tab').waitFor();

    await alice.context.setOffline(true);
    await offlineBanner(second).waitFor();
    await sendUi(second, 'Queued in the second tab');
    // The first tab shows the queued message too.
    await message(alice.page, 'Queued in the second tab').getByLabel('Sending').waitFor();
    await alice.context.setOffline(false);
    await message(bob.page, 'Queued in the second tab').waitFor();
    await message(alice.page, 'Queued in the second tab').locator('[aria-label=Read]').waitFor();
    await message(second, 'Queued in the second tab').locator('[aria-label=Read]').waitFor();
    await settle();
    assert.equal(await message(bob.page, 'Queued in the second tab').count(), 1);
    assert.equal(await message(alice.page, 'Queued in the second tab').count(), 1);
    assert.equal(await storedCount(bob.page, alice.page, 'Queued in the second tab'), 1);
    assert.deepEqual(alice.page.errors, []);
    await second.close();
  });
});
