import { afterEach, describe, expect, it, vi } from 'vitest';
import * as api from './api';

const user = (id: string) => ({ id, name: id.toUpperCase(), email: `${id}@x.test` });
const msg = (over: Record<string, unknown>) => ({
  id: 'm1',
  content: 'hi',
  senderId: 'bob',
  receiverId: 'me',
  timestamp: '2026-01-01T10:00:00.000Z',
  isEdited: false,
  editedAt: null,
  deletedAt: null,
  isEncrypted: false,
  encryptionKeyId: null,
  sender: user('bob'),
  receiver: user('me'),
  readReceipts: [],
  deliveryReceipts: [],
  seq: 3,
  ...over,
});

function answer(json: unknown) {
  vi.stubGlobal('fetch', vi.fn(async () => new Response(JSON.stringify(json), { status: 200 })));
}

afterEach(() => vi.unstubAllGlobals());

describe('the conversation list', () => {
  it("today's 1:1 list becomes direct conversations keyed by the other person", async () => {
    answer([{ otherUser: user('bob'), lastMessage: msg({}), unreadCount: 2 }]);
    const [row] = await api.conversations('me');
    expect(row.conversation).toMatchObject({ id: 'bob', type: 'direct', peerId: 'bob', unreadCount: 2, memberIds: ['me', 'bob'] });
    expect(row.conversation.last?.content).toBe('hi');
  });

  it('the list with conversations: groups by their id with title and members, direct ones still by person', async () => {
    const members = (ids: string[]) => ids.map((id) => ({ user: user(id), role: 'member', joinedAt: 't' }));
    answer([
      {
        otherUser: null,
        lastMessage: null,
        unreadCount: 0,
        conversation: { id: 'grp-1', type: 'group', title: 'Climbing', members: members(['me', 'bob', 'carol']), createdAt: '2026-01-02T00:00:00.000Z' },
      },
      {
        otherUser: user('bob'),
        lastMessage: msg({ conversationId: 'dir-1' }),
        unreadCount: 1,
        conversation: { id: 'dir-1', type: 'direct', title: null, members: members(['me', 'bob']), createdAt: 't' },
      },
    ]);
    const rows = await api.conversations('me');
    expect(rows[0].conversation).toMatchObject({ id: 'grp-1', type: 'group', title: 'Climbing', peerId: null, serverId: 'grp-1', last: null });
    expect(rows[0].conversation.memberIds).toEqual(['me', 'bob', 'carol']);
    expect(rows[1].conversation).toMatchObject({ id: 'bob', type: 'direct', peerId: 'bob', serverId: 'dir-1', unreadCount: 1 });
    expect(rows[1].conversation.last?.conversationId).toBe('bob');
  });

  it('history: a direct conversation through the 1:1 route, a group through the conversation API', async () => {
    answer({ messages: [], nextCursor: null });
    await api.history({ id: 'bob', type: 'direct', title: null, memberIds: [], peerId: 'bob', last: null, activity: '', unreadCount: 0 }, 'x', 50);
    await api.history({ id: 'g', type: 'group', title: 'G', memberIds: [], peerId: null, last: null, activity: '', unreadCount: 0, serverId: 'g' }, null, 50);
    const calls = (fetch as unknown as { mock: { calls: [string][] } }).mock.calls.map((c) => c[0]);
    expect(calls).toEqual(['/messages/conversation/bob?limit=50&before=x', '/conversations/g/messages?limit=50']);
  });
});

describe('errors in words', () => {
  it('rate limiting and a wrong password are said as such', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => new Response(JSON.stringify({ statusCode: 429, message: 'x', error: 'Too Many Requests' }), { status: 429, headers: { 'Retry-After': '7' } })));
    await expect(api.login('a@b.c', 'pw')).rejects.toThrow('Too many attempts. Try again in 7 s.');
    vi.stubGlobal('fetch', vi.fn(async () => new Response(JSON.stringify({ statusCode: 401, message: 'invalid email or password', error: 'Unauthorized' }), { status: 401 })));
    await expect(api.login('a@b.c', 'pw')).rejects.toThrow('Wrong email or password.');
    vi.stubGlobal('fetch', vi.fn(async () => Promise.reject(new TypeError('Failed to fetch'))));
    await expect(api.me()).rejects.toThrow('Cannot reach the server');
  });
});
