import { describe, expect, it } from 'vitest';
import { DELETED_CONTENT } from '../wire/protocol';
import { fromWire, merge, optimistic, readCount, readUpTo, tickOf, unreadBy, withDelete, withEdit, withReceipt, type ChatMessage } from './model';
import { emptyThread, initialState, mergeMessages } from './store';

const ME = 'me';
const BOB = 'bob';
const user = (id: string) => ({ id, name: id, email: `${id}@x.test` });

function wire(over: Partial<Parameters<typeof fromWire>[0]> = {}) {
  return {
    id: 'm1',
    content: 'hello',
    senderId: ME,
    receiverId: BOB,
    timestamp: '2026-01-01T10:00:00.000Z',
    isEdited: false,
    editedAt: null,
    deletedAt: null,
    isEncrypted: false,
    encryptionKeyId: null,
    sender: user(ME),
    receiver: user(BOB),
    readReceipts: [],
    deliveryReceipts: [],
    seq: 1,
    clientMessageId: 't1',
    ...over,
  };
}

const pending = () =>
  optimistic({ me: ME, conversationId: BOB, receiverId: BOB, content: 'hello', tempId: 't1', now: '2026-01-01T09:59:59.000Z' });

describe('merge', () => {
  it('matches the optimistic copy with the stored one by tempId and confirms it', () => {
    const stored = fromWire(wire(), ME);
    expect(stored.key).toBe(pending().key);
    const m = merge(pending(), stored);
    expect(m.id).toBe('m1');
    expect(m.local).toBeNull();
    expect(m.timestamp).toBe('2026-01-01T10:00:00.000Z');
    expect(tickOf(m, [BOB])).toBe('Sent');
  });

  it('ends in the same state whatever the order of edits, deletes and receipts', () => {
    const base = fromWire(wire(), ME);
    const edit1 = withEdit(base, 'first edit', '2026-01-01T10:01:00.000Z');
    const edit2 = withEdit(base, 'second edit', '2026-01-01T10:02:00.000Z');
    const read = withReceipt(base, 'read', BOB, '2026-01-01T10:03:00.000Z');
    const delivered = withReceipt(base, 'delivered', BOB, '2026-01-01T10:00:30.000Z');
    const changes = [edit1, edit2, read, delivered];
    const orders = [changes, [...changes].reverse(), [edit2, read, edit1, delivered], [read, edit2, delivered, edit1, edit2]];
    const results = orders.map((o) => o.reduce((acc: ChatMessage, c) => merge(acc, c), base));
    for (const r of results) {
      expect(r.content).toBe('second edit');
      expect(r.isEdited).toBe(true);
      expect(r.read[BOB]).toBe('2026-01-01T10:03:00.000Z');
      expect(tickOf(r, [BOB])).toBe('Read');
    }
    const deleted = merge(withDelete(edit2, '2026-01-01T10:04:00.000Z'), edit1);
    expect(deleted.content).toBe(DELETED_CONTENT);
    expect(merge(edit1, withDelete(base, '2026-01-01T10:04:00.000Z')).deletedAt).not.toBeNull();
  });

  it('never goes back from stored to sending, nor from read to delivered', () => {
    const stored = merge(pending(), fromWire(wire({ readReceipts: [{ userId: BOB, readAt: '2026-01-01T10:05:00.000Z' }] }), ME));
    const late = merge(stored, { ...pending(), local: 'sending' });
    expect(late.local).toBeNull();
    expect(tickOf(late, [BOB])).toBe('Read');
    const failed = merge(pending(), { ...pending(), local: 'failed', error: 'nope' });
    expect(tickOf(failed, [BOB])).toBe('Failed');
    expect(tickOf(merge(failed, fromWire(wire(), ME)), [BOB])).toBe('Sent');
  });

  it('ticks for a group wait for every member', () => {
    const m = fromWire(wire({ deliveryReceipts: [{ userId: BOB, deliveredAt: 'x' }] }), ME);
    expect(tickOf(m, [BOB, 'carol'])).toBe('Sent');
    expect(tickOf(withReceipt(m, 'read', 'carol', 'y'), [BOB, 'carol'])).toBe('Delivered');
    expect(tickOf(withReceipt(withReceipt(m, 'read', 'carol', 'y'), 'read', BOB, 'z'), [BOB, 'carol'])).toBe('Read');
  });

  it('a message from someone else is unread until I read it, and never when deleted', () => {
    const theirs = fromWire(wire({ senderId: BOB, receiverId: ME, sender: user(BOB), receiver: user(ME), clientMessageId: null }), ME);
    expect(theirs.conversationId).toBe(BOB);
    expect(unreadBy(theirs, ME)).toBe(true);
    expect(unreadBy(withReceipt(theirs, 'read', ME, 'x'), ME)).toBe(false);
    expect(unreadBy(withDelete(theirs, 'x'), ME)).toBe(false);
  });

  it('a sender cannot take over another sender\'s message with a chosen tempId', () => {
    const mine = fromWire(wire(), ME);
    const forged = fromWire(wire({ id: 'm2', senderId: BOB, receiverId: ME, clientMessageId: 't1' }), ME);
    expect(forged.key).not.toBe(mine.key);
  });
});

