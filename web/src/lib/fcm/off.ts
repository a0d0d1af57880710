// Built when no VITE_FIREBASE_* variables are set: the browser subscribes through the
// standard Push API with the server's VAPID key (push.ts) and Firebase is not bundled.
export const enabled = false;

export async function fcmToken(): Promise<string | null> {
  return null;
}
