import { lazy, Suspense, useEffect } from 'react';
import { useStore } from '../lib/store';
import { AuthScreen } from './AuthScreen';
import { Sidebar } from './Sidebar';
import { Banner, Notices } from './Notices';
import { TopBar } from './TopBar';

// The chat view (virtualised list, composer) is not needed to show the list: its own chunk.
const ChatView = lazy(() => import('./ChatView'));

export function App() {
  const me = useStore((s) => s.me);
  const hydrated = useStore((s) => s.hydrated);
  const activeId = useStore((s) => s.activeId);
  const active = useStore((s) => (s.activeId ? s.conversations[s.activeId] : undefined));

  useEffect(() => {
    document.title = me ? 'Nexus' : 'Nexus: log in';
  }, [me]);

  if (!hydrated) return <div className="splash" aria-busy="true" />;
  if (!me) {
    return (
      <>
        <AuthScreen />
        <Notices />
      </>
    );
  }
  return (
    <div className={`layout ${activeId ? 'has-active' : ''}`}>
      <TopBar />
      <Banner />
      <Sidebar />
      <main className="main" aria-label={active ? 'Chat' : 'No conversation open'}>
        {activeId && active ? (
          <Suspense fallback={<div className="empty" aria-busy="true" />}>
            <ChatView conversationId={activeId} />
          </Suspense>
        ) : (
          <div className="empty">
            <p>{activeId ? 'This conversation is not available.' : 'Pick a conversation, or search for people to start one.'}</p>
          </div>
        )}
      </main>
      <Notices />
    </div>
  );
}
