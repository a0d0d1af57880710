// Central state (Zustand): what the screens show. The engine (engine.ts) is the only writer
// of server-derived state; components read with selectors and call the engine's actions.
import { create } from 'zustand';
import type { User } from '../wire/protocol';
import type { PendingChange } from './db';
import {
  insertionPoint,
  merge,
  type ChatConversation,
  type ChatMessage,
  type Person,
} from './model';

export type Connection = 'offline' | 'connecting' | 'syncing' | 'online';

export interface Thread {
  /** Message keys, oldest first. */
  keys: string[];
  byKey: Record<string, ChatMessage>;
  /** Older messages exist (locally or on the server) beyond the first key. */
  hasOlder: boolean;
  loadingOlder: boolean;
  /** The thread was loaded from IndexedDB at least once. */
  ready: boolean;
}

export interface Notice {
  id: number;
  kind: 'error' | 'info';
  text: string;
}

export interface State {
  me: User | null;
  connection: Connection;
  /** The browser says it has a network (navigator.onLine). */
  network: boolean;
  /** The stored state has been read from IndexedDB. */
  hydrated: boolean;
  conversations: Record<string, ChatConversation>;
  people: Record<string, Person>;
  online: Record<string, true>;
  /** conversationId → userId → typing until (ms since epoch). */
  typing: Record<string, Record<string, number>>;
  threads: Record<string, Thread>;
  /** Server message id → [conversationId, key], for events that name a message by id. */
  ids: Record<string, [string, string]>;
  activeId: string | null;
  /** Edits and deletes made offline, by message key, until the server has them. */
  changes: Record<string, PendingChange>;
  notices: Notice[];
  pushState: 'unsupported' | 'off' | 'on' | 'denied' | 'unavailable';
}

export const initialState = (): State => ({
  me: null,
  connection: 'connecting',
  network: typeof navigator === 'undefined' ? true : navigator.onLine,
  hydrated: false,
  conversations: {},
  people: {},
  online: {},
  typing: {},
  threads: {},
  ids: {},
  activeId: null,
  changes: {},
  notices: [],
  pushState: 'off',
});

export const useStore = create<State>(() => initialState());

export const emptyThread = (): Thread => ({ keys: [], byKey: {}, hasOlder: true, loadingOlder: false, ready: false });

/**
 * Merges messages into their threads (held in memory only for threads that are loaded or
 * being loaded) and returns the merged copies. Pure over `state`: used by the engine and
 * by tests.
 */
export function mergeMessages(state: State, incoming: ChatMessage[], opts: { createThreads?: boolean } = {}): Partial<State> {
  const threads = { ...state.threads };
  const ids = { ...state.ids };
  const touched = new Set<string>();
  for (const m of incoming) {
    let thread = threads[m.conversationId];
    if (!thread) {
      if (!opts.createThreads) {
        if (m.id) ids[m.id] = [m.conversationId, m.key];
        continue;
      }
      thread = emptyThread();
    }
    if (!touched.has(m.conversationId)) {
      thread = { ...thread, keys: [...thread.keys], byKey: { ...thread.byKey } };
      touched.add(m.conversationId);
    }
    const before = thread.byKey[m.key];
    const merged = merge(before, m);
    if (before) {
      if (before.order !== merged.order) {
        const at = thread.keys.indexOf(m.key);
        if (at >= 0) thread.keys.splice(at, 1);
        thread.byKey[m.key] = merged;
        thread.keys.splice(insertionPoint(thread.keys, thread.byKey, merged.order), 0, m.key);
      } else {
        thread.byKey[m.key] = merged;
      }
    } else {
      thread.byKey[m.key] = merged;
      thread.keys.splice(insertionPoint(thread.keys, thread.byKey, merged.order), 0, m.key);
    }
    if (merged.id) ids[merged.id] = [merged.conversationId, merged.key];
    threads[m.conversationId] = thread;
  }
  return { threads, ids };
}

let noticeId = 0;
export function notify(text: string, kind: Notice['kind'] = 'error'): void {
  const id = ++noticeId;
  useStore.setState((s) => ({ notices: [...s.notices.filter((n) => n.text !== text), { id, kind, text }].slice(-4) }));
  setTimeout(() => dismiss(id), kind === 'error' ? 8000 : 5000);
}

export function dismiss(id: number): void {
  useStore.setState((s) => ({ notices: s.notices.filter((n) => n.id !== id) }));
}
