// Push, the client side. Headless Chromium refuses PushManager.subscribe ("permission
// denied"), so the page gets a stubbed pushManager; the server's VAPID key and subscribe
// routes are answered by the test when this server does not have them yet (Web Push lives
// in the push work). Also: a push delivered to the service worker shows a notification
// naming its conversation, and the app opens the conversation a notification click asks for.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch, message, openChatUi, registerApi, api, startServer, logInUi } from './helpers.mjs';

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

// A P-256 public key is 65 bytes; any bytes do for the client.
const KEY_BYTES = Array.from({ length: 65 }, (_, i) => (i * 7 + 4) % 256);
const KEY = Buffer.from(KEY_BYTES).toString('base64url');

function stubPush() {
  const sub = {
    endpoint: 'https://push.invalid/send/abc123',
    expirationTime: null,
    toJSON() {
      return { endpoint: this.endpoint, expirationTime: null, keys: { p256dh: 'BNcR-test-key', auth: 'tBHI-auth' } };
    },
    async unsubscribe() {
      window.__pushSub = null;
      return true;
    },
  };
  Notification.requestPermission = async () => 'granted';
  Object.defineProperty(Notification, 'permission', { get: () => (window.__pushSub ? 'granted' : 'default') });
  PushManager.prototype.subscribe = async function (options) {
    window.__subscribed = { userVisibleOnly: options.userVisibleOnly, key: Array.from(new Uint8Array(options.applicationServerKey)) };
    window.__pushSub = sub;
    return sub;
  };
  PushManager.prototype.getSubscription = async function () {
    return window.__pushSub ?? null;
  };
}

test('notifications: subscribe with the server VAPID key, send the subscription, open from a click', async () => {
  const me = await registerApi(server.base, 'Paula Push');
  const friend = await registerApi(server.base, 'Fred Friend');
  await api(server.base, 'POST', '/messages', { token: friend.accessToken, body: { receiverId: me.user.id, content: 'Ping for push' } });

  const context = await browser.newContext({ baseURL: server.base });
  await context.addInitScript(stubPush);
  const subscribed = [];
  const hasRoute = (await fetch(`${server.base}/users/webpush/vapid-public-key`)).ok;
  if (!hasRoute) {
    await context.route('**/users/webpush/vapid-public-key', (r) => r.fulfill({ json: { publicKey: KEY } }));
  }
  await context.route('**/users/webpush/subscribe', async (r) => {
    subscribed.push({ body: r.request().postDataJSON(), auth: r.request().headers().authorization });
    if (hasRoute) await r.continue();
    else await r.fulfill({ status: 201, json: { id: 'device-1' } });
  });
  const page = await context.newPage();
  await page.goto('/');
  await logInUi(page, me.email, me.password);
  await page.evaluate(() => navigator.serviceWorker.ready);

  await page.getByRole('button', { name: 'Turn notifications on' }).click();
  await page.getByRole('button', { name: 'Turn notifications off' }).waitFor();
  assert.equal(subscribed.length, 1);
  assert.equal(subscribed[0].body.endpoint, 'https://push.invalid/send/abc123');
  assert.deepEqual(subscribed[0].body.keys, { p256dh: 'BNcR-test-key', auth: 'tBHI-auth' });
  const token = await page.evaluate(() => JSON.parse(localStorage.getItem('nexus.session')).token);
  assert.equal(subscribed[0].auth, `Bearer ${token}`);
  const used = await page.evaluate(() => window.__subscribed);
  assert.equal(used.userVisibleOnly, true);
  if (!hasRoute) assert.deepEqual(used.key, KEY_BYTES, 'subscribed with the server key, decoded from base64url');

  // A push to the service worker shows a notification that leads to its conversation.
  await context.grantPermissions(['notifications']);
  const cdp = await context.newCDPSession(page);
  await cdp.send('ServiceWorker.enable');
  const registrationId = await new Promise((ok) => {
    cdp.on('ServiceWorker.workerRegistrationUpdated', (e) => {
      const reg = e.registrations.find((r) => !r.isDeleted);
      if (reg) ok(reg.registrationId);
    });
  });
  await cdp.send('ServiceWorker.deliverPushMessage', {
    origin: server.base,
    registrationId,
    data: JSON.stringify({ title: 'New message from Fred Friend', body: 'Ping for push', conversationId: friend.user.id }),
  });
  let notification = null;
  for (let i = 0; i < 100 && !notification; i++) {
    notification = await page.evaluate(async () => {
      const reg = await navigator.serviceWorker.ready;
      const list = await reg.getNotifications();
      return list.length ? { title: list[0].title, body: list[0].body, url: list[0].data?.url } : null;
    });
    if (!notification) await page.waitForTimeout(100);
  }
  assert.deepEqual(notification, { title: 'New message from Fred Friend', body: 'Ping for push', url: `/c/${friend.user.id}` });

  // The click handler focuses the app and tells it where to go.
  await page.evaluate((url) => {
    navigator.serviceWorker.dispatchEvent(new MessageEvent('message', { data: { type: 'open', url } }));
  }, notification.url);
  await message(page, 'Ping for push').waitFor();
  assert.equal(new URL(page.url()).pathname, `/c/${friend.user.id}`);
  await openChatUi(page, 'Fred Friend');

  // Turning it off tells the server.
  const unsubscribed = [];
  await context.route('**/users/webpush/unsubscribe', async (r) => {
    unsubscribed.push(r.request().postDataJSON());
    if (hasRoute) await r.continue();
    else await r.fulfill({ status: 204 });
  });
  await page.getByRole('button', { name: 'Turn notifications off' }).click();
  await page.getByRole('button', { name: 'Turn notifications on' }).waitFor();
  assert.deepEqual(unsubscribed, [{ endpoint: 'https://push.invalid/send/abc123' }]);
  await context.close();
});
