//! Builds the web client into `web/dist` when a **release** build needs it (or when asked),
//! and only when its inputs changed since the last build. Debug builds (`cargo build`,
//! `cargo clippy`, `cargo test`) never run npm: they read `web/dist` from disk at run time.
//!
//! `NEXUS_WEB_BUILD`: unset = build for release profiles; `1` = also for debug;
//! `0` = never. Without Node.js (>= 20.19) the server still compiles, with a warning, and
//! serves a page that says how to build the client.

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

/// What the client's build reads (relative to `web/`).
const INPUTS: &[&str] = &[
    "index.html",
    "package.json",
    "package-lock.json",
    "vite.config.ts",
    "tsconfig.json",
    "src",
    "public",
];

/// Holds the digest of the inputs `web/dist` was built from.
const STAMP: &str = "dist/.inputs";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=NEXUS_WEB_BUILD");
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join("../..");
    let web = root.canonicalize().unwrap_or(root).join("web");
    // The embedded folder's path, without `..`: a debug build reads `web/dist` at run time
    // and refuses every file whose real path does not start with the folder's path as
    // written at compile time, so `crates/web/../../web/dist` (not resolvable while the
    // client is not built yet) would hide a client built later.
    println!(
        "cargo:rustc-env=NEXUS_WEB_DIST={}",
        web.join("dist").display()
    );
    let release = env::var("PROFILE").as_deref() == Ok("release");
    let wanted = match env::var("NEXUS_WEB_BUILD").as_deref() {
        Ok("0") => false,
        Ok("1") => true,
        _ => release,
    };
    if !wanted || !web.join("package.json").exists() {
        return;
    }
    // Only the builds that may run npm watch its inputs, so editing the client never makes
    // a debug build of the server recompile.
    for input in INPUTS {
        println!("cargo:rerun-if-changed={}", web.join(input).display());
    }
    let digest = digest(&web);
    if fs::read_to_string(web.join(STAMP)).ok().as_deref() == Some(digest.as_str()) {
        return;
    }
    let stale = web.join("dist/index.html").exists();
    if let Err(why) = node_ok() {
        println!(
            "cargo:warning=web client not built: {why}. Install Node.js >= 20.19 (with npm) and \
             build again{}",
            if stale {
                "; embedding the older build in web/dist"
            } else {
                "; nexus will serve a page saying how to build it"
            }
        );
        return;
    }
    let installed = web.join("node_modules/.package-lock.json");
    if modified(&installed) < modified(&web.join("package-lock.json")) {
        run(&web, &["ci", "--no-audit", "--no-fund", "--loglevel=error"]);
    }
    run(&web, &["run", "build"]);
    if let Err(e) = fs::write(web.join(STAMP), &digest) {
        println!("cargo:warning=cannot write {STAMP}: {e}");
    }
}

fn npm() -> Command {
    Command::new(if cfg!(windows) { "npm.cmd" } else { "npm" })
}

/// Node.js and npm are there and new enough for Vite 8.
fn node_ok() -> Result<(), String> {
    let out = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|_| "node not found".to_string())?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut parts = version.trim_start_matches('v').split('.');
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    if (major, minor) < (20, 19) {
        return Err(format!("node {version} is older than 20.19"));
    }
    npm()
        .arg("--version")
        .output()
        .map_err(|_| "npm not found".to_string())?;
    Ok(())
}

fn run(web: &Path, args: &[&str]) {
    let out = npm().args(args).current_dir(web).output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!("{}", String::from_utf8_lossy(&o.stdout));
            eprintln!("{}", String::from_utf8_lossy(&o.stderr));
            eprintln!("`npm {}` in web/ failed ({})", args.join(" "), o.status);
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("cannot run npm: {e}");
            std::process::exit(1);
        }
    }
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// A digest of every input file's path and content, in a stable order.
fn digest(web: &Path) -> String {
    let mut files = Vec::new();
    for input in INPUTS {
        collect(&web.join(input), &mut files);
    }
    files.sort();
    let mut hasher = DefaultHasher::new();
    for file in files {
        hasher.write(
            file.strip_prefix(web)
                .unwrap_or(&file)
                .to_string_lossy()
                .as_bytes(),
        );
        hasher.write(&fs::read(&file).unwrap_or_default());
    }
    format!("{:016x}", hasher.finish())
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) {
    if path.is_dir() {
        if let Ok(entries) = fs::read_dir(path) {
            for entry in entries.flatten() {
                collect(&entry.path(), files);
            }
        }
    } else if path.is_file() {
        files.push(path.to_path_buf());
    }
}
