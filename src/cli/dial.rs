//! `callbot dial`: one test call, reported on stdout.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use callbot::call::{Action, CallCommand, CallEvent};
use callbot::campaign::parse_duration;
use callbot::config::{Config, DialectSetting, Secret, TlsSetting};
use callbot::connection::{Credentials, Fault, LinkSettings, tls};
use callbot::media::MediaRuntime;
use callbot::media::dtmf::Digit;
use callbot::media::transport::{NetworkSettings, Sockets};
use callbot::phone::{ConnectError, Phone, PhoneEvent};
use callbot::protocol::CallState;
use url::Url;

/// Place one call and print its states, the digits received and its media statistics.
///
/// The PBX comes from a config (-c, with its admin login) or from --pbx, logging in with
/// PBX_ADMIN_PASSWORD (third-party login as --admin-user) or, without it, with the extension
/// password in CALLBOT_PASSWORD. When the call is answered it records (--record), plays
/// (--play), sends DTMF (--dtmf, --dtmf-delay ms after the answer or the prompt) and hangs up
/// after --secs unless the far end hangs up first. Exits 0 when the call was answered, 1 when
/// it was not, 2 when the options or the PBX settings are wrong (the message says which).
#[derive(clap::Args)]
pub struct DialArgs {
    /// The number to call.
    #[arg(long)]
    to: String,
    /// The extension to call from.
    #[arg(long, default_value = "509")]
    from: String,
    /// Take the PBX settings from this config.
    #[arg(short, long, value_name = "FILE", conflicts_with = "pbx")]
    config: Option<PathBuf>,
    /// The PBX URL (https://host:port).
    #[arg(long, value_parser = parse_pbx_url)]
    pbx: Option<Url>,
    /// The PBX domain (default: the URL's host).
    #[arg(long)]
    domain: Option<String>,
    /// Admin user for third-party login with --pbx.
    #[arg(long, default_value = "admin")]
    admin_user: String,
    /// Do not check the PBX certificate (lab only).
    #[arg(long)]
    insecure: bool,
    /// Trust this CA certificate (PEM) for the PBX.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// The PBX's dialect (auto: from its Server header).
    #[arg(long, value_enum, default_value_t = DialectSetting::Auto)]
    dialect: DialectSetting,
    /// A WAV file to play once answered.
    #[arg(long, value_name = "FILE", value_parser = parse_prompt)]
    play: Option<PathBuf>,
    /// DTMF to send once answered (after --play): 0-9 * # A-D.
    #[arg(long, value_parser = parse_dtmf)]
    dtmf: Option<String>,
    /// Milliseconds to wait before sending the DTMF.
    #[arg(long, default_value_t = 2000)]
    dtmf_delay: u32,
    /// Record the call to this WAV file (stereo: left the far end, right us); a new file, an
    /// existing one is never replaced.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Tell a person from an answering machine once answered (default settings), and print
    /// the verdict and the end of a machine's greeting.
    #[arg(long)]
    detect_machine: bool,
    /// Hang up after this many seconds of talk.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Give up when the far end has not answered after this long (30s, 2m).
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    ring_timeout: Duration,
    /// Address for media host candidates; repeat for more (default: every interface plus
    /// 127.0.0.1, or the config's).
    #[arg(long = "media-address", value_name = "IP")]
    media_addresses: Vec<IpAddr>,
}

