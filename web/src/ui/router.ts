// Two routes: `/` (the conversation list) and `/c/<conversationId>`. The server answers
// both with index.html, so a reload or a notification click lands in the right place.
import { openConversation } from '../lib/engine';

export function conversationFromPath(path: string): string | null {
  const m = /^\/c\/([^/]+)\/?$/.exec(path);
  return m ? decodeURIComponent(m[1]) : null;
}

export function followLocation(): void {
  void openConversation(conversationFromPath(location.pathname));
}

export function navigate(conversationId: string | null): void {
  const path = conversationId ? `/c/${encodeURIComponent(conversationId)}` : '/';
  if (location.pathname !== path) history.pushState(null, '', path);
  void openConversation(conversationId);
}

window.addEventListener('popstate', followLocation);