describe('threads in the store', () => {
  it('keeps a thread sorted, each message once, pending ones last', () => {
    const state = { ...initialState(), threads: { [BOB]: emptyThread() } };
    const a = fromWire(wire({ id: 'a', clientMessageId: null, timestamp: '2026-01-01T10:00:00.000Z' }), ME);
    const c = fromWire(wire({ id: 'c', clientMessageId: null, timestamp: '2026-01-01T10:02:00.000Z' }), ME);
    const b = fromWire(wire({ id: 'b', clientMessageId: null, timestamp: '2026-01-01T10:01:00.000Z' }), ME);
    let next = { ...state, ...mergeMessages(state, [c, a, pending()]) };
    next = { ...next, ...mergeMessages(next, [b, a, c]) };
    const t = next.threads[BOB];
    expect(t.keys.map((k) => t.byKey[k].id ?? 'pending')).toEqual(['a', 'b', 'c', 'pending']);
    // The pending one is confirmed with a time before c: it moves into place.
    next = { ...next, ...mergeMessages(next, [fromWire(wire({ timestamp: '2026-01-01T10:01:30.000Z' }), ME)]) };
    const t2 = next.threads[BOB];
    expect(t2.keys.map((k) => t2.byKey[k].id)).toEqual(['a', 'b', 'm1', 'c']);
    expect(next.ids.m1).toEqual([BOB, pending().key]);
  });
});

describe('conversations, before and after the server has them', () => {
  it('a direct message is keyed by the other person, a group message by its conversation', () => {
    const direct = fromWire(wire({ conversationId: 'conv-direct-1' } as never), ME);
    expect(direct.conversationId).toBe(BOB);
    expect(direct.serverConversationId).toBe('conv-direct-1');
    const group = fromWire(
      wire({ senderId: 'carol', receiverId: null, receiver: null, conversationId: 'grp-1', sender: user('carol') } as never),
      ME,
    );
    expect(group.conversationId).toBe('grp-1');
    expect(group.receiverId).toBeNull();
  });
});

describe('reading a whole conversation', () => {
  const theirs = (id: string, minute: number, sender = BOB) =>
    fromWire(
      wire({ id, senderId: sender, receiverId: ME, sender: user(sender), receiver: user(ME), clientMessageId: null, timestamp: `2026-01-01T10:0${minute}:00.000Z` }),
      ME,
    );

  it('read up to a message: the others\' messages at or before it get the receipt, later and own ones do not', () => {
    const a = theirs('a', 1);
    const b = theirs('b', 2);
    const c = theirs('c', 3);
    const own = fromWire(wire({ id: 'o', clientMessageId: null, timestamp: '2026-01-01T10:01:30.000Z' }), ME);
    const already = withReceipt(theirs('z', 0), 'read', ME, 'earlier');
    const changed = readUpTo([a, b, c, own, already], ME, b, 'T');
    expect(changed.map((m) => m.id)).toEqual(['a', 'b']);
    expect(changed.every((m) => m.read[ME] === 'T' && !unreadBy(m, ME))).toBe(true);
    // The message read up to is not held here: by time.
    expect(readUpTo([a, b, c], ME, null, '2026-01-01T10:02:30.000Z').map((m) => m.id)).toEqual(['a', 'b']);
  });

  it('a group message says how many of the others have read it', () => {
    const m = fromWire(wire({ receiverId: null, receiver: null, readReceipts: [{ userId: BOB, readAt: 'x' }] } as never), ME);
    expect(readCount(m, [BOB, 'carol'])).toBe(1);
    expect(readCount(withReceipt(m, 'read', 'carol', 'y'), [BOB, 'carol'])).toBe(2);
    // Someone who left the group is not counted.
    expect(readCount(m, ['carol'])).toBe(0);
  });
});
