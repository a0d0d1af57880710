//! The `nexus` binary: bad configuration is one line and exit status 1; `--help` documents
//! every variable.

use std::process::Command;

fn nexus(env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nexus"));
    cmd.current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run nexus")
}

fn assert_one_line_error(out: &std::process::Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit status; stderr: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(needle), "{needle:?} in {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_short_jwt_secret_is_refused() {
    let out = nexus(&[("JWT_SECRET", "too-short")], &[]);
    assert_one_line_error(&out, "JWT_SECRET must be at least 32 bytes");
}

#[test]
fn a_malformed_port_is_refused() {
    let out = nexus(&[("PORT", "eighty")], &[]);
    assert_one_line_error(&out, "eighty");
}

#[test]
fn an_unknown_database_is_refused() {
    let out = nexus(&[("DATABASE_URL", "mysql://localhost/x")], &[]);
    assert_one_line_error(&out, "DATABASE_URL");
}

#[test]
fn an_unreachable_database_is_one_line() {
    let out = nexus(
        &[("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")],
        &[],
    );
    assert_one_line_error(&out, "cannot start");
}

#[test]
fn a_cluster_node_on_sqlite_is_refused() {
    let out = nexus(
        &[
            ("DATABASE_URL", "sqlite://n.db"),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
        ],
        &[],
    );
    assert_one_line_error(&out, "cannot run on SQLite");
}

#[test]
fn a_malformed_redis_url_is_refused() {
    let out = nexus(
        &[
            ("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none"),
            ("REDIS_URL", "http://127.0.0.1:6379"),
        ],
        &[],
    );
    assert_one_line_error(&out, "REDIS_URL");
}

#[test]
fn help_documents_every_variable() {
    let out = nexus(&[], &["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "PORT",
        "HOST",
        "DATABASE_URL",
        "REDIS_URL",
        "REDIS_KEY_PREFIX",
        "DATABASE_TIMEOUT_SECONDS",
        "JWT_SECRET",
        "JWT_EXPIRES_IN_SECONDS",
        "RATE_LIMIT_MESSAGES_PER_MINUTE",
        "IDLE_TIMEOUT_SECONDS",
        "FRONTEND_URL",
        "LOG_FORMAT",
        "FCM_SERVICE_ACCOUNT_JSON",
        "FCM_PROJECT_ID",
        "FCM_PRIVATE_KEY",
        "FCM_CLIENT_EMAIL",
        "FCM_API_BASE_URL",
        "VAPID_PRIVATE_KEY",
        "VAPID_SUBJECT",
        "MAX_DEVICES_PER_USER",
        "PUSH_WORKERS",
        "PUSH_QUEUE_SIZE",
        "PUSH_MAX_RETRIES",
        "PUSH_TTL_SECONDS",
        "PUSH_TIMEOUT_SECONDS",
        "vapid-keys",
    ] {
        assert!(help.contains(var), "{var} missing from --help");
    }
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nexus"))
        .current_dir(dir.path())
        .env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/n.db", dir.path().display()),
        )
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Every line up to "nexus listening" (push's start-up line comes first) is JSON.
    let mut log = serde_json::Value::Null;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        log = serde_json::from_str(&line).expect("a JSON log line");
        if log["message"] == "nexus listening" {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(log["message"], "nexus listening", "{log}");
    assert_eq!(log["backend"], "sqlite");
}

#[test]
fn bad_push_credentials_are_one_line() {
    let out = nexus(
        &[
            ("VAPID_PRIVATE_KEY", "not-a-key"),
            ("VAPID_SUBJECT", "mailto:a@b.org"),
        ],
        &[],
    );
    assert_one_line_error(&out, "VAPID_PRIVATE_KEY");
    let (private, _) = nexus::push::vapid::generate();
    let out = nexus(&[("VAPID_PRIVATE_KEY", &private)], &[]);
    assert_one_line_error(&out, "VAPID_SUBJECT");
    let out = nexus(&[("FCM_SERVICE_ACCOUNT_JSON", "{not json")], &[]);
    assert_one_line_error(&out, "FCM_SERVICE_ACCOUNT_JSON");
    let out = nexus(&[("FCM_PROJECT_ID", "p")], &[]);
    assert_one_line_error(&out, "FCM_PRIVATE_KEY");
    let out = nexus(
        &[
            ("FCM_PROJECT_ID", "p"),
            ("FCM_CLIENT_EMAIL", "a@p.iam.gserviceaccount.com"),
            (
                "FCM_PRIVATE_KEY",
                "-----BEGIN PRIVATE KEY-----\\nAAAA\\n-----END PRIVATE KEY-----\\n",
            ),
        ],
        &[],
    );
    assert_one_line_error(&out, "FCM service account");
}

#[test]
fn vapid_keys_prints_a_pair_the_server_accepts() {
    let out = nexus(&[("PORT", "not-even-a-port")], &["vapid-keys"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let private = text
        .lines()
        .find_map(|l| l.strip_prefix("VAPID_PRIVATE_KEY="))
        .expect("a VAPID_PRIVATE_KEY= line");
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("the public key");
    let key = nexus::push::vapid::VapidKey::parse(private, "mailto:ops@example.org").unwrap();
    assert_eq!(key.public_key(), public);
    let again = nexus(&[], &["vapid-keys"]);
    assert_ne!(again.stdout, out.stdout, "a new pair each time");
}

/// The start-up log says once that push is off when nothing is configured.
#[test]
fn without_credentials_push_is_off_and_the_log_says_so_once() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nexus"))
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .env("RUST_LOG", "info")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/n.db", dir.path().display()),
        )
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let done = line.contains("nexus listening");
        lines.push(line);
        if done {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let off: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("push notifications are off"))
        .collect();
    assert_eq!(off.len(), 1, "{lines:#?}");
    assert!(off[0].contains("FCM_SERVICE_ACCOUNT_JSON") && off[0].contains("VAPID_PRIVATE_KEY"));
}
