//! `${VAR}` substitution from the environment, so secrets stay out of config files.
//!
//! Forms: `${NAME}` (an error when unset), `${NAME:-default}` (the default when unset or empty),
//! and `$${` for a literal `${`. A `$` not followed by `{` is literal.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("environment variable {0} is not set")]
    Unset(String),
    #[error("unterminated `${{` (expected `${{NAME}}`)")]
    Unterminated,
    #[error("invalid variable name {0:?} (letters, digits and `_`, not starting with a digit)")]
    BadName(String),
}

/// Replaces every `${…}` in `text` with its value from `lookup`.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, EnvError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(escaped) = after.strip_prefix("${") {
            out.push_str("${");
            rest = escaped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or(EnvError::Unterminated)?;
            out.push_str(&substitute(&body[..end], lookup)?);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn substitute(
    reference: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, EnvError> {
    let (name, default) = match reference.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (reference, None),
    };
    let valid = name.chars().next().is_some_and(|c| !c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(EnvError::BadName(name.to_owned()));
    }
    match (lookup(name), default) {
        (Some(value), Some(default)) if value.is_empty() => Ok(default.to_owned()),
        (Some(value), _) => Ok(value),
        (None, Some(default)) => Ok(default.to_owned()),
        (None, None) => Err(EnvError::Unset(name.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PASSWORD" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_variables() {
        assert_eq!(expand("${PASSWORD}", &env).unwrap(), "s3cret");
        assert_eq!(expand("a-${PASSWORD}-b", &env).unwrap(), "a-s3cret-b");
        assert_eq!(expand("plain", &env).unwrap(), "plain");
        assert_eq!(expand("", &env).unwrap(), "");
    }

    #[test]
    fn defaults_apply_when_unset_or_empty() {
        assert_eq!(expand("${NOPE:-x}", &env).unwrap(), "x");
        assert_eq!(expand("${EMPTY:-x}", &env).unwrap(), "x");
        assert_eq!(expand("${EMPTY}", &env).unwrap(), "");
        assert_eq!(expand("${PASSWORD:-x}", &env).unwrap(), "s3cret");
    }

    #[test]
    fn dollars_that_are_not_references_stay() {
        assert_eq!(expand("$5 and $", &env).unwrap(), "$5 and $");
        assert_eq!(expand("$${PASSWORD}", &env).unwrap(), "${PASSWORD}");
    }

    #[test]
    fn errors() {
        assert_eq!(expand("${NOPE}", &env), Err(EnvError::Unset("NOPE".into())));
        assert_eq!(expand("${PASSWORD", &env), Err(EnvError::Unterminated));
        assert_eq!(expand("${}", &env), Err(EnvError::BadName(String::new())));
        assert_eq!(expand("${1A}", &env), Err(EnvError::BadName("1A".into())));
        assert_eq!(expand("${A-B}", &env), Err(EnvError::BadName("A-B".into())));
    }
}
