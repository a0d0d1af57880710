// Boot: the stored session opens the user's IndexedDB and shows what it holds before any
// network request; then the engine connects and catches up.
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './ui/App';
import { start, storedSession } from './lib/engine';
import { useStore } from './lib/store';
import { followLocation } from './ui/router';
import './styles.css';

const session = storedSession();
if (session) void start(session).then(followLocation);
else useStore.setState({ hydrated: true });

const root = document.getElementById('root');
if (root) {
  createRoot(root).render(
    <StrictMode>
      <App />
    </StrictMode>,
  );
}

if (import.meta.env.PROD && 'serviceWorker' in navigator) {
  window.addEventListener('load', () => {
    navigator.serviceWorker.register('/sw.js').catch((e) => console.warn('nexus: no service worker', e));
  });
  navigator.serviceWorker.addEventListener('message', (ev: MessageEvent<{ type?: string; url?: string }>) => {
    if (ev.data?.type === 'open' && ev.data.url) {
      history.pushState(null, '', ev.data.url);
      followLocation();
    }
  });
}
