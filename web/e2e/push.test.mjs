// Push, the client side, against the server's real Web Push routes. Headless Chromium
// refuses PushManager.subscribe ("permission denied"), so the page gets a stubbed
// pushManager that hands out a subscription with a real P-256 key; the server (with a VAPID
// key from `nexus vapid-keys`) stores it as a device. Also: a push delivered to the service
// worker shows a notification naming its conversation, and the app opens the conversation
// a notification click asks for.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createECDH, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { launch, message, openChatUi, registerApi, api, startServer, logInUi, repo } from './helpers.mjs';

let server;
let browser;

before(async () => {
  const bin = process.env.NEXUS_BIN ?? join(repo, 'target/debug/nexus');
  const keys = execFileSync(bin, ['vapid-keys'], { encoding: 'utf8' });
  const privateKey = /VAPID_PRIVATE_KEY=(\S+)/.exec(keys)?.[1];
  assert.ok(privateKey, 'nexus vapid-keys printed a key');
  server = await startServer({ VAPID_PRIVATE_KEY: privateKey, VAPID_SUBJECT: 'mailto:tests@example.org' });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

// The browser's side of a subscription: a P-256 key pair and an auth secret.
const ecdh = createECDH('prime256v1');
const SUB_KEYS = { p256dh: ecdh.generateKeys().toString('base64url'), auth: randomBytes(16).toString('base64url') };

function stubPush(keys) {
  const sub = {
    endpoint: 'https://push.invalid/send/abc123',
    expirationTime: null,
    toJSON() {
      return { endpoint: this.endpoint, expirationTime: null, keys };
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
  await context.addInitScript(stubPush, SUB_KEYS);
  const { publicKey } = await api(server.base, 'GET', '/users/webpush/vapid-public-key');
  const subscribed = [];
  await context.route('**/users/webpush/subscribe', async (r) => {
    subscribed.push({ body: r.request().postDataJSON(), auth: r.request().headers().authorization });
    await r.continue();
  });
  const page = await context.newPage();
  await page.goto('/');
  await logInUi(page, me.email, me.password);
  await page.evaluate(() => navigator.serviceWorker.ready);

  await page.getByRole('button', { name: 'Turn notifications on' }).click();
  await page.getByRole('button', { name: 'Turn notifications off' }).waitFor();
  assert.equal(subscribed.length, 1);
  assert.equal(subscribed[0].body.endpoint, 'https://push.invalid/send/abc123');
  assert.deepEqual(subscribed[0].body.keys, SUB_KEYS);
  const token = await page.evaluate(() => JSON.parse(localStorage.getItem('nexus.session')).token);
  assert.equal(subscribed[0].auth, `Bearer ${token}`);
  const used = await page.evaluate(() => window.__subscribed);
  assert.equal(used.userVisibleOnly, true);
  assert.deepEqual(used.key, [...Buffer.from(publicKey, 'base64url')], 'subscribed with the server key, decoded from base64url');
  const devices = await api(server.base, 'GET', '/users/devices', { token });
  assert.ok(JSON.stringify(devices).includes('https://push.invalid/send/abc123'), `the server keeps the device: ${JSON.stringify(devices)}`);

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
    // The server's Web Push payload (docs/push.md).
    data: JSON.stringify({
      title: 'New message from Fred Friend',
      body: 'Ping for push',
      tag: friend.user.id,
      data: { type: 'new_message', messageId: 'm1', senderId: friend.user.id, senderName: 'Fred Friend', clickAction: '/messages' },
    }),
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
    await r.continue();
  });
  await page.getByRole('button', { name: 'Turn notifications off' }).click();
  await page.getByRole('button', { name: 'Turn notifications on' }).waitFor();
  assert.deepEqual(unsubscribed, [{ endpoint: 'https://push.invalid/send/abc123' }]);
  const after = await api(server.base, 'GET', '/users/devices', { token });
  assert.ok(!JSON.stringify(after).includes('push.invalid'), 'the device is gone');
  await context.close();
});
