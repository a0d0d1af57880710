// The HTTP API, shaped around conversations: the list from `GET /conversations` (page by
// page), direct history through the brief's 1:1 route (`/messages/conversation/:otherUserId`)
// and groups through the conversation API; this layer turns them into conversations so that
// the rest of the client never deals in pairs.
import type { AuthResponse, ConversationPage, ConversationSummary, HttpError, SyncPage, User } from '../wire/protocol';
import type { ChatConversation, WireMessage } from './model';
import { fromWire } from './model';

/** A conversation as the conversation API describes it (`{id, type, title, members}`). */
export interface ServerConversation {
  id: string;
  type: 'direct' | 'group';
  title: string | null;
  members: Array<{ user: User; role: 'admin' | 'member'; joinedAt: string }>;
  createdAt: string;
}

/** One entry of the list: `GET /messages/conversations/all`'s shape (before and after the conversation API). */
interface ListEntry {
  otherUser: User | null;
  lastMessage: WireMessage | null;
  unreadCount: number;
  conversation?: ServerConversation;
}

/** The client's conversation for a server one (direct ones keyed by the other person). */
export function fromServerConversation(c: ServerConversation, myId: string): ChatConversation {
  const memberIds = c.members.map((m) => m.user.id);
  const peer = c.type === 'direct' ? (memberIds.find((id) => id !== myId) ?? null) : null;
  return {
    id: peer ?? c.id,
    type: c.type,
    title: c.title,
    memberIds,
    roles: Object.fromEntries(c.members.map((m) => [m.user.id, m.role])),
    peerId: peer,
    last: null,
    activity: c.createdAt,
    unreadCount: 0,
    serverId: c.id,
  };
}

/** An HTTP failure with a message fit for a person. */
export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
    public retryAfterSeconds: number | null = null,
  ) {
    super(message);
  }
}

let token: string | null = null;
let onUnauthorized: (() => void) | null = null;

export function setToken(t: string | null): void {
  token = t;
}

export function currentToken(): string | null {
  return token;
}

export function onSessionRejected(f: () => void): void {
  onUnauthorized = f;
}

function friendly(status: number, server: string | undefined, path: string, retryAfter: number | null): string {
  if (status === 429) {
    const wait = retryAfter ? ` Try again in ${retryAfter} s.` : ' Try again in a moment.';
    return (path.startsWith('/auth') ? 'Too many attempts.' : 'You are doing that too often.') + wait;
  }
  if (status === 401 && path === '/auth/login') return 'Wrong email or password.';
  if (status === 401) return 'Your session has ended. Please log in again.';
  if (status === 409 && path === '/auth/register') return 'An account with this email already exists. Log in instead?';
  if (status >= 500) return 'The server had a problem. Please try again.';
  return server ? server.charAt(0).toUpperCase() + server.slice(1) : `Request failed (${status}).`;
}

export async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers: {
        ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}),
        ...(token ? { Authorization: `Bearer ${token}` } : {}),
      },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
  } catch {
    throw new ApiError(0, 'Cannot reach the server. Check your connection.');
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let json: unknown = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!res.ok) {
    const retryAfter = Number(res.headers.get('Retry-After')) || null;
    const err = json as Partial<HttpError> | null;
    if (res.status === 401 && token && !path.startsWith('/auth/')) onUnauthorized?.();
    throw new ApiError(res.status, friendly(res.status, err?.message, path, retryAfter), retryAfter);
  }
  return json as T;
}

export const register = (name: string, email: string, password: string) =>
  request<AuthResponse>('POST', '/auth/register', { name, email, password });
export const login = (email: string, password: string) => request<AuthResponse>('POST', '/auth/login', { email, password });
/** Revokes the token where the server supports it; an older server without the route is fine. */
export async function logout(): Promise<void> {
  try {
    await request<void>('POST', '/auth/logout');
  } catch {
    /* the local session is cleared anyway */
  }
}
export const me = () => request<User>('GET', '/users/me');
export const searchPeople = (q: string) => request<User[]>('GET', `/users?search=${encodeURIComponent(q)}`);

export interface ConversationListing {
  conversation: ChatConversation;
  people: User[];
}

/** Conversations asked for per page of `GET /conversations` (its maximum). */
const CONVERSATION_PAGE = 200;

/** `GET /conversations` entries as the list's rows (`otherUser`: the other person of a direct one). */
function fromSummary(c: ConversationSummary, myId: string): ListEntry {
  const { lastMessage, unreadCount, ...conversation } = c;
  const otherUser = c.type === 'direct' ? (c.members.find((m) => m.user.id !== myId)?.user ?? null) : null;
  return { otherUser, lastMessage: lastMessage as WireMessage | null, unreadCount, conversation };
}

/** Every conversation, most recent first: `GET /conversations` page by page (`nextCursor`). */
async function listedConversations(myId: string): Promise<ListEntry[]> {
  const rows: ListEntry[] = [];
  const seen = new Set<string>();
  let before: string | null = null;
  for (;;) {
    const q = new URLSearchParams({ limit: String(CONVERSATION_PAGE) });
    if (before) q.set('before', before);
    const page: ConversationPage = await request<ConversationPage>('GET', `/conversations?${q}`);
    // A conversation that moved up while paging can come twice: the first (newer) one counts.
    for (const c of page.conversations) {
      if (!seen.has(c.id)) rows.push(fromSummary(c, myId));
      seen.add(c.id);
    }
    if (!page.nextCursor || page.nextCursor === before) return rows;
    before = page.nextCursor;
  }
}

