// Three nodes on one PostgreSQL database and the machine's Redis (own key prefix): users
// spread across nodes get every event of the contract from any other node, presence and
// rate limits are cluster-wide, and a concurrent load ends with every client in the
// database's state.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { all, call, http, online, register, sleep, waitFor } from '../helpers.js';
import { createDatabase, freePort, startNode, uniquePrefix, until } from './harness.js';
import { Client } from './client.js';

const REDIS_URL = process.env.NEXUS_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

let db;
let nodes;
let startedAt;
const sockets = [];
const open = async (node, user) => { const s = await online(node.base, user); sockets.push(s); return s; };

before(async () => {
  db = createDatabase();
  const prefix = uniquePrefix();
  const env = { RATE_LIMIT_MESSAGES_PER_MINUTE: '6' };
  // One node first (migrations), then the others.
  nodes = [await startNode({ databaseUrl: db.url, redisUrl: REDIS_URL, prefix, env })];
  nodes.push(...await Promise.all([1, 2].map(() => startNode({ databaseUrl: db.url, redisUrl: REDIS_URL, prefix, env }))));
  startedAt = Date.now();
});
after(async () => {
  sockets.forEach((s) => s.close());
  await Promise.all(nodes.map((n) => n.stop('SIGTERM')));
  db.drop();
});

