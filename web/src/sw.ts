/// <reference lib="webworker" />
// The service worker: keeps the app shell (index.html and the build's files) so that a
// reload without network still opens the app with its stored conversations, and shows
// push notifications. The list of files is filled in by the build (vite.config.ts).
declare const self: ServiceWorkerGlobalScope;

// Both filled in by the build: the shell's files, and a name that changes with them.
const PRECACHE: string[] = ['__NEXUS_PRECACHE__'].filter((f) => f.startsWith('/'));
const VERSION = '__NEXUS_VERSION__';
const CACHE = `nexus-shell-${VERSION}`;
const API = /^\/(auth|users|messages|sync|conversations|health|ready|metrics|socket\.io|ws)(\/|$)/;

self.addEventListener('install', (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      await cache.addAll(PRECACHE);
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) if (name.startsWith('nexus-shell-') && name !== CACHE) await caches.delete(name);
      await self.clients.claim();
    })(),
  );
});

self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET') return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin || API.test(url.pathname)) return;
  if (req.mode === 'navigate') {
    // Network first (a new build shows at once), the cached shell when offline.
    event.respondWith(
      (async () => {
        try {
          const fresh = await fetch(req);
          if (fresh.ok) (await caches.open(CACHE)).put('/index.html', fresh.clone());
          return fresh;
        } catch {
          return (await caches.match('/index.html', { ignoreVary: true })) ?? Response.error();
        }
      })(),
    );
    return;
  }
  if (url.pathname.startsWith('/assets/') || PRECACHE.includes(url.pathname)) {
    // Hashed files never change: cache first.
    event.respondWith(
      (async () => {
        const hit = await caches.match(req, { ignoreVary: true });
        if (hit) return hit;
        const res = await fetch(req);
        if (res.ok) (await caches.open(CACHE)).put(req, res.clone());
        return res;
      })(),
    );
  }
});

/** What the server's Web Push sends (docs/push.md): title, body, tag, and string data. */
interface PushPayload {
  title?: string;
  tag?: string;
  /** FCM's shape (the brief's Firebase option). */
  notification?: { title?: string; body?: string; tag?: string };
  body?: string;
  conversationId?: string;
  senderId?: string;
  messageId?: string;
  url?: string;
  data?: Record<string, string>;
}

self.addEventListener('push', (event) => {
  let payload: PushPayload = {};
  try {
    payload = (event.data?.json() as PushPayload) ?? {};
  } catch {
    payload = { body: event.data?.text() };
  }
  const data = { ...(payload.data ?? {}), ...(payload.notification ?? {}), ...payload, ...(payload.notification?.title ? { title: payload.notification.title, body: payload.notification.body } : {}) };
  const conversation = data.conversationId ?? data.senderId;
  const url = data.url ?? (conversation ? `/c/${conversation}` : '/');
  event.waitUntil(
    (async () => {
      const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
      // Someone already looking at that very conversation needs no notification.
      const looking = windows.some((w) => (w as WindowClient).focused && new URL(w.url).pathname === url);
      if (looking) return;
      await self.registration.showNotification(data.title ?? 'New message', {
        body: data.body ?? '',
        icon: '/icon.svg',
        tag: payload.tag ?? conversation ?? 'nexus',
        data: { url },
      });
    })(),
  );
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const url: string = (event.notification.data as { url?: string } | null)?.url ?? '/';
  event.waitUntil(
    (async () => {
      const windows = (await self.clients.matchAll({ type: 'window', includeUncontrolled: true })) as WindowClient[];
      const open = windows.find((w) => new URL(w.url).origin === self.location.origin);
      if (open) {
        await open.focus();
        open.postMessage({ type: 'open', url });
        return;
      }
      await self.clients.openWindow(url);
    })(),
  );
});

export {};
