// The engine: the one place that turns what happens (server events, sync pages, history
// pages, the user's actions, other tabs) into stored and shown state. Everything that
// touches messages goes through `ingest`, serialised so that no two updates of the same
// message race. See docs/web.md for the whole picture.
import type { Socket } from 'socket.io-client';
import type {
  ClientToServerEvents,
  ErrorEvent,
  IncomingMessage,
  MessageSent,
  ServerToClientEvents,
  SyncEvent,
  User,
} from '../wire/protocol';
import { NAMESPACE } from '../wire/protocol';
import * as api from './api';
import Dexie from 'dexie';
import { NexusDb, dbName, type OutboxItem, type PendingChange } from './db';
import {
  byActivity,
  fromWire,
  merge,
  optimistic,
  readUpTo,
  unreadBy,
  withDelete,
  withEdit,
  withReceipt,
  type ChatConversation,
  type ChatMessage,
  type Person,
  type WireMessage,
} from './model';
import { Outbox, type SendResult } from './outbox';
import { emptyThread, initialState, mergeMessages, notify, useStore, type State } from './store';
import { SyncEngine } from './sync';

type ChatSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

const PAGE = 50;
const ACK_TIMEOUT_MS = 10_000;
const TYPING_REFRESH_MS = 3000;
const TYPING_SHOWN_MS = 6000;
/** Below the server's default idle timeout (300 s): an open tab is not idle. */
const KEEPALIVE_MS = 240_000;
const SESSION_KEY = 'nexus.session';

export interface Session {
  token: string;
  user: User;
}

let db: NexusDb | null = null;
let socket: ChatSocket | null = null;
let sync: SyncEngine | null = null;
let outbox: Outbox | null = null;
let tabs: BroadcastChannel | null = null;
let chain: Promise<unknown> = Promise.resolve();
let keepalive: ReturnType<typeof setInterval> | null = null;
/** Receipts already asked for, so a re-render does not ask twice. */
const asked = new Set<string>();
/** retryAfterMs of RATE_LIMIT_EXCEEDED, by tempId, for the ack that follows it. */
const rateLimited = new Map<string, number>();
const stopWatchers: Array<() => void> = [];

const get = () => useStore.getState();
const set = useStore.setState;
const me = () => get().me?.id ?? '';

/** Runs `f` after every earlier update has finished. */
function serial<T>(f: () => Promise<T>): Promise<T> {
  const next = chain.then(f, f);
  chain = next.catch((e) => console.error('nexus: update failed', e));
  return next;
}

// ---------------------------------------------------------------------------------------
// Session

export function storedSession(): Session | null {
  try {
    const raw = localStorage.getItem(SESSION_KEY);
    return raw ? (JSON.parse(raw) as Session) : null;
  } catch {
    return null;
  }
}

export async function signIn(session: Session): Promise<void> {
  localStorage.setItem(SESSION_KEY, JSON.stringify(session));
  await start(session);
}

export async function logOut(message?: string): Promise<void> {
  const current = db;
  // While the token still works: the server forgets this browser's push subscription.
  const push = import('./push').then((p) => p.unsubscribePush(true)).catch(() => undefined);
  await Promise.race([push, new Promise((ok) => setTimeout(ok, 1500))]);
  stop();
  await api.logout();
  localStorage.removeItem(SESSION_KEY);
  api.setToken(null);
  if (current) {
    current.close();
    await current.delete().catch(() => undefined);
  }
  set({ ...initialState(), hydrated: true });
  if (message) notify(message, 'info');
}

function stop(): void {
  socket?.removeAllListeners();
  socket?.disconnect();
  socket = null;
  tabs?.close();
  tabs = null;
  if (keepalive) clearInterval(keepalive);
  keepalive = null;
  for (const f of stopWatchers.splice(0)) f();
  sync = null;
  outbox = null;
  db = null;
  asked.clear();
  atLatest.clear();
  conversationRead = null;
}

/** Opens the user's database, shows what it holds, then connects. */
export async function start(session: Session): Promise<void> {
  stop();
  api.setToken(session.token);
  api.onSessionRejected(() => void logOut('Your session has ended. Please log in again.'));
  set({ ...initialState(), me: session.user });
  const database = new NexusDb(dbName(session.user.id));
  db = database;
  await hydrate(database, session.user);
  const lastSeq = await database.getMeta<number | null>('lastSeq', null);
  sync = new SyncEngine(
    {
      fetchPage: (since) => api.sync(since, 500),
      apply: (events) => serial(() => applySyncEvents(events)),
      save: (seq) => saveSeq(seq),
      reset: async () => {
        // The server's feed is behind ours (its database was restored): start over.
        await database.transaction('rw', database.messages, database.conversations, database.outbox, async () => {
          await database.messages.clear();
          await database.conversations.clear();
        });
        set({ threads: {}, ids: {}, conversations: {} });
        const seq = serverSeq;
        await saveSeq(seq, true);
        await refreshConversations();
        return seq;
      },
    },
    lastSeq ?? -1,
  );
  outbox = new Outbox({
    queued: async () => (await database.outbox.orderBy('createdAt').toArray()).filter((i) => i.state === 'queued'),
    send: sendNow,
    confirmed: (item, ack) => onSent(ack, item),
    failed: (item, reason) => markFailed(item.tempId, reason),
    canSend: () => !!socket?.connected && get().network && get().connection === 'online',
    later: (ms, f) => void setTimeout(f, ms),
    exclusive: async (f) => {
      if (!('locks' in navigator)) {
        await f();
        return true;
      }
      let ran = false;
      await navigator.locks.request(`nexus-outbox-${session.user.id}`, { ifAvailable: true }, async (lock) => {
        if (!lock) return;
        ran = true;
        await f();
      });
      return ran;
    },
    notice: (text) => notify(text, 'info'),
  });
  watchTabs(session.user.id);
  watchNetwork();
  void connect(session.token);
}

let serverSeq = 0;

async function saveSeq(seq: number, force = false): Promise<void> {
  const database = db;
  if (!database) return;
  await database.transaction('rw', database.meta, async () => {
    const stored = await database.getMeta<number | null>('lastSeq', null);
    if (force || stored === null || seq > stored) await database.setMeta('lastSeq', seq);
  });
}