/**
 * Every conversation, most recent first, with the people in them. From `GET /conversations`
 * (paginated); a server without the conversation API answers the brief's
 * `GET /messages/conversations/all` instead.
 */
export async function conversations(myId: string): Promise<ConversationListing[]> {
  let rows: ListEntry[];
  try {
    rows = await listedConversations(myId);
  } catch (e) {
    if (!(e instanceof ApiError && (e.status === 404 || e.status === 405))) throw e;
    rows = await request<ListEntry[]>('GET', '/messages/conversations/all');
  }
  return rows.flatMap((row) => {
    const last = row.lastMessage ? fromWire(row.lastMessage, myId) : null;
    const people = [row.otherUser, row.lastMessage?.sender, row.lastMessage?.receiver].filter((u): u is User => !!u);
    let conversation: ChatConversation;
    if (row.conversation) {
      conversation = fromServerConversation(row.conversation, myId);
      people.push(...row.conversation.members.map((m) => m.user));
    } else if (row.otherUser) {
      conversation = {
        id: row.otherUser.id,
        type: 'direct',
        title: null,
        memberIds: [myId, row.otherUser.id],
        peerId: row.otherUser.id,
        last: null,
        activity: '',
        unreadCount: 0,
      };
    } else {
      return [];
    }
    conversation.last = last;
    conversation.activity = last?.timestamp ?? conversation.activity;
    conversation.unreadCount = row.unreadCount;
    return [{ conversation, people }];
  });
}

/** `GET /conversations/:id`, where the server has the conversation API. */
export const conversation = (serverId: string) => request<ServerConversation>('GET', `/conversations/${encodeURIComponent(serverId)}`);

/** A conversation started from people search, before its first message. */
export function directWith(myId: string, other: User): ChatConversation {
  return {
    id: other.id,
    type: 'direct',
    title: null,
    memberIds: [myId, other.id],
    peerId: other.id,
    last: null,
    activity: new Date().toISOString(),
    unreadCount: 0,
  };
}

export interface HistoryPage {
  messages: WireMessage[];
  nextCursor: string | null;
}

/** One page of a conversation's history, oldest first; `before` is the previous cursor. */
export function history(c: ChatConversation, before: string | null, limit: number): Promise<HistoryPage> {
  const q = new URLSearchParams({ limit: String(limit) });
  if (before) q.set('before', before);
  // A direct conversation through the brief's 1:1 route (every server has it); a group
  // through the conversation API.
  const path = c.peerId ? `/messages/conversation/${encodeURIComponent(c.peerId)}` : `/conversations/${encodeURIComponent(c.serverId ?? c.id)}/messages`;
  return request<HistoryPage>('GET', `${path}?${q}`);
}

export const sync = (since: number, limit = 500) => request<SyncPage>('GET', `/sync?since=${since}&limit=${limit}`);

export const vapidPublicKey = () => request<{ publicKey: string }>('GET', '/users/webpush/vapid-public-key');
export const webpushSubscribe = (subscription: PushSubscriptionJSON) =>
  request<unknown>('POST', '/users/webpush/subscribe', subscription);
export const webpushUnsubscribe = (endpoint: string) => request<void>('POST', '/users/webpush/unsubscribe', { endpoint });
export const fcmRegister = (deviceToken: string) => request<unknown>('POST', '/users/fcm/register', { deviceToken });
export const fcmUnregister = (deviceToken: string) => request<unknown>('POST', '/users/fcm/unregister', { deviceToken });

/** Whether the server has the conversation API (groups): asked once per session. */
let groups: Promise<boolean> | null = null;
export function hasGroups(): Promise<boolean> {
  groups ??= request<unknown>('GET', '/conversations?limit=1').then(
    () => true,
    (e) => {
      if (!(e instanceof ApiError && (e.status === 404 || e.status === 405))) groups = null; // ask again later
      return false;
    },
  );
  return groups;
}

export const createGroup = (title: string, memberIds: string[]) =>
  request<ServerConversation>('POST', '/conversations', { title, memberIds });

const conversationPath = (serverId: string) => `/conversations/${encodeURIComponent(serverId)}`;

/** The answer of a membership or title change: the conversation, where the server gives it. */
function asConversation(answer: unknown): ServerConversation | null {
  const c = answer as Partial<ServerConversation> | null;
  return c && typeof c === 'object' && typeof c.id === 'string' && Array.isArray(c.members) ? (c as ServerConversation) : null;
}

/** `PATCH /conversations/:id {title}` (admins). */
export async function renameGroup(serverId: string, title: string): Promise<ServerConversation | null> {
  return asConversation(await request<unknown>('PATCH', conversationPath(serverId), { title }));
}

/** `POST /conversations/:id/members {userIds}` (admins). */
export async function addMembers(serverId: string, userIds: string[]): Promise<ServerConversation | null> {
  return asConversation(await request<unknown>('POST', `${conversationPath(serverId)}/members`, { userIds }));
}

/** `DELETE /conversations/:id/members/:userId`: removes someone (admins), or leaves (oneself). */
export async function removeMember(serverId: string, userId: string): Promise<ServerConversation | null> {
  return asConversation(await request<unknown>('DELETE', `${conversationPath(serverId)}/members/${encodeURIComponent(userId)}`));
}
