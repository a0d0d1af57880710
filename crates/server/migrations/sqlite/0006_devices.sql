-- Push devices as a table of their own (docs/push.md): an id, a kind (`fcm` for an FCM
-- registration token, `webpush` for a browser's Web Push subscription), the token or the
-- subscription's endpoint (unique: one device belongs to one user at a time), the
-- subscription's keys, and when the device was registered and last used. Keep in step
-- with ../postgres/0006_devices.sql (same version).
CREATE TABLE devices (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id),
    kind         TEXT NOT NULL CHECK (kind IN ('fcm', 'webpush')),
    token        TEXT NOT NULL UNIQUE,
    p256dh       TEXT,
    auth         TEXT,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL
);
CREATE INDEX devices_by_user ON devices (user_id, last_used_at);

-- Every token registered so far was an FCM token. SQLite has no UUID function: a random
-- version-4 UUID is spelled out from 16 random bytes.
INSERT INTO devices (id, user_id, kind, token, created_at, last_used_at)
SELECT lower(substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3) || '-'
             || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(h, 18, 3) || '-'
             || substr(h, 21, 12)),
       user_id, 'fcm', token, created_at, created_at
FROM (SELECT hex(randomblob(16)) AS h, user_id, token, created_at FROM push_devices) AS old;

DROP TABLE push_devices;
