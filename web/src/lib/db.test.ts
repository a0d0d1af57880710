import 'fake-indexeddb/auto';
import { describe, expect, it } from 'vitest';
import { NexusDb } from './db';
import { fromWire, optimistic } from './model';

const user = (id: string) => ({ id, name: id, email: `${id}@x.test` });
function msg(id: string, minute: number) {
  return fromWire(
    {
      id,
      content: id,
      senderId: 'bob',
      receiverId: 'me',
      timestamp: `2026-01-01T10:${String(minute).padStart(2, '0')}:00.000Z`,
      isEdited: false,
      editedAt: null,
      deletedAt: null,
      isEncrypted: false,
      encryptionKeyId: null,
      sender: user('bob'),
      receiver: user('me'),
      readReceipts: [],
      deliveryReceipts: [],
      seq: minute,
    },
    'me',
  );
}

describe('IndexedDB', () => {
  it('pages a conversation from the newest back, pending messages last', async () => {
    const db = new NexusDb(`test-${Math.random()}`);
    await db.messages.bulkPut([msg('a', 1), msg('b', 2), msg('c', 3), msg('d', 4)]);
    await db.messages.put(optimistic({ me: 'me', conversationId: 'bob', receiverId: 'bob', content: 'p', tempId: 't', now: '2026-01-01T09:00:00.000Z' }));
    await db.messages.put({ ...msg('x', 5), conversationId: 'carol', key: 'other' });
    const latest = await db.latest('bob', 3);
    expect(latest.map((m) => m.content)).toEqual(['c', 'd', 'p']);
    const older = await db.before('bob', latest[0].order, 10);
    expect(older.map((m) => m.content)).toEqual(['a', 'b']);
    expect((await db.byServerId('b'))?.content).toBe('b');
    await db.setMeta('lastSeq', 42);
    expect(await db.getMeta('lastSeq', 0)).toBe(42);
    db.close();
  });
});
