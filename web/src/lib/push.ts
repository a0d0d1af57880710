// Push notifications: the service worker subscribes with the server's VAPID key
// (`GET /users/webpush/vapid-public-key`) and the subscription goes to
// `POST /users/webpush/subscribe`. A notification click opens its conversation (sw.ts).
// Loaded on demand: the first screen does not need it.
import * as api from './api';
import { useStore } from './store';

const KEY = 'nexus.push.endpoint';
const FCM_KEY = 'nexus.push.fcm';

export function pushSupported(): boolean {
  return typeof window !== 'undefined' && 'serviceWorker' in navigator && 'PushManager' in window && 'Notification' in window;
}

function urlBase64ToBytes(base64: string): Uint8Array<ArrayBuffer> {
  const padded = (base64 + '='.repeat((4 - (base64.length % 4)) % 4)).replace(/-/g, '+').replace(/_/g, '/');
  const raw = atob(padded);
  const out = new Uint8Array(new ArrayBuffer(raw.length));
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

async function serverKey(): Promise<string | null> {
  try {
    return (await api.vapidPublicKey()).publicKey || null;
  } catch {
    return null; // the server has no Web Push configured
  }
}

/** The active service worker (registered at load by main.tsx), if one comes within 5 s. */
async function registration(): Promise<ServiceWorkerRegistration | null> {
  if (!pushSupported()) return null;
  const timeout = new Promise<null>((ok) => setTimeout(() => ok(null), 5000));
  return Promise.race([navigator.serviceWorker.ready, timeout]);
}

/** With the brief's VITE_FIREBASE_* settings: an FCM token instead of a Web Push subscription. */
async function enableFcm(reg: ServiceWorkerRegistration): Promise<void> {
  const set = useStore.setState;
  const permission = await Notification.requestPermission();
  if (permission !== 'granted') return set({ pushState: 'denied' });
  const fcm = await import('nexus:fcm');
  const token = await fcm.fcmToken(reg).catch(() => null);
  if (!token) return set({ pushState: 'unavailable' });
  await api.fcmRegister(token);
  localStorage.setItem(FCM_KEY, token);
  set({ pushState: 'on' });
}

/** Asks for permission (a user gesture), subscribes and tells the server. */
export async function enablePush(): Promise<void> {
  const set = useStore.setState;
  const reg = await registration();
  if (!reg) return set({ pushState: 'unsupported' });
  if (import.meta.env.VITE_FIREBASE_API_KEY) return enableFcm(reg);
  const key = await serverKey();
  if (!key) return set({ pushState: 'unavailable' });
  const permission = await Notification.requestPermission();
  if (permission !== 'granted') return set({ pushState: 'denied' });
  try {
    const sub =
      (await reg.pushManager.getSubscription()) ??
      (await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: urlBase64ToBytes(key) }));
    await api.webpushSubscribe(sub.toJSON());
    localStorage.setItem(KEY, sub.endpoint);
    set({ pushState: 'on' });
  } catch (e) {
    console.warn('nexus: push subscription failed', e);
    set({ pushState: 'denied' });
  }
}

/** At start: the state of the button, and the server told again of a live subscription. */
export async function resumePush(): Promise<void> {
  const set = useStore.setState;
  const reg = await registration();
  if (!reg) return set({ pushState: 'unsupported' });
  if (Notification.permission === 'denied') return set({ pushState: 'denied' });
  if (localStorage.getItem(FCM_KEY)) return set({ pushState: Notification.permission === 'granted' ? 'on' : 'off' });
  const sub = await reg.pushManager.getSubscription();
  if (!sub || Notification.permission !== 'granted') return set({ pushState: 'off' });
  try {
    await api.webpushSubscribe(sub.toJSON());
    localStorage.setItem(KEY, sub.endpoint);
    set({ pushState: 'on' });
  } catch {
    set({ pushState: 'off' });
  }
}

export async function unsubscribePush(tellServer = true): Promise<void> {
  const fcm = localStorage.getItem(FCM_KEY);
  if (fcm) {
    if (tellServer) await api.fcmUnregister(fcm).catch(() => undefined);
    localStorage.removeItem(FCM_KEY);
  }
  const reg = await registration();
  const sub = await reg?.pushManager.getSubscription();
  const endpoint = sub?.endpoint ?? localStorage.getItem(KEY);
  if (tellServer && endpoint) await api.webpushUnsubscribe(endpoint).catch(() => undefined);
  await sub?.unsubscribe().catch(() => false);
  localStorage.removeItem(KEY);
  useStore.setState({ pushState: 'off' });
}
