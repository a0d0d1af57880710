// A group's details (its own chunk, loaded when opened): the members with their roles, and
// for admins renaming, adding people from search and removing members; anyone can leave.
// A native modal <dialog>: focus stays inside, Escape closes it, focus returns to the
// button that opened it.
import { useEffect, useRef, useState, type FormEvent } from 'react';
import type { User } from '../wire/protocol';
import * as api from '../lib/api';
import { addMembers, leaveGroup, removeMember, renameGroup } from '../lib/engine';
import { conversationTitle, isAdmin } from '../lib/model';
import { useStore } from '../lib/store';
import { Avatar } from './Sidebar';
import { navigate } from './router';

function failure(e: unknown, fallback: string): string {
  if (e instanceof api.ApiError) return e.status === 403 ? 'Only the group’s admins can do that.' : e.message;
  return fallback;
}

function AddPeople({ conversationId, memberIds, onError }: { conversationId: string; memberIds: string[]; onError: (text: string | null) => void }) {
  const [q, setQ] = useState('');
  const [found, setFound] = useState<User[]>([]);
  const [busy, setBusy] = useState<string | null>(null);
  const network = useStore((s) => s.network);

  useEffect(() => {
    const term = q.trim();
    if (!term) return setFound([]);
    let live = true;
    const t = setTimeout(() => {
      api.searchPeople(term).then(
        (users) => live && setFound(users),
        (e) => live && onError(failure(e, 'Search failed.')),
      );
    }, 200);
    return () => {
      live = false;
      clearTimeout(t);
    };
  }, [q, onError]);

  async function add(u: User) {
    setBusy(u.id);
    onError(null);
    try {
      await addMembers(conversationId, [u]);
      setQ('');
    } catch (e) {
      onError(failure(e, `${u.name} could not be added.`));
    } finally {
      setBusy(null);
    }
  }

  const candidates = found.filter((u) => !memberIds.includes(u.id));
  return (
    <div className="add-people">
      <label>
        Add people
        <input
          type="search"
          value={q}
          maxLength={100}
          autoComplete="off"
          disabled={!network}
          placeholder={network ? 'Name or email' : 'Needs a connection'}
          onChange={(e) => setQ(e.target.value)}
        />
      </label>
      {q.trim() && (
        <div className="results">
          {candidates.length === 0 && <p className="hint">{found.length ? 'Everyone found is already in the group.' : `Nobody found for “${q.trim()}”.`}</p>}
          {candidates.map((u) => (
            <button key={u.id} type="button" className="person" aria-label={`Add ${u.name}`} disabled={busy !== null} onClick={() => void add(u)}>
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

export default function GroupInfo({ conversationId, onClose }: { conversationId: string; onClose: () => void }) {
  const myId = useStore((s) => s.me?.id ?? '');
  const c = useStore((s) => s.conversations[conversationId]);
  const people = useStore((s) => s.people);
  const network = useStore((s) => s.network);
  const ref = useRef<HTMLDialogElement>(null);
  const [title, setTitle] = useState(c?.title ?? '');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [confirmLeave, setConfirmLeave] = useState(false);

  useEffect(() => {
    const dialog = ref.current;
    if (dialog && !dialog.open) dialog.showModal();
    return () => dialog?.close();
  }, []);

  // The group went away (this user was removed, or left in another tab).
  useEffect(() => {
    if (!c) onClose();
  }, [c, onClose]);

  if (!c) return null;
  const admin = isAdmin(c, myId);
  const name = conversationTitle(c, people, myId);
  const members = [...c.memberIds].sort((a, b) => {
    const ra = c.roles?.[a] === 'admin' ? 0 : 1;
    const rb = c.roles?.[b] === 'admin' ? 0 : 1;
    return ra - rb || (people[a]?.name ?? '').localeCompare(people[b]?.name ?? '');
  });

  async function run(action: () => Promise<void>, fallback: string): Promise<boolean> {
    setBusy(true);
    setError(null);
    try {
      await action();
      return true;
    } catch (e) {
      setError(failure(e, fallback));
      return false;
    } finally {
      setBusy(false);
    }
  }

  async function rename(e: FormEvent) {
    e.preventDefault();
    const next = title.trim();
    if (!next) return setError('Give the group a name.');
    if (next === c?.title) return;
    await run(() => renameGroup(conversationId, next), 'The group could not be renamed.');
  }

  async function leave() {
    if (await run(() => leaveGroup(conversationId), 'You could not leave the group.')) {
      onClose();
      navigate(null);
    }
  }

  return (
    <dialog
      ref={ref}
      className="dialog group-info"
      aria-label="Group info"
      onCancel={(e) => {
        // Escape: closed through React state, so the dialog and the state agree.
        e.preventDefault();
        onClose();
      }}
    >
      <div className="dialog-head">
        <h2>{name}</h2>
        <button type="button" className="ghost" onClick={onClose}>
          Close
        </button>
      </div>
      {admin ? (
        <form className="rename" onSubmit={rename}>
          <label>
            Group name
            <input value={title} maxLength={100} onChange={(e) => setTitle(e.target.value)} disabled={!network} />
          </label>
          <button type="submit" disabled={busy || !network || !title.trim() || title.trim() === c.title}>
            Rename
          </button>
        </form>
      ) : null}
      <h3>
        {c.memberIds.length} member{c.memberIds.length === 1 ? '' : 's'}
      </h3>
      <ul className="members" aria-label="Members">
        {members.map((id) => {
          const person = people[id];
          const role = c.roles?.[id] === 'admin' ? 'Admin' : 'Member';
          return (
            <li key={id} className="member">
              <Avatar id={id} name={person?.name ?? '?'} />
              <span className="person-text">
                <span className="name">
                  {person?.name ?? 'Someone'}
                  {id === myId && ' (you)'}
                </span>
                <span className="sub">{role}</span>
              </span>
              {admin && id !== myId && (
                <button
                  type="button"
                  className="ghost"
                  aria-label={`Remove ${person?.name ?? 'member'}`}
                  disabled={busy || !network}
                  onClick={() => void run(() => removeMember(conversationId, id), 'The member could not be removed.')}
                >
                  Remove
                </button>
              )}
            </li>
          );
        })}
      </ul>
      {admin && <AddPeople conversationId={conversationId} memberIds={c.memberIds} onError={setError} />}
      {error && (
        <p className="form-error" role="alert">
          {error}
        </p>
      )}
      {!network && <p className="hint">Changes to the group need a connection.</p>}
      <div className="leave">
        {confirmLeave ? (
          <>
            <p>Leave {name}? You will no longer get its messages.</p>
            <div className="edit-actions">
              <button type="button" className="ghost" onClick={() => setConfirmLeave(false)} autoFocus>
                Stay
              </button>
              <button type="button" className="danger" onClick={() => void leave()} disabled={busy || !network}>
                Leave
              </button>
            </div>
          </>
        ) : (
          <button type="button" className="danger" onClick={() => setConfirmLeave(true)} disabled={!network}>
            Leave group
          </button>
        )}
      </div>
    </dialog>
  );
}
