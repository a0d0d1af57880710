//! Parsed domain values. Each has a `parse` constructor that is the only way to make one, so
//! a value that exists is valid: handlers parse at the edge, the domain never re-checks.

use std::fmt;

use uuid::Uuid;

/// Why an input value was refused. The message is safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

macro_rules! uuid_id {
    ($name:ident, $what:literal) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, Invalid> {
                Uuid::try_parse(s.trim())
                    .map($name)
                    .map_err(|_| Invalid(format!("{} must be a UUID", $what)))
            }

            pub fn new() -> Self {
                $name(Uuid::now_v7())
            }

            pub fn as_u128(&self) -> u128 {
                self.0.as_u128()
            }

            /// The canonical text form stored in the database and sent on the wire.
            pub fn as_string(&self) -> String {
                self.0.hyphenated().to_string()
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(UserId, "user id");
uuid_id!(MessageId, "message id");
uuid_id!(ConversationId, "conversation id");

/// A group's title: trimmed, 1–100 characters, no control characters (NUL included), no
/// invisible or direction-changing characters, as for display names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupTitle(String);

impl GroupTitle {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let s = s.trim();
        if s.is_empty() {
            return Err(Invalid("title must not be empty".into()));
        }
        if s.chars().count() > Self::MAX_CHARS {
            return Err(Invalid(format!(
                "title must be at most {} characters",
                Self::MAX_CHARS
            )));
        }
        if s.chars().any(char::is_control) {
            return Err(Invalid("title must not contain control characters".into()));
        }
        if s.chars().any(is_invisible_or_bidi) {
            return Err(Invalid(
                "title must not contain invisible or text-direction characters".into(),
            ));
        }
        Ok(GroupTitle(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Characters that change how the text around them is shown without being seen: the bidi
/// embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069, which make "Ada\u{202E}
/// nimda" display as "Ada admin"), the zero-width characters and marks (U+200B–U+200F,
/// U+2060, U+FEFF, U+061C, U+180E). Refused in names, where they serve only to impersonate.
pub fn is_invisible_or_bidi(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}'
        | '\u{FEFF}'
        | '\u{061C}'
        | '\u{180E}')
}

/// A lower-cased, trimmed e-mail address of plausible shape (`local@domain.tld`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let s = s.trim().to_lowercase();
        let bad = || Invalid("email must be a valid e-mail address".into());
        if s.is_empty()
            || s.len() > Self::MAX_LEN
            || s.chars()
                .any(|c| c.is_whitespace() || c.is_control() || is_invisible_or_bidi(c))
        {
            return Err(bad());
        }
        let (local, domain) = s.split_once('@').ok_or_else(bad)?;
        if local.is_empty()
            || domain.contains('@')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
        {
            return Err(bad());
        }
        Ok(Email(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A display name: trimmed, 1–100 characters, no control characters, no invisible or
/// direction-changing characters ([`is_invisible_or_bidi`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let s = s.trim();
        if s.is_empty() {
            return Err(Invalid("name must not be empty".into()));
        }
        if s.chars().count() > Self::MAX_CHARS {
            return Err(Invalid(format!(
                "name must be at most {} characters",
                Self::MAX_CHARS
            )));
        }
        if s.chars().any(char::is_control) {
            return Err(Invalid("name must not contain control characters".into()));
        }
        if s.chars().any(is_invisible_or_bidi) {
            return Err(Invalid(
                "name must not contain invisible or text-direction characters".into(),
            ));
        }
        Ok(DisplayName(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new password: 8–256 bytes. Never logged, never stored: only its argon2id hash is.
pub struct Password(String);

impl Password {
    pub const MIN_LEN: usize = 8;
    pub const MAX_LEN: usize = 256;

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if s.len() < Self::MIN_LEN {
            return Err(Invalid(format!(
                "password must be at least {} characters",
                Self::MIN_LEN
            )));
        }
        if s.len() > Self::MAX_LEN {
            return Err(Invalid(format!(
                "password must be at most {} bytes",
                Self::MAX_LEN
            )));
        }
        Ok(Password(s.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Message content: not blank, at most [`MessageBody::MAX_CHARS`] characters, no NUL
/// (which PostgreSQL cannot store in text, and which no client means to send). Kept as
/// sent (no trimming): whitespace inside a message is the sender's choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageBody(String);

impl MessageBody {
    pub const MAX_CHARS: usize = 10_000;

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if s.trim().is_empty() {
            return Err(Invalid("content must not be empty".into()));
        }
        if s.chars().count() > Self::MAX_CHARS {
            return Err(Invalid(format!(
                "content must be at most {} characters",
                Self::MAX_CHARS
            )));
        }
        if s.contains('\0') {
            return Err(Invalid("content must not contain NUL characters".into()));
        }
        Ok(MessageBody(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The client's idempotency key for a send (`clientMessageId` over REST, `tempId` on the
/// socket): 1–128 printable characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientMessageId(String);

impl ClientMessageId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if s.is_empty() || s.len() > Self::MAX_LEN || s.chars().any(char::is_control) {
            return Err(Invalid(format!(
                "client message id must be 1-{} printable characters",
                Self::MAX_LEN
            )));
        }
        Ok(ClientMessageId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A push device token (FCM registration token or Web Push endpoint): 1–4096 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceToken(String);

impl DeviceToken {
    pub const MAX_LEN: usize = 4096;

    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let s = s.trim();
        if s.is_empty()
            || s.len() > Self::MAX_LEN
            || s.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(Invalid(format!(
                "deviceToken must be 1-{} characters without spaces or control characters",
                Self::MAX_LEN
            )));
        }
        Ok(DeviceToken(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A Web Push subscription's endpoint: the URL the server will POST pushes to. Only
/// `https://` on a host name (no IP literal, no `localhost`), so that a subscription cannot
/// point the server at itself or at a private network; `allow_insecure` (for local tests
/// only: `WEBPUSH_ALLOW_INSECURE_ENDPOINTS`) lifts both rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEndpoint(String);

impl PushEndpoint {
    pub const MAX_LEN: usize = 2048;

    pub fn parse(s: &str, allow_insecure: bool) -> Result<Self, Invalid> {
        let s = s.trim();
        let bad = |why: &str| Invalid(format!("endpoint {why}"));
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(bad(&format!(
                "must be a URL of 1-{} characters",
                Self::MAX_LEN
            )));
        }
        let uri: axum::http::Uri = s.parse().map_err(|_| bad("must be a URL"))?;
        let host = uri.host().ok_or_else(|| bad("must be a URL with a host"))?;
        if !allow_insecure {
            if uri.scheme_str() != Some("https") {
                return Err(bad("must be an https:// URL"));
            }
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            if bare.parse::<std::net::IpAddr>().is_ok()
                || bare.eq_ignore_ascii_case("localhost")
                || bare.to_ascii_lowercase().ends_with(".localhost")
            {
                return Err(bad("must name a push service by its host name"));
            }
        } else if !matches!(uri.scheme_str(), Some("https" | "http")) {
            return Err(bad("must be an http(s):// URL"));
        }
        Ok(PushEndpoint(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A subscription's keys (RFC 8291): the browser's P-256 public key (65 bytes
/// uncompressed) and its 16-byte authentication secret, kept as unpadded base64url.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushKeys {
    pub p256dh: String,
    pub auth: String,
}

impl PushKeys {
    pub fn parse(p256dh: &str, auth: &str) -> Result<Self, Invalid> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let point = crate::push::vapid::decode_base64url(p256dh)
            .filter(|b| b.len() == 65)
            .filter(|b| web_push_native::p256::PublicKey::from_sec1_bytes(b).is_ok())
            .ok_or_else(|| {
                Invalid("keys.p256dh must be a base64url P-256 public key (65 bytes)".into())
            })?;
        let secret = crate::push::vapid::decode_base64url(auth)
            .filter(|b| b.len() == 16)
            .ok_or_else(|| Invalid("keys.auth must be a base64url 16-byte secret".into()))?;
        Ok(PushKeys {
            p256dh: b64.encode(point),
            auth: b64.encode(secret),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn email_is_normalised() {
        assert_eq!(
            Email::parse("  Ada@Example.ORG ").unwrap().as_str(),
            "ada@example.org"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@x.org",
            "a@b",
            "a b@x.org",
            "a@@x.org",
            "a@x.org.",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn message_body_limits() {
        assert!(MessageBody::parse("").is_err());
        assert!(MessageBody::parse(" \n\t").is_err());
        assert!(MessageBody::parse(&"é".repeat(MessageBody::MAX_CHARS)).is_ok());
        assert!(MessageBody::parse(&"a".repeat(MessageBody::MAX_CHARS + 1)).is_err());
        assert_eq!(MessageBody::parse(" hi ").unwrap().as_str(), " hi ");
    }

    #[test]
    fn nul_bidi_and_invisible_characters_are_refused_where_they_do_harm() {
        assert!(MessageBody::parse("a\0b").is_err());
        assert!(MessageBody::parse("tab\tand\nnewline").is_ok());
        assert!(
            MessageBody::parse("\u{202E}reversed").is_ok(),
            "content may quote them"
        );
        for name in [
            "Ada\0",
            "Ada\u{202E}nimda",
            "Ad\u{200B}a",
            "\u{2066}Ada",
            "Ada\u{FEFF}",
        ] {
            assert!(DisplayName::parse(name).is_err(), "{name:?} accepted");
        }
        assert!(DisplayName::parse("Zoë Ødegård 李").is_ok());
        for email in [
            "a\0@x.org",
            "a\u{7}b@x.org",
            "a@x\u{1b}.org",
            "a\u{200B}@x.org",
        ] {
            assert!(Email::parse(email).is_err(), "{email:?} accepted");
        }
        assert!(DeviceToken::parse("tok\0en").is_err());
    }

    #[test]
    fn ids_must_be_uuids() {
        assert!(UserId::parse("not-a-uuid").is_err());
        assert!(MessageId::parse("").is_err());
        let id = UserId::new();
        assert_eq!(UserId::parse(&id.as_string()).unwrap(), id);
    }

    #[test]
    fn push_endpoints_must_be_https_on_a_host_name() {
        assert!(PushEndpoint::parse("https://fcm.googleapis.com/fcm/send/abc", false).is_ok());
        for bad in [
            "",
            "not a url",
            "http://push.example.org/x",
            "https://127.0.0.1/x",
            "https://[::1]/x",
            "https://localhost:8080/x",
            "https://10.0.0.8/x",
            "ftp://push.example.org/x",
        ] {
            assert!(PushEndpoint::parse(bad, false).is_err(), "{bad:?} accepted");
        }
        assert!(PushEndpoint::parse("http://127.0.0.1:9/push", true).is_ok());
        assert!(PushEndpoint::parse("ftp://127.0.0.1:9/push", true).is_err());
    }

    #[test]
    fn push_keys_must_be_a_point_and_a_16_byte_secret() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (_, public) = crate::push::vapid::generate();
        let auth = b64.encode([7u8; 16]);
        let keys = PushKeys::parse(&format!("{public}="), &auth).unwrap();
        assert_eq!(keys.p256dh, public, "padding is dropped");
        assert!(
            PushKeys::parse(&b64.encode([4u8; 65]), &auth).is_err(),
            "not on the curve"
        );
        assert!(PushKeys::parse(&public, &b64.encode([7u8; 15])).is_err());
        assert!(PushKeys::parse("!!", &auth).is_err());
    }

    #[test]
    fn password_debug_hides_it() {
        let p = Password::parse("correct horse").unwrap();
        assert_eq!(format!("{p:?}"), "Password(***)");
        assert!(Password::parse("short").is_err());
    }

    proptest! {
        #[test]
        fn parsed_body_roundtrips(s in "\\PC{1,200}") {
            match MessageBody::parse(&s) {
                Ok(b) => prop_assert_eq!(b.as_str(), s.as_str()),
                Err(_) => prop_assert!(s.trim().is_empty()),
            }
        }

        #[test]
        fn email_parse_is_idempotent(local in "[a-z0-9.]{1,20}", domain in "[a-z]{1,10}\\.[a-z]{2,5}") {
            let e = Email::parse(&format!("{local}@{domain}")).unwrap();
            prop_assert_eq!(Email::parse(e.as_str()).unwrap(), e);
        }
    }
}
