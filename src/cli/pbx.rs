//! `callbot pbx`: the PBX emulator.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use callbot::config::Secret;
use callbot::media::transport::NetworkSettings;
use callbot::pbx::{
    Accounts, CertificateSource, ChaosSettings, Guard, Limits, MediaMode, Pbx, PbxOptions,
};
use callbot::protocol::Dialect;

/// Run the PBX emulator: HTTPS REST login, the websocket protocol, calls between extensions.
///
/// Bots (`callbot run`) and browsers log in to it as they would to a Vodia PBX. It prints its
/// URL, the admin credentials (for third-party login) and where its certificate is. The admin
/// password comes from PBX_ADMIN_PASSWORD, or is made up at start. Without --accounts it knows
/// extensions 500-509 and 600-609, each with its number as password.
#[derive(clap::Args, Clone)]
pub struct PbxArgs {
    /// Address and port to serve HTTPS and the websocket on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// The tenant domain clients log in to.
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    /// Accounts file: `admin: {user, password}` and `extensions: [{number, name, password}]`.
    #[arg(long, value_name = "FILE")]
    pub accounts: Option<PathBuf>,
    /// Protocol dialect: modern (v70: the PBX makes its own offer) or legacy (v68).
    #[arg(long, value_enum, default_value_t = Dialect::Modern)]
    pub dialect: Dialect,
    /// anchored: terminate and bridge media (ringback, hold music, transfer); relay: pass SDP
    /// through (peers' media flows directly; legacy dialect).
    #[arg(long, value_enum, default_value_t = MediaMode::Anchored)]
    pub media: MediaMode,
    /// Write the generated self-signed certificate (PEM) here, for bots' `tls.ca_file`.
    #[arg(long, value_name = "FILE")]
    pub cert_out: Option<PathBuf>,
    /// Serve this certificate (PEM) instead of a generated one; needs --key.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The private key (PEM) for --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Address for media host candidates (anchored mode); repeat for more. Default: all
    /// interfaces plus 127.0.0.1.
    #[arg(long = "media-address", value_name = "IP")]
    pub media_addresses: Vec<IpAddr>,
    /// Seconds an unanswered call rings before it ends with 480.
    #[arg(long, default_value_t = 60)]
    pub ring_timeout: u64,
    /// Seconds a caller has to answer the emulator's offer (modern dialect) before `bye` 415.
    #[arg(long, default_value_t = 10)]
    pub offer_timeout: u64,
    /// Mistreat frames on purpose, reproducibly: SEED or SEED:RATE (default rate 0.02). Each
    /// frame either way may be dropped, duplicated, delayed (reordered) or corrupted with that
    /// probability; sockets are closed at a third of it.
    #[arg(long, value_name = "SEED[:RATE]")]
    pub chaos: Option<ChaosSettings>,
    #[command(flatten)]
    pub guard: GuardArgs,
}

/// Who may use the emulator and what any one peer may take (`callbot pbx` and `callbot demo`).
#[derive(clap::Args, Clone)]
pub struct GuardArgs {
    /// Serve /emulator/calls, /events and /stats without the admin's credentials (tests).
    #[arg(long)]
    pub open_test_api: bool,
    /// A web origin (https://host[:port]) whose pages may use the emulator, besides its own
    /// and loopback ones; repeat for more.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origins: Vec<String>,
    /// Open connections (HTTPS and websockets) from one address at most.
    #[arg(long, value_name = "N", default_value_t = Limits::default().sockets_per_address)]
    pub max_sockets_per_address: usize,
    /// Open connections in all at most.
    #[arg(long, value_name = "N", default_value_t = Limits::default().sockets)]
    pub max_sockets: usize,
    /// Frames a websocket may send per second; more close it (1008).
    #[arg(long, value_name = "N", default_value_t = Limits::default().frames_per_second)]
    pub max_frame_rate: u32,
    /// Live calls one extension may have placed; more end with 503.
    #[arg(long, value_name = "N", default_value_t = Limits::default().calls_per_extension)]
    pub max_calls_per_extension: usize,
}

