//! `callbot dial`: one test call, reported on stdout.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use callbot::call::{Action, CallCommand, CallEvent};
use callbot::config::{Config, DialectSetting, Secret, TlsSetting};
use callbot::connection::{Credentials, LinkSettings, tls};
use callbot::media::MediaRuntime;
use callbot::media::transport::{NetworkSettings, Sockets};
use callbot::phone::{Phone, PhoneEvent};
use callbot::protocol::CallState;
use url::Url;

/// Place one call and print its states, the digits received and its media statistics.
///
/// The PBX comes from a config (-c, with its admin login) or from --pbx, logging in with
/// PBX_ADMIN_PASSWORD (third-party login as --admin-user) or, without it, with the extension
/// password in CALLBOT_PASSWORD. When the call is answered it records (--record), plays
/// (--play), sends DTMF (--dtmf, --dtmf-delay ms after the answer or the prompt) and hangs up
/// after --secs unless the far end hangs up first. Exits 0 when the call was answered.
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
    #[arg(long)]
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
    #[arg(long, value_name = "FILE")]
    play: Option<PathBuf>,
    /// DTMF to send once answered (after --play).
    #[arg(long)]
    dtmf: Option<String>,
    /// Milliseconds to wait before sending the DTMF.
    #[arg(long, default_value_t = 2000)]
    dtmf_delay: u32,
    /// Record the call to this WAV file (stereo: left the far end, right us); a new file, an
    /// existing one is never replaced.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Hang up after this many seconds of talk.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Address for media host candidates; repeat for more (default: every interface plus
    /// 127.0.0.1, or the config's).
    #[arg(long = "media-address", value_name = "IP")]
    media_addresses: Vec<IpAddr>,
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
    if let Some(path) = args
        .record
        .as_ref()
        .filter(|p| p.symlink_metadata().is_ok())
    {
        return Err(format!(
            "--record {}: the file exists; remove it or name another",
            path.display()
        ));
    }
    let target = target(&args)?;
    let media = MediaRuntime::start(target.network).map_err(|e| format!("media: {e}"))?;
    let recordings = std::env::temp_dir();
    let phone = Phone::connect(target.link, media, recordings).await?;
    println!("registered as {} ({} dialect)", args.from, phone.dialect());
    println!("calling {}", args.to);
    let mut call = phone.dial(&args.to);
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
                println!("state {}", state.as_str());
                if state == CallState::InCall {
                    for command in plan(&args) {
                        call.command(command);
                    }
                }
            }
            CallEvent::Dtmf(digit) => println!("digit {digit}"),
            CallEvent::PlayDone(prompt) => match &info.play_error {
                Some(error) => println!("prompt {prompt} failed: {error}"),
                None => println!("played {prompt}"),
            },
            CallEvent::Timer(_) => {
                call.command(CallCommand::Stop);
                call.command(CallCommand::Queue(Action::Hangup));
            }
            CallEvent::Recording(path) => println!("recording {}", path.display()),
            CallEvent::Incoming | CallEvent::Digits(_) => {}
        }
    };
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
    if let Some(setup) = info.setup_time {
        println!("answered after {:.0} ms", setup.as_secs_f64() * 1000.0);
    }
    Ok(info.answered.is_some())
}