async function hydrate(database: NexusDb, user: User): Promise<void> {
  const [conversations, people, changes] = await Promise.all([
    database.conversations.toArray(),
    database.people.toArray(),
    database.changes.toArray(),
  ]);
  set({
    changes: Object.fromEntries(changes.map((c) => [c.key, c])),
    conversations: Object.fromEntries(conversations.map((c) => [c.id, c])),
    people: { ...Object.fromEntries(people.map((p) => [p.id, p])), [user.id]: { ...user } },
    hydrated: true,
  });
}

// ---------------------------------------------------------------------------------------
// Network and socket

function watchNetwork(): void {
  const onOnline = () => {
    set({ network: true });
    // Chromium's offline emulation (and some real networks) keep a socket that looks open
    // but is dead or holds its frames: start a fresh one, which syncs and flushes.
    if (socket) {
      socket.disconnect();
      set({ connection: 'connecting' });
      socket.connect();
    }
  };
  const onOffline = () => {
    set({ network: false, connection: 'offline' });
    outbox?.reset();
  };
  const onVisible = () => {
    if (document.visibilityState === 'visible') markSeen(get().activeId);
  };
  window.addEventListener('online', onOnline);
  window.addEventListener('offline', onOffline);
  document.addEventListener('visibilitychange', onVisible);
  window.addEventListener('focus', onVisible);
  stopWatchers.push(() => {
    window.removeEventListener('online', onOnline);
    window.removeEventListener('offline', onOffline);
    document.removeEventListener('visibilitychange', onVisible);
    window.removeEventListener('focus', onVisible);
  });
  if (!navigator.onLine) set({ network: false, connection: 'offline' });
}

/** socket.io-client is its own chunk: the stored list shows while it loads. */
async function connect(token: string): Promise<void> {
  const { io } = await import('socket.io-client');
  if (!db || api.currentToken() !== token) return; // logged out meanwhile
  const s: ChatSocket = io(NAMESPACE, {
    transports: ['websocket'],
    auth: { token },
    reconnectionDelay: 500,
    reconnectionDelayMax: 5000,
  });
  socket = s;

  s.on('connect', () => set({ connection: get().network ? 'syncing' : 'offline' }));
  s.on('disconnect', (reason) => {
    outbox?.reset();
    set({ connection: get().network ? 'connecting' : 'offline', online: {} });
    // A disconnect by the server (idle timeout, shutdown) is not retried by socket.io.
    if (reason === 'io server disconnect' && socket === s) setTimeout(() => socket === s && s.connect(), 1000);
  });
  s.on('connect_error', (err) => {
    if (err.message === 'Unauthorized') void logOut('Your session has ended. Please log in again.');
    else set({ connection: get().network ? 'connecting' : 'offline' });
  });
  s.on('CONNECTION_SUCCESS', (p) => void onConnected(p.seq));
  s.on('NEW_MESSAGE', (m) => void onSeq(m.seq, () => onIncoming(m)));
  s.on('MESSAGE_SENT', (ack) => void onSeq(ack.seq, () => onSent(ack)));
  s.on('MESSAGE_DELIVERED_UPDATE', (p) =>
    void onSeq(p.seq, () => patchById(p.messageId, (m) => withReceipt(m, 'delivered', p.userId, p.deliveredAt))),
  );
  s.on('MESSAGE_READ_UPDATE', (p) =>
    void onSeq(p.seq, () => patchById(p.messageId, (m) => withReceipt(m, 'read', p.userId, p.readAt))),
  );
  s.on('MESSAGE_EDITED', (p) => void onSeq(p.seq, () => patchById(p.id, (m) => withEdit(m, p.content, p.editedAt))));
  s.on('MESSAGE_DELETED', (p) => void onSeq(p.seq, () => patchById(p.id, (m) => withDelete(m, p.deletedAt))));
  // The conversation API's events (servers without it never send them).
  const extra = s as unknown as { on: (event: string, f: (p: { conversation: api.ServerConversation; seq: number }) => void) => void };
  extra.on('CONVERSATION_UPDATED', (p) => void onSeq(p.seq, () => applyServerConversations([p.conversation])));
  // Another tab or device of this user read a conversation (MARK_CONVERSATION_READ).
  (s as unknown as { on: (event: string, f: (p: ConversationRead) => void) => void }).on('CONVERSATION_READ', (p) => void onConversationRead(p));
  s.on('USER_TYPING', (p) => onTyping(p.userId, p.isTyping, (p as { conversationId?: string }).conversationId));
  s.on('ONLINE_USERS', (p) => set({ online: Object.fromEntries(p.userIds.map((id) => [id, true as const])) }));
  s.on('USER_PRESENCE_UPDATE', (p) => void onPresence(p.userId, p.status === 'online', p.lastSeen));
  // The server missed events for this socket (a cluster link was down): catch up.
  s.on('RESYNC', () => void sync?.catchUp().catch(() => undefined));
  s.on('RATE_LIMIT_EXCEEDED', (p) => {
    if (p.tempId) rateLimited.set(p.tempId, p.retryAfterMs);
  });
  s.on('ERROR', (e) => {
    // Every emit of this client passes an acknowledgement, which gets the same error.
    console.warn('nexus: server refused', e.event, e.code, e.message);
  });
  s.on('FORCE_DISCONNECT', (p) => {
    if (p.reason === 'token_expired' || p.reason === 'token_revoked') {
      void logOut('Your session has ended. Please log in again.');
    }
  });
  if (keepalive) clearInterval(keepalive);
  keepalive = setInterval(() => {
    if (s.connected && get().network) s.emit('HEALTH_CHECK', () => undefined);
  }, KEEPALIVE_MS);
}

async function onConnected(seq: number): Promise<void> {
  const engine = sync;
  if (!engine) return;
  serverSeq = seq;
  set({ connection: get().network ? 'syncing' : 'offline' });
  try {
    if (engine.lastSeq < 0) {
      // First start on this browser: the REST state below is the starting point, and
      // the feed is followed from here.
      engine.lastSeq = seq;
      await saveSeq(seq, true);
    } else {
      await engine.connected(seq);
    }
    await refreshConversations();
    socket?.emit('GET_ONLINE_USERS', () => undefined);
    const active = get().activeId;
    if (active) void ensureHistory(active);
  } catch (e) {
    console.warn('nexus: catch-up failed', e);
  }
  if (socket?.connected) set({ connection: get().network ? 'online' : 'offline' });
  void outbox?.flush();
  void flushChanges();
}

