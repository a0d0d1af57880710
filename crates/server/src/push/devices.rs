//! A user's push devices, as the HTTP routes see them: register an FCM token, subscribe a
//! browser, list, remove. Every answer shows only the caller's own devices.

use std::sync::Arc;

use nexus_protocol::{self as wire, DeviceKind};

use crate::clock::now_ms;
use crate::domain::{DeviceToken, PushEndpoint, PushKeys, UserId};
use crate::error::DomainError;
use crate::store::{DeviceRecord, NewDevice, Store};

#[derive(Clone)]
pub struct Devices {
    store: Store,
    /// `MAX_DEVICES_PER_USER`: registering one more drops the least recently used.
    max_per_user: u32,
    /// The VAPID public key browsers subscribe with; `None` when Web Push is off.
    vapid_public: Option<Arc<str>>,
    allow_insecure_endpoints: bool,
}

impl Devices {
    pub fn new(
        store: Store,
        max_per_user: u32,
        vapid_public: Option<String>,
        allow_insecure_endpoints: bool,
    ) -> Devices {
        Devices {
            store,
            max_per_user,
            vapid_public: vapid_public.map(Arc::from),
            allow_insecure_endpoints,
        }
    }

    /// `POST /users/fcm/register`: the brief's answer, the user with their tokens.
    #[tracing::instrument(skip_all, fields(user.id = %me), err(level = "debug"))]
    pub async fn register_fcm(
        &self,
        me: UserId,
        token: &str,
    ) -> Result<wire::UserWithDevices, DomainError> {
        let token = DeviceToken::parse(token)?;
        let device = NewDevice {
            kind: DeviceKind::Fcm,
            token: token.as_str(),
            p256dh: None,
            auth: None,
        };
        self.store
            .register_device(me, &device, self.max_per_user, now_ms())
            .await?;
        self.user_with_tokens(me).await
    }

    /// `POST /users/fcm/unregister`: one token, or every FCM token of the caller.
    #[tracing::instrument(skip_all, fields(user.id = %me), err(level = "debug"))]
    pub async fn unregister_fcm(
        &self,
        me: UserId,
        token: Option<&str>,
    ) -> Result<wire::UserWithDevices, DomainError> {
        let token = token.map(DeviceToken::parse).transpose()?;
        self.store
            .unregister_devices(me, DeviceKind::Fcm, token.as_ref().map(DeviceToken::as_str))
            .await?;
        self.user_with_tokens(me).await
    }

    /// `POST /users/webpush/subscribe`: the browser's `PushSubscription`.
    #[tracing::instrument(skip_all, fields(user.id = %me), err(level = "debug"))]
    pub async fn subscribe_webpush(
        &self,
        me: UserId,
        subscription: &wire::WebPushSubscription,
    ) -> Result<wire::Device, DomainError> {
        let endpoint = PushEndpoint::parse(&subscription.endpoint, self.allow_insecure_endpoints)?;
        let keys = PushKeys::parse(&subscription.keys.p256dh, &subscription.keys.auth)?;
        let device = NewDevice {
            kind: DeviceKind::Webpush,
            token: endpoint.as_str(),
            p256dh: Some(&keys.p256dh),
            auth: Some(&keys.auth),
        };
        let record = self
            .store
            .register_device(me, &device, self.max_per_user, now_ms())
            .await?;
        public(&record)
    }

    /// `POST /users/webpush/unsubscribe`: removes the caller's subscription with this
    /// endpoint, if they have one (answered the same either way).
    #[tracing::instrument(skip_all, fields(user.id = %me), err(level = "debug"))]
    pub async fn unsubscribe_webpush(&self, me: UserId, endpoint: &str) -> Result<(), DomainError> {
        let endpoint = endpoint.trim();
        if endpoint.is_empty() || endpoint.len() > PushEndpoint::MAX_LEN {
            return Err(DomainError::Validation(
                "endpoint must be the subscription's URL".into(),
            ));
        }
        self.store
            .unregister_devices(me, DeviceKind::Webpush, Some(endpoint))
            .await?;
        Ok(())
    }

    /// `GET /users/devices`: the caller's devices, most recently used first.
    pub async fn list(&self, me: UserId) -> Result<Vec<wire::Device>, DomainError> {
        self.store.devices(me).await?.iter().map(public).collect()
    }

    /// `GET /users/webpush/vapid-public-key`.
    pub fn vapid_public_key(&self) -> Result<wire::VapidPublicKey, DomainError> {
        self.vapid_public
            .as_ref()
            .map(|k| wire::VapidPublicKey {
                public_key: k.to_string(),
            })
            .ok_or_else(|| {
                DomainError::NotFound("Web Push is not configured on this server".into())
            })
    }

    async fn user_with_tokens(&self, me: UserId) -> Result<wire::UserWithDevices, DomainError> {
        let user = self
            .store
            .user_by_id(me)
            .await?
            .ok_or_else(|| DomainError::Unauthorized("Unauthorized".into()))?;
        let tokens: Vec<String> = self
            .store
            .devices(me)
            .await?
            .into_iter()
            .filter(|d| d.kind() == Some(DeviceKind::Fcm))
            .map(|d| d.token)
            .collect();
        Ok(wire::UserWithDevices {
            id: user.id,
            name: user.name,
            email: user.email,
            fcm_device_token: tokens.first().cloned(),
            device_tokens: tokens,
        })
    }
}

fn public(record: &DeviceRecord) -> Result<wire::Device, DomainError> {
    record.public().ok_or_else(|| {
        DomainError::internal(anyhow::anyhow!(
            "device {} has kind {:?}",
            record.id,
            record.kind
        ))
    })
}
