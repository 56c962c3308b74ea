//! `callbot demo`: the PBX emulator and the example bots in one process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use callbot::config::{Config, Secret};
use callbot::daemon::Daemon;
use callbot::media::transport::NetworkSettings;
use callbot::pbx::{Accounts, CertificateSource, MediaMode, Pbx, PbxOptions};
use callbot::protocol::Dialect;
use callbot::script::Limits;
use callbot::voice::echo::EchoAgent;

/// The example scripts and prompts, built in so the demo runs anywhere.
const SCRIPTS: &[(&str, &str)] = &[
    ("ivr.rhai", include_str!("../../scripts/ivr.rhai")),
    (
        "test_line.rhai",
        include_str!("../../scripts/test_line.rhai"),
    ),
    ("greeter.rhai", include_str!("../../scripts/greeter.rhai")),
    ("campaign.rhai", include_str!("../../scripts/campaign.rhai")),
    ("agent.rhai", include_str!("../../scripts/agent.rhai")),
];
const PROMPTS: &[(&str, &[u8])] = &[
    ("welcome.wav", include_bytes!("../../prompts/welcome.wav")),
    ("menu.wav", include_bytes!("../../prompts/menu.wav")),
    (
        "operator_hold.wav",
        include_bytes!("../../prompts/operator_hold.wav"),
    ),
    (
        "operator_announce.wav",
        include_bytes!("../../prompts/operator_announce.wav"),
    ),
    ("invalid.wav", include_bytes!("../../prompts/invalid.wav")),
    ("goodbye.wav", include_bytes!("../../prompts/goodbye.wav")),
    (
        "test_line.wav",
        include_bytes!("../../prompts/test_line.wav"),
    ),
    (
        "greeting_a.wav",
        include_bytes!("../../prompts/greeting_a.wav"),
    ),
    (
        "greeting_b.wav",
        include_bytes!("../../prompts/greeting_b.wav"),
    ),
    ("thanks.wav", include_bytes!("../../prompts/thanks.wav")),
    (
        "agent_unavailable.wav",
        include_bytes!("../../prompts/agent_unavailable.wav"),
    ),
];

/// Run the PBX emulator and the example bots: an IVR (500), a test line (501), two greeters
/// (600, 601) that call each other every 30 s, and a voice-agent line (604) streaming to a
/// built-in echo agent.
///
/// Open the printed URL in a browser to get a softphone, log in as one of the desk extensions
/// (502-509, password = the number) and call 500 or 501. Scripts and prompts come from
/// ./scripts and ./prompts when they exist (edit a script and it reloads), else from copies
/// built into the binary. The admin password is PBX_ADMIN_PASSWORD when set (else made up);
/// the demo prints `dial`, `run` and `campaign` commands that work against it. Runs until
/// Ctrl-C.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Address and port of the emulator (HTTPS, websocket and softphone page).
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Protocol dialect of the emulator: modern or legacy.
    #[arg(long, value_enum, default_value_t = Dialect::Modern)]
    dialect: Dialect,
    /// anchored (ringback, hold music, transfer) or relay.
    #[arg(long, value_enum, default_value_t = MediaMode::Anchored)]
    media: MediaMode,
    /// Where recordings and cdr.jsonl go.
    #[arg(long, default_value = "recordings")]
    recordings: PathBuf,
    /// Serve the bots' dashboard, /metrics and the probes here (e.g. 127.0.0.1:9100).
    #[arg(long, alias = "http")]
    metrics: Option<SocketAddr>,
    /// Address for the emulator's media host candidates; repeat for more. Default: every
    /// interface plus 127.0.0.1 (so browsers on other machines can reach it).
    #[arg(long = "media-address", value_name = "IP")]
    media_addresses: Vec<std::net::IpAddr>,
    #[command(flatten)]
    guard: super::pbx::GuardArgs,
}

/// `dir` if it holds every file named, else `None`.
fn local_copy(dir: &Path, names: impl IntoIterator<Item = &'static str>) -> Option<PathBuf> {
    let all = names.into_iter().all(|name| dir.join(name).is_file());
    all.then(|| dir.canonicalize().unwrap_or_else(|_| dir.to_owned()))
}

fn unpack(dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    let scripts = dir.join("scripts");
    let prompts = dir.join("prompts");
    std::fs::create_dir_all(&scripts)?;
    std::fs::create_dir_all(&prompts)?;
    for (name, text) in SCRIPTS {
        std::fs::write(scripts.join(name), text)?;
    }
    for (name, bytes) in PROMPTS {
        std::fs::write(prompts.join(name), bytes)?;
    }
    Ok((scripts, prompts))
}

/// The demo's agent echoes callers this much later.
const ECHO_DELAY: Duration = Duration::from_millis(300);

