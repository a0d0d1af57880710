// IndexedDB through Dexie: one database per signed-in user, so two accounts on one browser
// never mix. It holds what the app shows before the network answers (conversations,
// messages, people), the change-feed position (`lastSeq`) and the outbox of messages
// written offline. Deleted at log-out.
import Dexie, { type Table } from 'dexie';
import type { ChatConversation, ChatMessage, Person } from './model';

export interface OutboxItem {
  tempId: string;
  conversationId: string;
  /** 1:1 API: the receiver; group conversations: null. */
  receiverId: string | null;
  content: string;
  createdAt: string;
  /** Failed sends are kept until retried or discarded; `queued` ones go on reconnect. */
  state: 'queued' | 'failed';
}

/**
 * An edit or delete of a stored own message made while offline, applied on reconnect. One
 * per message (a later edit replaces an earlier one; a delete replaces an edit), so what the
 * server gets is the user's last word on it.
 */
export interface PendingChange {
  /** The message's key. */
  key: string;
  messageId: string;
  conversationId: string;
  kind: 'edit' | 'delete';
  /** The new content of an edit. */
  content?: string;
  createdAt: string;
}

export interface MetaRow {
  k: string;
  v: unknown;
}

export class NexusDb extends Dexie {
  messages!: Table<ChatMessage, string>;
  conversations!: Table<ChatConversation, string>;
  people!: Table<Person, string>;
  outbox!: Table<OutboxItem, string>;
  changes!: Table<PendingChange, string>;
  meta!: Table<MetaRow, string>;

  constructor(name: string) {
    super(name);
    this.version(1).stores({
      messages: 'key, id, [conversationId+order]',
      conversations: 'id, activity',
      people: 'id',
      outbox: 'tempId, createdAt',
      meta: 'k',
    });
    // Edits and deletes made offline.
    this.version(2).stores({ changes: 'key, createdAt' });
  }

  async getMeta<T>(k: string, fallback: T): Promise<T> {
    const row = await this.meta.get(k);
    return row === undefined ? fallback : (row.v as T);
  }

  setMeta(k: string, v: unknown): Promise<string> {
    return this.meta.put({ k, v });
  }

  /** The newest `limit` messages of a conversation at or after `from`, oldest first. */
  async latest(conversationId: string, limit: number): Promise<ChatMessage[]> {
    const rows = await this.messages
      .where('[conversationId+order]')
      .between([conversationId, Dexie.minKey], [conversationId, Dexie.maxKey])
      .reverse()
      .limit(limit)
      .toArray();
    return rows.reverse();
  }

  /** Up to `limit` messages older than `order`, oldest first. */
  async before(conversationId: string, order: string, limit: number): Promise<ChatMessage[]> {
    const rows = await this.messages
      .where('[conversationId+order]')
      .between([conversationId, Dexie.minKey], [conversationId, order], true, false)
      .reverse()
      .limit(limit)
      .toArray();
    return rows.reverse();
  }

  async byServerId(id: string): Promise<ChatMessage | undefined> {
    return this.messages.where('id').equals(id).first();
  }
}

export function dbName(userId: string): string {
  return `nexus-${userId}`;
}
