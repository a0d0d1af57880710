// The change feed (`GET /sync`) and gap detection. Every state-changing socket event
// carries the viewer's `seq`; `lastSeq` is the highest number up to which everything has
// been applied (kept in IndexedDB). An event at `lastSeq + 1` is applied at once; one at or
// below it was already applied (the origin socket gets both an event and an ack); one
// further ahead means something was missed, so the client catches up through the feed,
// which also carries that event. See docs/web.md and docs/protocol.md §5.
import type { SyncEvent, SyncPage } from '../wire/protocol';

export interface SyncDeps {
  fetchPage(since: number): Promise<SyncPage>;
  /** Applies one page of events, in order (idempotent). */
  apply(events: SyncEvent[]): Promise<void>;
  save(seq: number): Promise<void>;
  /** The server's feed is behind ours (e.g. a restored database): start over from `seq`. */
  reset?(): Promise<number>;
}

export type Verdict = 'applied' | 'stale' | 'gap';

/** Rounds of catch-up in one go before giving up until the next trigger. */
const MAX_ROUNDS = 5;

export class SyncEngine {
  private running: Promise<void> | null = null;
  /** The highest `seq` seen on the socket but not yet applied. */
  private seen = 0;

  constructor(
    private deps: SyncDeps,
    public lastSeq: number,
  ) {}

  get syncing(): boolean {
    return this.running !== null;
  }

  /** A socket event (or ack) carrying `seq`. */
  async onEvent(seq: number, apply: () => Promise<void>): Promise<Verdict> {
    if (!(seq > this.lastSeq)) return 'stale';
    if (!this.running && seq === this.lastSeq + 1) {
      await apply();
      this.lastSeq = seq;
      await this.deps.save(seq);
      return 'applied';
    }
    this.seen = Math.max(this.seen, seq);
    void this.catchUp().catch(() => undefined);
    return 'gap';
  }

  /** The server's latest `seq` (from CONNECTION_SUCCESS): catch up if we are behind. */
  async connected(serverSeq: number): Promise<void> {
    this.seen = Math.max(this.seen, serverSeq);
    if (serverSeq > this.lastSeq) await this.catchUp();
  }

  /** Pages through `/sync` from `lastSeq` until nothing is left. Concurrent calls share one run. */
  catchUp(): Promise<void> {
    if (this.running) return this.running;
    this.running = this.loop().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async loop(): Promise<void> {
    let rounds = 0;
    do {
      for (;;) {
        let page: SyncPage;
        try {
          page = await this.deps.fetchPage(this.lastSeq);
        } catch (e) {
          if (this.deps.reset && (e as { status?: number }).status === 400) {
            this.lastSeq = await this.deps.reset();
            this.seen = Math.min(this.seen, this.lastSeq);
            return;
          }
          throw e;
        }
        if (page.events.length > 0) await this.deps.apply(page.events);
        const next = Math.max(this.lastSeq, page.nextCursor, ...page.events.map((e) => e.seq));
        if (next !== this.lastSeq) {
          this.lastSeq = next;
          await this.deps.save(next);
        }
        if (!page.hasMore || page.events.length === 0) break;
      }
      rounds += 1;
      // Events seen on the socket meanwhile that the pages did not reach: another round.
    } while (this.seen > this.lastSeq && rounds < MAX_ROUNDS);
  }
}
