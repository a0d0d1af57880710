// The client's own shapes of messages and conversations, and the pure rules that merge
// what the server says into what the client holds. Every copy of a message (optimistic,
// socket event, history page, sync event, another tab) goes through `merge`, which is
// order-independent: applying the same facts in any order, any number of times, ends in
// the same state. That is what makes retries, replays and two tabs safe (docs/web.md).
import { DELETED_CONTENT, type Message, type User } from '../wire/protocol';

/** Local-only state of an own message that the server has not confirmed. */
export type LocalState = 'sending' | 'failed' | null;

export interface ChatMessage {
  /** Stable identity: `${senderId}|t:${tempId}` when the sender gave a tempId, else `|i:${id}`. */
  key: string;
  /** The server's conversation id, where the server has conversations. */
  serverConversationId?: string | null;
  id: string | null;
  tempId: string | null;
  conversationId: string;
  senderId: string;
  receiverId: string | null;
  content: string;
  /** Server time once stored; the local time of writing while pending. */
  timestamp: string;
  isEdited: boolean;
  editedAt: string | null;
  deletedAt: string | null;
  /** userId → time. */
  delivered: Record<string, string>;
  read: Record<string, string>;
  local: LocalState;
  error: string | null;
  /** Sort key within a conversation: stored messages by time, pending ones after them. */
  order: string;
}

export type ConversationType = 'direct' | 'group';
export type MemberRole = 'admin' | 'member';

export interface ChatConversation {
  id: string;
  type: ConversationType;
  title: string | null;
  /** Every member, the viewer included. */
  memberIds: string[];
  /** A group's roles by member (from the conversation API). */
  roles?: Record<string, MemberRole>;
  /** The other member of a direct conversation. */
  peerId: string | null;
  last: ChatMessage | null;
  /** ISO time of the latest activity, for "most recent first". */
  activity: string;
  unreadCount: number;
  /** `undefined`: history never fetched; `null`: the start of history is loaded. */
  historyCursor?: string | null;
  /** Order key of the oldest message of the gap-free window held locally. */
  windowStart?: string;
  /** The server's id, where the server has conversations (a direct one's differs from `id`). */
  serverId?: string | null;
}

export interface Person extends User {
  lastSeen?: string | null;
}

export type Tick = 'Sending' | 'Sent' | 'Delivered' | 'Read' | 'Failed';

export function keyOf(senderId: string, tempId: string | null | undefined, id: string | null): string {
  return tempId ? `${senderId}|t:${tempId}` : `${senderId}|i:${id}`;
}

export function orderOf(m: Pick<ChatMessage, 'id' | 'timestamp' | 'tempId' | 'key'>): string {
  return m.id ? `${m.timestamp}|${m.id}` : `~${m.timestamp}|${m.tempId ?? m.key}`;
}

/**
 * A message as servers send it: today's 1:1 shape, and the conversation API's, where
 * `conversationId` is on every message and a group message has no receiver.
 */
export type WireMessage = Omit<Message, 'receiverId' | 'receiver' | 'conversationId'> & {
  receiverId: string | null;
  receiver: User | null;
  conversationId?: string | null;
  tempId?: string | null;
};

/**
 * The local conversation a wire message belongs to, as the viewer `me` sees it. A direct
 * conversation is keyed by the other person's id whatever id the server gives it (so the
 * conversation started from people search before its first message is the same one the
 * server creates with that message); a group by its server id.
 */
export function conversationIdOf(m: WireMessage, me: string): string {
  if (m.receiverId) return m.senderId === me ? m.receiverId : m.senderId;
  return m.conversationId ?? m.senderId;
}

export function fromWire(m: WireMessage, me: string): ChatMessage {
  const tempId = m.clientMessageId ?? m.tempId ?? null;
  const base = {
    key: keyOf(m.senderId, tempId, m.id),
    serverConversationId: m.conversationId ?? null,
    id: m.id,
    tempId,
    conversationId: conversationIdOf(m, me),
    senderId: m.senderId,
    receiverId: m.receiverId ?? null,
    content: m.content,
    timestamp: m.timestamp,
    isEdited: m.isEdited,
    editedAt: m.editedAt,
    deletedAt: m.deletedAt,
    delivered: Object.fromEntries((m.deliveryReceipts ?? []).map((r) => [r.userId, r.deliveredAt])),
    read: Object.fromEntries((m.readReceipts ?? []).map((r) => [r.userId, r.readAt])),
    local: null as LocalState,
    error: null,
    order: '',
  };
  base.order = orderOf(base);
  return base;
}

/** An own message written here, before the server has seen it. */
export function optimistic(args: {
  me: string;
  conversationId: string;
  receiverId: string | null;
  content: string;
  tempId: string;
  now: string;
}): ChatMessage {
  const m: ChatMessage = {
    key: keyOf(args.me, args.tempId, null),
    id: null,
    tempId: args.tempId,
    conversationId: args.conversationId,
    senderId: args.me,
    receiverId: args.receiverId,
    content: args.content,
    timestamp: args.now,
    isEdited: false,
    editedAt: null,
    deletedAt: null,
    delivered: {},
    read: {},
    local: 'sending',
    error: null,
    order: '',
  };
  m.order = orderOf(m);
  return m;
}

function earliest(a: string | null, b: string | null): string | null {
  if (!a) return b;
  if (!b) return a;
  return a < b ? a : b;
}

