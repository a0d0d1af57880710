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

/** Answers each GET by its path (and query), 404 for anything else; records the paths. */
function routes(table: Record<string, unknown>) {
  vi.stubGlobal(
    'fetch',
    vi.fn(async (path: string) =>
      path in table
        ? new Response(JSON.stringify(table[path]), { status: 200 })
        : new Response(JSON.stringify({ statusCode: 404, message: 'not found', error: 'Not Found' }), { status: 404 }),
    ),
  );
}
const calls = () => (fetch as unknown as { mock: { calls: [string][] } }).mock.calls.map((c) => c[0]);
const members = (ids: string[]) => ids.map((id) => ({ user: user(id), role: 'member', joinedAt: 't' }));

describe('the conversation list', () => {
  it('comes from GET /conversations, every page, in order', async () => {
    const group = { id: 'grp-1', type: 'group', title: 'Climbing', members: members(['me', 'bob', 'carol']), createdAt: '2026-01-02T00:00:00.000Z' };
    const direct = { id: 'dir-1', type: 'direct', title: null, members: members(['me', 'bob']), createdAt: 't' };
    routes({
      '/conversations?limit=200': { conversations: [{ ...group, lastMessage: null, unreadCount: 0 }], nextCursor: 'grp-1' },
      '/conversations?limit=200&before=grp-1': {
        conversations: [{ ...direct, lastMessage: msg({ conversationId: 'dir-1' }), unreadCount: 1 }],
        nextCursor: null,
      },
    });
    const rows = await api.conversations('me');
    expect(calls()).toEqual(['/conversations?limit=200', '/conversations?limit=200&before=grp-1']);
    expect(rows.map((r) => r.conversation.id)).toEqual(['grp-1', 'bob']);
    expect(rows[0].conversation).toMatchObject({ id: 'grp-1', type: 'group', title: 'Climbing', peerId: null, serverId: 'grp-1', last: null });
    expect(rows[0].conversation.memberIds).toEqual(['me', 'bob', 'carol']);
    expect(rows[1].conversation).toMatchObject({ id: 'bob', type: 'direct', peerId: 'bob', serverId: 'dir-1', unreadCount: 1 });
    expect(rows[1].conversation.last?.conversationId).toBe('bob');
    expect(rows[1].people.map((p) => p.id)).toContain('bob');
  });

  it('a conversation met twice while paging (it moved up) is listed once', async () => {
    const direct = { id: 'dir-1', type: 'direct', title: null, members: members(['me', 'bob']), createdAt: 't' };
    const entry = { ...direct, lastMessage: msg({ conversationId: 'dir-1' }), unreadCount: 0 };
    routes({
      '/conversations?limit=200': { conversations: [entry], nextCursor: 'dir-1' },
      '/conversations?limit=200&before=dir-1': { conversations: [entry], nextCursor: null },
    });
    expect((await api.conversations('me')).map((r) => r.conversation.id)).toEqual(['bob']);
  });

  it("a server without the conversation API: the brief's 1:1 list, direct conversations keyed by the other person", async () => {
    routes({ '/messages/conversations/all': [{ otherUser: user('bob'), lastMessage: msg({}), unreadCount: 2 }] });
    const [row] = await api.conversations('me');
    expect(row.conversation).toMatchObject({ id: 'bob', type: 'direct', peerId: 'bob', unreadCount: 2, memberIds: ['me', 'bob'] });
    expect(row.conversation.last?.content).toBe('hi');
  });

  it('history: a direct conversation through the 1:1 route, a group through the conversation API', async () => {
    answer({ messages: [], nextCursor: null });
    await api.history({ id: 'bob', type: 'direct', title: null, memberIds: [], peerId: 'bob', last: null, activity: '', unreadCount: 0 }, 'x', 50);
    await api.history({ id: 'g', type: 'group', title: 'G', memberIds: [], peerId: null, last: null, activity: '', unreadCount: 0, serverId: 'g' }, null, 50);
    expect(calls()).toEqual(['/messages/conversation/bob?limit=50&before=x', '/conversations/g/messages?limit=50']);
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
