import { describe, expect, it } from 'vitest';
import type { OutboxItem } from './db';
import { Outbox, type SendResult } from './outbox';

function item(tempId: string): OutboxItem {
  return { tempId, conversationId: 'c', receiverId: 'bob', content: tempId, createdAt: tempId, state: 'queued' };
}

/** A fake server that stores each tempId once (the dedup the real one does). */
function harness(answers: Array<(i: OutboxItem) => SendResult> = []) {
  const queue = new Map<string, OutboxItem>();
  const stored = new Map<string, number>();
  const sends: string[] = [];
  const timers: Array<{ ms: number; f: () => void }> = [];
  const failed: Record<string, string> = {};
  let online = true;
  let lockHeld = false;
  const outbox = new Outbox({
    queued: async () => [...queue.values()].filter((i) => i.state === 'queued'),
    send: async (i) => {
      sends.push(i.tempId);
      const answer = answers.shift();
      if (answer) return answer(i);
      stored.set(i.tempId, (stored.get(i.tempId) ?? 0) + 1);
      return { ok: { messageId: i.tempId, dbMessageId: `db-${i.tempId}`, timestamp: 't', seq: 1 } };
    },
    confirmed: async (i) => void queue.delete(i.tempId),
    failed: async (i, reason) => {
      failed[i.tempId] = reason;
      queue.set(i.tempId, { ...i, state: 'failed' });
    },
    canSend: () => online,
    later: (ms, f) => void timers.push({ ms, f }),
    exclusive: async (f) => {
      if (lockHeld) return false;
      lockHeld = true;
      try {
        await f();
      } finally {
        lockHeld = false;
      }
      return true;
    },
  });
  return {
    outbox,
    queue,
    sends,
    timers,
    failed,
    add: (...ids: string[]) => ids.forEach((id) => queue.set(id, item(id))),
    setOnline: (v: boolean) => (online = v),
    stored: (id: string) => stored.get(id) ?? 0,
    holdLock: (v: boolean) => (lockHeld = v),
  };
}

describe('outbox replay', () => {
  it('keeps messages while offline and sends each once, in order, when back', async () => {
    const h = harness();
    h.setOnline(false);
    h.add('a', 'b', 'c');
    await h.outbox.flush();
    expect(h.sends).toEqual([]);
    h.setOnline(true);
    await h.outbox.flush();
    await h.outbox.flush();
    expect(h.sends).toEqual(['a', 'b', 'c']);
    expect(h.queue.size).toBe(0);
    expect(['a', 'b', 'c'].map(h.stored)).toEqual([1, 1, 1]);
  });

  it('an unanswered send is retried with the same tempId, never as a new message', async () => {
    const h = harness([() => ({ timeout: true })]);
    h.add('a');
    await h.outbox.flush();
    expect(h.queue.has('a')).toBe(true);
    h.outbox.reset(); // reconnect
    await h.outbox.flush();
    expect(h.sends).toEqual(['a', 'a']);
    expect(h.queue.size).toBe(0);
  });

  it('rate limited: waits what the server says, then sends', async () => {
    const error = { message: 'slow down', code: 'RATE_LIMITED' as const, event: 'NEW_MESSAGE', timestamp: 't', tempId: 'a' };
    const h = harness([() => ({ error, retryAfterMs: 4000 })]);
    h.add('a');
    await h.outbox.flush();
    expect(h.timers.map((t) => t.ms)).toEqual([4100]);
    h.timers[0].f();
    await new Promise((r) => setTimeout(r, 0));
    expect(h.stored('a')).toBe(1);
    expect(h.queue.size).toBe(0);
  });

  it('a refusal that would repeat fails the message, with the reason, without retrying', async () => {
    const error = { message: 'content is too long', code: 'VALIDATION_FAILED' as const, event: 'NEW_MESSAGE', timestamp: 't' };
    const h = harness([() => ({ error })]);
    h.add('a');
    await h.outbox.flush();
    expect(h.failed.a).toBe('Content is too long');
    await h.outbox.flush();
    expect(h.sends).toEqual(['a']);
  });

  it('another tab holding the flush lock: this one tries again later instead of sending too', async () => {
    const h = harness();
    h.add('a');
    h.holdLock(true);
    await h.outbox.flush();
    expect(h.sends).toEqual([]);
    expect(h.timers).toHaveLength(1);
    h.holdLock(false);
    h.timers[0].f();
    await new Promise((r) => setTimeout(r, 0));
    expect(h.sends).toEqual(['a']);
  });

  it('two flushes at once send nothing twice', async () => {
    const h = harness();
    h.add('a', 'b');
    await Promise.all([h.outbox.flush(), h.outbox.flush()]);
    expect(h.sends.sort()).toEqual(['a', 'b']);
  });
});