describe('across nodes', () => {
  test('a message and everything that happens to it reaches users on other nodes', async () => {
    const [a, b, c] = nodes;
    const [ada, bob] = [await register(a.base, 'Ada'), await register(b.base, 'Bob')];
    const [phone, laptop, bobs] = [await open(a, ada), await open(c, ada), await open(b, bob)];

    const sent = await call(phone, 'NEW_MESSAGE', { receiverId: bob.id, content: 'Hello from A', tempId: 't1' });
    assert.equal(sent.messageId, 't1');
    const got = await waitFor(bobs, 'NEW_MESSAGE', (m) => m.id === sent.dbMessageId);
    assert.equal(got.content, 'Hello from A');
    assert.equal(got.seq, 1);
    const echo = await waitFor(laptop, 'NEW_MESSAGE', (m) => m.id === sent.dbMessageId);
    assert.equal(echo.tempId, 't1', "the sender's other device on another node gets it too");
    assert.equal(all(phone, 'NEW_MESSAGE').length, 0, 'the sending socket gets MESSAGE_SENT only');

    await call(bobs, 'MESSAGE_DELIVERED', { messageId: sent.dbMessageId });
    const delivered = await waitFor(phone, 'MESSAGE_DELIVERED_UPDATE');
    assert.equal(delivered.userId, bob.id);
    await call(bobs, 'MESSAGE_READ', { messageId: sent.dbMessageId });
    const read = await waitFor(laptop, 'MESSAGE_READ_UPDATE');
    assert.equal(read.messageId, sent.dbMessageId);

    await call(phone, 'EDIT_MESSAGE', { messageId: sent.dbMessageId, content: 'Hello (edited)' });
    const edited = await waitFor(bobs, 'MESSAGE_EDITED');
    assert.equal(edited.content, 'Hello (edited)');
    await waitFor(laptop, 'MESSAGE_EDITED');

    await call(phone, 'DELETE_MESSAGE', { messageId: sent.dbMessageId });
    const deleted = await waitFor(bobs, 'MESSAGE_DELETED');
    assert.equal(deleted.content, 'This message has been deleted');

    await call(bobs, 'TYPING_START', { receiverId: ada.id });
    const typing = await waitFor(laptop, 'USER_TYPING', (t) => t.isTyping);
    assert.equal(typing.userId, bob.id);
    await waitFor(phone, 'USER_TYPING', (t) => t.isTyping);
    await call(bobs, 'TYPING_STOP', { receiverId: ada.id });
    await waitFor(phone, 'USER_TYPING', (t) => !t.isTyping);

    // A REST send on node C reaches Bob's socket on node B.
    const rest = await http(c.base, 'POST', '/messages', ada.token, { receiverId: bob.id, content: 'over REST' });
    assert.equal(rest.status, 201);
    await waitFor(bobs, 'NEW_MESSAGE', (m) => m.content === 'over REST');

    // Every event Bob got carries his seq, without a gap.
    const seqs = bobs.received.map(([, p]) => p?.seq).filter((s) => typeof s === 'number' && s > 0);
    assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => i + 1));
  });

  test('presence: online once per real transition, to contacts on any node only', async () => {
    const [a, b, c] = nodes;
    const [ada, bob, eve] = [await register(a.base, 'Ada'), await register(b.base, 'Bob'), await register(c.base, 'Eve')];
    await http(a.base, 'POST', '/messages', ada.token, { receiverId: bob.id, content: 'contacts now' });
    const [bobs, eves] = [await open(b, bob), await open(c, eve)];

    const first = await open(a, ada);
    const online1 = await waitFor(bobs, 'USER_PRESENCE_UPDATE', (p) => p.userId === ada.id && p.status === 'online');
    assert.ok(online1.lastSeen);
    const second = await open(c, ada); // a second device, another node: no transition
    const listed = await call(bobs, 'GET_ONLINE_USERS', {});
    assert.deepEqual(listed.userIds, [ada.id], 'a contact on another node is listed; strangers are not');

    first.close();
    await sleep(3000); // past the offline delay: still online through the second device
    second.close();
    await waitFor(bobs, 'USER_PRESENCE_UPDATE', (p) => p.userId === ada.id && p.status === 'offline', 10000);
    await sleep(500);
    const updates = all(bobs, 'USER_PRESENCE_UPDATE').filter((p) => p.userId === ada.id).map((p) => p.status);
    assert.deepEqual(updates, ['online', 'offline']);
    assert.equal(all(eves, 'USER_PRESENCE_UPDATE').length, 0, 'a stranger hears nothing');
  });

  test('a flapping connection does not flood contacts', async () => {
    const [a, b, c] = nodes;
    const [ada, bob] = [await register(a.base, 'Ada'), await register(b.base, 'Bob')];
    await http(a.base, 'POST', '/messages', ada.token, { receiverId: bob.id, content: 'hi' });
    const bobs = await open(b, bob);
    for (let i = 0; i < 5; i++) {
      const s = await online((i % 2 ? a : c).base, ada);
      await sleep(100);
      s.close();
      await sleep(100);
    }
    const last = await open(a, ada);
    await sleep(3000);
    const updates = all(bobs, 'USER_PRESENCE_UPDATE').filter((p) => p.userId === ada.id).map((p) => p.status);
    assert.deepEqual(updates, ['online'], `five reconnects within the offline delay: ${updates}`);
    last.close();
  });

  test('the send limit holds across nodes', async () => {
    const [a, b] = nodes;
    const [ada, bob] = [await register(a.base, 'Ada'), await register(b.base, 'Bob')];
    const [sa, sb] = [await open(a, ada), await open(b, ada)];
    const answers = [];
    for (let i = 0; i < 10; i++) {
      answers.push(await call(i % 2 ? sb : sa, 'NEW_MESSAGE', { receiverId: bob.id, content: `m${i}`, tempId: `rl${i}` }));
    }
    assert.equal(answers.filter((x) => x.messageId).length, 6, 'RATE_LIMIT_MESSAGES_PER_MINUTE=6 in all');
    assert.ok(answers.slice(6).every((x) => x.code === 'RATE_LIMITED'));
    const limited = await waitFor(sb, 'RATE_LIMIT_EXCEEDED');
    assert.equal(limited.limit, 6);
  });

  test('a group: creation, messages, receipts, typing and removal reach members on every node', async () => {
    const [a, b, c] = nodes;
    const [ada, bob, cara] = [await register(a.base, 'Ada'), await register(b.base, 'Bob'), await register(c.base, 'Cara')];
    const [adas, bobs, caras] = [await open(a, ada), await open(b, bob), await open(c, cara)];

    const created = await http(a.base, 'POST', '/conversations', ada.token, { title: 'Trip', memberIds: [bob.id, cara.id] });
    assert.equal(created.status, 201);
    const id = created.body.id;
    for (const s of [bobs, caras]) {
      const u = await waitFor(s, 'CONVERSATION_UPDATED', (p) => p.conversation.id === id);
      assert.equal(u.conversation.title, 'Trip');
      assert.equal(u.conversation.members.length, 3);
    }

    const sent = await call(adas, 'NEW_MESSAGE', { conversationId: id, content: 'to everyone', tempId: 'g1' });
    assert.ok(sent.dbMessageId, JSON.stringify(sent));
    for (const s of [bobs, caras]) {
      const m = await waitFor(s, 'NEW_MESSAGE', (p) => p.id === sent.dbMessageId);
      assert.equal(m.conversationId, id);
      assert.equal(m.content, 'to everyone');
    }

    await call(bobs, 'MARK_CONVERSATION_READ', { conversationId: id, upToMessageId: sent.dbMessageId });
    const read = await waitFor(adas, 'MESSAGE_READ_UPDATE', (p) => p.messageId === sent.dbMessageId);
    assert.equal(read.userId, bob.id);

    await call(caras, 'TYPING_START', { conversationId: id });
    const typing = await waitFor(bobs, 'USER_TYPING', (t) => t.isTyping && t.userId === cara.id);
    assert.equal(typing.conversationId, id);
    await call(caras, 'TYPING_STOP', { conversationId: id });

    const removed = await http(a.base, 'DELETE', `/conversations/${id}/members/${cara.id}`, ada.token);
    assert.ok(removed.status < 300, `removal answered ${removed.status}`);
    await waitFor(caras, 'CONVERSATION_UPDATED', (p) => p.conversation.id === id && !p.conversation.members.some((m) => m.user.id === cara.id));
    const after = await call(adas, 'NEW_MESSAGE', { conversationId: id, content: 'without Cara', tempId: 'g2' });
    await waitFor(bobs, 'NEW_MESSAGE', (p) => p.id === after.dbMessageId);
    await sleep(500);
    assert.equal(all(caras, 'NEW_MESSAGE').filter((p) => p.id === after.dbMessageId).length, 0, 'a removed member gets nothing more');
  });

  test('HEALTH_CHECK and /ready report Redis up; /metrics shows the link', async () => {
    const s = await open(nodes[1], await register(nodes[1].base, 'Ada'));
    const health = await call(s, 'HEALTH_CHECK', {});
    assert.equal(health.redis, 'up');
    const ready = await (await fetch(`${nodes[2].base}/ready`)).json();
    assert.equal(ready.redis, 'up');
    const metrics = await (await fetch(`${nodes[0].base}/metrics`)).text();
    assert.match(metrics, /nexus_redis_up 1/);
    assert.match(metrics, /nexus_redis_dropped_messages_total 0/);
  });
});

