//! VAPID (RFC 8292): the server's P-256 key pair, which browsers are given as
//! `applicationServerKey` when they subscribe, and the JWT that signs each Web Push request.
//!
//! Keys are written as the Web Push ecosystem writes them (the `web-push` npm tool, browser
//! APIs): the private key as the base64url of its 32-byte scalar, the public key as the
//! base64url of the 65-byte uncompressed point. The JWT is signed with `jsonwebtoken`
//! (ES256), which the server already uses for its own tokens.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;
use p256::SecretKey;

/// How long a VAPID signature is valid (RFC 8292 allows at most 24 hours).
pub const VAPID_VALIDITY_SECS: u64 = 12 * 60 * 60;

pub struct VapidKey {
    encoding: EncodingKey,
    /// base64url, uncompressed point: the `k=` of every request and the browsers'
    /// `applicationServerKey`.
    public: String,
    subject: String,
}

impl std::fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidKey")
            .field("public", &self.public)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// A new key pair: (private, public), both base64url.
pub fn generate() -> (String, String) {
    let secret = SecretKey::random(&mut rand::rngs::OsRng);
    (
        URL_SAFE_NO_PAD.encode(secret.to_bytes()),
        public_of(&secret),
    )
}

fn public_of(secret: &SecretKey) -> String {
    URL_SAFE_NO_PAD.encode(secret.public_key().to_encoded_point(false).as_bytes())
}

/// base64url with or without padding (and the standard alphabet, which some tools write).
pub fn decode_base64url(s: &str) -> Option<Vec<u8>> {
    let s: String = s
        .trim()
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    URL_SAFE_NO_PAD.decode(s).ok()
}

impl VapidKey {
    /// `VAPID_PRIVATE_KEY` and `VAPID_SUBJECT` (a `mailto:` or `https:` URL where the push
    /// service's operators can reach you).
    pub fn parse(private_key: &str, subject: &str) -> Result<VapidKey, String> {
        let bytes = decode_base64url(private_key)
            .filter(|b| b.len() == 32)
            .ok_or("VAPID_PRIVATE_KEY must be the base64url of a 32-byte P-256 private key (`nexus vapid-keys` makes one)")?;
        let secret = SecretKey::from_slice(&bytes)
            .map_err(|_| "VAPID_PRIVATE_KEY is not a valid P-256 private key")?;
        let subject = subject.trim();
        if !(subject.starts_with("mailto:") || subject.starts_with("https://")) {
            return Err(format!(
                "VAPID_SUBJECT must be a mailto: or https: URL, got {subject:?}"
            ));
        }
        let der = secret
            .to_pkcs8_der()
            .map_err(|e| format!("VAPID_PRIVATE_KEY: {e}"))?;
        Ok(VapidKey {
            encoding: EncodingKey::from_ec_der(der.as_bytes()),
            public: public_of(&secret),
            subject: subject.to_string(),
        })
    }

    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// The `Authorization` header for a push to an endpoint of `origin`
    /// (`scheme://host[:port]`): `vapid t=JWT, k=PUBLIC`.
    pub fn authorization(&self, origin: &str, now_secs: u64) -> Result<String, String> {
        #[derive(serde::Serialize)]
        struct Claims<'a> {
            aud: &'a str,
            exp: u64,
            sub: &'a str,
        }
        let claims = Claims {
            aud: origin,
            exp: now_secs + VAPID_VALIDITY_SECS,
            sub: &self.subject,
        };
        let jwt = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.encoding)
            .map_err(|e| format!("cannot sign the VAPID JWT: {e}"))?;
        Ok(format!("vapid t={jwt}, k={}", self.public))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_pair_parses_and_signs_verifiably() {
        let (private, public) = generate();
        let key = VapidKey::parse(&private, "mailto:ops@example.org").unwrap();
        assert_eq!(key.public_key(), public);
        let header = key
            .authorization("https://push.example.net", 1_000)
            .unwrap();
        let (t, k) = header
            .strip_prefix("vapid t=")
            .and_then(|rest| rest.split_once(", k="))
            .unwrap();
        assert_eq!(k, public);
        let point = decode_base64url(k).unwrap();
        let decoding = jsonwebtoken::DecodingKey::from_ec_components(
            &URL_SAFE_NO_PAD.encode(&point[1..33]),
            &URL_SAFE_NO_PAD.encode(&point[33..65]),
        )
        .unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
        validation.validate_exp = false;
        validation.set_audience(&["https://push.example.net"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(t, &decoding, &validation).unwrap();
        assert_eq!(data.claims["sub"], "mailto:ops@example.org");
        assert_eq!(data.claims["exp"], 1_000 + VAPID_VALIDITY_SECS);
    }

    #[test]
    fn bad_keys_and_subjects_are_refused() {
        let (private, _) = generate();
        assert!(VapidKey::parse("short", "mailto:a@b.c").is_err());
        assert!(VapidKey::parse(&private, "ops@example.org").is_err());
        assert!(VapidKey::parse(&format!("{private}=="), "https://example.org").is_ok());
    }
}
