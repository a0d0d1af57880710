import { lazy, Suspense, useCallback, useEffect, useRef, useState, type KeyboardEvent } from 'react';
import { markSeen, send, stopTyping, typing } from '../lib/engine';
import { conversationTitle, recipientsOf } from '../lib/model';
import { useStore } from '../lib/store';
import { lastSeenText } from './format';
import { MessageList } from './MessageList';
import { navigate } from './router';

const MAX_CHARS = 10_000;

// Group management: its own chunk, loaded when opened.
const GroupInfo = lazy(() => import('./GroupInfo'));

function GroupInfoButton({ conversationId }: { conversationId: string }) {
  const [open, setOpen] = useState(false);
  const button = useRef<HTMLButtonElement>(null);
  const close = useCallback(() => {
    setOpen(false);
    requestAnimationFrame(() => button.current?.focus());
  }, []);
  return (
    <>
      <button
        ref={button}
        type="button"
        className="ghost group-info-button"
        aria-haspopup="dialog"
        onClick={() => setOpen(true)}
        onMouseEnter={() => void import('./GroupInfo')}
        onFocus={() => void import('./GroupInfo')}
      >
        Group info
      </button>
      {open && (
        <Suspense fallback={null}>
          <GroupInfo conversationId={conversationId} onClose={close} />
        </Suspense>
      )}
    </>
  );
}

function draftKey(id: string): string {
  return `nexus.draft.${id}`;
}

function Composer({ conversationId }: { conversationId: string }) {
  const [text, setText] = useState(() => localStorage.getItem(draftKey(conversationId)) ?? '');
  const ref = useRef<HTMLTextAreaElement>(null);

  useEffect(() => {
    setText(localStorage.getItem(draftKey(conversationId)) ?? '');
    return () => stopTyping(conversationId);
  }, [conversationId]);

  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    el.style.height = 'auto';
    el.style.height = `${Math.min(el.scrollHeight, 160)}px`;
  }, [text]);

  function change(value: string) {
    setText(value);
    if (value) localStorage.setItem(draftKey(conversationId), value);
    else localStorage.removeItem(draftKey(conversationId));
    if (value.trim()) typing(conversationId);
    else stopTyping(conversationId);
  }

  function submit() {
    const content = text;
    if (!content.trim() || content.length > MAX_CHARS) return;
    change('');
    void send(conversationId, content);
    ref.current?.focus();
  }

  function onKey(e: KeyboardEvent<HTMLTextAreaElement>) {
    if (e.key === 'Enter' && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      submit();
    }
  }

  const over = text.length > MAX_CHARS;
  return (
    <form
      className="composer"
      onSubmit={(e) => {
        e.preventDefault();
        submit();
      }}
    >
      <textarea
        id="composer"
        ref={ref}
        aria-label="Message"
        placeholder="Write a message"
        rows={1}
        value={text}
        onChange={(e) => change(e.target.value)}
        onKeyDown={onKey}
        onBlur={() => stopTyping(conversationId)}
        aria-invalid={over || undefined}
        aria-describedby={over ? 'composer-limit' : undefined}
      />
      {text.length > MAX_CHARS - 500 && (
        <span id="composer-limit" className={`limit ${over ? 'over' : ''}`}>
          {text.length}/{MAX_CHARS}
        </span>
      )}
      <button type="submit" className="primary" disabled={!text.trim() || over}>
        Send
      </button>
    </form>
  );
}

function PresenceLine({ conversationId }: { conversationId: string }) {
  const c = useStore((s) => s.conversations[conversationId]);
  const typingNames = useStore((s) =>
    Object.keys(s.typing[conversationId] ?? {})
      .map((id) => s.people[id]?.name ?? 'Someone')
      .join(', '),
  );
  const online = useStore((s) => (c?.peerId ? !!s.online[c.peerId] : false));
  const lastSeen = useStore((s) => (c?.peerId ? s.people[c.peerId]?.lastSeen : null));
  const group = c?.type === 'group';
  let text = '';
  if (typingNames) text = group ? `${typingNames} typing…` : 'typing…';
  else if (group) text = `${c.memberIds.length} members`;
  else if (online) text = 'online';
  else text = lastSeenText(lastSeen);
  return (
    <p className={`presence ${online ? 'is-online' : ''}`} aria-live="polite">
      {text || '\u00a0'}
    </p>
  );
}

export default function ChatView({ conversationId }: { conversationId: string }) {
  const myId = useStore((s) => s.me?.id ?? '');
  const c = useStore((s) => s.conversations[conversationId]);
  const title = useStore((s) => (c ? conversationTitle(c, s.people, myId) : ''));
  const recipients = recipientsOf(c, myId);

  useEffect(() => {
    markSeen(conversationId);
  }, [conversationId]);

  if (!c) return null;
  return (
    <section className="chat" aria-label={`Chat with ${title}`}>
      <header className="chat-head">
        <button type="button" className="back icon" aria-label="Back to conversations" onClick={() => navigate(null)}>
          ‹
        </button>
        <div className="chat-title">
          <h2>{title}</h2>
          <PresenceLine conversationId={conversationId} />
        </div>
        {c.type === 'group' && <GroupInfoButton conversationId={conversationId} />}
      </header>
      <MessageList conversationId={conversationId} myId={myId} recipients={recipients} group={c.type === 'group'} />
      <Composer conversationId={conversationId} />
    </section>
  );
}
