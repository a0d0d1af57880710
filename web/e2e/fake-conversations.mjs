// The conversation API (groups) answered by the test, for servers that do not have it yet:
// the browser side is what these tests check. One `FakeConversations` holds the groups; each
// browser context that uses it is bound to the user it is logged in as. It answers:
//   GET/POST /conversations, GET/PATCH /conversations/:id, POST /conversations/:id/members,
//   DELETE /conversations/:id/members/:userId, GET /conversations/:id/messages,
// and adds its groups to the real server's GET /messages/conversations/all (the contract's
// shape: `otherUser` null, plus `conversation`). Every request is recorded.
import { randomUUID } from 'node:crypto';

export class FakeConversations {
  constructor(users) {
    /** userId → user */
    this.users = Object.fromEntries(users.map((u) => [u.id, u]));
    /** id → conversation */
    this.groups = new Map();
    /** id → messages (wire shape, oldest first) */
    this.messages = new Map();
    this.requests = [];
  }

  group(title, adminId, memberIds) {
    const now = new Date().toISOString();
    const c = {
      id: randomUUID(),
      type: 'group',
      title,
      members: [adminId, ...memberIds].map((id, i) => ({ user: this.users[id], role: i === 0 ? 'admin' : 'member', joinedAt: now })),
      createdAt: now,
    };
    this.groups.set(c.id, c);
    this.messages.set(c.id, []);
    return c;
  }

  /** A stored message of a group, with read receipts by `readBy`. */
  message(groupId, senderId, content, readBy = []) {
    const at = new Date().toISOString();
    const m = {
      id: randomUUID(),
      conversationId: groupId,
      content,
      senderId,
      receiverId: null,
      timestamp: at,
      isEdited: false,
      editedAt: null,
      deletedAt: null,
      isEncrypted: false,
      encryptionKeyId: null,
      sender: this.users[senderId],
      receiver: null,
      readReceipts: readBy.map((userId) => ({ userId, readAt: at })),
      deliveryReceipts: readBy.map((userId) => ({ userId, deliveredAt: at })),
      seq: 0,
    };
    this.messages.get(groupId).push(m);
    return m;
  }

  /** Answers the conversation routes in `context` as the user `meId`. */
  async bind(context, meId) {
    const isMember = (c) => c.members.some((m) => m.user.id === meId);
    const isAdmin = (c) => c.members.some((m) => m.user.id === meId && m.role === 'admin');
    const refuse = (route, status, message) =>
      route.fulfill({ status, json: { statusCode: status, message, error: status === 403 ? 'Forbidden' : 'Not Found' } });

    await context.route(/\/messages\/conversations\/all$/, async (route) => {
      const response = await route.fetch();
      const real = await response.json();
      const mine = [...this.groups.values()].filter(isMember).map((c) => ({
        otherUser: null,
        lastMessage: this.messages.get(c.id).at(-1) ?? null,
        unreadCount: 0,
        conversation: c,
      }));
      await route.fulfill({ response, json: [...mine, ...real] });
    });

    await context.route(/^https?:\/\/[^/]+\/conversations(\/|\?|$)/, async (route) => {
      const req = route.request();
      const url = new URL(req.url());
      const method = req.method();
      const body = req.postDataJSON?.() ?? null;
      this.requests.push({ as: meId, method, path: url.pathname, body });
      const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent); // ['conversations', id?, ...]
      if (parts.length === 1) {
        if (method === 'GET') {
          return route.fulfill({ json: { conversations: [...this.groups.values()].filter(isMember), nextCursor: null } });
        }
        if (method === 'POST') {
          const c = this.group(body.title, meId, body.memberIds);
          return route.fulfill({ status: 201, json: c });
        }
      }
      const c = this.groups.get(parts[1]);
      if (!c || !isMember(c)) return refuse(route, 404, 'conversation not found');
      if (parts.length === 2 && method === 'GET') return route.fulfill({ json: c });
      if (parts.length === 2 && method === 'PATCH') {
        if (!isAdmin(c)) return refuse(route, 403, 'only admins can rename the group');
        c.title = body.title;
        return route.fulfill({ json: c });
      }
      if (parts[2] === 'messages' && method === 'GET') {
        return route.fulfill({ json: { messages: this.messages.get(c.id), nextCursor: null } });
      }
      if (parts[2] === 'members' && method === 'POST') {
        if (!isAdmin(c)) return refuse(route, 403, 'only admins can add members');
        const now = new Date().toISOString();
        for (const id of body.userIds) {
          if (!c.members.some((m) => m.user.id === id)) c.members.push({ user: this.users[id], role: 'member', joinedAt: now });
        }
        return route.fulfill({ json: c });
      }
      if (parts[2] === 'members' && parts[3] && method === 'DELETE') {
        if (parts[3] !== meId && !isAdmin(c)) return refuse(route, 403, 'only admins can remove members');
        c.members = c.members.filter((m) => m.user.id !== parts[3]);
        // The contract leaves the answer open: this fake answers 204, so the client has to
        // read the group again.
        return route.fulfill({ status: 204, body: '' });
      }
      return refuse(route, 404, 'no such route');
    });
  }
}