impl GuardArgs {
    pub fn guard(&self) -> Guard {
        Guard {
            open_test_api: self.open_test_api,
            allow_origins: self.allow_origins.clone(),
            limits: Limits {
                sockets_per_address: self.max_sockets_per_address,
                sockets: self.max_sockets,
                frames_per_second: self.max_frame_rate,
                calls_per_extension: self.max_calls_per_extension,
                ..Limits::default()
            },
        }
    }
}

impl PbxArgs {
    /// The emulator options these arguments describe.
    pub fn options(&self) -> Result<PbxOptions, String> {
        let admin_password = match std::env::var("PBX_ADMIN_PASSWORD") {
            Ok(password) if !password.is_empty() => Secret::new(password),
            _ => Secret::new(format!("{:016x}", rand::random::<u64>())),
        };
        let accounts = match &self.accounts {
            Some(path) => Accounts::load(path).map_err(|e| e.to_string())?,
            None => Accounts::defaults(admin_password),
        };
        let certificate = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => CertificateSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => CertificateSource::SelfSigned {
                names: certificate_names(self.listen),
                out: self.cert_out.clone(),
            },
        };
        Ok(PbxOptions {
            listen: self.listen,
            domain: self.domain.clone(),
            dialect: self.dialect,
            media: self.media,
            accounts,
            certificate,
            network: NetworkSettings {
                addresses: self.media_addresses.clone(),
                ice_servers: vec![],
                ..NetworkSettings::default()
            },
            ring_timeout: Duration::from_secs(self.ring_timeout),
            offer_timeout: Duration::from_secs(self.offer_timeout),
            chaos: self.chaos,
            guard: self.guard.guard(),
        })
    }
}

/// The names a self-signed certificate for an emulator on `listen` is valid for: loopback by
/// name and address, plus the listening address when it is a specific outside one.
pub fn certificate_names(listen: SocketAddr) -> Vec<String> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let ip = listen.ip();
    if !ip.is_unspecified() && !ip.is_loopback() {
        names.push(ip.to_string());
    }
    names
}

/// Prints how to reach the emulator.
pub fn announce(pbx: &Pbx, options: &PbxOptions, cert_out: Option<&PathBuf>) {
    println!("PBX emulator listening on {}", pbx.url());
    println!(
        "  dialect {} ({} media), domain {}",
        options.effective_dialect(),
        options.media,
        options.domain
    );
    println!(
        "  admin login: user {} password {}",
        options.accounts.admin_user,
        options.accounts.admin_password.expose()
    );
    let numbers: Vec<&str> = options
        .accounts
        .extensions
        .keys()
        .map(String::as_str)
        .collect();
    println!("  extensions: {}", numbers.join(" "));
    match cert_out {
        Some(path) => println!("  certificate: {} (bots: tls.ca_file)", path.display()),
        None => println!("  certificate: self-signed (bots: tls.insecure, or --cert-out FILE)"),
    }
    println!(
        "  calls: {}emulator/calls  events: {}emulator/events ({})",
        pbx.url(),
        pbx.url(),
        if options.guard.open_test_api {
            "open: --open-test-api"
        } else {
            "admin login"
        }
    );
    println!(
        "  sample client (the vendor's frames): {}sample.html?domain={}",
        pbx.url(),
        options.domain
    );
}

pub async fn run(args: PbxArgs) -> ExitCode {
    let options = match args.options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("callbot pbx: {e}");
            return ExitCode::from(2);
        }
    };
    let pbx = match Pbx::start(options.clone()).await {
        Ok(pbx) => pbx,
        Err(e) => {
            eprintln!("callbot pbx: {e}");
            return ExitCode::FAILURE;
        }
    };
    announce(&pbx, &options, args.cert_out.as_ref());
    super::shutdown_signal().await;
    println!("stopping");
    pbx.stop().await;
    ExitCode::SUCCESS
}
