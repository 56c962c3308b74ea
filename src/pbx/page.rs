//! The pages the emulator serves: the softphone at `/` and the WebSocket sample client at
//! `/sample.html` (a minimal client that handles frames as the vendor's documentation does),
//! static HTML, JS and CSS built into the binary (no build step). `CALLBOT_WEB_DIR` serves the files from a folder instead, so the
//! page can be edited without rebuilding.

use std::path::PathBuf;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

const FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("web/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("web/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("web/style.css"),
    ),
    (
        "md5.js",
        "text/javascript; charset=utf-8",
        include_str!("web/md5.js"),
    ),
    (
        "sample.html",
        "text/html; charset=utf-8",
        include_str!("web/sample.html"),
    ),
    (
        "sample.js",
        "text/javascript; charset=utf-8",
        include_str!("web/sample.js"),
    ),
];

/// The file `name` (one of [`FILES`]).
pub(super) fn file(name: &str) -> Response {
    let Some((_, content_type, built_in)) = FILES.iter().find(|(n, ..)| *n == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let body = match std::env::var_os("CALLBOT_WEB_DIR") {
        Some(dir) => match std::fs::read_to_string(PathBuf::from(dir).join(name)) {
            Ok(text) => text,
            Err(e) => return (StatusCode::NOT_FOUND, e.to_string()).into_response(),
        },
        None => (*built_in).to_owned(),
    };
    (
        [
            (header::CONTENT_TYPE, *content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
