import { lazy, Suspense, useEffect, useMemo, useRef, useState, type KeyboardEvent } from 'react';
import type { User } from '../wire/protocol';
import * as api from '../lib/api';
import { sortedConversations, startDirect } from '../lib/engine';
import { conversationTitle, type ChatConversation } from '../lib/model';
import { useStore } from '../lib/store';
import { hue, initials, shortTime } from './format';
import { navigate } from './router';

const NewGroup = lazy(() => import('./NewGroup'));

/** "New group", where the server has group conversations. */
function NewGroupButton() {
  const [available, setAvailable] = useState(false);
  const [open, setOpen] = useState(false);
  const network = useStore((s) => s.network);
  const button = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    if (network) void api.hasGroups().then(setAvailable);
  }, [network]);
  if (!available) return null;
  const close = () => {
    setOpen(false);
    requestAnimationFrame(() => button.current?.focus());
  };
  return (
    <>
      <button ref={button} type="button" className="new-group" onClick={() => setOpen(true)} disabled={!network}>
        New group
      </button>
      {open && (
        <Suspense fallback={null}>
          <NewGroup onClose={close} />
        </Suspense>
      )}
    </>
  );
}

export function Avatar({ id, name, online }: { id: string; name: string; online?: boolean }) {
  return (
    <span className="avatar" aria-hidden="true" style={{ background: `hsl(${hue(id)} 55% 45%)` }}>
      {initials(name)}
      {online && <span className="online-dot" />}
    </span>
  );
}

function PeopleSearch() {
  const [q, setQ] = useState('');
  const [results, setResults] = useState<User[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const network = useStore((s) => s.network);
  const seq = useRef(0);

  useEffect(() => {
    const term = q.trim();
    if (!term) {
      setResults(null);
      setError(null);
      return;
    }
    const mine = ++seq.current;
    const timer = setTimeout(async () => {
      try {
        const found = await api.searchPeople(term);
        if (seq.current === mine) {
          setResults(found);
          setError(null);
        }
      } catch (e) {
        if (seq.current === mine) setError(e instanceof api.ApiError ? e.message : 'Search failed.');
      }
    }, 200);
    return () => clearTimeout(timer);
  }, [q]);

  async function pick(u: User) {
    const id = await startDirect(u);
    setQ('');
    navigate(id);
    requestAnimationFrame(() => document.getElementById('composer')?.focus());
  }

  function onKey(e: KeyboardEvent<HTMLInputElement>) {
    if (e.key === 'Escape') setQ('');
    if (e.key === 'Enter' && results?.[0]) void pick(results[0]);
  }

  return (
    <div className="search">
      <input
        type="search"
        aria-label="Search people"
        placeholder="Search people"
        value={q}
        onChange={(e) => setQ(e.target.value)}
        onKeyDown={onKey}
        maxLength={100}
        autoComplete="off"
      />
      {q.trim() && (
        <div className="results" aria-label="People">
          {!network && <p className="hint">Search needs a connection.</p>}
          {error && <p className="hint">{error}</p>}
          {results && results.length === 0 && !error && <p className="hint">Nobody found for “{q.trim()}”.</p>}
          {results?.map((u) => (
            <button key={u.id} type="button" className="person" aria-label={u.name} onClick={() => void pick(u)}>
              <Avatar id={u.id} name={u.name} />
              <span className="person-text">
                <span className="name">{u.name}</span>
                {u.email && <span className="sub">{u.email}</span>}
              </span>
            </button>
          ))}
        </div>
      )}
    </div>
  );
}

function Entry({ c, active }: { c: ChatConversation; active: boolean }) {
  const myId = useStore((s) => s.me?.id ?? '');
  const title = useStore((s) => conversationTitle(c, s.people, myId));
  const online = useStore((s) => (c.peerId ? !!s.online[c.peerId] : false));
  const typing = useStore((s) => Object.keys(s.typing[c.id] ?? {}).length > 0);
  const last = c.last;
  let preview = 'No messages yet';
  if (last) {
    const own = last.senderId === myId;
    preview = (own ? 'You: ' : '') + (last.deletedAt ? 'This message has been deleted' : last.content);
  }
  return (
    <li>
      <a
        href={`/c/${encodeURIComponent(c.id)}`}
        className={`entry ${active ? 'active' : ''} ${c.unreadCount > 0 ? 'unread' : ''}`}
        aria-current={active ? 'page' : undefined}
        onClick={(e) => {
          e.preventDefault();
          navigate(c.id);
        }}
      >
        <span className="entry-title">
          <span className="name">{title}</span>
          {online && <span className="sr-only">, online</span>}
        </span>
        <Avatar id={c.peerId ?? c.id} name={title} online={online} />
        <span className="preview">{typing ? <em>typing…</em> : preview}</span>
        <span className="meta">
          {last && <time dateTime={last.timestamp}>{shortTime(last.timestamp)}</time>}
          {c.unreadCount > 0 && (
            <span className="badge">
              {c.unreadCount > 999 ? '999+' : c.unreadCount}
              <span className="sr-only"> unread</span>
            </span>
          )}
        </span>
      </a>
    </li>
  );
}

export function Sidebar() {
  const conversations = useStore((s) => s.conversations);
  const activeId = useStore((s) => s.activeId);
  const hydrated = useStore((s) => s.hydrated);
  const sorted = useMemo(() => sortedConversations({ conversations } as never), [conversations]);
  const marked = useRef(false);

  useEffect(() => {
    if (!marked.current && hydrated && sorted.length > 0) {
      marked.current = true;
      // For the browser tests: when the list first showed (stored or fetched).
      performance.mark('nexus:conversations-shown');
    }
  }, [hydrated, sorted.length]);

  return (
    <aside className="sidebar">
      <PeopleSearch />
      <NewGroupButton />
      <nav aria-label="Conversations">
        {sorted.length === 0 ? (
          <p className="hint pad">No conversations yet. Search for people to start one.</p>
        ) : (
          <ul className="entries">
            {sorted.map((c) => (
              <Entry key={c.id} c={c} active={c.id === activeId} />
            ))}
          </ul>
        )}
      </nav>
    </aside>
  );
}
