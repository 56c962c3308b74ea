//! Link failures that retrying cannot heal: the PBX refused the credentials, does not know the
//! extension, or presented a certificate we do not trust. Each needs a person to change a
//! setting; the link still retries (on a long backoff, in case the PBX side is what gets fixed)
//! and its owner says once which setting to look at.

use std::fmt;

/// How rustls words a rejected certificate (`InvalidCertificate`'s display).
const CERTIFICATE_REJECTED: &str = "invalid peer certificate: ";

/// Why a link cannot come up until someone changes a setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The admin login for third-party tokens was refused.
    AdminRefused { user: String },
    /// The extension's own password was refused.
    PasswordRefused { extension: String },
    /// The PBX has no such extension in the domain.
    UnknownExtension { extension: String, domain: String },
    /// The PBX's TLS certificate was rejected (the rustls reason, e.g. `UnknownIssuer`).
    Certificate { problem: String },
}

impl Fault {
    /// The fault of a TLS failure somewhere in `error`'s source chain: a rejected certificate.
    pub fn of_tls_error(error: &(dyn std::error::Error + 'static)) -> Option<Fault> {
        let mut next = Some(error);
        while let Some(error) = next {
            let rustls = error.downcast_ref::<rustls::Error>().or_else(|| {
                error
                    .downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            });
            if let Some(rustls::Error::InvalidCertificate(problem)) = rustls {
                return Some(Fault::Certificate {
                    problem: format!("{problem:?}"),
                });
            }
            // The HTTP client's connector hands the TLS error on as text in its own type.
            if let Some(problem) = error.to_string().strip_prefix(CERTIFICATE_REJECTED) {
                return Some(Fault::Certificate {
                    problem: problem.to_owned(),
                });
            }
            next = error.source();
        }
        None
    }

    /// The link state it leaves: refused credentials and extensions are `ACCESS_DENIED`; a
    /// rejected certificate means no connection at all, `CONNECTION_FAILED`.
    pub fn state(&self) -> crate::protocol::ConnectionState {
        match self {
            Fault::Certificate { .. } => crate::protocol::ConnectionState::ConnectionFailed,
            _ => crate::protocol::ConnectionState::AccessDenied,
        }
    }

    /// What went wrong, in the PBX's terms (without advice).
    pub fn what(&self) -> String {
        match self {
            Fault::AdminRefused { user } => {
                format!("the PBX refused the admin login of user {user:?}")
            }
            Fault::PasswordRefused { extension } => {
                format!("the PBX refused the password of extension {extension}")
            }
            Fault::UnknownExtension { extension, domain } => {
                format!("the PBX knows no extension {extension} in domain {domain}")
            }
            Fault::Certificate { problem } => {
                format!("the PBX's TLS certificate was rejected ({problem})")
            }
        }
    }

    /// The settings of a bots.yaml to fix; `bot` is the bot's key, such as `bots[2]`.
    pub fn config_fix(&self, bot: &str) -> String {
        match self {
            Fault::AdminRefused { .. } => {
                "fix pbx.admin.user or pbx.admin.password (its ${VAR} in the environment)".into()
            }
            Fault::PasswordRefused { .. } => format!("fix {bot}.password"),
            Fault::UnknownExtension { .. } => format!(
                "fix {bot}.extension, or pbx.domain (the PBX's domain, which defaults to the \
                 URL's host)"
            ),
            Fault::Certificate { .. } => "set pbx.tls.ca_file to the PBX's CA certificate (PEM), \
                 or pbx.tls.insecure: true in a lab"
                .into(),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what())
    }
}

/// Says a fault once: the first time it is seen, and again only after the link came up or
/// the fault changed. Retries of the same fault stay quiet.
#[derive(Debug, Default)]
pub struct FaultLog {
    last: Option<Fault>,
}

impl FaultLog {
    /// `fault` was seen; returns it when it is news.
    pub fn seen(&mut self, fault: &Fault) -> bool {
        if self.last.as_ref() == Some(fault) {
            return false;
        }
        self.last = Some(fault.clone());
        true
    }

    /// The link came up: the next fault is news again.
    pub fn cleared(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_is_said_once_until_the_link_comes_up() {
        let mut log = FaultLog::default();
        let refused = Fault::AdminRefused {
            user: "admin".into(),
        };
        assert!(log.seen(&refused));
        assert!(!log.seen(&refused));
        assert!(!log.seen(&refused));
        let unknown = Fault::UnknownExtension {
            extension: "999".into(),
            domain: "localhost".into(),
        };
        assert!(log.seen(&unknown));
        log.cleared();
        assert!(log.seen(&unknown));
    }

    #[test]
    fn tls_faults_are_found_inside_io_errors() {
        let rustls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls);
        assert_eq!(
            Fault::of_tls_error(&io),
            Some(Fault::Certificate {
                problem: "UnknownIssuer".into()
            })
        );
        let other = std::io::Error::other("connection refused");
        assert_eq!(Fault::of_tls_error(&other), None);
        let worded = std::io::Error::other("invalid peer certificate: NotValidForName");
        assert_eq!(
            Fault::of_tls_error(&worded),
            Some(Fault::Certificate {
                problem: "NotValidForName".into()
            })
        );
    }

    #[test]
    fn every_fault_names_the_setting_to_fix() {
        let faults = [
            Fault::AdminRefused {
                user: "admin".into(),
            },
            Fault::PasswordRefused {
                extension: "500".into(),
            },
            Fault::UnknownExtension {
                extension: "999".into(),
                domain: "127.0.0.1".into(),
            },
            Fault::Certificate {
                problem: "UnknownIssuer".into(),
            },
        ];
        let keys = [
            "pbx.admin.password",
            "bots[3].password",
            "bots[3].extension",
            "pbx.tls.ca_file",
        ];
        for (fault, key) in faults.iter().zip(keys) {
            assert!(fault.config_fix("bots[3]").contains(key), "{fault}");
        }
    }
}
