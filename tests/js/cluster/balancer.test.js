// The deployment users run: three nodes behind HAProxy with deploy/haproxy.cfg.
// WebSocket-only clients need no stickiness (they spread over the nodes and still talk);
// long-polling needs the balancer's cookie, and without it a session breaks.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { register, call, waitFor, connect, sleep } from '../helpers.js';
import { createDatabase, privateRedis, startNode, startBalancer, uniquePrefix } from './harness.js';

let db, redis, nodes, lb, prefix;
const sockets = [];
before(async () => {
  db = createDatabase();
  redis = await privateRedis();
  prefix = uniquePrefix();
  nodes = [await startNode({ databaseUrl: db.url, redisUrl: redis.url, prefix })];
  nodes.push(...await Promise.all([1, 2].map(() => startNode({ databaseUrl: db.url, redisUrl: redis.url, prefix }))));
  lb = await startBalancer(nodes.map((n) => n.port));
  // The balancer's health checks see every node up.
  await sleep(1500);
});
after(async () => {
  sockets.forEach((s) => s.close());
  await lb.stop();
  await Promise.all(nodes.map((n) => n.stop('SIGTERM')));
  await redis.stop();
  db.drop();
});

/** The node ids a user's sockets are on, as cluster presence records them. */
function nodesOf(user) {
  const out = execFileSync('redis-cli', ['-p', String(redis.port), 'HKEYS', `${prefix}presence:user:${user.id}`]).toString();
  return out.split('\n').filter(Boolean);
}

async function through(user, transport, extra = {}) {
  const s = connect(lb.base, user.token, transport, extra);
  sockets.push(s);
  await waitFor(s, 'CONNECTION_SUCCESS', () => true, 10000);
  return s;
}

test('websocket-only clients spread over the nodes without stickiness and reach each other', async () => {
  const users = [];
  for (let i = 0; i < 6; i++) users.push(await register(lb.base, `Ws${i}`));
  const socks = [];
  for (const u of users) socks.push(await through(u, 'websocket'));
  const where = new Set(users.flatMap(nodesOf));
  assert.equal(where.size, 3, 'round robin put sockets on every node');
  for (let i = 0; i < users.length; i++) {
    const to = (i + 1) % users.length;
    const ack = await call(socks[i], 'NEW_MESSAGE', { receiverId: users[to].id, content: `ws ${i}` });
    await waitFor(socks[to], 'NEW_MESSAGE', (m) => m.id === ack.dbMessageId);
  }
});

test('long-polling clients work through the balancer with its cookie (sticky sessions)', async () => {
  const [ada, bob] = [await register(lb.base, 'PollAda'), await register(lb.base, 'PollBob')];
  const sa = await through(ada, 'polling', { withCredentials: true });
  const sb = await through(bob, 'polling', { withCredentials: true });
  for (let i = 0; i < 5; i++) {
    const ack = await call(sa, 'NEW_MESSAGE', { receiverId: bob.id, content: `poll ${i}` });
    await waitFor(sb, 'NEW_MESSAGE', (m) => m.id === ack.dbMessageId);
  }
  await sleep(1000);
  assert.ok(sa.connected && sb.connected, 'the sessions stay up');
  // The default client (polling first, then upgrade to websocket) too.
  const upgraded = await through(await register(lb.base, 'Upgrader'), undefined, { transports: ['polling', 'websocket'], withCredentials: true });
  await call(upgraded, 'HEALTH_CHECK', {});
  assert.ok(upgraded.connected);
});

test('without the cookie a long-polling session breaks: stickiness is what makes it work', async () => {
  const ada = await register(lb.base, 'NoCookie');
  const s = connect(lb.base, ada.token, 'polling', { withCredentials: false });
  sockets.push(s);
  const outcome = await new Promise((resolve) => {
    s.on('connect_error', () => resolve('connect_error'));
    s.on('disconnect', () => resolve('disconnect'));
    setTimeout(() => resolve(s.connected ? 'still connected' : 'not connected'), 8000);
  });
  assert.notEqual(outcome, 'still connected');
});