test('a node writes its presence into Redis once at start, not again at the next heartbeats', async () => {
  // Heartbeats are 2 s apart: by 4.5 s after the start each node has had at least two.
  await sleep(Math.max(0, startedAt + 4500 - Date.now()));
  for (const node of nodes) {
    const metrics = await (await fetch(`${node.base}/metrics`)).text();
    assert.match(metrics, /^nexus_presence_restores_total 1$/m, `node on port ${node.port}`);
  }
});

test('a node is started once its own /ready answers; one that never gets ready fails the start', async () => {
  for (const node of nodes) assert.equal((await fetch(`${node.base}/ready`)).status, 200);
  // Redis on a port where nothing listens: /ready stays 503.
  const nowhere = `redis://127.0.0.1:${await freePort()}`;
  await assert.rejects(
    startNode({ databaseUrl: db.url, redisUrl: nowhere, prefix: uniquePrefix(), readyWithinMs: 3000 }),
    /was not ready within 3000 ms/,
  );
});

test('concurrent load across three nodes ends with every client in the database state', async () => {
  const USERS = 24;
  const PER_USER = 5; // under the limit of 6 a minute
  const users = [];
  for (let i = 0; i < USERS; i++) users.push(await register(nodes[i % 3].base, `Load${i}`));
  const clients = users.map((u, i) => new Client(nodes[i % 3].base, u));
  await Promise.all(clients.map((c) => c.connected));
  const acks = await Promise.all(clients.flatMap((c, i) => Array.from({ length: PER_USER }, (_, k) => {
    const to = users[(i + 1 + k * 7) % USERS];
    return c.send(to.id, `load ${i}.${k}`, `load-${i}-${k}`);
  })));
  assert.ok(acks.every((a) => a.dbMessageId), JSON.stringify(acks.find((a) => !a.dbMessageId)));
  // Every client ends with exactly the changes of its feed: live, or repaired by sync.
  await sleep(1000); // live events in flight arrive
  for (const [i, c] of clients.entries()) {
    const expected = Number(db.query(`SELECT COALESCE(MAX(seq), 0) FROM changes WHERE user_id = '${users[i].id}'`));
    if (c.watermark !== expected) await c.sync();
    assert.equal(c.watermark, expected, `client ${i} is missing changes`);
    assert.equal(c.seqs.size, expected);
  }
  const stored = Number(db.query("SELECT COUNT(*) FROM messages WHERE content LIKE 'load %'"));
  assert.equal(stored, USERS * PER_USER, 'every acknowledged message stored once');
  const live = clients.reduce((n, c) => n + c.live, 0);
  const repaired = clients.reduce((n, c) => n + c.repaired, 0);
  console.log(`# load: ${acks.length} sent and acked, ${live} events live, ${repaired} repaired by sync`);
  clients.forEach((c) => c.close());
});
