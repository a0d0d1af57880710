// The failures a cluster must survive, each with its own private Redis and nodes (the
// machine's shared Redis and PostgreSQL are never stopped): a node killed with SIGKILL,
// Redis stopped for 30 s, and a rolling restart under load. Each prints its figures.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { register, online, call, waitFor, all, sleep, connect } from '../helpers.js';
import { createDatabase, privateRedis, startNode, startBalancer, uniquePrefix, until } from './harness.js';
import { Client } from './client.js';
import { Load, clientsOn } from './load.js';

const FAST = { RATE_LIMIT_MESSAGES_PER_MINUTE: '100000' };

async function cluster(t, n, { env = FAST, balancer = false } = {}) {
  const db = createDatabase();
  const redis = await privateRedis();
  const prefix = uniquePrefix();
  const nodes = [await startNode({ databaseUrl: db.url, redisUrl: redis.url, prefix, env })];
  for (let i = 1; i < n; i++) nodes.push(await startNode({ databaseUrl: db.url, redisUrl: redis.url, prefix, env }));
  const lb = balancer ? await startBalancer(nodes.map((x) => x.port)) : null;
  t.after(async () => {
    if (lb) await lb.stop();
    await Promise.all(nodes.map((x) => x.stop('SIGKILL')));
    await redis.stop();
    db.drop();
  });
  return { db, redis, nodes, lb };
}

test('a node killed with SIGKILL: its clients move to the other node, lose nothing, presence converges', async (t) => {
  const { db, nodes, lb } = await cluster(t, 2, { balancer: true });
  const [a, b] = nodes;
  // Chatting users, through the balancer (spread over both nodes).
  const clients = await clientsOn([lb.base], 8, register);
  const load = new Load(clients, { intervalMs: 100 });
  // A watcher on B, and Dora who is on A only and does not reconnect.
  const [watcher, dora] = [await register(b.base, 'Watcher'), await register(a.base, 'Dora')];
  await call(await online(a.base, dora), 'NEW_MESSAGE', { receiverId: watcher.id, content: 'contacts' });
  const watching = await online(b.base, watcher);
  const doraSocket = await online(a.base, dora);
  t.after(() => { clients.forEach((c) => c.close()); watching.close(); doraSocket.close(); });
  load.start();
  await sleep(2000);

  const killedAt = Date.now();
  await a.stop('SIGKILL');
  const offline = await waitFor(watching, 'USER_PRESENCE_UPDATE', (p) => p.userId === dora.id && p.status === 'offline', 20000);
  const convergeMs = Date.now() - killedAt;
  assert.ok(offline);
  assert.ok(convergeMs <= 15000, `presence converged after ${convergeMs} ms`);
  await sleep(2000); // chatting goes on over node B
  await load.stop();
  const figures = await load.verify(db);
  t.diagnostic(`SIGKILL: presence converged in ${convergeMs} ms; ${JSON.stringify(figures)}`);
  assert.equal(figures.lost, 0);
  assert.equal(figures.clientsWithGaps, 0);
  assert.equal(figures.storedTwice, 0);
  assert.equal(figures.stored, figures.acked, 'every stored message was acknowledged in the end (retries with the same tempId)');
  assert.ok(clients.every((c) => c.connects >= 1));
  assert.equal(b.server.proc.exitCode, null);
});

test('Redis stopped for 30 s: chat on one node goes on, health says so, cross-node delivery resumes by itself', async (t) => {
  const { db, redis, nodes } = await cluster(t, 2);
  const [a, b] = nodes;
  const [ada, carol, bob] = [await register(a.base, 'Ada'), await register(a.base, 'Carol'), await register(b.base, 'Bob')];
  const adas = new Client(a.base, ada);
  const carols = new Client(a.base, carol);
  const bobs = new Client(b.base, bob);
  t.after(() => [adas, carols, bobs].forEach((c) => c.close()));
  await Promise.all([adas.connected, carols.connected, bobs.connected]);
  const first = await adas.send(bob.id, 'before the outage', 'r0');
  await until(() => bobs.messages.has(first.dbMessageId));

  await redis.stop();
  const downAt = Date.now();
  // Same-node chat goes on, live.
  const local = await adas.send(carol.id, 'same node, Redis down', 'r1');
  assert.ok(local.dbMessageId);
  await until(() => carols.messages.has(local.dbMessageId), 5000);
  // Cross-node sends are stored and acknowledged (Bob gets them later through sync).
  const during = [];
  for (let i = 0; i < 5; i++) during.push(await adas.send(bob.id, `during ${i}`, `r-during-${i}`));
  assert.ok(during.every((d) => d.dbMessageId));
  // Readiness and HEALTH_CHECK report Redis down; the nodes keep running.
  await until(async () => (await fetch(`${a.base}/ready`)).status === 503, 5000);
  const ready = await (await fetch(`${b.base}/ready`)).json();
  assert.equal(ready.redis, 'down');
  assert.equal(ready.database, 'up');
  const health = await adas.socket.timeout(5000).emitWithAck('HEALTH_CHECK', {});
  assert.equal(health.redis, 'down');
  const metrics = await (await fetch(`${a.base}/metrics`)).text();
  assert.match(metrics, /nexus_redis_up 0/);
  // A login (its limit falls back to the node) and a new connection still work.
  assert.ok((await register(b.base, 'Late')).token);
  await sleep(Math.max(0, 30000 - (Date.now() - downAt)));

  await redis.start();
  const backAt = Date.now();
  // Probe: a cross-node message delivered live.
  let probe = 0;
  const { ms: resumeMs } = await until(async () => {
    const sent = await adas.send(bob.id, `probe ${probe}`, `probe-${probe++}`);
    await sleep(100);
    return sent.dbMessageId && bobs.events.some(([e, p]) => e === 'NEW_MESSAGE' && p.id === sent.dbMessageId);
  }, 15000, 100);
  assert.ok(resumeMs <= 5000, `cross-node delivery resumed after ${resumeMs} ms`);
  // What Bob missed reached him through sync (RESYNC or the seq gap).
  await until(() => during.every((d) => bobs.messages.has(d.dbMessageId)), 10000);
  const latest = Number(db.query(`SELECT MAX(seq) FROM changes WHERE user_id = '${bob.id}'`));
  await until(() => bobs.watermark === latest, 5000);
  await until(async () => (await fetch(`${a.base}/ready`)).status === 200, 5000);
  t.diagnostic(`Redis outage: ${Date.now() - downAt - (Date.now() - backAt)} ms down; cross-node delivery resumed ${resumeMs} ms after Redis returned; Bob repaired ${bobs.repaired} changes by sync, 0 lost`);
});

test('a rolling restart under steady load loses no acknowledged message', async (t) => {
  const { db, nodes, lb } = await cluster(t, 2, { balancer: true });
  const clients = await clientsOn([lb.base], 10, register);
  t.after(() => clients.forEach((c) => c.close()));
  const load = new Load(clients, { intervalMs: 100 });
  load.start();
  await sleep(2000);
  for (const node of nodes) {
    await node.stop('SIGTERM');
    await sleep(1000);
    await node.restart();
    await sleep(3000); // the balancer sees it healthy again, clients settle
  }
  await load.stop();
  const figures = await load.verify(db);
  t.diagnostic(`rolling restart: ${JSON.stringify(figures)}`);
  assert.ok(figures.acked > 100, 'the load ran');
  assert.equal(figures.lost, 0);
  assert.equal(figures.clientsWithGaps, 0);
  assert.equal(figures.storedTwice, 0);
  assert.equal(figures.stored, figures.acked);
});
