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
          className="ghost"
          onClick={() => void togglePush()}
          disabled={pushState === 'denied' || pushState === 'unavailable'}
          aria-pressed={pushState === 'on'}
        >
          {pushLabel}
        </button>
      )}
      <button type="button" className="ghost" onClick={() => void logOut()}>
        Log out
      </button>
    </header>
  );
}
