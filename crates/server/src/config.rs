//! Configuration: environment variables (and an optional `.env` file), with the names and
//! defaults of the README's configuration table. Every variable is also a command-line flag, so `nexus --help`
//! documents them all.

use std::net::IpAddr;

use clap::Parser;

/// Nexus: real-time 1:1 messaging server (HTTP API + Socket.IO on one port).
///
/// Every option is read from the environment variable named in brackets (a `.env` file in
/// the working directory is read first, if present); a flag given on the command line wins.
#[derive(Debug, Clone, Parser)]
#[command(name = "nexus", version, about, long_about = None, args_conflicts_with_subcommands = true)]
pub struct Config {
    /// HTTP and Socket.IO listen port (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,

    /// Listen address.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// `sqlite://FILE` (embedded, created if missing), `sqlite::memory:` (kept nowhere: for
    /// trying things out) or `postgres://…`. Migrations run at start-up.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://nexus.db")]
    pub database_url: String,

    /// Redis URL for cluster mode (`redis://[:password@]host:port[/db]`, Redis 7 or later):
    /// the Socket.IO adapter, cluster-wide presence and rate limits, so several nodes on one
    /// PostgreSQL database serve the same users. Needs `DATABASE_URL=postgres://…`.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Prefix of every Redis key and pub/sub channel (tenants and tests sharing one Redis
    /// isolate themselves with it).
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "nexus:")]
    pub redis_key_prefix: String,

    /// HS256 secret, at least 32 bytes. Unset: a random one is generated at first start and
    /// kept in the database, so tokens survive restarts and every node shares it.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Access-token lifetime in seconds.
    #[arg(long, env = "JWT_EXPIRES_IN_SECONDS", default_value_t = 604_800,
          value_parser = clap::value_parser!(u64).range(1..=MAX_TOKEN_LIFETIME_SECS))]
    pub jwt_expires_in_seconds: u64,

    /// Messages one user may send per minute, across all of their sockets and REST calls.
    #[arg(long, env = "RATE_LIMIT_MESSAGES_PER_MINUTE", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000_000))]
    pub rate_limit_messages_per_minute: u32,

    /// Edits, deletes and receipts one user may make per minute (a budget of its own, so
    /// they can neither crowd out sends nor fill the writer's queue).
    #[arg(long, env = "RATE_LIMIT_CHANGES_PER_MINUTE", default_value_t = 600,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_limit_changes_per_minute: u32,

    /// A socket that sends no event for this long is sent `FORCE_DISCONNECT` and closed.
    #[arg(long, env = "IDLE_TIMEOUT_SECONDS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub idle_timeout_seconds: u64,

    /// A connection whose client acknowledges none of the data written to it for this long
    /// (it stopped reading: a full receive window) is closed by the kernel (Linux
    /// `TCP_USER_TIMEOUT`), which frees what the server had queued for it.
    #[arg(long, env = "SLOW_CLIENT_TIMEOUT_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub slow_client_timeout_seconds: u64,

    /// Logins, and registrations, one client address may make per minute (each its own
    /// budget); failed logins are also limited per e-mail (10 a minute).
    #[arg(long, env = "RATE_LIMIT_AUTH_PER_IP_PER_MINUTE", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_limit_auth_per_ip_per_minute: u32,

    /// Take a request's client address from the last entry of `X-Forwarded-For` (set it
    /// only when every request comes through a balancer that writes that header).
    #[arg(long, env = "TRUST_X_FORWARDED_FOR", default_value_t = false,
          action = clap::ArgAction::Set)]
    pub trust_x_forwarded_for: bool,

    /// Sockets one user may have connected at once, on every node together (with
    /// `REDIS_URL`: counted in Redis; while Redis cannot be reached, each node caps the
    /// user's sockets on itself). One more is refused at connect (`connect_error` "too many
    /// connections for this user").
    #[arg(long, env = "MAX_SOCKETS_PER_USER", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_sockets_per_user: u32,

    /// Sockets this node holds at most (all users); unset: no limit but the process's
    /// file limit. One more is refused at connect (`connect_error`).
    #[arg(long, env = "MAX_CONNECTIONS",
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub max_connections: Option<u32>,

    /// CORS origin allowed for HTTP and Socket.IO (e.g. `http://localhost:5173`).
    #[arg(long, env = "FRONTEND_URL")]
    pub frontend_url: Option<String>,

    /// Log format: `text` or `json`. Log levels come from `RUST_LOG` (default `info`).
    #[arg(long, env = "LOG_FORMAT", default_value = "text",
          value_parser = ["text", "json"])]
    pub log_format: String,

    /// How long a request waits for the database before it is answered `UNAVAILABLE`
    /// (HTTP 503) when the database cannot be reached.
    #[arg(long, env = "DATABASE_TIMEOUT_SECONDS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=120))]
    pub database_timeout_seconds: u64,

    /// Maximum number of database connections.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub database_max_connections: u32,

    /// FCM HTTP v1: the service-account key file's JSON (Firebase console → Project
    /// settings → Service accounts → Generate new private key). Push is off without FCM
    /// and VAPID credentials. See docs/push.md.
    #[arg(long, env = "FCM_SERVICE_ACCOUNT_JSON", hide_env_values = true)]
    pub fcm_service_account_json: Option<String>,

    /// FCM credentials as three values instead of the JSON: the Firebase project id …
    #[arg(long, env = "FCM_PROJECT_ID")]
    pub fcm_project_id: Option<String>,

    /// … the service account's PEM private key (`\n` is read as a newline) …
    #[arg(long, env = "FCM_PRIVATE_KEY", hide_env_values = true)]
    pub fcm_private_key: Option<String>,

    /// … and its e-mail (`firebase-adminsdk-…@PROJECT.iam.gserviceaccount.com`).
    #[arg(long, env = "FCM_CLIENT_EMAIL")]
    pub fcm_client_email: Option<String>,

    /// Base URL of the FCM HTTP v1 API (tests point it at a local fake).
    #[arg(
        long,
        env = "FCM_API_BASE_URL",
        default_value = "https://fcm.googleapis.com"
    )]
    pub fcm_api_base_url: String,

    /// Web Push: the VAPID private key, base64url (`nexus vapid-keys` makes a pair).
    #[arg(long, env = "VAPID_PRIVATE_KEY", hide_env_values = true)]
    pub vapid_private_key: Option<String>,

    /// Web Push: a `mailto:` or `https:` URL where push services can reach the operator.
    #[arg(long, env = "VAPID_SUBJECT")]
    pub vapid_subject: Option<String>,

    /// Members per group conversation, at most (a group's creator included).
    #[arg(long, env = "GROUP_MAX_MEMBERS", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(2..=10_000))]
    pub group_max_members: u32,

    /// Push devices per user; registering one more removes the least recently used.
    #[arg(long, env = "MAX_DEVICES_PER_USER", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_devices_per_user: u32,

    /// Push workers (each pushes one notification to all of a user's devices at a time).
    #[arg(long, env = "PUSH_WORKERS", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub push_workers: u32,

    /// Notifications waiting for a push worker, at most; beyond, pushes are dropped
    /// (logged and counted; the messages themselves are never affected).
    #[arg(long, env = "PUSH_QUEUE_SIZE", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub push_queue_size: u32,

    /// Retries of a push after a temporary failure (429, 5xx), with back-off.
    #[arg(long, env = "PUSH_MAX_RETRIES", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(0..=10))]
    pub push_max_retries: u32,

    /// How long a push service keeps trying to reach an offline device (seconds).
    #[arg(long, env = "PUSH_TTL_SECONDS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(0..=2_419_200))]
    pub push_ttl_seconds: u64,

    /// A push request without an answer for this long is given up (seconds).
    #[arg(long, env = "PUSH_TIMEOUT_SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub push_timeout_seconds: u64,

    /// Accept Web Push endpoints over plain http or on IP addresses and localhost. For
    /// local tests only: a subscription could make the server post to internal hosts.
    #[arg(long, env = "WEBPUSH_ALLOW_INSECURE_ENDPOINTS", default_value_t = false,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub webpush_allow_insecure_endpoints: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Commands other than serving (the default).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Print a new VAPID key pair for Web Push (VAPID_PRIVATE_KEY and its public key) and exit.
    VapidKeys,
}

