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
fn help_documents_every_variable() {
    let out = nexus(&[], &["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "PORT",
        "HOST",
        "DATABASE_URL",
        "REDIS_URL",
        "JWT_SECRET",
        "JWT_EXPIRES_IN_SECONDS",
        "RATE_LIMIT_MESSAGES_PER_MINUTE",
        "IDLE_TIMEOUT_SECONDS",
        "FRONTEND_URL",
        "LOG_FORMAT",
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
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let log: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(log["message"], "nexus listening", "{line}");
    assert_eq!(log["backend"], "sqlite");
}
