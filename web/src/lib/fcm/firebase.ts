// Built instead of off.ts when VITE_FIREBASE_API_KEY is set (vite.config.ts): the brief's
// Firebase Cloud Messaging web SDK, for deployments that push to browsers through FCM. It
// needs `npm install firebase` first; the token goes to `POST /users/fcm/register`.
// Pushes arrive at the app's own service worker (sw.ts), which shows them.
import { initializeApp } from 'firebase/app';
import { getMessaging, getToken } from 'firebase/messaging';

export const enabled = true;

const env = import.meta.env;

export async function fcmToken(registration: ServiceWorkerRegistration): Promise<string | null> {
  const app = initializeApp({
    apiKey: env.VITE_FIREBASE_API_KEY,
    authDomain: env.VITE_FIREBASE_AUTH_DOMAIN,
    projectId: env.VITE_FIREBASE_PROJECT_ID,
    storageBucket: env.VITE_FIREBASE_STORAGE_BUCKET,
    messagingSenderId: env.VITE_FIREBASE_MESSAGING_SENDER_ID,
    appId: env.VITE_FIREBASE_APP_ID,
  });
  const token = await getToken(getMessaging(app), {
    vapidKey: env.VITE_FIREBASE_VAPID_KEY,
    serviceWorkerRegistration: registration,
  });
  return token || null;
}
