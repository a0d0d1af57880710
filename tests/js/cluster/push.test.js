// Push in cluster mode: "connected nowhere" means nowhere in the cluster. A receiver whose only
// socket is on another node gets the message there and no push; once they are gone from
// every node, the next message is pushed (Web Push, to a local push service of the test's).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createECDH, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { NEXUS_BIN, http, online, register, sleep, waitFor } from '../helpers.js';
import { createDatabase, startNode, uniquePrefix, until } from './harness.js';

const REDIS_URL = process.env.NEXUS_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

let db;
let nodes;
let service;
const received = [];

/** A push service that accepts every push (201) and remembers where it went. */
function pushService() {
  return new Promise((resolve) => {
    const srv = createServer((req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        received.push({ path: req.url, headers: req.headers, bytes: Buffer.concat(chunks).length });
        res.writeHead(201).end();
      });
    });
    srv.listen(0, '127.0.0.1', () => resolve(srv));
  });
}

/** A browser-like subscription: a P-256 public key and an auth secret, both base64url. */
function subscription(path) {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  return {
    endpoint: `http://127.0.0.1:${service.address().port}${path}`,
    keys: { p256dh: ecdh.getPublicKey().toString('base64url'), auth: randomBytes(16).toString('base64url') },
  };
}

before(async () => {
  service = await pushService();
  const keys = execFileSync(NEXUS_BIN, ['vapid-keys']).toString();
  const privateKey = /^VAPID_PRIVATE_KEY=(.+)$/m.exec(keys)[1];
  db = createDatabase();
  const prefix = uniquePrefix();
  const env = {
    VAPID_PRIVATE_KEY: privateKey,
    VAPID_SUBJECT: 'mailto:ops@example.org',
    WEBPUSH_ALLOW_INSECURE_ENDPOINTS: 'true',
  };
  nodes = [await startNode({ databaseUrl: db.url, redisUrl: REDIS_URL, prefix, env })];
  nodes.push(await startNode({ databaseUrl: db.url, redisUrl: REDIS_URL, prefix, env }));
});
after(async () => {
  await Promise.all(nodes.map((n) => n.stop('SIGTERM')));
  service.close();
  db.drop();
});

test('a receiver online on another node gets no push; connected nowhere, one push', async () => {
  const [a, b] = nodes;
  const [ada, bob] = [await register(a.base, 'Ada'), await register(b.base, 'Bob')];
  const sub = await http(b.base, 'POST', '/users/webpush/subscribe', bob.token, subscription('/push/bob'));
  assert.equal(sub.status, 201);

  const bobs = await online(b.base, bob);
  const first = await http(a.base, 'POST', '/messages', ada.token, { receiverId: bob.id, content: 'you are on B' });
  assert.equal(first.status, 201);
  await waitFor(bobs, 'NEW_MESSAGE', (m) => m.content === 'you are on B');
  // Node A's push decision is taken before its answer; give a wrongly queued push time to
  // reach the service anyway.
  await sleep(1500);
  assert.deepEqual(received, [], 'online on node B: no push from node A');

  // Bob leaves every node: Ada (a contact now) sees him go offline cluster-wide.
  const adas = await online(a.base, ada);
  bobs.close();
  await waitFor(adas, 'USER_PRESENCE_UPDATE', (p) => p.userId === bob.id && p.status === 'offline', 15000);
  const second = await http(a.base, 'POST', '/messages', ada.token, { receiverId: bob.id, content: 'now you are gone' });
  assert.equal(second.status, 201);
  await until(() => received.length >= 1, 15000);
  await sleep(500);
  assert.equal(received.length, 1, 'exactly one push to the one device');
  assert.equal(received[0].path, '/push/bob');
  assert.equal(received[0].headers['content-encoding'], 'aes128gcm');
  assert.match(received[0].headers.authorization ?? '', /^vapid t=/);
  assert.ok(received[0].bytes > 0, 'an encrypted payload');
  adas.close();
});
