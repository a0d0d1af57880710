//! What makes an access token invalid before it expires: a logout (that token) and a
//! password change (every token issued before it).

use super::{Store, StoreError};
use crate::clock::Millis;
use crate::domain::UserId;

/// What the database says about one token of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenState {
    /// Tokens issued before this time (ms) are invalid: the password changed then.
    pub valid_from: Millis,
    /// This token was logged out.
    pub revoked: bool,
}

impl Store {
    /// `None` when the user does not exist (any more).
    pub async fn token_state(
        &self,
        user: UserId,
        jti: &str,
    ) -> Result<Option<TokenState>, StoreError> {
        // Only the pool writes users and revoked tokens: nothing to wait for.
        let row: Option<(i64, i64)> = self
            .reads
            .unsettled(async |conn| {
                Ok(sqlx::query_as(
                    "SELECT u.tokens_valid_from, \
                            (SELECT COUNT(*) FROM revoked_tokens r WHERE r.jti = $2) \
                     FROM users u WHERE u.id = $1",
                )
                .bind(user.as_string())
                .bind(jti)
                .fetch_optional(conn)
                .await?)
            })
            .await?;
        Ok(row.map(|(valid_from, revoked)| TokenState {
            valid_from,
            revoked: revoked > 0,
        }))
    }

    /// Revokes token `jti` of `user` until `expires_at` (ms), and forgets revocations of
    /// tokens that have expired by now (they are refused for their expiry anyway).
    pub async fn revoke_token(
        &self,
        user: UserId,
        jti: &str,
        expires_at: Millis,
        now: Millis,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO revoked_tokens (jti, user_id, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(user.as_string())
        .bind(expires_at)
        .execute(&self.write)
        .await?;
        sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < $1")
            .bind(now)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Stores a new password hash; tokens issued before `valid_from` (ms) are invalid.
    pub async fn set_password(
        &self,
        user: UserId,
        password_hash: &str,
        valid_from: Millis,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET password_hash = $2, tokens_valid_from = $3 WHERE id = $1")
            .bind(user.as_string())
            .bind(password_hash)
            .bind(valid_from)
            .execute(&self.write)
            .await?;
        Ok(())
    }
}