/** Applies a socket event carrying `seq` in feed order (gap → /sync). */
function onSeq(seq: number, apply: () => Promise<void>): Promise<unknown> {
  return serial(async () => {
    const engine = sync;
    if (!engine) return;
    await engine.onEvent(seq, apply);
  });
}

// ---------------------------------------------------------------------------------------
// Ingest: the one path by which messages enter the client's state

type Source = 'event' | 'sync' | 'history' | 'local';

function people(users: Array<User | null | undefined>): void {
  const known = get().people;
  const fresh: Person[] = [];
  for (const u of users) {
    if (!u) continue;
    const k = known[u.id];
    if (!k || k.name !== u.name || k.email !== u.email) fresh.push({ ...k, ...u });
  }
  if (fresh.length === 0) return;
  set((s) => ({ people: { ...s.people, ...Object.fromEntries(fresh.map((p) => [p.id, p])) } }));
  void db?.people.bulkPut(fresh);
}

function viewing(conversationId: string): boolean {
  return get().activeId === conversationId && document.visibilityState === 'visible' && atLatest.get(conversationId) !== false;
}

/** Conversations whose newest messages are scrolled out of view (the reader scrolled up). */
const atLatest = new Map<string, boolean>();

/** The message list says whether its newest messages are in view. */
export function setAtLatest(conversationId: string, shown: boolean): void {
  const was = atLatest.get(conversationId) !== false;
  atLatest.set(conversationId, shown);
  if (shown && !was) markSeen(conversationId);
}

/**
 * Merges messages with what is stored, writes them, updates conversations (last message,
 * activity, unread count), settles the outbox and the store. Must run inside `serial`.
 */
async function ingest(incoming: ChatMessage[], source: Source, extraPeople: Array<User | null | undefined> = []): Promise<ChatMessage[]> {
  const database = db;
  if (!database || incoming.length === 0) return [];
  people(extraPeople);
  const myId = me();
  const state = get();
  const stored = await database.messages.bulkGet(incoming.map((m) => m.key));
  // The best copy held before this update, per key (IndexedDB and memory agree, except
  // while another tab's write is in flight: merging both loses nothing).
  const originals = new Map<string, ChatMessage | undefined>();
  incoming.forEach((m, i) => {
    if (originals.has(m.key)) return;
    const inMemory = state.threads[m.conversationId]?.byKey[m.key];
    const onDisk = stored[i];
    originals.set(m.key, onDisk && inMemory ? merge(onDisk, inMemory) : (onDisk ?? inMemory));
  });
  const finals = new Map<string, ChatMessage>();
  for (const m of incoming) finals.set(m.key, merge(finals.get(m.key) ?? originals.get(m.key), m));

  const conversations = { ...get().conversations };
  const changedConvs = new Set<string>();
  const settled: string[] = [];
  const deliveries: string[] = [];
  for (const m of finals.values()) {
    const before = originals.get(m.key);
    if (m.tempId && m.senderId === myId && m.id && m.local === null && (!before || before.local !== null || !before.id)) {
      settled.push(m.tempId);
    }
    let c = conversations[m.conversationId];
    if (!c) {
      const direct = !!m.receiverId;
      const peer = direct ? (m.senderId === myId ? m.receiverId : m.senderId) : null;
      c = {
        id: m.conversationId,
        type: direct ? 'direct' : 'group',
        title: null,
        memberIds: direct ? [myId, peer ?? ''].filter(Boolean) : [...new Set([myId, m.senderId])],
        peerId: peer,
        last: null,
        activity: m.timestamp,
        unreadCount: 0,
        serverId: m.serverConversationId ?? null,
      };
      if (!direct && m.serverConversationId) unknownGroups.add(m.serverConversationId);
    } else if (!c.serverId && m.serverConversationId) {
      c = { ...c, serverId: m.serverConversationId };
    }
    const next = { ...c };
    if (!next.last || next.last.key === m.key || next.last.order < m.order) next.last = m;
    if (!before && m.timestamp > next.activity) next.activity = m.timestamp;
    if (!before && unreadBy(m, myId) && (source === 'event' || source === 'sync') && !viewing(m.conversationId)) {
      next.unreadCount += 1;
    } else if (before && unreadBy(before, myId) && !unreadBy(m, myId)) {
      next.unreadCount = Math.max(0, next.unreadCount - 1);
    }
    // Read (on any device) up to the newest message: nothing before it is unread either.
    // Not left to the count above: tabs share IndexedDB, so another tab may have stored the
    // receipt first and `before` already has it.
    if (m.senderId !== myId && m.read[myId] && next.last && next.last.order <= m.order) next.unreadCount = 0;
    if ((source === 'event' || source === 'sync') && m.senderId !== myId && m.id && !m.delivered[myId] && !m.read[myId] && !m.deletedAt) {
      deliveries.push(m.id);
    }
    conversations[m.conversationId] = next;
    changedConvs.add(m.conversationId);
  }

  const rows = [...finals.values()];
  const newConversations = rows.some((m) => {
    const before = state.conversations[m.conversationId];
    return m.id && (!before || !before.last?.id);
  });
  await database.transaction('rw', database.messages, database.conversations, database.outbox, async () => {
    await database.messages.bulkPut(rows);
    await database.conversations.bulkPut([...changedConvs].map((id) => conversations[id]));
    if (settled.length) await database.outbox.bulkDelete(settled);
  });
  set((s) => ({
    ...mergeMessages(s, rows),
    conversations: { ...s.conversations, ...Object.fromEntries([...changedConvs].map((id) => [id, conversations[id]])) },
  }));
  if (source === 'local') broadcast({ t: 'messages', keys: rows.map((m) => m.key), conversations: [...changedConvs] });
  for (const id of deliveries) acknowledge(id, 'delivered');
  for (const id of unknownGroups) void loadGroup(id);
  unknownGroups.clear();
  // Presence is shared between people who have a conversation: ask again for a new one.
  if (newConversations && canEmit()) socket?.emit('GET_ONLINE_USERS', () => undefined);
  for (const c of changedConvs) if (viewing(c)) markSeen(c);
  return rows;
}

/** Group conversations seen in a message before their details: fetched once. */
const unknownGroups = new Set<string>();

