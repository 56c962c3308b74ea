//! ICE candidates the PBX sends in flat `candidate` frames (docs/protocol.md §5).
//!
//! A Vodia PBX may send one `candidate:` line together with an `adr` list of `[ip, port]` pairs:
//! the line is a template and each pair is one real candidate. [`RemoteCandidate::lines`] expands it.

use thiserror::Error;

/// One `[ip, port]` pair of an `adr` list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CandidateAddress {
    pub ip: String,
    pub port: u16,
}

/// A remote candidate as received: apply each of [`RemoteCandidate::lines`] with m-line index 0
/// and no mid (§5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteCandidate {
    /// The call it belongs to; may be absent when the PBX has only one call on this socket.
    pub callid: Option<super::CallId>,
    /// The raw `candidate:` line.
    pub candidate: String,
    /// Addresses to substitute into `candidate`; empty means the line is used as it is.
    pub addresses: Vec<CandidateAddress>,
}

/// A candidate line that does not have the fields of RFC 8839 §5.1.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("malformed ICE candidate line {line:?}: {problem}")]
pub struct CandidateError {
    pub line: String,
    pub problem: &'static str,
}

/// Field positions in `candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type>`.
const ADDRESS_FIELD: usize = 4;
const PORT_FIELD: usize = 5;
const TYP_FIELD: usize = 6;

impl RemoteCandidate {
    /// The candidate lines to apply: the line itself, or one line per `adr` pair with the
    /// connection address and port replaced. Lines are returned without an `a=` prefix.
    pub fn lines(&self) -> Result<Vec<String>, CandidateError> {
        let line = self.candidate.trim();
        let line = line.strip_prefix("a=").unwrap_or(line);
        let error = |problem| CandidateError {
            line: line.to_owned(),
            problem,
        };
        if !line.starts_with("candidate:") {
            return Err(error("does not start with `candidate:`"));
        }
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        if fields.len() < TYP_FIELD + 2 || fields[TYP_FIELD] != "typ" {
            return Err(error(
                "expected `<foundation> <component> <transport> <priority> <address> <port> typ <type>`",
            ));
        }
        if self.addresses.is_empty() {
            return Ok(vec![fields.join(" ")]);
        }
        Ok(self
            .addresses
            .iter()
            .map(|address| {
                let port = address.port.to_string();
                let mut expanded = fields.clone();
                expanded[ADDRESS_FIELD] = &address.ip;
                expanded[PORT_FIELD] = &port;
                expanded.join(" ")
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx raddr 0.0.0.0 rport 0 generation 0";

    fn candidate(line: &str, addresses: &[(&str, u16)]) -> RemoteCandidate {
        RemoteCandidate {
            callid: None,
            candidate: line.into(),
            addresses: addresses
                .iter()
                .map(|(ip, port)| CandidateAddress {
                    ip: (*ip).into(),
                    port: *port,
                })
                .collect(),
        }
    }

    #[test]
    fn without_adr_the_line_is_used_as_is() {
        assert_eq!(candidate(LINE, &[]).lines().unwrap(), vec![LINE.to_owned()]);
        let prefixed = format!("a={LINE}");
        assert_eq!(
            candidate(&prefixed, &[]).lines().unwrap(),
            vec![LINE.to_owned()]
        );
    }

    #[test]
    fn adr_pairs_replace_address_and_port() {
        let lines = candidate(LINE, &[("127.0.0.1", 4000), ("10.0.0.2", 4002)])
            .lines()
            .unwrap();
        assert_eq!(
            lines,
            vec![
                "candidate:842163049 1 udp 1677729535 127.0.0.1 4000 typ srflx raddr 0.0.0.0 rport 0 generation 0",
                "candidate:842163049 1 udp 1677729535 10.0.0.2 4002 typ srflx raddr 0.0.0.0 rport 0 generation 0",
            ]
        );
    }

    #[test]
    fn malformed_lines_are_errors_not_panics() {
        for bad in [
            "",
            "candidate:",
            "candidate:1 1 udp",
            "candidate:1 1 udp 5 1.2.3.4 5 host x",
            "foo",
        ] {
            assert!(
                candidate(bad, &[("127.0.0.1", 1)]).lines().is_err(),
                "{bad:?}"
            );
        }
    }
}
