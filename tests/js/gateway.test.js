// The brief's event set, checked with the official socket.io-client over both transports.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { all, call, connect, http, online, register, sleep, startServer, waitFor } from './helpers.js';

const SECRET = 'a-test-secret-that-is-at-least-32-bytes-long';

function jwt(claims, secret = SECRET) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`;
}

const isoMs = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

let server;
before(async () => { server = await startServer({ JWT_SECRET: SECRET }); });
after(async () => { await server.stop(); });

for (const transport of ['websocket', 'polling']) {
  describe(`over ${transport}`, () => {
    const sockets = [];
    const open = async (user) => { const s = await online(server.base, user, transport); sockets.push(s); return s; };
    after(() => sockets.forEach((s) => s.close()));

    test('a missing, forged or expired token is refused with connect_error Unauthorized', async () => {
      const user = await register(server.base, 'Ada');
      const now = Math.floor(Date.now() / 1000);
      for (const token of [undefined, 'not-a-token', jwt({ sub: user.id, iat: now, exp: now + 60 }, 'another-secret-another-secret-another'),
        jwt({ sub: user.id, iat: now - 7200, exp: now - 3600 })]) {
        const s = connect(server.base, token, transport);
        const err = await new Promise((resolve) => s.on('connect_error', resolve));
        assert.equal(err.message, 'Unauthorized');
        assert.equal(s.connected, false);
        s.close();
      }
      // the same server-signed token that is not expired works
      const good = connect(server.base, jwt({ sub: user.id, iat: now, exp: now + 60 }), transport);
      await waitFor(good, 'CONNECTION_SUCCESS');
      good.close();
    });

    test('a token in the Authorization header works too', async () => {
      const user = await register(server.base, 'Ada');
      const s = connect(server.base, undefined, transport, { extraHeaders: { authorization: `Bearer ${user.token}` } });
      const ok = await waitFor(s, 'CONNECTION_SUCCESS');
      assert.equal(ok.userId, user.id);
      s.close();
    });

    test('CONNECTION_SUCCESS says who, which socket, and the latest seq', async () => {
      const [ada, bob] = [await register(server.base, 'Ada'), await register(server.base, 'Bob')];
      const s = await open(ada);
      const [ok] = all(s, 'CONNECTION_SUCCESS');
      assert.equal(ok.userId, ada.id);
      assert.ok(ok.socketId.length > 0);
      assert.match(ok.timestamp, isoMs);
      assert.equal(ok.seq, 0);
      await http(server.base, 'POST', '/messages', bob.token, { receiverId: ada.id, content: 'while you were away' });
      const again = await open(ada);
      assert.equal(all(again, 'CONNECTION_SUCCESS')[0].seq, 1, 'a reconnecting client learns it missed one change');
    });

    test('NEW_MESSAGE: MESSAGE_SENT to the sender, NEW_MESSAGE to the receiver and the sender\'s other devices', async () => {
      const [ada, bob] = [await register(server.base, 'Ada'), await register(server.base, 'Bob')];
      const [phone, laptop, bobs] = [await open(ada), await open(ada), await open(bob)];
      const ack = await call(phone, 'NEW_MESSAGE', { receiverId: bob.id, content: 'Hello!', tempId: 'temp-1' });
      const sent = await waitFor(phone, 'MESSAGE_SENT');
      assert.deepEqual(ack, sent, 'the ack carries the same answer');
      assert.equal(sent.messageId, 'temp-1');
      assert.match(sent.dbMessageId, /^[0-9a-f-]{36}$/);
      assert.match(sent.timestamp, isoMs);
      assert.equal(sent.seq, 1);

      const got = await waitFor(bobs, 'NEW_MESSAGE');
      assert.equal(got.id, sent.dbMessageId);
      assert.equal(got.content, 'Hello!');
      assert.equal(got.tempId, 'temp-1');
      assert.deepEqual(got.sender, { id: ada.id, name: 'Ada', email: ada.email });
      assert.deepEqual(got.receiver, { id: bob.id, name: 'Bob', email: bob.email });
      assert.equal(got.seq, 1, 'the receiver\'s own sequence number');
      assert.deepEqual(got.readReceipts, []);

      const echo = await waitFor(laptop, 'NEW_MESSAGE');
      assert.equal(echo.id, sent.dbMessageId);
      await sleep(200);
      assert.equal(all(phone, 'NEW_MESSAGE').length, 0, 'the sending socket gets MESSAGE_SENT, not NEW_MESSAGE');
      assert.equal(all(bobs, 'MESSAGE_SENT').length, 0);
    });

    test('a retried tempId stores and delivers nothing new', async () => {
      const [ada, bob] = [await register(server.base, 'Ada'), await register(server.base, 'Bob')];
      const [a, b] = [await open(ada), await open(bob)];
      const first = await call(a, 'NEW_MESSAGE', { receiverId: bob.id, content: 'once', tempId: 'retry-me' });
      const second = await call(a, 'NEW_MESSAGE', { receiverId: bob.id, content: 'once', tempId: 'retry-me' });
      assert.deepEqual(second, first, 'the original MESSAGE_SENT again');
      await sleep(200);
      assert.equal(all(b, 'NEW_MESSAGE').length, 1);
      const page = await http(server.base, 'GET', `/messages/conversation/${ada.id}`, bob.token);
      assert.equal(page.body.messages.length, 1);
    });

    test('receipts: only the receiver, MESSAGE_DELIVERED_UPDATE and MESSAGE_READ_UPDATE to the sender', async () => {
      const [ada, bob, eve] = [await register(server.base, 'Ada'), await register(server.base, 'Bob'), await register(server.base, 'Eve')];
      const [a, b, e] = [await open(ada), await open(bob), await open(eve)];
      const { dbMessageId: id } = await call(a, 'NEW_MESSAGE', { receiverId: bob.id, content: 'read me' });

      b.emit('MESSAGE_DELIVERED', { messageId: id });
      const delivered = await waitFor(a, 'MESSAGE_DELIVERED_UPDATE');
      assert.equal(delivered.messageId, id);
      assert.equal(delivered.userId, bob.id);
      assert.match(delivered.deliveredAt, isoMs);
      assert.equal(delivered.seq, 2);

      const readAck = await call(b, 'MESSAGE_READ', { messageId: id });
      const read = await waitFor(a, 'MESSAGE_READ_UPDATE');
      assert.equal(read.userId, bob.id);
      assert.match(read.readAt, isoMs);
      assert.equal(read.seq, 3);
      assert.equal(readAck.readAt, read.readAt);

      const refusedSender = await call(a, 'MESSAGE_READ', { messageId: id });
      assert.equal(refusedSender.code, 'FORBIDDEN');
      const refusedStranger = await call(e, 'MESSAGE_DELIVERED', { messageId: id });
      assert.equal(refusedStranger.code, 'NOT_FOUND');
      const [err] = all(e, 'ERROR');
      assert.equal(err.event, 'MESSAGE_DELIVERED');
    });

    test('EDIT_MESSAGE and DELETE_MESSAGE reach both users; the rules hold', async () => {
      const [ada, bob] = [await register(server.base, 'Ada'), await register(server.base, 'Bob')];
      const [a, b] = [await open(ada), await open(bob)];
      const { dbMessageId: id } = await call(a, 'NEW_MESSAGE', { receiverId: bob.id, content: 'v1' });

      const editAck = await call(a, 'EDIT_MESSAGE', { messageId: id, content: 'v2' });
      for (const s of [a, b]) {
        const edited = await waitFor(s, 'MESSAGE_EDITED');
        assert.equal(edited.id, id);
        assert.equal(edited.content, 'v2');
        assert.equal(edited.isEdited, true);
        assert.match(edited.editedAt, isoMs);
        assert.match(edited.timestamp, isoMs);
      }
      assert.equal(editAck.content, 'v2');
      assert.equal((await call(b, 'EDIT_MESSAGE', { messageId: id, content: 'hijack' })).code, 'FORBIDDEN');
      assert.equal((await call(b, 'DELETE_MESSAGE', { messageId: id })).code, 'FORBIDDEN');

      a.emit('DELETE_MESSAGE', { messageId: id });
      for (const s of [a, b]) {
        const deleted = await waitFor(s, 'MESSAGE_DELETED');
        assert.equal(deleted.id, id);
        assert.equal(deleted.content, 'This message has been deleted');
        assert.match(deleted.deletedAt, isoMs);
      }
      assert.equal((await call(a, 'EDIT_MESSAGE', { messageId: id, content: 'revive' })).code, 'ALREADY_DELETED');
      assert.equal((await call(a, 'DELETE_MESSAGE', { messageId: id })).code, 'ALREADY_DELETED');
      const page = await http(server.base, 'GET', `/messages/conversation/${ada.id}`, bob.token);
      assert.equal(page.body.messages[0].content, 'This message has been deleted');
    });

    test('GET_ONLINE_USERS (contacts only) and HEALTH_CHECK answer by event and by ack', async () => {
      const [ada, bob, eve] = [await register(server.base, 'Ada'), await register(server.base, 'Bob'), await register(server.base, 'Eve')];
      await http(server.base, 'POST', '/messages', ada.token, { receiverId: bob.id, content: 'hi' });
      const a = await open(ada);
      await open(bob);
      await open(eve);
      const online_ = await call(a, 'GET_ONLINE_USERS');
      assert.deepEqual(online_.userIds, [bob.id], 'the online contact, not the stranger, not the caller');
      assert.deepEqual(await waitFor(a, 'ONLINE_USERS'), online_);
      const health = await call(a, 'HEALTH_CHECK');
      assert.equal(health.status, 'ok');
      assert.equal(health.database, 'up');
      assert.ok('redis' in health);
      assert.match(health.timestamp, isoMs);
      await waitFor(a, 'HEALTH_RESPONSE');
    });

    test('presence goes to users who share a conversation', async () => {
      const [ada, bob, eve] = [await register(server.base, 'Ada'), await register(server.base, 'Bob'), await register(server.base, 'Eve')];
      const [a, e] = [await open(ada), await open(eve)];
      await call(a, 'NEW_MESSAGE', { receiverId: bob.id, content: 'are you there?' });
      const b = await open(bob);
      const up = await waitFor(a, 'USER_PRESENCE_UPDATE', (p) => p.userId === bob.id && p.status === 'online');
      assert.match(up.lastSeen, isoMs);
      b.close();
      const down = await waitFor(a, 'USER_PRESENCE_UPDATE', (p) => p.userId === bob.id && p.status === 'offline');
      assert.match(down.lastSeen, isoMs);
      assert.equal(all(e, 'USER_PRESENCE_UPDATE').filter((p) => p.userId === bob.id).length, 0, 'strangers are not told');
    });

    test('typing reaches the receiver and expires by itself', async () => {
      const [ada, bob] = [await register(server.base, 'Ada'), await register(server.base, 'Bob')];
      // Typing goes only to someone the typist shares a conversation with.
      await http(server.base, 'POST', '/messages', ada.token, { receiverId: bob.id, content: 'hi' });
      const [a, b] = [await open(ada), await open(bob)];
      a.emit('TYPING_START', { receiverId: bob.id });
      assert.deepEqual(await waitFor(b, 'USER_TYPING'), { userId: ada.id, isTyping: true });
      a.emit('TYPING_STOP', { receiverId: bob.id });
      await waitFor(b, 'USER_TYPING', (p) => p.isTyping === false);
      b.received.length = 0;
      a.emit('TYPING_START', { receiverId: bob.id });
      await waitFor(b, 'USER_TYPING', (p) => p.isTyping === true);
      const stopped = await waitFor(b, 'USER_TYPING', (p) => p.isTyping === false, 8000);
      assert.equal(stopped.userId, ada.id);
      assert.equal((await call(a, 'TYPING_START', { receiverId: ada.id })).code, 'VALIDATION_FAILED');
    });

    test('bad input gets exactly one ERROR with a code; the socket stays up; nothing is stored', async () => {
      const [ada, bob] = [await register(server.base, 'Ada'), await register(server.base, 'Bob')];
      const a = await open(ada);
      const unknown = '00000000-0000-4000-8000-000000000000';
      const cases = [
        ['NEW_MESSAGE', 'just a string', 'VALIDATION_FAILED'],
        ['NEW_MESSAGE', { receiverId: bob.id, content: 42, tempId: 't-types' }, 'VALIDATION_FAILED'],
        ['NEW_MESSAGE', { content: 'no receiver' }, 'VALIDATION_FAILED'],
        ['NEW_MESSAGE', { receiverId: 'not-a-uuid', content: 'x', tempId: 't-uuid' }, 'VALIDATION_FAILED'],
        ['NEW_MESSAGE', { receiverId: unknown, content: 'x', tempId: 't-unknown' }, 'NOT_FOUND'],
        ['NEW_MESSAGE', { receiverId: ada.id, content: 'me' }, 'VALIDATION_FAILED'],
        ['NEW_MESSAGE', { receiverId: bob.id, content: '' }, 'VALIDATION_FAILED'],
        ['NEW_MESSAGE', { receiverId: bob.id, content: 'x'.repeat(10_001) }, 'VALIDATION_FAILED'],
        ['EDIT_MESSAGE', { messageId: unknown, content: 'x' }, 'NOT_FOUND'],
        ['EDIT_MESSAGE', { messageId: 'nope', content: 'x' }, 'VALIDATION_FAILED'],
        ['DELETE_MESSAGE', {}, 'VALIDATION_FAILED'],
        ['MESSAGE_READ', { messageId: unknown }, 'NOT_FOUND'],
        ['MESSAGE_DELIVERED', [1, 2, 3], 'VALIDATION_FAILED'],
        ['TYPING_START', { receiverId: unknown }, 'FORBIDDEN'],
        ['NO_SUCH_EVENT', {}, 'VALIDATION_FAILED'],
      ];
      for (const [event, payload, code] of cases) {
        a.received.length = 0;
        a.emit(event, payload);
        const err = await waitFor(a, 'ERROR');
        assert.equal(err.code, code, `${event} ${JSON.stringify(payload).slice(0, 60)}`);
        assert.equal(err.event, event);
        assert.ok(err.message.length > 0);
        assert.match(err.timestamp, isoMs);
        if (payload && payload.tempId) assert.equal(err.tempId, payload.tempId);
        await call(a, 'HEALTH_CHECK'); // still connected and answering
        assert.equal(all(a, 'ERROR').length, 1, `exactly one ERROR for ${event}`);
      }
      assert.ok(a.connected);
      const page = await http(server.base, 'GET', `/messages/conversation/${bob.id}`, ada.token);
      assert.equal(page.body.messages.length, 0, 'nothing stored');
      const feed = await http(server.base, 'GET', '/sync?since=0', bob.token);
      assert.equal(feed.body.events.length, 0);
    });

    test('a message sent over REST reaches the sockets', async () => {
      const [ada, bob] = [await register(server.base, 'Ada'), await register(server.base, 'Bob')];
      const [a, b] = [await open(ada), await open(bob)];
      const res = await http(server.base, 'POST', '/messages', ada.token, { receiverId: bob.id, content: 'via REST' });
      assert.equal(res.status, 201);
      assert.equal((await waitFor(b, 'NEW_MESSAGE')).id, res.body.id);
      assert.equal((await waitFor(a, 'NEW_MESSAGE')).id, res.body.id, 'the sender\'s devices too');
      const read = await http(server.base, 'POST', `/messages/${res.body.id}/read`, bob.token, {});
      assert.equal(read.status, 200);
      assert.equal((await waitFor(a, 'MESSAGE_READ_UPDATE')).messageId, res.body.id);
    });
  });
}
