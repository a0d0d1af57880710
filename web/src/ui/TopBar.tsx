import { useEffect } from 'react';
import { logOut } from '../lib/engine';
import { useStore } from '../lib/store';
import { navigate } from './router';

export function TopBar() {
  const me = useStore((s) => s.me);
  const pushState = useStore((s) => s.pushState);

  useEffect(() => {
    void import('../lib/push').then((p) => p.resumePush()).catch(() => undefined);
  }, []);

  async function togglePush() {
    const push = await import('../lib/push');
    if (pushState === 'on') await push.unsubscribePush();
    else await push.enablePush();
  }

  const pushLabel =
    pushState === 'on'
      ? 'Turn notifications off'
      : pushState === 'denied'
        ? 'Notifications blocked'
        : pushState === 'unavailable'
          ? 'Notifications unavailable'
          : 'Turn notifications on';

  return (
    <header className="topbar">
      <a
        className="brand"
        href="/"
        onClick={(e) => {
          e.preventDefault();
          navigate(null);
        }}
      >
        <img src="/icon.svg" alt="" width={24} height={24} />
        <span>Nexus</span>
      </a>
      <span className="who" title={me?.email}>
        {me?.name}
      </span>
      {pushState !== 'unsupported' && (
        <button
          type="button"
          className="ghost bell"
          onClick={() => void togglePush()}
          disabled={pushState === 'denied' || pushState === 'unavailable'}
          aria-pressed={pushState === 'on'}
          aria-label={pushLabel}
          title={pushLabel}
        >
          <svg viewBox="0 0 16 16" width="18" height="18" aria-hidden="true">
            <path
              d="M4 11V7.5a4 4 0 0 1 8 0V11l1.2 1.5H2.8zM6.5 14a1.5 1.5 0 0 0 3 0"
              fill={pushState === 'on' ? 'currentColor' : 'none'}
              stroke="currentColor"
              strokeWidth="1.4"
              strokeLinejoin="round"
            />
            {pushState !== 'on' && <path d="M2.5 2.5l11 11" stroke="currentColor" strokeWidth="1.4" strokeLinecap="round" />}
          </svg>
          <span className="bell-text">{pushState === 'on' ? 'Notifications on' : 'Notifications'}</span>
        </button>
      )}
      <button type="button" className="ghost" onClick={() => void logOut()}>
        Log out
      </button>
    </header>
  );
}
