//! The `nexus` binary: read the configuration, start, serve until SIGINT or SIGTERM.

use std::process::ExitCode;

use nexus::app::Application;
use nexus::config::{Command, Config};

/// mimalloc: faster than glibc malloc for many small short-lived allocations (JSON, packets),
/// and it gives freed memory back to the system (glibc kept the 19 MiB of every argon2 hash
/// in its arenas).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    if nexus::config::is_vapid_keys_command() {
        return vapid_keys();
    }
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nexus: configuration error: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(Command::VapidKeys) = config.command {
        return vapid_keys();
    }
    nexus::telemetry::init(config.log_format == "json");
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("nexus: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    match app.run_until(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nexus: server error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `nexus vapid-keys`: a new key pair, as lines for a `.env` file.
fn vapid_keys() -> ExitCode {
    let (private, public) = nexus::push::vapid::generate();
    println!("# A new Web Push (VAPID) key pair. Keep the private key secret; browsers");
    println!("# get the public one from GET /users/webpush/vapid-public-key.");
    println!("VAPID_PRIVATE_KEY={private}");
    println!("# public key: {public}");
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