async function loadGroup(serverId: string): Promise<void> {
  try {
    const c = await api.conversation(serverId);
    await upsertServerConversations([c]);
  } catch {
    /* the next list refresh brings it */
  }
}

/** Conversations as the conversation API describes them (list, events, sync). */
function upsertServerConversations(list: api.ServerConversation[]): Promise<void> {
  return serial(() => applyServerConversations(list));
}

/** The same, from inside `serial` (a socket event, a sync page). */
async function applyServerConversations(list: api.ServerConversation[]): Promise<void> {
  const myId = me();
  people(list.flatMap((c) => c.members.map((m) => m.user)));
  {
    const database = db;
    if (!database) return;
    const current = get().conversations;
    const next: ChatConversation[] = [];
    const gone: string[] = [];
    for (const sc of list) {
      const c = api.fromServerConversation(sc, myId);
      if (!c.memberIds.includes(myId)) {
        gone.push(c.id);
        continue;
      }
      const known = current[c.id];
      next.push({ ...c, ...(known ? { last: known.last, activity: known.activity, unreadCount: known.unreadCount, historyCursor: known.historyCursor } : {}) });
    }
    await database.conversations.bulkPut(next);
    set((s) => ({ conversations: { ...s.conversations, ...Object.fromEntries(next.map((c) => [c.id, c])) } }));
    await forgetConversations(gone.filter((id) => current[id]));
  }
}

async function onIncoming(m: IncomingMessage): Promise<void> {
  const wire = m as unknown as WireMessage;
  await ingest([fromWire(wire, me())], 'event', [wire.sender, wire.receiver]);
}

async function onSent(ack: MessageSent, item?: OutboxItem): Promise<void> {
  const database = db;
  if (!database) return;
  const key = `${me()}|t:${ack.messageId}`;
  const existing = (await database.messages.get(key)) ?? Object.values(get().threads).find((t) => t.byKey[key])?.byKey[key];
  if (!existing) {
    if (item) await database.outbox.delete(item.tempId);
    return;
  }
  await ingest([{ ...existing, id: ack.dbMessageId, timestamp: ack.timestamp, local: null, error: null }], 'event');
}

async function patchById(id: string, patch: (m: ChatMessage) => ChatMessage): Promise<void> {
  const database = db;
  if (!database) return;
  const where = get().ids[id];
  const current = where ? (get().threads[where[0]]?.byKey[where[1]] ?? (await database.messages.get(where[1]))) : await database.byServerId(id);
  if (!current) return; // not held here: its current state comes with its history
  await ingest([patch(current)], 'event');
}

/** A `/sync` event as servers send it (the conversation API adds conversation changes). */
type AnySyncEvent = Omit<SyncEvent, 'message'> & { message?: WireMessage | null; conversation?: api.ServerConversation | null };

async function applySyncEvents(events: SyncEvent[]): Promise<void> {
  const myId = me();
  const all = events as unknown as AnySyncEvent[];
  const withMessage = all.filter((e): e is AnySyncEvent & { message: WireMessage } => !!e.message);
  await ingest(
    withMessage.map((e) => fromWire(e.message, myId)),
    'sync',
    withMessage.flatMap((e) => [e.message.sender, e.message.receiver]),
  );
  const changed = all.filter((e) => e.conversation && e.type.startsWith('conversation.') && e.type !== ('conversation.read' as string));
  if (changed.length) await applyServerConversations(changed.map((e) => e.conversation!));
  for (const e of all) {
    if (e.type !== ('conversation.read' as string)) continue;
    const read = e as unknown as Partial<ConversationRead> & { at?: string; messageId?: string };
    const conversationId = read.conversationId ?? e.conversation?.id ?? e.message?.conversationId;
    const upToMessageId = read.upToMessageId ?? read.messageId ?? e.message?.id;
    if (conversationId && upToMessageId) {
      await applyConversationRead({ conversationId, upToMessageId, userId: read.userId ?? e.userId, readAt: read.readAt ?? read.at ?? e.at });
    }
  }
}

/** `CONVERSATION_READ` and the feed's `conversation.read`: a whole conversation read up to a message. */
interface ConversationRead {
  conversationId: string;
  userId: string;
  upToMessageId: string;
  readAt: string;
  seq?: number;
}

function onConversationRead(p: ConversationRead): Promise<unknown> {
  if (typeof p.seq === 'number') return onSeq(p.seq, () => applyConversationRead(p));
  return serial(() => applyConversationRead(p));
}

/** The local conversation for a server conversation id (a direct one is keyed by the other person). */
function localConversationId(serverId: string): string | null {
  const convs = get().conversations;
  if (convs[serverId]) return serverId;
  return Object.values(convs).find((c) => c.serverId === serverId)?.id ?? null;
}

/** Applies a conversation read up to a message by `userId`. Must run inside `serial`. */
async function applyConversationRead(p: ConversationRead): Promise<void> {
  const database = db;
  const id = localConversationId(p.conversationId);
  if (!database || !id) return;
  const where = get().ids[p.upToMessageId];
  const upTo = (where && get().threads[where[0]]?.byKey[where[1]]) || (await database.byServerId(p.upToMessageId)) || null;
  const rows = await database.messages
    .where('[conversationId+order]')
    .between([id, Dexie.minKey], [id, upTo ? upTo.order : Dexie.maxKey], true, true)
    .toArray();
  const inMemory = Object.values(get().threads[id]?.byKey ?? {});
  const byKey = new Map([...rows, ...inMemory].map((m) => [m.key, m]));
  await ingest(readUpTo([...byKey.values()], p.userId, upTo, p.readAt), 'event');
  // This user read it elsewhere: nothing of it is unread here any more.
  if (p.userId === me() && get().conversations[id]?.unreadCount) await updateConversation(id, { unreadCount: 0 });
}

// ---------------------------------------------------------------------------------------
// Conversations and history

