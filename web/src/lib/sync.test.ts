import { describe, expect, it } from 'vitest';
import type { SyncEvent, SyncPage } from '../wire/protocol';
import { SyncEngine } from './sync';

function event(seq: number): SyncEvent {
  return { seq, type: 'message.created', messageId: `m${seq}`, conversationId: 'c', at: 't', userId: 'u', message: {} as SyncEvent['message'] };
}

/** A server feed of `latest` events, served `pageSize` at a time. */
function feed(latest: number, pageSize = 2) {
  const calls: number[] = [];
  const fetchPage = async (since: number): Promise<SyncPage> => {
    calls.push(since);
    if (since > latest) throw Object.assign(new Error('ahead'), { status: 400 });
    const events = [];
    for (let s = since + 1; s <= Math.min(latest, since + pageSize); s++) events.push(event(s));
    const next = events.length ? events[events.length - 1].seq : since;
    return { events, nextCursor: next, hasMore: next < latest };
  };
  return { calls, fetchPage, setLatest: (n: number) => (latest = n) };
}

function engine(lastSeq: number, server: ReturnType<typeof feed>) {
  const applied: number[] = [];
  const saved: number[] = [];
  const e = new SyncEngine(
    {
      fetchPage: server.fetchPage,
      apply: async (events) => {
        applied.push(...events.map((x) => x.seq));
      },
      save: async (s) => {
        saved.push(s);
      },
    },
    lastSeq,
  );
  return { e, applied, saved };
}

describe('gap detection', () => {
  it('applies the next seq at once and ignores what was already applied', async () => {
    const server = feed(10);
    const { e, saved } = engine(5, server);
    const got: string[] = [];
    expect(await e.onEvent(6, async () => void got.push('6'))).toBe('applied');
    expect(await e.onEvent(6, async () => void got.push('6 again'))).toBe('stale');
    expect(await e.onEvent(3, async () => void got.push('3'))).toBe('stale');
    expect(await e.onEvent(0, async () => void got.push('repeat receipt'))).toBe('stale');
    expect(got).toEqual(['6']);
    expect(e.lastSeq).toBe(6);
    expect(saved).toEqual([6]);
    expect(server.calls).toEqual([]);
  });

  it('a jump in seq catches up through the feed, which carries the jumped event too', async () => {
    const server = feed(9, 2);
    const { e, applied } = engine(5, server);
    const got: number[] = [];
    expect(await e.onEvent(9, async () => void got.push(9))).toBe('gap');
    await e.catchUp();
    expect(got).toEqual([]);
    expect(applied).toEqual([6, 7, 8, 9]);
    expect(server.calls).toEqual([5, 7]);
    expect(e.lastSeq).toBe(9);
    // Afterwards the socket's next event applies directly again.
    server.setLatest(10);
    expect(await e.onEvent(10, async () => void got.push(10))).toBe('applied');
  });

  it('events seen while a catch-up runs are covered by it (one run, then another for the rest)', async () => {
    const server = feed(8, 100);
    const { e, applied } = engine(5, server);
    const run = e.catchUp();
    server.setLatest(12);
    expect(await e.onEvent(12, async () => undefined)).toBe('gap');
    await run;
    await e.catchUp();
    expect(applied).toEqual([6, 7, 8, 9, 10, 11, 12]);
    expect(new Set(applied).size).toBe(applied.length);
    expect(e.lastSeq).toBe(12);
  });

  it('on connect: behind the server → sync; level → nothing', async () => {
    const server = feed(7);
    const { e, applied } = engine(7, server);
    await e.connected(7);
    expect(server.calls).toEqual([]);
    server.setLatest(9);
    await e.connected(9);
    expect(applied).toEqual([8, 9]);
  });

  it('a feed behind ours (restored server) starts over from what reset says', async () => {
    const server = feed(3);
    let reset = 0;
    const e = new SyncEngine(
      { fetchPage: server.fetchPage, apply: async () => undefined, save: async () => undefined, reset: async () => (reset++, 3) },
      10,
    );
    await e.connected(3).catch(() => undefined);
    await e.catchUp();
    expect(reset).toBe(1);
    expect(e.lastSeq).toBe(3);
  });
});
