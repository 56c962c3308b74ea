use thiserror::Error;

/// Why a text frame could not be turned into a typed frame.
///
/// Unknown frames are not errors (they decode to an `Unknown` variant, §3); these are frames that
/// are not JSON objects, or known frames whose fields are missing or of the wrong type.
#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("frame is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("frame is not a JSON object")]
    NotAnObject,
    #[error("`{frame}` frame: field `{field}` is missing")]
    Missing {
        frame: &'static str,
        field: &'static str,
    },
    #[error("`{frame}` frame: field `{field}` must be {expected}")]
    Invalid {
        frame: &'static str,
        field: &'static str,
        expected: &'static str,
    },
}