export async function refreshConversations(): Promise<void> {
  const myId = me();
  const before = sync?.lastSeq;
  const listing = await api.conversations(myId);
  if (sync && sync.lastSeq !== before) return; // changed meanwhile; the next refresh settles it
  people(listing.flatMap((l) => l.people));
  await serial(async () => {
    const database = db;
    if (!database) return;
    const current = get().conversations;
    const next: ChatConversation[] = listing.map(({ conversation: c }) => {
      const known = current[c.id];
      const last = known?.last && c.last && known.last.key === c.last.key ? merge(known.last, c.last) : c.last;
      return {
        ...known,
        ...c,
        last: known?.last && last && known.last.order > last.order ? known.last : last,
        activity: known && known.activity > c.activity ? known.activity : c.activity,
        historyCursor: known?.historyCursor,
        windowStart: known?.windowStart,
        unreadCount: viewing(c.id) ? 0 : c.unreadCount,
      };
    });
    await database.conversations.bulkPut(next);
    set((s) => ({ conversations: { ...s.conversations, ...Object.fromEntries(next.map((c) => [c.id, c])) } }));
    const lasts = next.map((c) => c.last).filter((m): m is ChatMessage => !!m);
    const stored = await database.messages.bulkGet(lasts.map((m) => m.key));
    const fresh = lasts.filter((_, i) => !stored[i]);
    if (fresh.length) await database.messages.bulkPut(fresh);
  });
}

/** Opens a conversation: its stored messages at once, then the newest page if never fetched. */
export async function openConversation(id: string | null): Promise<void> {
  set({ activeId: id });
  if (!id) return;
  const database = db;
  if (!database) return;
  if (!get().threads[id]?.ready) {
    const rows = await database.latest(id, PAGE * 2);
    set((s) => {
      const base = s.threads[id] ?? emptyThread();
      const withRows = mergeMessages({ ...s, threads: { ...s.threads, [id]: base } }, rows, { createThreads: true });
      const thread = withRows.threads![id];
      const c = s.conversations[id];
      return { ...withRows, threads: { ...withRows.threads, [id]: { ...thread, ready: true, hasOlder: rows.length >= PAGE * 2 || c?.historyCursor !== null } } };
    });
  }
  await ensureHistory(id);
  markSeen(id);
}

async function ensureHistory(id: string): Promise<void> {
  const c = get().conversations[id];
  if (!c || c.historyCursor !== undefined || !get().network) return;
  try {
    const page = await api.history(c, null, PAGE);
    await serial(async () => {
      await ingest(page.messages.map((m) => fromWire(m, me())), 'history', page.messages.flatMap((m) => [m.sender, m.receiver]));
      await updateConversation(id, { historyCursor: page.nextCursor });
    });
    set((s) => {
      const t = s.threads[id];
      return t ? { threads: { ...s.threads, [id]: { ...t, ready: true, hasOlder: page.nextCursor !== null || t.keys.length > page.messages.length } } } : {};
    });
  } catch (e) {
    if (e instanceof api.ApiError && e.status !== 0) notify(e.message);
  }
}

async function updateConversation(id: string, patch: Partial<ChatConversation>): Promise<void> {
  const c = get().conversations[id];
  if (!c) return;
  const next = { ...c, ...patch };
  await db?.conversations.put(next);
  set((s) => ({ conversations: { ...s.conversations, [id]: next } }));
}

/** Loads the page before the oldest message shown: from IndexedDB first, then the server. */
export async function loadOlder(id: string): Promise<void> {
  const database = db;
  const thread = get().threads[id];
  if (!database || !thread || thread.loadingOlder || !thread.hasOlder) return;
  const setThread = (patch: Partial<typeof thread>) =>
    set((s) => (s.threads[id] ? { threads: { ...s.threads, [id]: { ...s.threads[id], ...patch } } } : {}));
  setThread({ loadingOlder: true });
  try {
    const oldest = thread.keys.map((k) => thread.byKey[k]).find((m) => m.id);
    const local = oldest ? await database.before(id, oldest.order, PAGE) : [];
    if (local.length > 0) {
      set((s) => mergeMessages(s, local));
      setThread({ loadingOlder: false, hasOlder: true });
      return;
    }
    const c = get().conversations[id];
    if (!c || c.historyCursor === null) {
      setThread({ loadingOlder: false, hasOlder: false });
      return;
    }
    if (!get().network) {
      setThread({ loadingOlder: false });
      return;
    }
    const page = await api.history(c, oldest?.id ?? null, PAGE);
    await serial(async () => {
      await ingest(page.messages.map((m) => fromWire(m, me())), 'history');
      await updateConversation(id, { historyCursor: page.nextCursor });
    });
    setThread({ loadingOlder: false, hasOlder: page.nextCursor !== null });
  } catch (e) {
    setThread({ loadingOlder: false });
    if (e instanceof api.ApiError && e.status !== 0) notify(e.message);
  }
}

/** Creates a group (the conversation API) and returns its local id. */
export async function createGroup(title: string, members: User[]): Promise<string> {
  people(members);
  const c = await api.createGroup(title, members.map((m) => m.id));
  await upsertServerConversations([c]);
  return api.fromServerConversation(c, me()).id;
}

// Group management (the conversation API). Each call applies the server's answer at once;
// the CONVERSATION_UPDATED that every member gets (this user's other tabs too) says the same.

function serverIdOf(id: string): string {
  const c = get().conversations[id];
  if (!c || c.type !== 'group') throw new Error('Not a group.');
  return c.serverId ?? c.id;
}

async function settleGroup(serverId: string, answer: api.ServerConversation | null): Promise<void> {
  await upsertServerConversations([answer ?? (await api.conversation(serverId))]);
}

/** Renames a group (admins). */
export async function renameGroup(id: string, title: string): Promise<void> {
  const serverId = serverIdOf(id);
  await settleGroup(serverId, await api.renameGroup(serverId, title));
}

/** Adds people found in search to a group (admins). */
export async function addMembers(id: string, users: User[]): Promise<void> {
  people(users);
  const serverId = serverIdOf(id);
  await settleGroup(serverId, await api.addMembers(serverId, users.map((u) => u.id)));
}

/** Removes a member from a group (admins). */
export async function removeMember(id: string, userId: string): Promise<void> {
  const serverId = serverIdOf(id);
  await settleGroup(serverId, await api.removeMember(serverId, userId));
}

/** Leaves a group: it goes from the list and from this browser. */
export async function leaveGroup(id: string): Promise<void> {
  const serverId = serverIdOf(id);
  await api.removeMember(serverId, me());
  await serial(() => forgetConversations([id]));
}

