//! The web client at `/` (docs/web.md): the files of the embedded build (`nexus-web`) with
//! their content types and cache headers, and `index.html` for the client's own routes.
//!
//! This is the router's fallback, so every API route has already had its chance. What is
//! left is answered like this:
//! - a file of the build: the file. Vite's content-hashed files under `assets/` may be
//!   cached for a year (`immutable`); the rest (`index.html`, `sw.js`, icons) are
//!   revalidated every time (`no-cache` + `ETag`). A `.gz` twin is sent to clients that
//!   accept gzip.
//! - a `GET`/`HEAD` that asks for HTML (`Accept: text/html`, what a browser's navigation
//!   sends) on a path outside the API and without a file extension: `index.html`, so a
//!   reload of `/c/<id>` opens the client there;
//! - everything else (API paths, `/socket.io/`, other methods, missing files, non-HTML
//!   requests): the JSON 404 of the rest of the API.

use axum::body::Body;
use axum::http::header::{
    ACCEPT, ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
    VARY, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use nexus_web::Asset;

use super::error::not_found;

/// First path segments that belong to the API (or the socket): never the client's routes.
const API_PREFIXES: &[&str] = &[
    "auth",
    "users",
    "messages",
    "sync",
    "conversations",
    "health",
    "ready",
    "metrics",
    "openapi.json",
    "socket.io",
    "ws",
    "api",
];

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// Where the files come from: the embedded build, or a fixture in tests.
pub trait Assets {
    fn get(&self, path: &str) -> Option<Asset>;
}

/// The build embedded in this binary.
pub struct Embedded;

impl Assets for Embedded {
    fn get(&self, path: &str) -> Option<Asset> {
        nexus_web::get(path)
    }
}

/// The router's fallback.
pub async fn fallback(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    serve(&Embedded, &method, uri.path(), &headers).await
}

pub async fn serve(
    assets: &impl Assets,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return not_found().await.into_response();
    }
    let relative = path.trim_start_matches('/');
    let first = relative.split('/').next().unwrap_or_default();
    if API_PREFIXES.contains(&first) {
        return not_found().await.into_response();
    }
    if !relative.is_empty() && !relative.ends_with('/') {
        if let Some(asset) = assets.get(relative) {
            let cache = if relative.starts_with("assets/") {
                IMMUTABLE
            } else {
                REVALIDATE
            };
            return file(asset, cache, headers);
        }
    }
    let last = relative.rsplit('/').next().unwrap_or_default();
    if !wants_html(headers) || last.contains('.') || first == "assets" {
        return not_found().await.into_response();
    }
    match assets.get("index.html") {
        Some(index) => file(index, REVALIDATE, headers),
        None => not_built(),
    }
}

/// A browser navigation asks for `text/html`; `fetch()` and API clients do not.
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',').any(|coding| {
                let mut parts = coding.split(';');
                let name = parts.next().unwrap_or_default().trim();
                let refused =
                    parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
                (name == "gzip" || name == "*") && !refused
            })
        })
}