/// `--pbx`: an `https://` URL, with a suggestion for the usual slips.
fn parse_pbx_url(text: &str) -> Result<Url, String> {
    let suggestion = |rest: &str| format!("did you mean --pbx https://{rest} ?");
    if let Some(rest) = text.strip_prefix("http://") {
        return Err(format!(
            "the PBX's login and websocket need TLS: {}",
            suggestion(rest)
        ));
    }
    if !text.contains("://") {
        return Err(format!("{text:?} is not a URL: {}", suggestion(text)));
    }
    let url = Url::parse(text).map_err(|e| format!("{text:?} is not a URL ({e})"))?;
    if url.scheme() != "https" {
        return Err(format!(
            "{text:?}: the PBX URL starts with https:// (wss:// is derived from it)"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{text:?} has no host: give https://host:port"));
    }
    Ok(url)
}

/// `--play`: a WAV file we can read, checked before anything is dialled.
fn parse_prompt(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    callbot::media::prompt::read_wav(&path).map_err(|e| e.to_string())?;
    Ok(path)
}

/// `--dtmf`: keys a phone has.
fn parse_dtmf(text: &str) -> Result<String, String> {
    match Digit::parse_all(text) {
        Some(digits) if !digits.is_empty() && digits.len() <= 64 => Ok(text.to_owned()),
        Some(_) => Err("give 1 to 64 keys, such as 12#".into()),
        None => {
            let wrong: String = text
                .chars()
                .filter(|c| Digit::parse_all(&c.to_string()).is_none())
                .collect();
            Err(format!(
                "{wrong:?} are not DTMF keys: use 0-9, *, # and A-D, such as 12#"
            ))
        }
    }
}

/// Options checked against each other before anything is dialled.
fn check_options(args: &DialArgs) -> Result<(), String> {
    if args.secs == 0 {
        return Err("--secs must be at least 1".into());
    }
    if let Some(record) = &args.record {
        if record.symlink_metadata().is_ok() {
            return Err(format!(
                "--record {}: the file exists; remove it or name another",
                record.display()
            ));
        }
        let folder = record
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        if !folder.is_dir() {
            return Err(format!(
                "--record {}: the folder {} does not exist",
                record.display(),
                folder.display()
            ));
        }
    }
    if args.to.trim().is_empty() {
        return Err("--to needs a number".into());
    }
    Ok(())
}

/// What to do about a fault, in this command's options.
fn fix(fault: &Fault, args: &DialArgs) -> String {
    match (fault, &args.config) {
        (Fault::AdminRefused { .. }, None) => {
            "check PBX_ADMIN_PASSWORD and --admin-user (the PBX's admin login)".into()
        }
        (Fault::PasswordRefused { .. }, None) => {
            "check CALLBOT_PASSWORD (the extension's password)".into()
        }
        (Fault::UnknownExtension { .. }, None) => {
            let from_ip = args.domain.is_none()
                && args
                    .pbx
                    .as_ref()
                    .and_then(Url::host)
                    .is_some_and(|h| !matches!(h, url::Host::Domain(_)));
            if from_ip {
                "the domain defaults to the URL's host, an IP address here: give the PBX's \
                 domain with --domain (callbot demo's is localhost: --domain localhost)"
                    .into()
            } else {
                "check --from and --domain (the PBX's domain; default: the URL's host)".into()
            }
        }
        (Fault::Certificate { .. }, None) => "give the PBX's CA certificate with --ca-file FILE \
             (the emulator writes it with --cert-out), or --insecure in a lab"
            .into(),
        (Fault::UnknownExtension { .. }, Some(_)) => {
            "check --from and the config's pbx.domain".into()
        }
        (fault, Some(_)) => fault.config_fix("the bot's"),
    }
}

/// Why the phone could not register, with what to change when a setting is wrong.
fn connect_failed(error: &ConnectError, args: &DialArgs) -> String {
    match &error.fault {
        Some(fault) => format!("{fault}: {}", fix(fault, args)),
        None => error.to_string(),
    }
}

struct Target {
    link: LinkSettings,
    network: NetworkSettings,
}

fn target(args: &DialArgs) -> Result<Target, String> {
    let useragent = format!("callbot-dial/{}", env!("CARGO_PKG_VERSION"));
    if let Some(path) = &args.config {
        let config = Config::load(path).map_err(|e| e.to_string())?;
        let bot = config.bots.iter().find(|b| b.extension == args.from);
        let credentials =
            Credentials::from_config(&config.pbx, bot.and_then(|b| b.password.as_ref()))
                .ok_or_else(|| format!("the config has no way to log in as {}", args.from))?;
        let mut network = config.media.network_settings();
        if !args.media_addresses.is_empty() {
            network.addresses = args.media_addresses.clone();
        }
        return Ok(Target {
            link: LinkSettings {
                bot: "dial".into(),
                base: config.pbx.url.clone(),
                domain: config.pbx.domain.clone(),
                extension: args.from.clone(),
                credentials,
                tls: Arc::new(tls::client_config(&config.pbx.tls).map_err(|e| e.to_string())?),
                // --dialect overrides the config's; auto leaves it be.
                dialect: match args.dialect {
                    DialectSetting::Auto => config.pbx.dialect,
                    fixed => fixed,
                },
                useragent,
            },
            network,
        });
    }
    let base = args
        .pbx
        .clone()
        .ok_or("give the PBX with --pbx URL or -c bots.yaml")?;
    let credentials = match (
        std::env::var("PBX_ADMIN_PASSWORD"),
        std::env::var("CALLBOT_PASSWORD"),
    ) {
        (Ok(password), _) => Credentials::ThirdParty {
            user: args.admin_user.clone(),
            password: Secret::new(password),
        },
        (_, Ok(password)) => Credentials::Password(Secret::new(password)),
        _ => return Err("set PBX_ADMIN_PASSWORD (or CALLBOT_PASSWORD for the extension)".into()),
    };
    let setting = match (&args.ca_file, args.insecure) {
        (Some(file), _) => TlsSetting::CaFile(file.clone()),
        (None, true) => TlsSetting::Insecure,
        (None, false) => TlsSetting::PublicRoots,
    };
    Ok(Target {
        link: LinkSettings {
            bot: "dial".into(),
            domain: args
                .domain
                .clone()
                .or_else(|| base.host_str().map(str::to_owned))
                .unwrap_or_default(),
            base,
            extension: args.from.clone(),
            credentials,
            tls: Arc::new(tls::client_config(&setting).map_err(|e| e.to_string())?),
            dialect: args.dialect,
            useragent,
        },
        network: NetworkSettings {
            addresses: args.media_addresses.clone(),
            ice_servers: vec![],
            // A phone: one call, on a socket of its own.
            sockets: Sockets::PerLeg,
            ..NetworkSettings::default()
        },
    })
}

pub async fn run(args: DialArgs) -> ExitCode {
    match dial(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("callbot dial: {e}");
            ExitCode::from(2)
        }
    }
}

/// The commands that carry out the command line's plan once the call is answered.
fn plan(args: &DialArgs) -> Vec<CallCommand> {
    let mut commands = Vec::new();
    if args.detect_machine {
        commands.push(CallCommand::DetectMachine(
            callbot::amd::AmdSettings::default(),
        ));
    }
    if let Some(path) = &args.record {
        commands.push(CallCommand::Record {
            path: Some(path.clone()),
            stereo: true,
            max_secs: None,
        });
    }
    if let Some(prompt) = &args.play {
        commands.push(CallCommand::Queue(Action::Play {
            prompt: prompt.clone(),
            loops: 1,
            for_gather: false,
        }));
    }
    if let Some(digits) = &args.dtmf {
        commands.push(CallCommand::Queue(Action::Pause {
            ms: args.dtmf_delay,
        }));
        commands.push(CallCommand::Queue(Action::SendDtmf {
            digits: digits.clone(),
        }));
    }
    commands.push(CallCommand::SetTimer(
        "end".into(),
        Duration::from_secs(args.secs),
    ));
    commands
}

/// Returns whether the call was answered.
async fn dial(args: DialArgs) -> Result<bool, String> {
    check_options(&args)?;
    let target = target(&args)?;
    let media = MediaRuntime::start(target.network).map_err(|e| format!("media: {e}"))?;
    let recordings = std::env::temp_dir();
    let phone = Phone::connect(target.link, media, recordings)
        .await
        .map_err(|e| connect_failed(&e, &args))?;
    println!("registered as {} ({} dialect)", args.from, phone.dialect());
    println!("calling {}", args.to);
    let mut call = phone.dial_ringing(&args.to, args.ring_timeout);
    let progress = callbot::console::spinner();
    let started = std::time::Instant::now();
    progress.set_message(format!("calling {}", args.to));
    let info = loop {
        let Some(event) = call.next().await else {
            return Err("the call task stopped".into());
        };
        let (info, event) = match event {
            PhoneEvent::Ended(info) => break info,
            PhoneEvent::Call(info, event) => (info, event),
        };
        match event {
            CallEvent::State(state) => {
                callbot::console::println(&format!("state {}", state.as_str()));
                progress.set_message(match state {
                    CallState::InCall => format!("talking to {}, up to {} s", args.to, args.secs),
                    _ => format!("{} {}", state.as_str().to_lowercase(), args.to),
                });
                if state == CallState::InCall {
                    for command in plan(&args) {
                        call.command(command);
                    }
                }
            }
            CallEvent::Dtmf(digit) => callbot::console::println(&format!("digit {digit}")),
            CallEvent::PlayDone(prompt) => match &info.play_error {
                Some(error) => {
                    callbot::console::println(&format!("prompt {prompt} failed: {error}"))
                }
                None => callbot::console::println(&format!("played {prompt}")),
            },
            CallEvent::Timer(_) => {
                call.command(CallCommand::Stop);
                call.command(CallCommand::Queue(Action::Hangup));
            }
            CallEvent::Recording(path) => {
                callbot::console::println(&format!("recording {}", path.display()))
            }
            CallEvent::Machine(verdict) => callbot::console::println(&format!(
                "answered by {} ({}, after {} ms)",
                verdict.result.as_str(),
                verdict.reason.as_str(),
                verdict.ms
            )),
            CallEvent::Beep(beep) => {
                callbot::console::println(&format!(
                    "greeting ended: {} at {} ms",
                    beep.how.as_str(),
                    beep.ms
                ));
            }
            CallEvent::Incoming | CallEvent::Digits(_) | CallEvent::Stream(_) => {}
        }
    };
    progress.finish_and_clear();
    let end = info.end;
    println!(
        "ended: {} (code {})",
        end.map_or("?", |e| e.reason.as_str()),
        end.and_then(|e| e.code)
            .map_or_else(|| "-".into(), |c| c.to_string())
    );
    let stats = &info.stats;
    println!("digits received: {:?}", info.digits);
    println!(
        "media: sent {} packets, received {} ({} lost, jitter {:.1} ms)",
        stats.packets_sent, stats.packets_received, stats.packets_lost, stats.jitter_ms
    );
    match (info.answered, info.setup_time) {
        (Some(_), Some(setup)) => println!(
            "answered after {:.0} ms, talked {:.1} s",
            setup.as_secs_f64() * 1000.0,
            info.duration().as_secs_f64()
        ),
        _ => println!(
            "not answered (gave up after {:.1} s)",
            started.elapsed().as_secs_f64()
        ),
    }
    Ok(info.answered.is_some())
}
