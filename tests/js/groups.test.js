// Group conversations with the official socket.io-client over both transports: creation,
// posts by conversationId, typing, the read mark, renames and removal reach the members'
// sockets (docs/protocol.md, "Conversations and groups").
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { all, call, http, online, register, sleep, startServer, waitFor } from './helpers.js';

let server;
before(async () => { server = await startServer(); });
after(async () => { await server.stop(); });

for (const transport of ['websocket', 'polling']) {
  describe(`groups over ${transport}`, () => {
    const sockets = [];
    const open = async (user) => { const s = await online(server.base, user, transport); sockets.push(s); return s; };
    after(() => sockets.forEach((s) => s.close()));

    test('a group is announced, posted to, typed in and read, member by member', async () => {
      const [ada, bob, cara, eve] = await Promise.all(['Ada', 'Bob', 'Cara', 'Eve'].map((n) => register(server.base, n)));
      const [sa, sb, sc, se] = await Promise.all([ada, bob, cara, eve].map(open));
      const sb2 = await open(bob);

      const created = await http(server.base, 'POST', '/conversations', ada.token, { title: 'Crew', memberIds: [bob.id, cara.id] });
      assert.equal(created.status, 201);
      const gid = created.body.id;
      for (const s of [sa, sb, sc]) {
        const u = await waitFor(s, 'CONVERSATION_UPDATED', (p) => p.conversation.id === gid);
        assert.equal(u.change, 'conversation.created');
        assert.equal(u.conversation.type, 'group');
        assert.equal(u.conversation.title, 'Crew');
        assert.equal(u.conversation.members.length, 3);
        assert.ok(u.seq >= 1);
      }

      const ack = await call(sa, 'NEW_MESSAGE', { conversationId: gid, content: 'hello crew', tempId: 'js-1' });
      assert.equal(ack.messageId, 'js-1');
      for (const s of [sb, sc, sb2]) {
        const m = await waitFor(s, 'NEW_MESSAGE', (p) => p.id === ack.dbMessageId);
        assert.equal(m.conversationId, gid);
        assert.equal(m.receiverId, null);
        assert.equal(m.receiver, null);
        assert.equal(m.sender.id, ada.id);
        assert.equal(m.tempId, 'js-1');
      }

      sb.emit('TYPING_START', { conversationId: gid });
      for (const s of [sa, sc]) {
        const t = await waitFor(s, 'USER_TYPING', (p) => p.userId === bob.id && p.isTyping);
        assert.equal(t.conversationId, gid);
      }
      const refused = await call(se, 'TYPING_START', { conversationId: gid });
      assert.equal(refused.code, 'FORBIDDEN');

      const read = await call(sb, 'MARK_CONVERSATION_READ', { conversationId: gid, upToMessageId: ack.dbMessageId });
      assert.equal(read.conversationId, gid);
      assert.equal(read.upToMessageId, ack.dbMessageId);
      assert.equal(read.marked, 1);
      const update = await waitFor(sa, 'MESSAGE_READ_UPDATE', (p) => p.messageId === ack.dbMessageId);
      assert.equal(update.userId, bob.id);
      const mine = await waitFor(sb2, 'CONVERSATION_READ', (p) => p.conversationId === gid);
      assert.equal(mine.userId, bob.id);
      assert.equal(all(sb, 'CONVERSATION_READ').length, 0, 'the reading socket gets the ack instead');

      const stranger = await call(se, 'NEW_MESSAGE', { conversationId: gid, content: 'let me in', tempId: 'e-1' });
      assert.equal(stranger.code, 'FORBIDDEN');
      await sleep(200);
      assert.equal(all(se, 'NEW_MESSAGE').length + all(se, 'USER_TYPING').length + all(se, 'CONVERSATION_UPDATED').length, 0);
    });

    test('a removed member hears of the removal and of nothing after it', async () => {
      const [ada, bob] = await Promise.all(['Ada', 'Bob'].map((n) => register(server.base, n)));
      const [sa, sb] = await Promise.all([ada, bob].map(open));
      const gid = (await http(server.base, 'POST', '/conversations', ada.token, { title: 'Duo', memberIds: [bob.id] })).body.id;
      await waitFor(sb, 'CONVERSATION_UPDATED', (p) => p.conversation.id === gid);
      const renamed = await http(server.base, 'PATCH', `/conversations/${gid}`, ada.token, { title: 'Solo soon' });
      assert.equal(renamed.status, 200);
      assert.equal((await waitFor(sb, 'CONVERSATION_UPDATED', (p) => p.change === 'conversation.updated')).conversation.title, 'Solo soon');

      const removed = await http(server.base, 'DELETE', `/conversations/${gid}/members/${bob.id}`, ada.token);
      assert.equal(removed.status, 200);
      const gone = await waitFor(sb, 'CONVERSATION_UPDATED', (p) => p.change === 'conversation.member_removed');
      assert.ok(gone.conversation.members.every((m) => m.user.id !== bob.id));
      const before = sb.received.length;
      // Both succeed (otherwise hearing nothing would prove nothing).
      const sent = await call(sa, 'NEW_MESSAGE', { conversationId: gid, content: 'after bob', tempId: 'a-2' });
      assert.ok(sent.dbMessageId, JSON.stringify(sent));
      const solo = await http(server.base, 'PATCH', `/conversations/${gid}`, ada.token, { title: 'Solo' });
      assert.equal(solo.status, 200);
      await waitFor(sa, 'CONVERSATION_UPDATED', (p) => p.conversation.title === 'Solo');
      await sleep(300);
      assert.deepEqual(sb.received.slice(before), [], 'bob heard nothing more');
      const mine = await call(sb, 'NEW_MESSAGE', { conversationId: gid, content: 'still here?', tempId: 'b-1' });
      assert.equal(mine.code, 'FORBIDDEN');
    });
  });
}
