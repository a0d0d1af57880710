// `nexus:fcm` is src/lib/fcm/off.ts, or firebase.ts when VITE_FIREBASE_API_KEY is set.
declare module 'nexus:fcm' {
  export const enabled: boolean;
  export function fcmToken(registration: ServiceWorkerRegistration): Promise<string | null>;
}
