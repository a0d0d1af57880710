//! Push devices: FCM registration tokens and Web Push subscriptions, many per user, each
//! belonging to one user at a time (docs/push.md).

use nexus_protocol::{self as wire, DeviceKind};

use super::{Store, StoreError};
use crate::clock::{iso, Millis};
use crate::domain::UserId;

/// A device as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeviceRecord {
    pub id: String,
    pub user_id: String,
    pub kind: String,
    /// The FCM registration token, or the Web Push subscription's endpoint.
    pub token: String,
    /// Web Push only: the browser's public key and authentication secret (base64url).
    pub p256dh: Option<String>,
    pub auth: Option<String>,
    pub created_at: Millis,
    pub last_used_at: Millis,
}

impl DeviceRecord {
    pub fn kind(&self) -> Option<DeviceKind> {
        DeviceKind::parse(&self.kind)
    }

    /// The wire shape: the owner's own view (never the subscription's keys).
    pub fn public(&self) -> Option<wire::Device> {
        let kind = self.kind()?;
        let (token, endpoint) = match kind {
            DeviceKind::Fcm => (Some(self.token.clone()), None),
            DeviceKind::Webpush => (None, Some(self.token.clone())),
        };
        Some(wire::Device {
            id: self.id.clone(),
            kind,
            token,
            endpoint,
            created_at: iso(self.created_at),
            last_used_at: iso(self.last_used_at),
        })
    }
}

/// A device to register: what the client sent, parsed.
#[derive(Debug, Clone)]
pub struct NewDevice<'a> {
    pub kind: DeviceKind,
    pub token: &'a str,
    pub p256dh: Option<&'a str>,
    pub auth: Option<&'a str>,
}

const DEVICE_SELECT: &str =
    "SELECT id, user_id, kind, token, p256dh, auth, created_at, last_used_at FROM devices";

impl Store {
    /// Registers a device for `user` and keeps at most `max_per_user` of theirs, dropping
    /// the least recently used. A token (or endpoint) already registered to `user` is
    /// refreshed (new keys, used now) and keeps its id; one registered to someone else
    /// moves to `user` as a new device (the same phone after another login), so its former
    /// owner stops receiving on it.
    #[tracing::instrument(skip_all, fields(user.id = %user), err)]
    pub async fn register_device(
        &self,
        user: UserId,
        device: &NewDevice<'_>,
        max_per_user: u32,
        now: Millis,
    ) -> Result<DeviceRecord, StoreError> {
        let user = user.as_string();
        let mut tx = self.write.begin().await?;
        let id: String = sqlx::query_scalar(
            "INSERT INTO devices (id, user_id, kind, token, p256dh, auth, created_at, last_used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (token) DO UPDATE SET \
               id = CASE WHEN devices.user_id = excluded.user_id THEN devices.id ELSE excluded.id END, \
               created_at = CASE WHEN devices.user_id = excluded.user_id \
                 THEN devices.created_at ELSE excluded.created_at END, \
               user_id = excluded.user_id, kind = excluded.kind, p256dh = excluded.p256dh, \
               auth = excluded.auth, last_used_at = excluded.last_used_at \
             RETURNING id",
        )
        .bind(uuid::Uuid::new_v4().hyphenated().to_string())
        .bind(&user)
        .bind(device.kind.as_str())
        .bind(device.token)
        .bind(device.p256dh)
        .bind(device.auth)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        // The newest `max_per_user` stay; the one just registered is the newest of all.
        sqlx::query(
            "DELETE FROM devices WHERE user_id = $1 AND id NOT IN \
             (SELECT id FROM devices WHERE user_id = $1 \
              ORDER BY last_used_at DESC, created_at DESC, id DESC LIMIT $2)",
        )
        .bind(&user)
        .bind(i64::from(max_per_user))
        .execute(&mut *tx)
        .await?;
        let record: DeviceRecord = sqlx::query_as(&format!("{DEVICE_SELECT} WHERE id = $1"))
            .bind(&id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Removes `user`'s device with this token or endpoint (of this kind), or every device
    /// of that kind when `token` is `None`. Another user's devices are never touched.
    #[tracing::instrument(skip_all, fields(user.id = %user), err)]
    pub async fn unregister_devices(
        &self,
        user: UserId,
        kind: DeviceKind,
        token: Option<&str>,
    ) -> Result<u64, StoreError> {
        let done = match token {
            Some(t) => {
                sqlx::query("DELETE FROM devices WHERE user_id = $1 AND kind = $2 AND token = $3")
                    .bind(user.as_string())
                    .bind(kind.as_str())
                    .bind(t)
                    .execute(&self.write)
                    .await?
            }
            None => {
                sqlx::query("DELETE FROM devices WHERE user_id = $1 AND kind = $2")
                    .bind(user.as_string())
                    .bind(kind.as_str())
                    .execute(&self.write)
                    .await?
            }
        };
        Ok(done.rows_affected())
    }

    /// `user`'s devices, most recently used first.
    pub async fn devices(&self, user: UserId) -> Result<Vec<DeviceRecord>, StoreError> {
        // Only the pool writes devices: nothing to wait for.
        let sql = format!(
            "{DEVICE_SELECT} WHERE user_id = $1 ORDER BY last_used_at DESC, created_at DESC, id DESC"
        );
        self.reads
            .unsettled(async |conn| {
                Ok(sqlx::query_as(&sql)
                    .bind(user.as_string())
                    .fetch_all(conn)
                    .await?)
            })
            .await
    }

    /// Forgets a device its push service called invalid (token hygiene). By token, not by
    /// owner: a dead token is dead whoever registered it since.
    #[tracing::instrument(skip_all, err)]
    pub async fn remove_device_token(&self, token: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM devices WHERE token = $1")
            .bind(token)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records that a push reached the device. Written at most once per `every` ms per
    /// device, so a busy conversation does not turn every push into a database write.
    pub async fn touch_device(
        &self,
        id: &str,
        now: Millis,
        every: Millis,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE devices SET last_used_at = $1 WHERE id = $2 AND last_used_at < $3")
            .bind(now)
            .bind(id)
            .bind(now - every)
            .execute(&self.write)
            .await?;
        Ok(())
    }
}
