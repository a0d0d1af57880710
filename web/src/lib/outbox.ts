// Sends what the user wrote, exactly once. Every message is first written to the outbox in
// IndexedDB with its `tempId`; it leaves the outbox only when the server confirms it
// (MESSAGE_SENT, its ack, or any later copy of the message carrying that tempId). A flush
// re-sends what is still there after a reconnect or a reload: the server stores a repeated
// tempId once and answers with the original MESSAGE_SENT, so a retry can never duplicate.
// Tabs of one user share the outbox; a Web Lock lets one tab flush at a time.
import type { ErrorEvent, MessageSent } from '../wire/protocol';
import type { OutboxItem } from './db';

export type SendResult =
  | { ok: MessageSent }
  | { error: ErrorEvent; retryAfterMs?: number }
  | { timeout: true };

export interface OutboxDeps {
  /** Items waiting to be sent, oldest first. */
  queued(): Promise<OutboxItem[]>;
  send(item: OutboxItem): Promise<SendResult>;
  confirmed(item: OutboxItem, ack: MessageSent): Promise<void>;
  failed(item: OutboxItem, reason: string): Promise<void>;
  canSend(): boolean;
  later(ms: number, f: () => void): void;
  /** Runs `f` holding the cross-tab flush lock, or returns false when another tab holds it. */
  exclusive(f: () => Promise<void>): Promise<boolean>;
  notice?(text: string): void;
}

/** Codes after which the same message would be refused again. */
const FINAL = new Set(['VALIDATION_FAILED', 'FORBIDDEN', 'NOT_FOUND', 'ALREADY_DELETED']);
const MAX_TRANSIENT_RETRIES = 5;

export function reasonFor(error: ErrorEvent): string {
  switch (error.code) {
    case 'VALIDATION_FAILED':
      return error.message ? error.message.charAt(0).toUpperCase() + error.message.slice(1) : 'The server refused this message.';
    case 'FORBIDDEN':
      return 'You cannot send messages here.';
    case 'NOT_FOUND':
      return 'This person no longer exists.';
    case 'RATE_LIMITED':
      return 'Too many messages at once.';
    default:
      return 'The server could not store this message.';
  }
}

export class Outbox {
  private inFlight = new Set<string>();
  private transient = new Map<string, number>();
  private waiting = false;

  constructor(private deps: OutboxDeps) {}

  /** The connection went away: whatever was in flight will be sent again. */
  reset(): void {
    this.inFlight.clear();
  }

  /** Sends every queued item not already on its way; returns when their answers are in. */
  async flush(): Promise<void> {
    if (!this.deps.canSend()) return;
    const ran = await this.deps.exclusive(() => this.pass());
    if (!ran) this.retryIn(1000);
  }

  private retryIn(ms: number): void {
    if (this.waiting) return;
    this.waiting = true;
    this.deps.later(ms, () => {
      this.waiting = false;
      void this.flush();
    });
  }

  private async pass(): Promise<void> {
    const items = (await this.deps.queued()).filter((i) => !this.inFlight.has(i.tempId));
    if (items.length === 0) return;
    await Promise.all(items.map((item) => this.sendOne(item)));
  }

  private async sendOne(item: OutboxItem): Promise<void> {
    if (!this.deps.canSend()) return;
    this.inFlight.add(item.tempId);
    let result: SendResult;
    try {
      result = await this.deps.send(item);
    } finally {
      this.inFlight.delete(item.tempId);
    }
    if ('ok' in result) {
      this.transient.delete(item.tempId);
      await this.deps.confirmed(item, result.ok);
      return;
    }
    if ('timeout' in result) {
      // No answer (a dead connection, or frames held by the browser): the next connect, or
      // a late MESSAGE_SENT, settles it.
      this.retryIn(10_000);
      return;
    }
    const { error } = result;
    if (error.code === 'RATE_LIMITED') {
      const wait = result.retryAfterMs ?? 5000;
      this.deps.notice?.(`You are sending too fast. Waiting ${Math.ceil(wait / 1000)} s before sending the rest.`);
      this.retryIn(wait + 100);
      return;
    }
    if (FINAL.has(error.code)) {
      await this.deps.failed(item, reasonFor(error));
      return;
    }
    const tries = (this.transient.get(item.tempId) ?? 0) + 1;
    this.transient.set(item.tempId, tries);
    if (tries >= MAX_TRANSIENT_RETRIES) {
      this.transient.delete(item.tempId);
      await this.deps.failed(item, reasonFor(error));
    } else {
      this.retryIn(2000 * tries);
    }
  }
}
