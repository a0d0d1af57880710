//! Accounts.

use nexus_protocol as wire;

use super::{Store, StoreError};
use crate::clock::Millis;
use crate::domain::{DisplayName, Email, UserId};

/// A user as stored, including the password hash. Never sent anywhere: [`UserRecord::public`]
/// is what leaves the server.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRecord {
    pub id: String,
    pub name: String,
    pub email: String,
    pub password_hash: String,
}

impl UserRecord {
    pub fn public(&self) -> wire::User {
        wire::User {
            id: self.id.clone(),
            name: self.name.clone(),
            email: self.email.clone(),
        }
    }
}

impl Store {
    /// Inserts a user and their change counter. `Conflict` when the e-mail is taken.
    #[tracing::instrument(skip_all)]
    pub async fn create_user(
        &self,
        id: UserId,
        name: &DisplayName,
        email: &Email,
        password_hash: &str,
        now: Millis,
    ) -> Result<UserRecord, StoreError> {
        let id = id.as_string();
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO users (id, name, email, password_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(name.as_str())
        .bind(email.as_str())
        .bind(password_hash)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_insert)?;
        sqlx::query("INSERT INTO user_seqs (user_id, seq) VALUES ($1, 0)")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(UserRecord {
            id,
            name: name.as_str().to_string(),
            email: email.as_str().to_string(),
            password_hash: password_hash.to_string(),
        })
    }

    // Only the pool writes users: their reads have nothing to wait for (`Reads::unsettled`).

    pub async fn user_by_email(&self, email: &Email) -> Result<Option<UserRecord>, StoreError> {
        self.reads
            .unsettled(async |conn| {
                Ok(sqlx::query_as(
                    "SELECT id, name, email, password_hash FROM users WHERE email = $1",
                )
                .bind(email.as_str())
                .fetch_optional(conn)
                .await?)
            })
            .await
    }

    pub async fn user_by_id(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        self.reads
            .unsettled(async |conn| {
                Ok(
                    sqlx::query_as(
                        "SELECT id, name, email, password_hash FROM users WHERE id = $1",
                    )
                    .bind(id.as_string())
                    .fetch_optional(conn)
                    .await?,
                )
            })
            .await
    }

    /// Users other than `me` whose name contains `term` (case-insensitive), or whose
    /// e-mail is `exact_email`; by name.
    pub async fn search_users(
        &self,
        me: UserId,
        term: &str,
        exact_email: Option<&Email>,
        limit: i64,
    ) -> Result<Vec<UserRecord>, StoreError> {
        let escaped = term
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let pattern = format!("%{escaped}%");
        self.reads
            .unsettled(async |conn| {
                Ok(sqlx::query_as(
                    "SELECT id, name, email, password_hash FROM users \
                     WHERE id <> $1 AND (LOWER(name) LIKE $2 ESCAPE '\\' OR email = $3) \
                     ORDER BY LOWER(name), id LIMIT $4",
                )
                .bind(me.as_string())
                .bind(pattern)
                .bind(exact_email.map(Email::as_str).unwrap_or(""))
                .bind(limit)
                .fetch_all(conn)
                .await?)
            })
            .await
    }
}
