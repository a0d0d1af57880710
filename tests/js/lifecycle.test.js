// Rate limit, idle timeout, shutdown, ordering and catch-up after a disconnect.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { abandonHandshake, all, call, connect, http, metric, online, register, sleep, startServer, waitFor } from './helpers.js';

test('more sends than RATE_LIMIT_MESSAGES_PER_MINUTE: RATE_LIMIT_EXCEEDED and nothing stored', async () => {
  const server = await startServer({ RATE_LIMIT_MESSAGES_PER_MINUTE: '5' });
  try {
    const [ada, bob] = [await register(server.base, 'Ada'), await register(server.base, 'Bob')];
    const a = await online(server.base, ada);
    const b = await online(server.base, bob, 'polling');
    for (let i = 0; i < 5; i++) await call(a, 'NEW_MESSAGE', { receiverId: bob.id, content: `m${i}` });
    // another socket of the same user shares the limit
    const a2 = await online(server.base, ada, 'polling');
    const refused = await call(a2, 'NEW_MESSAGE', { receiverId: bob.id, content: 'too many', tempId: 't6' });
    assert.equal(refused.code, 'RATE_LIMITED');
    const limited = await waitFor(a2, 'RATE_LIMIT_EXCEEDED');
    assert.equal(limited.limit, 5);
    assert.ok(limited.retryAfterMs > 0);
    assert.equal(limited.tempId, 't6');
    await sleep(200);
    assert.equal(all(b, 'NEW_MESSAGE').length, 5);
    const page = await http(server.base, 'GET', `/messages/conversation/${ada.id}`, bob.token);
    assert.equal(page.body.messages.length, 5);
    [a, a2, b].forEach((s) => s.close());
  } finally {
    await server.stop();
  }
});

test('a silent socket is told FORCE_DISCONNECT idle_timeout and closed; a chatty one stays', async () => {
  const server = await startServer({ IDLE_TIMEOUT_SECONDS: '1' });
  try {
    const ada = await register(server.base, 'Ada');
    const quiet = await online(server.base, ada);
    const chatty = await online(server.base, ada, 'polling');
    const closed = new Promise((resolve) => quiet.on('disconnect', resolve));
    for (let i = 0; i < 6; i++) {
      await call(chatty, 'HEALTH_CHECK');
      await sleep(300);
    }
    assert.deepEqual(await waitFor(quiet, 'FORCE_DISCONNECT'), { reason: 'idle_timeout' });
    await closed;
    assert.equal(quiet.connected, false);
    assert.equal(chatty.connected, true, 'events keep a socket alive');
    chatty.close();
  } finally {
    await server.stop();
  }
});

test('SIGTERM: every socket gets FORCE_DISCONNECT server_shutdown, the server exits cleanly', async () => {
  const server = await startServer();
  const [ada, bob] = [await register(server.base, 'Ada'), await register(server.base, 'Bob')];
  const a = await online(server.base, ada);
  const b = await online(server.base, bob, 'polling');
  const { code } = await server.stop('SIGTERM');
  assert.equal(code, 0, server.stderr());
  for (const s of [a, b]) {
    assert.deepEqual(all(s, 'FORCE_DISCONNECT'), [{ reason: 'server_shutdown' }]);
    s.close();
  }
});

test('many sends in flight from one socket are stored and delivered in order', async () => {
  const server = await startServer();
  try {
    const [ada, bob] = [await register(server.base, 'Ada'), await register(server.base, 'Bob')];
    const a = await online(server.base, ada);
    const b = await online(server.base, bob);
    const N = 200;
    const acks = await Promise.all(Array.from({ length: N }, (_, i) => call(a, 'NEW_MESSAGE', { receiverId: bob.id, content: `${i}`, tempId: `t${i}` })));
    assert.deepEqual(acks.map((x) => x.messageId), Array.from({ length: N }, (_, i) => `t${i}`));
    const seqs = acks.map((x) => x.seq);
    assert.deepEqual(seqs, Array.from({ length: N }, (_, i) => i + 1), 'stored in the order sent');
    while (all(b, 'NEW_MESSAGE').length < N) await sleep(20);
    const got = all(b, 'NEW_MESSAGE');
    assert.deepEqual(got.map((m) => m.content), Array.from({ length: N }, (_, i) => `${i}`));
    assert.deepEqual(got.map((m) => m.seq), Array.from({ length: N }, (_, i) => i + 1));
    a.close(); b.close();
  } finally {
    await server.stop();
  }
});