function union(a: Record<string, string>, b: Record<string, string>): Record<string, string> {
  const out = { ...a };
  for (const [user, at] of Object.entries(b)) out[user] = earliest(out[user] ?? null, at) ?? at;
  return out;
}

/**
 * Two copies of one message → the most advanced state both allow: once stored it stays
 * stored, once deleted it stays deleted, the later edit wins, receipts accumulate.
 */
export function merge(a: ChatMessage | undefined, b: ChatMessage): ChatMessage {
  if (!a) return b;
  const stored = a.id ?? b.id;
  const confirmed = !!stored && ((a.id && a.local === null) || (b.id && b.local === null));
  const deletedAt = earliest(a.deletedAt, b.deletedAt);
  const editedAt = a.editedAt && b.editedAt ? (a.editedAt > b.editedAt ? a.editedAt : b.editedAt) : (a.editedAt ?? b.editedAt);
  let content = b.content;
  if (deletedAt) content = DELETED_CONTENT;
  else if (a.editedAt && (!b.editedAt || a.editedAt > b.editedAt)) content = a.content;
  // The server's time replaces the optimistic one.
  const timestamp = b.id && !a.id ? b.timestamp : a.id ? a.timestamp : b.timestamp;
  let local: LocalState = null;
  let error: string | null = null;
  if (!confirmed) {
    local = b.local ?? a.local;
    error = local === 'failed' ? (b.error ?? a.error) : null;
  }
  const m: ChatMessage = {
    key: a.key,
    serverConversationId: a.serverConversationId ?? b.serverConversationId ?? null,
    id: stored,
    tempId: a.tempId ?? b.tempId,
    conversationId: a.conversationId,
    senderId: a.senderId,
    receiverId: a.receiverId ?? b.receiverId,
    content,
    timestamp,
    isEdited: a.isEdited || b.isEdited,
    editedAt,
    deletedAt,
    delivered: union(a.delivered, b.delivered),
    read: union(a.read, b.read),
    local,
    error,
    order: '',
  };
  m.order = orderOf(m);
  return m;
}

export function withEdit(m: ChatMessage, content: string, editedAt: string): ChatMessage {
  return merge(m, { ...m, content, isEdited: true, editedAt, local: m.local });
}

export function withDelete(m: ChatMessage, deletedAt: string): ChatMessage {
  return merge(m, { ...m, deletedAt, content: DELETED_CONTENT });
}

export function withReceipt(m: ChatMessage, kind: 'delivered' | 'read', userId: string, at: string): ChatMessage {
  const patch = kind === 'read' ? { read: { [userId]: at } } : { delivered: { [userId]: at } };
  return merge(m, { ...m, delivered: {}, read: {}, ...patch });
}

/** The tick of an own message; `recipients` are the other members. */
export function tickOf(m: ChatMessage, recipients: string[]): Tick {
  if (m.local === 'failed') return 'Failed';
  if (!m.id || m.local === 'sending') return 'Sending';
  if (recipients.length === 0) return 'Sent';
  if (recipients.every((u) => m.read[u])) return 'Read';
  if (recipients.every((u) => m.read[u] || m.delivered[u])) return 'Delivered';
  return 'Sent';
}

/** Whether `me` still has to read this message. */
export function unreadBy(m: ChatMessage, me: string): boolean {
  return m.senderId !== me && !m.deletedAt && !m.read[me] && !!m.id;
}

/** Index at which `order` belongs in `keys` (sorted by their messages' order). */
export function insertionPoint(keys: string[], byKey: Record<string, ChatMessage>, order: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (byKey[keys[mid]].order < order) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Conversations most recent first. */
export function byActivity(a: ChatConversation, b: ChatConversation): number {
  return a.activity < b.activity ? 1 : a.activity > b.activity ? -1 : a.id.localeCompare(b.id);
}

export function conversationTitle(c: ChatConversation, people: Record<string, Person>, me: string): string {
  if (c.type === 'group') {
    if (c.title) return c.title;
    const names = c.memberIds.filter((id) => id !== me).map((id) => people[id]?.name ?? 'Someone');
    return names.join(', ') || 'Group';
  }
  return (c.peerId && people[c.peerId]?.name) || c.title || 'Unknown';
}

/**
 * A conversation read "up to" a message by `readerId` (MARK_CONVERSATION_READ, from any of
 * the reader's devices): the messages of others at or before it (by order; by time when the
 * message is not held here) that did not have that reader's receipt yet, with it.
 */
export function readUpTo(rows: ChatMessage[], readerId: string, upTo: { order: string } | null, readAt: string): ChatMessage[] {
  return rows
    .filter((m) => m.id && m.senderId !== readerId && !m.read[readerId] && (upTo ? m.order <= upTo.order : m.timestamp <= readAt))
    .map((m) => withReceipt(m, 'read', readerId, readAt));
}

/** How many of `recipients` have read an own message: "read by N of M" in groups. */
export function readCount(m: ChatMessage, recipients: string[]): number {
  return recipients.filter((u) => m.read[u]).length;
}

export function isAdmin(c: ChatConversation | undefined, userId: string): boolean {
  return !!c && c.type === 'group' && c.roles?.[userId] === 'admin';
}

export function recipientsOf(c: ChatConversation | undefined, me: string): string[] {
  if (!c) return [];
  return c.memberIds.filter((id) => id !== me);
}
