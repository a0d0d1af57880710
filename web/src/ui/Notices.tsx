import { dismiss, useStore } from '../lib/store';

/** The connection banner: a status region that says "offline" when the browser is. */
export function Banner() {
  const network = useStore((s) => s.network);
  const connection = useStore((s) => s.connection);
  const queued = useStore((s) => {
    let n = 0;
    for (const t of Object.values(s.threads)) for (const k of t.keys) if (t.byKey[k].local === 'sending') n++;
    return n;
  });
  const changes = useStore((s) => Object.keys(s.changes).length);
  let text = '';
  if (!network) {
    const waiting = [
      queued > 0 ? `${queued} message${queued === 1 ? '' : 's'}` : '',
      changes > 0 ? `${changes} edit${changes === 1 ? '' : 's'} or delete${changes === 1 ? '' : 's'}` : '',
    ].filter(Boolean);
    text =
      waiting.length > 0
        ? `You are offline. ${waiting.join(' and ')} will be sent when you are back online.`
        : 'You are offline. Messages you write are kept and sent when you are back online.';
  } else if (connection === 'connecting') text = 'Connecting…';
  else if (connection === 'syncing') text = 'Catching up…';
  return (
    <div className={`banner ${text ? 'shown' : ''} ${network ? '' : 'offline'}`} role="status" aria-live="polite">
      {text}
    </div>
  );
}

export function Notices() {
  const notices = useStore((s) => s.notices);
  return (
    <div className="notices">
      {notices.map((n) => (
        <div key={n.id} className={`notice ${n.kind}`} role={n.kind === 'error' ? 'alert' : 'status'}>
          <span>{n.text}</span>
          <button type="button" className="icon" aria-label="Dismiss" onClick={() => dismiss(n.id)}>
            ×
          </button>
        </div>
      ))}
    </div>
  );
}