/** Drops conversations this user no longer belongs to (left, or removed), with their messages. */
async function forgetConversations(ids: string[]): Promise<void> {
  const database = db;
  if (!database || ids.length === 0) return;
  await database.transaction('rw', database.conversations, database.messages, async () => {
    await database.conversations.bulkDelete(ids);
    for (const id of ids) {
      await database.messages.where('[conversationId+order]').between([id, Dexie.minKey], [id, Dexie.maxKey]).delete();
    }
  });
  set((s) => {
    const conversations = { ...s.conversations };
    const threads = { ...s.threads };
    for (const id of ids) {
      delete conversations[id];
      delete threads[id];
    }
    return { conversations, threads, activeId: s.activeId && ids.includes(s.activeId) ? null : s.activeId };
  });
  broadcast({ t: 'forgotten', keys: [], conversations: ids });
}

/** Starts (or opens) the direct conversation with someone found in people search. */
export async function startDirect(other: User): Promise<string> {
  people([other]);
  const existing = get().conversations[other.id];
  if (!existing) {
    const c = api.directWith(me(), other);
    await db?.conversations.put(c);
    set((s) => ({ conversations: { ...s.conversations, [c.id]: c } }));
  }
  return other.id;
}

// ---------------------------------------------------------------------------------------
// Sending