fn config_text(
    pbx_url: &url::Url,
    agent_url: &str,
    dialect: Dialect,
    cert: &Path,
    (scripts, prompts): (&Path, &Path),
    recordings: &Path,
    metrics: Option<SocketAddr>,
) -> String {
    let http = metrics.map_or_else(String::new, |address| {
        format!("http: {{ listen: \"{address}\" }}\n")
    });
    let script = |name: &str| scripts.join(name).display().to_string();
    format!(
        r#"pbx:
  url: "{url}"
  domain: localhost
  dialect: {dialect}
  tls: {{ ca_file: "{cert}" }}
  admin: {{ user: admin, password: "${{DEMO_ADMIN_PASSWORD}}" }}
defaults: {{ prompts: "{prompts}", recordings: "{recordings}", record: stereo }}
{http}media: {{ addresses: [127.0.0.1] }}
bots:
  - name: ivr
    extension: "500"
    script: "{ivr}"
    allow_dial: ["501", "509"]
    vars: {{ test_line: "501", operator: "509" }}
  - name: test-line
    extension: "501"
    script: "{test_line}"
  - name: greeter-a
    extension: "600"
    script: "{greeter}"
    allow_dial: ["601"]
    vars: {{ peer: "601", role: caller, greeting: greeting_a.wav }}
  - name: greeter-b
    extension: "601"
    script: "{greeter}"
    allow_dial: ["600"]
    vars: {{ peer: "600", role: callee, greeting: greeting_b.wav }}
  - name: agent
    extension: "604"
    script: "{agent}"
    allow_dial: ["509"]
    vars: {{ agent_url: "{agent_url}", fallback: "509" }}
"#,
        url = pbx_url,
        cert = cert.display(),
        prompts = prompts.display(),
        recordings = recordings.display(),
        ivr = script("ivr.rhai"),
        test_line = script("test_line.rhai"),
        greeter = script("greeter.rhai"),
        agent = script("agent.rhai"),
    )
}

/// The contact list of the demo's campaign (the emulator's test extensions 700-705).
const CONTACTS: &str = include_str!("../../contacts.example.csv");

/// A bot config for a process of its own next to the demo: the emulator's URL, certificate
/// and admin login, the demo's prompts and recordings, and `bots`.
fn extra_config(pbx: &Pbx, cert: &Path, prompts: &Path, recordings: &Path, bots: &str) -> String {
    format!(
        r#"pbx:
  url: "{url}"
  domain: localhost
  tls: {{ ca_file: "{cert}" }}
  admin: {{ user: admin, password: "${{PBX_ADMIN_PASSWORD}}" }}
defaults: {{ prompts: "{prompts}", recordings: "{recordings}", record: stereo }}
media: {{ addresses: [127.0.0.1] }}
bots:
{bots}"#,
        url = pbx.url(),
        cert = cert.display(),
        prompts = prompts.display(),
        recordings = recordings.display(),
    )
}

/// `text` as one word of a POSIX shell command line.
fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r#"'\''"#))
    }
}

/// Writes a config for `callbot run` (a test line on 603) and one for `callbot campaign`
/// (602 calling the test extensions 700-707) into `work`, and prints the commands that use
/// them and `callbot dial`.
fn print_commands(
    pbx: &Pbx,
    work: &Path,
    (cert, scripts, prompts, recordings): (&Path, &Path, &Path, &Path),
    password: &str,
) -> std::io::Result<()> {
    let script = |name: &str| shell_word(&scripts.join(name).display().to_string());
    let run = work.join("my-bot.yaml");
    let bots = format!(
        "  - name: my-bot\n    extension: \"603\"\n    script: {}\n",
        script("test_line.rhai")
    );
    std::fs::write(&run, extra_config(pbx, cert, prompts, recordings, &bots))?;
    let campaign = work.join("campaign.yaml");
    let bots = format!(
        "  - name: campaign\n    extension: \"602\"\n    script: {}\n    max_calls: 20\n    \
         allow_dial: [\"7??\"]\n",
        script("campaign.rhai")
    );
    std::fs::write(
        &campaign,
        extra_config(pbx, cert, prompts, recordings, &bots),
    )?;
    let contacts = work.join("contacts.csv");
    std::fs::write(&contacts, CONTACTS)?;
    let env = format!("PBX_ADMIN_PASSWORD={}", shell_word(password));
    let path = |p: &Path| shell_word(&p.display().to_string());
    println!("Try it from another terminal while the demo runs:");
    println!(
        "  {env} callbot dial --pbx {} --domain localhost --ca-file {} --from 509 --to 501 --secs 5",
        pbx.url().as_str().trim_end_matches('/'),
        path(cert)
    );
    println!(
        "  {env} callbot run -c {}        # a test line on 603: call it",
        path(&run)
    );
    println!(
        "  {env} callbot campaign -c {} --bot campaign --contacts {} --ring-timeout 15s",
        path(&campaign),
        path(&contacts)
    );
    Ok(())
}