fn file(asset: Asset, cache: &'static str, headers: &HeaderMap) -> Response {
    let etag = format!("\"{}\"", asset.etag);
    let mut builder = Response::builder()
        .header(CACHE_CONTROL, cache)
        .header(X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(ETAG, &etag);
    if asset.gzip.is_some() {
        builder = builder.header(VARY, "Accept-Encoding");
    }
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
    if fresh {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::NOT_MODIFIED.into_response());
    }
    builder = builder.header(CONTENT_TYPE, content_type(&asset.content_type));
    let body = match asset.gzip {
        Some(gzip) if accepts_gzip(headers) => {
            builder = builder.header(CONTENT_ENCODING, "gzip");
            gzip
        }
        _ => asset.bytes,
    };
    builder
        .body(Body::from(body.into_owned()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Text types are UTF-8 (Vite writes them so).
fn content_type(mime: &str) -> HeaderValue {
    let textual = mime.starts_with("text/")
        || matches!(
            mime,
            "application/javascript" | "application/json" | "application/manifest+json"
        );
    let value = if textual && !mime.contains("charset") {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    };
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

/// What a binary built without the client (no Node.js at build time) shows at `/`.
fn not_built() -> Response {
    let page = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Nexus: web client not built</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}code{background:#8882;padding:.1em .3em;border-radius:4px}</style>
</head><body>
<h1>The Nexus server is running, but its web client was not built</h1>
<p>This binary was compiled without the web client, usually because Node.js was not installed.
The HTTP API and the Socket.IO gateway (<code>/ws</code>) work as usual.</p>
<p>To get the chat in the browser, install Node.js 20.19 or newer (with npm) and build again:</p>
<pre><code>cargo run --release -p nexus</code></pre>
<p>or build the client on its own (a debug server reads it from disk without recompiling):</p>
<pre><code>cd web &amp;&amp; npm ci &amp;&amp; npm run build</code></pre>
</body></html>
"#;
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, REVALIDATE),
        ],
        page,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::collections::HashMap;

    use axum::body::to_bytes;

    use super::*;

    struct Fixture(HashMap<&'static str, (&'static [u8], &'static str)>);

    impl Assets for Fixture {
        fn get(&self, path: &str) -> Option<Asset> {
            let (bytes, mime) = self.0.get(path)?;
            let gzip = path
                .ends_with(".js")
                .then(|| Cow::Borrowed(&b"\x1f\x8bgz"[..]));
            Some(Asset {
                bytes: Cow::Borrowed(bytes),
                gzip,
                content_type: mime.to_string(),
                etag: format!("etag-{path}"),
            })
        }
    }

    fn built() -> Fixture {
        Fixture(HashMap::from([
            ("index.html", (&b"<div id=root>"[..], "text/html")),
            (
                "assets/index-abc123.js",
                (&b"console.log(1)"[..], "text/javascript"),
            ),
            ("sw.js", (&b"self"[..], "text/javascript")),
            (
                "manifest.webmanifest",
                (&b"{}"[..], "application/manifest+json"),
            ),
        ]))
    }

    fn html() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"),
        );
        h
    }

    async fn get(
        assets: &impl Assets,
        path: &str,
        headers: &HeaderMap,
    ) -> (StatusCode, HeaderMap, Vec<u8>) {
        let r = serve(assets, &Method::GET, path, headers).await;
        let status = r.status();
        let headers = r.headers().clone();
        let body = to_bytes(r.into_body(), usize::MAX).await.unwrap().to_vec();
        (status, headers, body)
    }

    #[tokio::test]
    async fn the_root_and_client_routes_get_index_html_revalidated() {
        for path in ["/", "/c/0193-abc", "/login"] {
            let (status, headers, body) = get(&built(), path, &html()).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(headers[CONTENT_TYPE], "text/html; charset=utf-8");
            assert_eq!(headers[CACHE_CONTROL], "no-cache");
            assert_eq!(body, b"<div id=root>");
        }
    }

    #[tokio::test]
    async fn hashed_assets_are_immutable_and_others_revalidate() {
        let (status, headers, body) =
            get(&built(), "/assets/index-abc123.js", &HeaderMap::new()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert_eq!(headers[CACHE_CONTROL], IMMUTABLE);
        assert_eq!(headers[ETAG], "\"etag-assets/index-abc123.js\"");
        assert_eq!(body, b"console.log(1)");

        let (_, headers, _) = get(&built(), "/sw.js", &HeaderMap::new()).await;
        assert_eq!(headers[CACHE_CONTROL], "no-cache");
        let (_, headers, _) = get(&built(), "/manifest.webmanifest", &HeaderMap::new()).await;
        assert_eq!(
            headers[CONTENT_TYPE],
            "application/manifest+json; charset=utf-8"
        );
    }

    #[tokio::test]
    async fn gzip_goes_only_to_clients_that_accept_it() {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT_ENCODING, HeaderValue::from_static("br, gzip"));
        let (_, headers, body) = get(&built(), "/assets/index-abc123.js", &h).await;
        assert_eq!(headers[CONTENT_ENCODING], "gzip");
        assert_eq!(headers[VARY], "Accept-Encoding");
        assert_eq!(body, b"\x1f\x8bgz");

        h.insert(
            ACCEPT_ENCODING,
            HeaderValue::from_static("gzip;q=0, identity"),
        );
        let (_, headers, body) = get(&built(), "/assets/index-abc123.js", &h).await;
        assert!(headers.get(CONTENT_ENCODING).is_none());
        assert_eq!(body, b"console.log(1)");
    }

    #[tokio::test]
    async fn a_matching_etag_is_not_modified() {
        let mut h = HeaderMap::new();
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("\"etag-sw.js\""));
        let (status, _, body) = get(&built(), "/sw.js", &h).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert!(body.is_empty());
    }

    #[tokio::test]
    async fn api_paths_missing_files_and_non_html_requests_keep_the_json_404() {
        for (path, headers) in [
            ("/users/nobody/else", html()),
            ("/socket.io/whatever", html()),
            ("/conversations/x/y/z", html()),
            ("/assets/gone-123.js", html()),
            ("/favicon.ico", html()),
            ("/c/0193-abc", HeaderMap::new()),
        ] {
            let (status, h, body) = get(&built(), path, &headers).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert!(
                h[CONTENT_TYPE]
                    .to_str()
                    .unwrap()
                    .starts_with("application/json"),
                "{path}"
            );
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["statusCode"], 404, "{path}");
        }
        let r = serve(&built(), &Method::POST, "/c/0193-abc", &html()).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn without_a_build_the_root_says_how_to_build_the_client() {
        let (status, headers, body) = get(&Fixture(HashMap::new()), "/", &html()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[CONTENT_TYPE], "text/html; charset=utf-8");
        let page = String::from_utf8(body).unwrap();
        assert!(page.contains("web client was not built"));
        assert!(page.contains("npm ci &amp;&amp; npm run build"));
    }
}