test('a client that reconnects and syncs from its last seq misses nothing', async () => {
  const server = await startServer();
  try {
    const [ada, bob] = [await register(server.base, 'Ada'), await register(server.base, 'Bob')];
    const a = await online(server.base, ada);
    const before = await online(server.base, bob);
    let lastSeq = 0;
    before.onAny((_, p) => { if (p && Number.isInteger(p.seq)) lastSeq = Math.max(lastSeq, p.seq); });
    const sent = [];
    for (let i = 0; i < 30; i++) {
      if (i === 10) before.close(); // offline mid-stream
      const ack = await call(a, 'NEW_MESSAGE', { receiverId: bob.id, content: `m${i}` });
      sent.push(ack.dbMessageId);
      if (i === 5) await call(a, 'EDIT_MESSAGE', { messageId: sent[0], content: 'm0 edited' });
      if (i === 20) await call(a, 'DELETE_MESSAGE', { messageId: sent[1] });
    }
    await sleep(100);
    const seenLive = lastSeq;
    assert.ok(seenLive > 0 && seenLive < 30, `saw ${seenLive} live`);
    const b = await online(server.base, bob, 'polling');
    // catch up from the last seq seen
    const events = [];
    let cursor = seenLive;
    for (;;) {
      const page = await http(server.base, 'GET', `/sync?since=${cursor}&limit=7`, bob.token);
      events.push(...page.body.events);
      cursor = page.body.nextCursor;
      if (!page.body.hasMore) break;
    }
    const seqs = events.map((e) => e.seq);
    assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => seenLive + i + 1), 'contiguous after the last seen seq');
    const created = events.filter((e) => e.type === 'message.created').map((e) => e.messageId);
    const live = all(before, 'NEW_MESSAGE').map((m) => m.id);
    assert.deepEqual([...live, ...created], sent, 'live plus synced: every message once, in order');
    assert.deepEqual(sent.slice(10), created.slice(-20), 'every message sent while offline, in order');
    assert.ok(events.some((e) => e.type === 'message.deleted' && e.messageId === sent[1]));
    a.close(); b.close();
  } finally {
    await server.stop();
  }
});

test('messages sent just before the sender disconnects are still stored and delivered', async () => {
  const server = await startServer();
  try {
    const [ada, bob] = [await register(server.base, 'Ada'), await register(server.base, 'Bob')];
    const b = await online(server.base, bob);
    const a = await online(server.base, ada);
    const N = 100;
    for (let i = 0; i < N; i++) a.emit('NEW_MESSAGE', { receiverId: bob.id, content: `${i}`, tempId: `t${i}` });
    a.disconnect();
    while (all(b, 'NEW_MESSAGE').length < N) await sleep(20);
    assert.deepEqual(all(b, 'NEW_MESSAGE').map((m) => m.content), Array.from({ length: N }, (_, i) => `${i}`));
    b.close();
  } finally {
    await server.stop();
  }
});

test('a socket lives no longer than its token: FORCE_DISCONNECT token_expired', async () => {
  const server = await startServer({ JWT_EXPIRES_IN_SECONDS: '2' });
  try {
    const ada = await register(server.base, 'Ada');
    const s = await online(server.base, ada);
    const closed = new Promise((resolve) => s.on('disconnect', resolve));
    assert.deepEqual(await waitFor(s, 'FORCE_DISCONNECT', () => true, 6000), { reason: 'token_expired' });
    await closed;
  } finally {
    await server.stop();
  }
});

test('a handshake abandoned in the connect middleware gives back the place it was counted in', async () => {
  // Idle timeout and token far away: nothing else would close what the handshake left.
  const server = await startServer({ MAX_SOCKETS_PER_USER: '2', IDLE_TIMEOUT_SECONDS: '3600' });
  try {
    const ada = await register(server.base, 'Ada');
    for (let i = 0; i < 4; i++) await abandonHandshake(server.base, ada.token);
    for (let i = 0; i < 100 && await metric(server.base, 'nexus_sockets_connected') !== 0; i++) await sleep(50);
    assert.equal(await metric(server.base, 'nexus_sockets_connected'), 0, 'sockets still counted');
    // Both places are free: two sockets get in.
    const sockets = [await online(server.base, ada), await online(server.base, ada)];
    assert.equal(await metric(server.base, 'nexus_sockets_connected'), 2);
    sockets.forEach((s) => s.close());
  } finally {
    await server.stop();
  }
});