pub async fn run(args: DemoArgs) -> ExitCode {
    match demo(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("callbot demo: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn demo(args: DemoArgs) -> Result<(), String> {
    let work = tempfile::Builder::new()
        .prefix("callbot-demo-")
        .tempdir()
        .map_err(|e| format!("temporary folder: {e}"))?;
    let cert = work.path().join("pbx.pem");
    let admin_password = std::env::var("PBX_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
    let options = PbxOptions {
        listen: args.listen,
        domain: "localhost".into(),
        dialect: args.dialect,
        media: args.media,
        accounts: Accounts::defaults(Secret::new(admin_password.clone())),
        certificate: CertificateSource::SelfSigned {
            names: super::pbx::certificate_names(args.listen),
            out: Some(cert.clone()),
        },
        network: NetworkSettings {
            addresses: args.media_addresses.clone(),
            ice_servers: vec![],
            ..NetworkSettings::default()
        },
        ring_timeout: Duration::from_secs(60),
        offer_timeout: Duration::from_secs(10),
        chaos: None,
        guard: args.guard.guard(),
    };
    let pbx = Pbx::start(options.clone())
        .await
        .map_err(|e| e.to_string())?;
    let local_scripts = local_copy(Path::new("scripts"), SCRIPTS.iter().map(|(n, _)| *n));
    let local_prompts = local_copy(Path::new("prompts"), PROMPTS.iter().map(|(n, _)| *n));
    let (scripts, prompts) = match (local_scripts, local_prompts) {
        (Some(scripts), Some(prompts)) => (scripts, prompts),
        _ => unpack(work.path()).map_err(|e| format!("unpacking the examples: {e}"))?,
    };
    std::fs::create_dir_all(&args.recordings)
        .map_err(|e| format!("{}: {e}", args.recordings.display()))?;
    let recordings = args
        .recordings
        .canonicalize()
        .unwrap_or(args.recordings.clone());
    let agent = EchoAgent::start((std::net::Ipv4Addr::LOCALHOST, 0).into(), ECHO_DELAY)
        .await
        .map_err(|e| format!("echo agent: {e}"))?;
    let text = config_text(
        pbx.url(),
        &agent.url(),
        options.effective_dialect(),
        &cert,
        (&scripts, &prompts),
        &recordings,
        args.metrics,
    );
    let file = work.path().join("demo.yaml");
    let env = |name: &str| (name == "DEMO_ADMIN_PASSWORD").then(|| admin_password.clone());
    let config = Config::parse(&text, &file, &env).map_err(|e| e.to_string())?;
    let daemon = Daemon::start(config, Limits::default())
        .await
        .map_err(|e| e.to_string())?;

    super::pbx::announce(&pbx, &options, Some(&cert));
    println!();
    println!(
        "callbot demo is running. Open the softphone:  {}",
        pbx.url()
    );
    println!("  log in as 502-509 (password = the number) and call:");
    println!("    500  IVR: press 1 for the test line, 2 to hang up, 0 for the operator (509)");
    println!("    501  test line: announces itself, then echoes you");
    println!(
        "    604  voice agent: streams you to an echo agent ({} ms), * clears, # ends",
        ECHO_DELAY.as_millis()
    );
    println!("  600 and 601 are greeters that call each other every 30 s");
    println!(
        "  scripts: {}   prompts: {}",
        scripts.display(),
        prompts.display()
    );
    println!(
        "  recordings: {}   call log: {}",
        recordings.display(),
        daemon.cdr_path().display()
    );
    if let Some(address) = daemon.http_address() {
        println!("  dashboard: http://{address}/   metrics: http://{address}/metrics");
    }
    println!();
    print_commands(
        &pbx,
        work.path(),
        (&cert, &scripts, &prompts, &recordings),
        &admin_password,
    )
    .map_err(|e| format!("writing the example configs: {e}"))?;
    println!("Ctrl-C stops it.");
    super::run::serve_until_stopped(daemon, Duration::from_secs(5)).await;
    pbx.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use callbot::script::{Severity, check_bot};

    /// The demo's bots, run through `callbot check`'s script checks with the repository's
    /// scripts and prompts: nothing the demo runs is broken.
    #[test]
    fn the_demo_config_passes_the_script_checks() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = tempfile::tempdir().expect("temp dir");
        let url = url::Url::parse("https://127.0.0.1:8443/").expect("a URL");
        std::fs::write(dir.path().join("pbx.pem"), "").expect("a CA file");
        let text = config_text(
            &url,
            "ws://127.0.0.1:9300/",
            Dialect::Modern,
            &dir.path().join("pbx.pem"),
            (&repo.join("scripts"), &repo.join("prompts")),
            dir.path(),
            None,
        );
        let env = |name: &str| (name == "DEMO_ADMIN_PASSWORD").then(|| "x".to_owned());
        let config = Config::parse(&text, &dir.path().join("demo.yaml"), &env).expect("valid");
        for bot in &config.bots {
            let errors: Vec<String> = check_bot(bot)
                .into_iter()
                .filter(|f| f.severity == Severity::Error)
                .map(|f| f.to_string())
                .collect();
            assert!(errors.is_empty(), "{}: {errors:?}", bot.name);
        }
    }
}
