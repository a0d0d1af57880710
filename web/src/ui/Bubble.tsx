import { useState, type KeyboardEvent } from 'react';
import { DELETED_CONTENT } from '../wire/protocol';
import { edit as editMessage, remove, retry, discard } from '../lib/engine';
import { readCount, tickOf, type ChatMessage, type Tick } from '../lib/model';
import { useStore } from '../lib/store';
import { clock } from './format';

const MAX_CHARS = 10_000;

const TICK_PATHS: Record<Tick, string> = {
  // A clock, one check, two checks (grey / blue), an exclamation mark.
  Sending: 'M8 2.5a5.5 5.5 0 1 0 0 11 5.5 5.5 0 0 0 0-11zM8 5v3.2l2.2 1.3',
  Sent: 'M3.5 8.5l3 3 6-7',
  Delivered: 'M1.5 8.5l3 3 6-7M7.5 11.5l6-7',
  Read: 'M1.5 8.5l3 3 6-7M7.5 11.5l6-7',
  Failed: 'M8 3v6.5M8 12.2v.3',
};

/** The state of an own message: an icon with its name as the accessible label. */
export function Ticks({ tick }: { tick: Tick }) {
  return (
    <span className={`tick tick-${tick.toLowerCase()}`} aria-label={tick} title={tick} role="img">
      <svg viewBox="0 0 16 16" width="16" height="16" aria-hidden="true">
        <path d={TICK_PATHS[tick]} fill="none" stroke="currentColor" strokeWidth="1.6" strokeLinecap="round" strokeLinejoin="round" />
      </svg>
    </span>
  );
}

export function Bubble({
  m,
  own,
  recipients,
  showSender,
  group = false,
}: {
  m: ChatMessage;
  own: boolean;
  recipients: string[];
  showSender: boolean;
  group?: boolean;
}) {
  const sender = useStore((s) => s.people[m.senderId]?.name ?? 'Someone');
  const network = useStore((s) => s.network);
  // An edit or delete made offline, shown until the server has it.
  const change = useStore((s) => s.changes[m.key]);
  const pendingDelete = change?.kind === 'delete';
  const content = pendingDelete ? DELETED_CONTENT : change?.kind === 'edit' && change.content !== undefined ? change.content : m.content;
  const [editing, setEditing] = useState(false);
  const [text, setText] = useState(content);
  const deleted = !!m.deletedAt || pendingDelete;

  async function save() {
    const ok = await editMessage(m.key, text);
    if (ok) setEditing(false);
  }

  function onKey(e: KeyboardEvent<HTMLTextAreaElement>) {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      void save();
    } else if (e.key === 'Escape') {
      e.preventDefault();
      setEditing(false);
      setText(content);
    }
  }

  const tick = own ? tickOf(m, recipients) : null;
  // In a group, how many of the other members have read an own message.
  const readers = own && group && m.id && !deleted ? readCount(m, recipients) : 0;
  return (
    // Focusable by a tap (not by Tab): on touch screens a tap shows the message's actions.
    <div
      className={`bubble ${own ? 'own' : 'theirs'} ${deleted ? 'deleted' : ''} ${m.local === 'failed' ? 'failed' : ''}`}
      tabIndex={own && !deleted ? -1 : undefined}
    >
      {showSender && !own && <span className="sender">{sender}</span>}
      {editing ? (
        <div className="editing">
          <textarea
            aria-label="Edit text"
            value={text}
            autoFocus
            maxLength={MAX_CHARS}
            onChange={(e) => setText(e.target.value)}
            onKeyDown={onKey}
          />
          <div className="edit-actions">
            <button type="button" onClick={() => void save()} disabled={!text.trim()}>
              Save
            </button>
            <button type="button" className="ghost" onClick={() => (setEditing(false), setText(content))}>
              Cancel
            </button>
          </div>
        </div>
      ) : (
        <p className="content">{content}</p>
      )}
      <span className="stamp">
        {change && <span className="pending-change">{network ? 'saving…' : 'waiting for the connection'}</span>}
        {(m.isEdited || change?.kind === 'edit') && !deleted && <span className="edited">edited</span>}
        {readers > 0 && (
          <span className="read-by">
            Read by {readers} of {recipients.length}
          </span>
        )}
        <time dateTime={m.timestamp}>{clock(m.timestamp)}</time>
        {tick && <Ticks tick={tick} />}
      </span>
      {m.local === 'failed' && (
        <span className="failure">
          {m.error ?? 'Not sent.'}{' '}
          <button type="button" className="link" onClick={() => void retry(m.key)}>
            Retry
          </button>{' '}
          <button type="button" className="link" onClick={() => void discard(m.key)}>
            Discard
          </button>
        </span>
      )}
      {own && !deleted && !editing && m.id && m.local === null && (
        <span className="actions" role="group" aria-label="Message actions">
          <button
            type="button"
            className="icon"
            title={network ? 'Edit' : 'Edit (saved when you are back online)'}
            onClick={() => (setText(content), setEditing(true))}
          >
            Edit
          </button>
          <button
            type="button"
            className="icon"
            title={network ? 'Delete' : 'Delete (applied when you are back online)'}
            onClick={() => void remove(m.key)}
          >
            Delete
          </button>
        </span>
      )}
    </div>
  );
}

