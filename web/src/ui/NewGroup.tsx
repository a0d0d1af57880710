// "New group": a title and people picked through search, then `POST /conversations`.
// Shown only when the server has the conversation API.
import { useEffect, useRef, useState, type FormEvent } from 'react';
import type { User } from '../wire/protocol';
import * as api from '../lib/api';
import { createGroup } from '../lib/engine';
import { navigate } from './router';

export default function NewGroup({ onClose }: { onClose: () => void }) {
  const [title, setTitle] = useState('');
  const [q, setQ] = useState('');
  const [found, setFound] = useState<User[]>([]);
  const [picked, setPicked] = useState<User[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const first = useRef<HTMLInputElement>(null);
  const ref = useRef<HTMLDialogElement>(null);

  // A native modal dialog: focus stays inside, Escape closes it.
  useEffect(() => {
    const dialog = ref.current;
    if (dialog && !dialog.open) dialog.showModal();
    first.current?.focus();
    return () => dialog?.close();
  }, []);
  useEffect(() => {
    const term = q.trim();
    if (!term) return setFound([]);
    const t = setTimeout(() => {
      api.searchPeople(term).then(setFound, (e) => setError(e instanceof api.ApiError ? e.message : 'Search failed.'));
    }, 200);
    return () => clearTimeout(t);
  }, [q]);

  function toggle(u: User) {
    setPicked((p) => (p.some((x) => x.id === u.id) ? p.filter((x) => x.id !== u.id) : [...p, u]));
  }

  async function submit(e: FormEvent) {
    e.preventDefault();
    if (!title.trim()) return setError('Give the group a name.');
    setBusy(true);
    setError(null);
    try {
      const id = await createGroup(title.trim(), picked);
      onClose();
      navigate(id);
      setTimeout(() => document.getElementById('composer')?.focus(), 50);
    } catch (err) {
      setError(err instanceof api.ApiError ? err.message : 'The group could not be created.');
      setBusy(false);
    }
  }

  return (
    <dialog
      ref={ref}
      className="dialog"
      aria-label="New group"
      onCancel={(e) => {
        e.preventDefault();
        onClose();
      }}
    >
      <form className="dialog-form" onSubmit={submit}>
        <h2>New group</h2>
        <label>
          Group name
          <input ref={first} value={title} maxLength={100} onChange={(e) => setTitle(e.target.value)} />
        </label>
        <label>
          Add people
          <input type="search" value={q} onChange={(e) => setQ(e.target.value)} maxLength={100} />
        </label>
        {picked.length > 0 && (
          <p className="picked" aria-label="Members">
            {picked.map((u) => (
              <button key={u.id} type="button" className="chip" aria-label={`Remove ${u.name}`} onClick={() => toggle(u)}>
                {u.name} ×
              </button>
            ))}
          </p>
        )}
        <div className="results">
          {found.map((u) => (
            <label key={u.id} className="person">
              <input type="checkbox" checked={picked.some((x) => x.id === u.id)} onChange={() => toggle(u)} />
              <span className="person-text">
                <span className="name">{u.name}</span>
                <span className="sub">{u.email}</span>
              </span>
            </label>
          ))}
        </div>
        {error && (
          <p className="form-error" role="alert">
            {error}
          </p>
        )}
        <div className="edit-actions">
          <button type="button" className="ghost" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" className="primary" disabled={busy}>
            Create group
          </button>
        </div>
      </form>
    </dialog>
  );
}