function newTempId(): string {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/** Shows the message at once, keeps it in the outbox, sends it when connected. */
export async function send(conversationId: string, content: string): Promise<void> {
  const database = db;
  const c = get().conversations[conversationId];
  if (!database || !c || !content.trim()) return;
  const tempId = newTempId();
  const now = new Date().toISOString();
  const m = optimistic({ me: me(), conversationId, receiverId: c.peerId, content, tempId, now });
  const item: OutboxItem = { tempId, conversationId, receiverId: c.peerId, content, createdAt: now, state: 'queued' };
  await serial(async () => {
    await database.outbox.put(item);
    await ingest([m], 'local');
    await updateConversation(conversationId, { activity: now });
  });
  stopTyping(conversationId);
  void outbox?.flush();
}

function sendNow(item: OutboxItem): Promise<SendResult> {
  return new Promise((resolve) => {
    const s = socket;
    if (!s) return resolve({ timeout: true });
    const payload = item.receiverId
      ? { receiverId: item.receiverId, content: item.content, tempId: item.tempId }
      : ({ conversationId: get().conversations[item.conversationId]?.serverId ?? item.conversationId, content: item.content, tempId: item.tempId } as unknown as {
          receiverId: string;
          content: string;
          tempId: string;
        });
    s.timeout(ACK_TIMEOUT_MS).emit('NEW_MESSAGE', payload, (err: Error | null, answer?: MessageSent | ErrorEvent) => {
      if (err || !answer) return resolve({ timeout: true });
      if ('code' in answer) {
        const retryAfterMs = rateLimited.get(item.tempId);
        rateLimited.delete(item.tempId);
        return resolve({ error: answer, retryAfterMs });
      }
      // The ack is the MESSAGE_SENT of this socket: same seq, same rules.
      void onSeq(answer.seq, () => onSent(answer, item)).then(() => resolve({ ok: answer }));
    });
  });
}

async function markFailed(tempId: string, reason: string): Promise<void> {
  await serial(async () => {
    const database = db;
    if (!database) return;
    await database.outbox.update(tempId, { state: 'failed' });
    const existing = await database.messages.get(`${me()}|t:${tempId}`);
    if (existing && !existing.id) await ingest([{ ...existing, local: 'failed', error: reason }], 'local');
  });
  notify(`Message not sent: ${reason}`);
}

/** Sends a failed message again (same tempId: the server stores it at most once). */
export async function retry(key: string): Promise<void> {
  const database = db;
  if (!database) return;
  await serial(async () => {
    const m = await database.messages.get(key);
    if (!m || !m.tempId || m.id) return;
    await database.outbox.update(m.tempId, { state: 'queued' });
    await ingest([{ ...m, local: 'sending', error: null }], 'local');
  });
  void outbox?.flush();
}

/** Gives up on a message that was never sent. */
export async function discard(key: string): Promise<void> {
  const database = db;
  if (!database) return;
  await serial(async () => {
    const m = await database.messages.get(key);
    if (!m || m.id) return;
    await database.transaction('rw', database.messages, database.outbox, async () => {
      await database.messages.delete(key);
      if (m.tempId) await database.outbox.delete(m.tempId);
    });
    set((s) => {
      const t = s.threads[m.conversationId];
      if (!t) return {};
      const byKey = { ...t.byKey };
      delete byKey[key];
      return { threads: { ...s.threads, [m.conversationId]: { ...t, byKey, keys: t.keys.filter((k) => k !== key) } } };
    });
    broadcast({ t: 'removed', keys: [key], conversations: [m.conversationId] });
  });
}

function canEmit(): boolean {
  return !!socket?.connected && get().network;
}

function ackOrError<T>(event: 'EDIT_MESSAGE' | 'DELETE_MESSAGE', payload: object): Promise<T> {
  return new Promise((resolve, reject) => {
    if (!socket || !canEmit()) return reject(new Error('You are offline. Try again when the connection is back.'));
    (socket.timeout(ACK_TIMEOUT_MS) as unknown as { emit: (...a: unknown[]) => void }).emit(
      event,
      payload,
      (err: Error | null, answer?: T | ErrorEvent) => {
        if (err || !answer) return reject(new Error('The server did not answer. Try again.'));
        if (typeof answer === 'object' && answer && 'code' in (answer as object)) {
          const e = answer as ErrorEvent;
          const text =
            e.code === 'ALREADY_DELETED'
              ? 'This message was deleted.'
              : e.code === 'FORBIDDEN'
                ? 'You can only change your own messages.'
                : e.code === 'NOT_FOUND'
                  ? 'This message no longer exists.'
                  : e.message;
          return reject(Object.assign(new Error(text), { refused: e.code }));
        }
        resolve(answer as T);
      },
    );
  });
}

export async function edit(key: string, content: string): Promise<boolean> {
  const where = findByKey(key);
  if (!where?.id || !content.trim()) return false;
  const pending = get().changes[key];
  if (content === (pending?.kind === 'edit' ? pending.content : where.content)) return true;
  if (!canEmit() || pending) {
    await queueChange({ key, messageId: where.id, conversationId: where.conversationId, kind: 'edit', content, createdAt: new Date().toISOString() });
    return true;
  }
  try {
    const answer = await ackOrError<{ id: string; content: string; editedAt: string; seq: number }>('EDIT_MESSAGE', {
      messageId: where.id,
      content,
    });
    await onSeq(answer.seq, () => patchById(answer.id, (m) => withEdit(m, answer.content, answer.editedAt)));
    return true;
  } catch (e) {
    notify((e as Error).message);
    return false;
  }
}

export async function remove(key: string): Promise<void> {
  const where = findByKey(key);
  if (!where) return;
  if (!where.id) return discard(key);
  if (!canEmit() || get().changes[key]) {
    await queueChange({ key, messageId: where.id, conversationId: where.conversationId, kind: 'delete', createdAt: new Date().toISOString() });
    return;
  }
  try {
    const answer = await ackOrError<{ id: string; deletedAt: string; seq: number }>('DELETE_MESSAGE', { messageId: where.id });
    await onSeq(answer.seq, () => patchById(answer.id, (m) => withDelete(m, answer.deletedAt)));
  } catch (e) {
    notify((e as Error).message);
  }
}

// ---------------------------------------------------------------------------------------
// Edits and deletes made offline: kept in IndexedDB (`changes`), shown over the message
// until the server has them, sent once the connection is back (after the catch-up).

async function queueChange(change: PendingChange): Promise<void> {
  const database = db;
  if (!database) return;
  await database.changes.put(change);
  set((s) => ({ changes: { ...s.changes, [change.key]: change } }));
  broadcast({ t: 'changes', keys: [change.key], conversations: [change.conversationId] });
  void flushChanges();
}

async function settleChange(key: string): Promise<void> {
  await db?.changes.delete(key);
  set((s) => {
    const changes = { ...s.changes };
    delete changes[key];
    return { changes };
  });
  broadcast({ t: 'changes', keys: [key], conversations: [] });
}

let flushingChanges = false;

/** Sends the queued edits and deletes, oldest first, one tab at a time. */
async function flushChanges(): Promise<void> {
  const database = db;
  const userId = me();
  if (!database || flushingChanges || !canEmit() || get().connection !== 'online') return;
  flushingChanges = true;
  try {
    const pass = async () => {
      for (const change of await database.changes.orderBy('createdAt').toArray()) {
        if (!canEmit()) return;
        if (!(await sendChange(change))) return;
      }
    };
    if ('locks' in navigator) await navigator.locks.request(`nexus-changes-${userId}`, { ifAvailable: true }, (lock) => (lock ? pass() : undefined));
    else await pass();
  } finally {
    flushingChanges = false;
  }
}

/** One queued change; false when it could not be sent (it stays for the next connect). */
async function sendChange(change: PendingChange): Promise<boolean> {
  const current = (await db?.messages.get(change.key)) ?? findByKey(change.key);
  // Already so on the server (a resend after an answer that came too late to be recorded).
  const done = change.kind === 'delete' ? !!current?.deletedAt : !!current && current.content === change.content && current.isEdited;
  if (done) {
    await settleChange(change.key);
    return true;
  }
  try {
    if (change.kind === 'edit') {
      const answer = await ackOrError<{ id: string; content: string; editedAt: string; seq: number }>('EDIT_MESSAGE', {
        messageId: change.messageId,
        content: change.content,
      });
      await onSeq(answer.seq, () => patchById(answer.id, (m) => withEdit(m, answer.content, answer.editedAt)));
    } else {
      const answer = await ackOrError<{ id: string; deletedAt: string; seq: number }>('DELETE_MESSAGE', { messageId: change.messageId });
      await onSeq(answer.seq, () => patchById(answer.id, (m) => withDelete(m, answer.deletedAt)));
    }
    await settleChange(change.key);
    return true;
  } catch (e) {
    const refused = (e as { refused?: string }).refused;
    if (!refused) return false; // no answer or offline: next time
    await settleChange(change.key);
    if (!(change.kind === 'delete' && refused === 'ALREADY_DELETED')) {
      notify(`Your ${change.kind === 'edit' ? 'edit' : 'delete'} made offline was not applied: ${(e as Error).message}`);
    }
    return true;
  }
}

function findByKey(key: string): ChatMessage | undefined {
  for (const t of Object.values(get().threads)) if (t.byKey[key]) return t.byKey[key];
  return undefined;
}

// ---------------------------------------------------------------------------------------
// Receipts, typing, presence

function acknowledge(id: string, kind: 'delivered' | 'read'): void {
  const tag = `${kind}:${id}`;
  if (asked.has(tag) || !canEmit()) return;
  asked.add(tag);
  socket?.emit(kind === 'read' ? 'MESSAGE_READ' : 'MESSAGE_DELIVERED', { messageId: id }, () => undefined);
}

/**
 * Whether the server takes MARK_CONVERSATION_READ: not known until tried (a server without
 * it answers "unknown event"); conversations without a server id always go per message.
 */
let conversationRead: boolean | null = null;

/**
 * Marks as read what the user is looking at (the conversation open, its newest messages in
 * view, the tab visible): with one MARK_CONVERSATION_READ up to the newest incoming message
 * where the server has it, else one MESSAGE_READ per unread message.
 */
export function markSeen(id: string | null): void {
  if (!id || !viewing(id) || !canEmit()) return;
  const thread = get().threads[id];
  if (!thread) return;
  const myId = me();
  const unread: ChatMessage[] = [];
  for (const key of thread.keys) {
    const m = thread.byKey[key];
    if (m.id && unreadBy(m, myId)) unread.push(m);
  }
  const c = get().conversations[id];
  if (unread.length === 0) {
    if (c && c.unreadCount > 0 && thread.keys.length > 0) void updateConversation(id, { unreadCount: 0 });
    return;
  }
  if (c?.serverId && conversationRead !== false) {
    markConversationRead(id, c.serverId, unread[unread.length - 1].id!);
    return;
  }
  for (const m of unread) acknowledge(m.id!, 'read');
}

function markConversationRead(id: string, serverId: string, upToMessageId: string): void {
  const tag = `conversation:${serverId}:${upToMessageId}`;
  if (asked.has(tag)) return;
  asked.add(tag);
  const s = socket as unknown as { timeout: (ms: number) => { emit: (...a: unknown[]) => void } } | null;
  s?.timeout(ACK_TIMEOUT_MS).emit(
    'MARK_CONVERSATION_READ',
    { conversationId: serverId, upToMessageId },
    (err: Error | null, answer?: Partial<ConversationRead> | ErrorEvent) => {
      if (err || !answer) {
        asked.delete(tag); // asked again on the next look
        return;
      }
      if ('code' in answer) {
        if (answer.code === 'VALIDATION_FAILED' && /unknown event/i.test(answer.message)) {
          // An older server: per message from now on.
          conversationRead = false;
          markSeen(id);
        } else {
          console.warn('nexus: MARK_CONVERSATION_READ refused', answer.code, answer.message);
        }
        return;
      }
      conversationRead = true;
      void onConversationRead({
        conversationId: serverId,
        upToMessageId,
        userId: me(),
        readAt: answer.readAt ?? new Date().toISOString(),
        seq: answer.seq,
      });
    },
  );
}

const typingSent = new Map<string, number>();
const typingStop = new Map<string, ReturnType<typeof setTimeout>>();

function typingTarget(conversationId: string): { receiverId: string } | null {
  const c = get().conversations[conversationId];
  if (!c) return null;
  if (c.peerId) return { receiverId: c.peerId };
  return { conversationId: c.serverId ?? c.id } as unknown as { receiverId: string };
}

/** The user typed in the composer of `conversationId`. */
export function typing(conversationId: string): void {
  const target = typingTarget(conversationId);
  if (!target || !canEmit()) return;
  const now = Date.now();
  if (now - (typingSent.get(conversationId) ?? 0) > TYPING_REFRESH_MS) {
    typingSent.set(conversationId, now);
    socket?.emit('TYPING_START', target, () => undefined);
  }
  clearTimeout(typingStop.get(conversationId));
  typingStop.set(
    conversationId,
    setTimeout(() => stopTyping(conversationId), TYPING_REFRESH_MS),
  );
}

export function stopTyping(conversationId: string): void {
  clearTimeout(typingStop.get(conversationId));
  typingStop.delete(conversationId);
  if (!typingSent.has(conversationId)) return;
  typingSent.delete(conversationId);
  const target = typingTarget(conversationId);
  if (target && canEmit()) socket?.emit('TYPING_STOP', target, () => undefined);
}

function onTyping(userId: string, isTyping: boolean, conversationId?: string): void {
  // A group's typing is keyed by the group; a direct conversation's by the other person.
  const group = conversationId ? Object.values(get().conversations).find((c) => c.type === 'group' && (c.serverId ?? c.id) === conversationId) : undefined;
  const conv = group?.id ?? userId;
  set((s) => {
    const current = { ...(s.typing[conv] ?? {}) };
    if (isTyping) current[userId] = Date.now() + TYPING_SHOWN_MS;
    else delete current[userId];
    return { typing: { ...s.typing, [conv]: current } };
  });
  if (isTyping) {
    setTimeout(() => {
      set((s) => {
        const current = s.typing[conv];
        if (!current?.[userId] || current[userId] > Date.now()) return {};
        const next = { ...current };
        delete next[userId];
        return { typing: { ...s.typing, [conv]: next } };
      });
    }, TYPING_SHOWN_MS + 50);
  }
}

async function onPresence(userId: string, online: boolean, lastSeen: string): Promise<void> {
  set((s) => {
    const next = { ...s.online };
    if (online) next[userId] = true;
    else delete next[userId];
    const person = s.people[userId];
    return {
      online: next,
      people: person ? { ...s.people, [userId]: { ...person, lastSeen } } : s.people,
    };
  });
  const person = get().people[userId];
  if (person) await db?.people.put(person);
}

// ---------------------------------------------------------------------------------------
// Other tabs of the same user

type TabMessage = { t: 'messages' | 'removed' | 'forgotten' | 'changes'; keys: string[]; conversations: string[] };

function broadcast(msg: TabMessage): void {
  tabs?.postMessage(msg);
}

function watchTabs(userId: string): void {
  if (typeof BroadcastChannel === 'undefined') return;
  tabs = new BroadcastChannel(`nexus-${userId}`);
  tabs.onmessage = (ev: MessageEvent<TabMessage>) => {
    void serial(async () => {
      const database = db;
      if (!database) return;
      const msg = ev.data;
      if (msg.t === 'changes') {
        const rows = await database.changes.bulkGet(msg.keys);
        set((s) => {
          const changes = { ...s.changes };
          msg.keys.forEach((key, i) => {
            const row = rows[i];
            if (row) changes[key] = row;
            else delete changes[key];
          });
          return { changes };
        });
        return;
      }
      if (msg.t === 'forgotten') {
        set((s) => {
          const conversations = { ...s.conversations };
          const threads = { ...s.threads };
          for (const id of msg.conversations) {
            delete conversations[id];
            delete threads[id];
          }
          return { conversations, threads, activeId: s.activeId && msg.conversations.includes(s.activeId) ? null : s.activeId };
        });
        return;
      }
      const convs = (await database.conversations.bulkGet(msg.conversations)).filter((c): c is ChatConversation => !!c);
      if (msg.t === 'removed') {
        set((s) => {
          const threads = { ...s.threads };
          for (const key of msg.keys) {
            for (const [cid, t] of Object.entries(threads)) {
              if (!t.byKey[key]) continue;
              const byKey = { ...t.byKey };
              delete byKey[key];
              threads[cid] = { ...t, byKey, keys: t.keys.filter((k) => k !== key) };
            }
          }
          return { threads, conversations: { ...s.conversations, ...Object.fromEntries(convs.map((c) => [c.id, c])) } };
        });
        return;
      }
      const rows = (await database.messages.bulkGet(msg.keys)).filter((m): m is ChatMessage => !!m);
      set((s) => ({
        ...mergeMessages(s, rows),
        conversations: { ...s.conversations, ...Object.fromEntries(convs.map((c) => [c.id, c])) },
      }));
    });
  };
}

// ---------------------------------------------------------------------------------------
// Selectors used by the screens

export function sortedConversations(s: State): ChatConversation[] {
  return Object.values(s.conversations).sort(byActivity);
}

/** For tests and the console: the engine's view of the feed. */
export function debugState(): { lastSeq: number | null; syncing: boolean } {
  return { lastSeq: sync?.lastSeq ?? null, syncing: sync?.syncing ?? false };
}
