//! The web client's production build (`web/dist`, made by Vite), embedded in the binary.
//!
//! Release builds carry the files inside `nexus`; debug builds read them from `web/dist`
//! at run time (rust-embed's behaviour), so `npm run build` is picked up without
//! recompiling. `build.rs` decides when the client itself is (re)built; see
//! `docs/web.md` for the whole story. When no build exists, [`get`] finds nothing and the
//! server serves a page saying how to build it.

use std::borrow::Cow;

use rust_embed::Embed;

#[derive(Embed)]
#[folder = "$NEXUS_WEB_DIST"]
#[allow_missing = true]
#[exclude = ".inputs"]
struct Dist;

/// One file of the build, with what a response needs.
pub struct Asset {
    pub bytes: Cow<'static, [u8]>,
    /// The same file gzip-compressed, when the build made one (`name.gz`).
    pub gzip: Option<Cow<'static, [u8]>>,
    pub content_type: String,
    /// A strong validator: the SHA-256 of the content, hex (first 16 bytes).
    pub etag: String,
}

/// The file at `path` (relative, no leading slash) of the build, if there is one.
pub fn get(path: &str) -> Option<Asset> {
    if path.ends_with(".gz") {
        return None;
    }
    let file = Dist::get(path)?;
    let gzip = Dist::get(&format!("{path}.gz")).map(|f| f.data);
    let hash = file.metadata.sha256_hash();
    let etag = hash[..16].iter().map(|b| format!("{b:02x}")).collect();
    Some(Asset {
        content_type: file.metadata.mimetype().to_string(),
        bytes: file.data,
        gzip,
        etag,
    })
}

/// Whether this binary has a web client at all (`index.html` was built).
pub fn built() -> bool {
    Dist::get("index.html").is_some()
}