/// The longest access-token lifetime accepted: a year.
pub const MAX_TOKEN_LIFETIME_SECS: u64 = 365 * 24 * 3600;

/// A configuration error, reported as one line before exiting with status 1.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
}

/// True for exactly `nexus vapid-keys`: it needs none of the server's settings, so it is
/// recognised before they are read and a half-made environment does not stop it. (With
/// more arguments, such as `--help`, clap parses as usual.)
pub fn is_vapid_keys_command() -> bool {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    args.len() == 1 && args[0] == "vapid-keys"
}

impl Config {
    /// Reads `.env` (if present), the environment and the command line. `--help` and
    /// `--version` print and exit 0; anything invalid is a one-line error.
    pub fn load() -> Result<Config, ConfigError> {
        // A missing .env is normal; a malformed one is a configuration error.
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(e) if e.not_found() => {}
            Err(e) => return Err(ConfigError::Invalid(format!(".env: {e}"))),
        }
        let config = match Config::try_parse() {
            Ok(c) => c,
            Err(e) => match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    e.exit()
                }
                _ => {
                    let text = e.to_string();
                    let line = text
                        .lines()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("invalid configuration")
                        .trim_start_matches("error: ")
                        .to_string();
                    return Err(ConfigError::Invalid(line));
                }
            },
        };
        if config.command.is_none() {
            config.validate()?;
        }
        Ok(config)
    }

    /// Rules clap cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(secret) = &self.jwt_secret {
            if secret.len() < 32 {
                return Err(ConfigError::Invalid(format!(
                    "JWT_SECRET must be at least 32 bytes (got {})",
                    secret.len()
                )));
            }
        }
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            return Err(ConfigError::Invalid(
                "DATABASE_URL must be sqlite://FILE, sqlite::memory:, postgres://… or postgresql://…"
                    .into(),
            ));
        }
        if let Some(url) = &self.redis_url {
            if self.database_url.starts_with("sqlite:") {
                return Err(ConfigError::Invalid(
                    "REDIS_URL needs a shared database: cluster nodes cannot run on SQLite \
                     (set DATABASE_URL=postgres://…, or unset REDIS_URL for a single node)"
                        .into(),
                ));
            }
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(ConfigError::Invalid(
                    "REDIS_URL must start with redis:// or rediss://".into(),
                ));
            }
        }
        if self.redis_key_prefix.is_empty() || self.redis_key_prefix.contains('#') {
            return Err(ConfigError::Invalid(
                "REDIS_KEY_PREFIX must be non-empty and must not contain '#'".into(),
            ));
        }
        if !(self.fcm_api_base_url.starts_with("https://")
            || self.fcm_api_base_url.starts_with("http://"))
        {
            return Err(ConfigError::Invalid(format!(
                "FCM_API_BASE_URL must be an http(s) URL, got {:?}",
                self.fcm_api_base_url
            )));
        }
        if let Some(url) = &self.frontend_url {
            if url.parse::<axum::http::HeaderValue>().is_err() || !url.starts_with("http") {
                return Err(ConfigError::Invalid(format!(
                    "FRONTEND_URL must be an http(s) origin, got {url:?}"
                )));
            }
        }
        Ok(())
    }

    /// A configuration for tests: given database, random port on 127.0.0.1, fixed secret.
    pub fn for_tests(database_url: String) -> Config {
        Config {
            port: 0,
            host: IpAddr::from([127, 0, 0, 1]),
            database_url,
            redis_url: None,
            redis_key_prefix: "nexus:".into(),
            jwt_secret: None,
            jwt_expires_in_seconds: 3600,
            rate_limit_messages_per_minute: 10_000,
            rate_limit_changes_per_minute: 10_000,
            idle_timeout_seconds: 300,
            slow_client_timeout_seconds: 30,
            max_sockets_per_user: 10,
            max_connections: None,
            rate_limit_auth_per_ip_per_minute: 10_000,
            trust_x_forwarded_for: false,
            frontend_url: None,
            log_format: "text".into(),
            database_max_connections: 8,
            fcm_service_account_json: None,
            fcm_project_id: None,
            fcm_private_key: None,
            fcm_client_email: None,
            fcm_api_base_url: "https://fcm.googleapis.com".into(),
            vapid_private_key: None,
            vapid_subject: None,
            max_devices_per_user: 20,
            group_max_members: 256,
            push_workers: 4,
            push_queue_size: 10_000,
            push_max_retries: 3,
            push_ttl_seconds: 86_400,
            push_timeout_seconds: 10,
            webpush_allow_insecure_endpoints: false,
            command: None,
            database_timeout_seconds: 5,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Config {
        Config::for_tests("sqlite://x.db".into())
    }

    #[test]
    fn short_jwt_secret_is_refused() {
        let mut c = base();
        c.jwt_secret = Some("too-short".into());
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("at least 32 bytes"), "{err}");
        c.jwt_secret = Some("x".repeat(32));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn unknown_database_scheme_is_refused() {
        let mut c = base();
        c.database_url = "mysql://localhost/db".into();
        let err = c.validate().unwrap_err().to_string();
        for accepted in [
            "sqlite://",
            "sqlite::memory:",
            "postgres://",
            "postgresql://",
        ] {
            assert!(err.contains(accepted), "{err} does not name {accepted}");
        }
    }

    /// Values near `u64::MAX` once overflowed a socket's deadline and panicked its task.
    #[test]
    fn every_numeric_setting_has_an_upper_bound() {
        let huge = u64::MAX.to_string();
        for (flag, max) in [
            (
                "--jwt-expires-in-seconds",
                MAX_TOKEN_LIFETIME_SECS.to_string(),
            ),
            ("--idle-timeout-seconds", "86400".into()),
            ("--rate-limit-messages-per-minute", "1000000000".into()),
            ("--rate-limit-changes-per-minute", "1000000".into()),
            ("--database-max-connections", "1000".into()),
            ("--group-max-members", "10000".into()),
        ] {
            assert!(
                Config::try_parse_from(["nexus", flag, &huge]).is_err(),
                "{flag} {huge}"
            );
            let over = (max.parse::<u64>().unwrap() + 1).to_string();
            assert!(
                Config::try_parse_from(["nexus", flag, &over]).is_err(),
                "{flag} {over}"
            );
            assert!(
                Config::try_parse_from(["nexus", flag, &max]).is_ok(),
                "{flag} {max}"
            );
        }
    }

    #[test]
    fn a_cluster_node_on_sqlite_is_refused() {
        let mut c = base();
        c.redis_url = Some("redis://127.0.0.1:6379".into());
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("cannot run on SQLite"), "{err}");
        c.database_url = "postgres://postgres@127.0.0.1/nexus".into();
        assert!(c.validate().is_ok());
        c.redis_url = Some("http://127.0.0.1:6379".into());
        assert!(c.validate().is_err());
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = Config::try_parse_from(["nexus"]).unwrap();
        assert_eq!(c.port, 3000);
        assert_eq!(c.database_url, "sqlite://nexus.db");
        assert_eq!(c.jwt_expires_in_seconds, 604_800);
        assert_eq!(c.rate_limit_messages_per_minute, 100);
        assert_eq!(c.idle_timeout_seconds, 300);
        assert_eq!(c.redis_key_prefix, "nexus:");
        assert_eq!(c.redis_url, None);
        assert_eq!(c.max_devices_per_user, 20);
        assert_eq!(c.fcm_api_base_url, "https://fcm.googleapis.com");
        assert!(c.command.is_none());
    }

    #[test]
    fn vapid_keys_is_a_subcommand_beside_the_flags() {
        let c = Config::try_parse_from(["nexus", "vapid-keys"]).unwrap();
        assert!(matches!(c.command, Some(Command::VapidKeys)));
        let c = Config::try_parse_from(["nexus", "--port", "4000"]).unwrap();
        assert_eq!(c.port, 4000);
        assert!(c.command.is_none());
    }
}
