//! `callbot campaign`: outbound calls to a contact list through one bot's script.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use callbot::campaign::queue::{Queue, WorkSettings};
use callbot::campaign::{
    self, ContactList, DoNotCall, Journal, Pace, RetryOn, RetryRule, Row, Screen, Window,
    parse_duration,
};
use callbot::config::Config;
use callbot::daemon::Daemon;
use callbot::script::Limits;

/// Call a contact list through a bot's script (see scripts/campaign.rhai).
///
/// The CSV's first column is `number`; the others become the call's `vars` (a `tz` column, an
/// IANA time zone, sets the contact's local time). Each contact is dialled through the bot
/// (its `on_call_state` and `set_result` decide the outcome), at most --concurrency at a time
/// and --cps per second, inside --window in its own local time, at most
/// --max-attempts-per-day times a day, with retries for the failures in --retry-on. Rows with a
/// bad number, a duplicate, a number outside the bot's allow_dial or on the --dnc list are
/// reported with their line and never dialled. A journal (SQLite, next to the
/// results) records every attempt before it is dialled: a campaign killed at any moment and
/// started again resumes where it stopped and calls nobody twice. With --queue the contacts go
/// through a NATS JetStream work queue instead (see `publish`, `work`, `results`).
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CampaignArgs {
    #[command(subcommand)]
    action: Option<Action>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Put a contact list on the NATS work queue of a campaign.
    Publish(PublishArgs),
    /// Pull contacts from the work queue and dial them through a bot (run one per machine).
    Work(WorkArgs),
    /// Write the campaign's results from the results stream as CSV.
    Results(ResultsArgs),
}

#[derive(clap::Args)]
struct Dialling {
    /// Calls at the same time.
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    /// New calls per second at most (0.01 to 1000, like a bot's max_cps).
    #[arg(long, default_value_t = 2.0, value_parser = parse_cps)]
    cps: f64,
    /// How many times a contact is tried again after a failure in --retry-on.
    #[arg(long, default_value_t = 0)]
    retries: u32,
    /// Wait before a retry (10m, 30s, 2h).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    retry_after: Duration,
    /// Failures worth a retry: busy, no-answer, rejected (comma separated).
    #[arg(
        long,
        value_enum,
        default_value = "busy,no-answer",
        value_delimiter = ','
    )]
    retry_on: Vec<RetryOn>,
    /// Give up on a contact whose phone rings this long (30s, 1m); it counts as no-answer.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    ring_timeout: Duration,
}

impl Dialling {
    fn retry(&self) -> RetryRule {
        RetryRule {
            on: self.retry_on.clone(),
            retries: self.retries,
            after: self.retry_after,
        }
    }
}

#[derive(clap::Args)]
struct RunArgs {
    /// The config file.
    #[arg(short, long, value_name = "FILE", default_value = "bots.yaml")]
    config: PathBuf,
    /// The bot whose script and extension make the calls.
    #[arg(long)]
    bot: Option<String>,
    /// The contact list (CSV).
    #[arg(long, value_name = "FILE")]
    contacts: Option<PathBuf>,
    #[command(flatten)]
    dialling: Dialling,
    /// Only dial between these times of day, e.g. 09:00-18:00, in each contact's own time zone
    /// (its `tz` column; this machine's for contacts without one).
    #[arg(long)]
    window: Option<Window>,
    /// Attempts per contact in one day (of its time zone) at most; more wait for the next day.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_attempts_per_day: Option<u32>,
    #[command(flatten)]
    dnc: DncArg,
    /// One row per contact: number, attempts, final state, answered at, duration, digits, result.
    #[arg(long, value_name = "FILE", default_value = "campaign-results.csv")]
    results: PathBuf,
    /// The journal (default: the results file with .journal).
    #[arg(long, value_name = "FILE")]
    journal: Option<PathBuf>,
    /// Serve the dashboard (with this campaign's progress), /metrics and the probes here; the
    /// config's http.token guards it.
    #[arg(long, value_name = "ADDRESS")]
    http: Option<std::net::SocketAddr>,
}

#[derive(clap::Args)]
struct DncArg {
    /// A do-not-call list: numbers in its first column are never dialled (reported as skipped
    /// with their line).
    #[arg(long, value_name = "FILE")]
    dnc: Option<PathBuf>,
}

impl DncArg {
    fn load(&self) -> Result<Option<DoNotCall>, String> {
        let Some(path) = &self.dnc else {
            return Ok(None);
        };
        let list = DoNotCall::load(path)?;
        for line in &list.unreadable {
            eprintln!("{}:{line}: not a phone number (ignored)", list.file);
        }
        Ok(Some(list))
    }
}

#[derive(clap::Args)]
struct PublishArgs {
    /// NATS server with JetStream, e.g. nats://127.0.0.1:4222.
    #[arg(long)]
    queue: String,
    /// The campaign's name (letters, digits, - and _).
    #[arg(long)]
    campaign: String,
    #[arg(long, value_name = "FILE")]
    contacts: PathBuf,
    /// Check numbers against this config's bot's allow_dial before publishing.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[arg(long)]
    bot: Option<String>,
    #[command(flatten)]
    dnc: DncArg,
}

#[derive(clap::Args)]
struct WorkArgs {
    #[arg(long)]
    queue: String,
    #[arg(long)]
    campaign: String,
    #[arg(short, long, value_name = "FILE", default_value = "bots.yaml")]
    config: PathBuf,
    #[arg(long)]
    bot: String,
    #[command(flatten)]
    dialling: Dialling,
    /// Seconds a contact may go unacknowledged before another worker gets it.
    #[arg(long, default_value_t = 30)]
    ack_wait: u64,
    /// Stop after the queue has been empty this many seconds (default: run until stopped).
    #[arg(long)]
    idle_exit: Option<u64>,
}

#[derive(clap::Args)]
struct ResultsArgs {
    #[arg(long)]
    queue: String,
    #[arg(long)]
    campaign: String,
    #[arg(long, value_name = "FILE", default_value = "campaign-results.csv")]
    results: PathBuf,
}

pub async fn run(args: CampaignArgs) -> ExitCode {
    let result = match args.action {
        None => local(args.run).await,
        Some(Action::Publish(args)) => publish(args).await,
        Some(Action::Work(args)) => work(args).await,
        Some(Action::Results(args)) => results(args).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("callbot campaign: {e}");
            ExitCode::from(super::EXIT_CONFIG_ERRORS)
        }
    }
}

fn parse_cps(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(cps) if callbot::config::CPS_RANGE.contains(&cps) => Ok(cps),
        _ => Err(format!("{text:?}: {}", callbot::config::cps_range_text())),
    }
}

/// The config with only `bot` left in it, its outbound limit set to the campaign's `cps`,
/// serving HTTP on `http` only (the daemon of that config may be serving its own address).
fn config_for(
    path: &Path,
    bot: &str,
    cps: Option<f64>,
    http: Option<std::net::SocketAddr>,
) -> Result<Config, String> {
    let mut config = Config::load(path).map_err(|e| e.to_string())?;
    config.bots.retain(|b| b.name == bot);
    if let (Some(cps), Some(found)) = (cps, config.bots.first_mut()) {
        found.max_cps = cps;
    }
    if config.bots.is_empty() {
        return Err(format!("{}: no bot named {bot:?}", path.display()));
    }
    let token = config.http.take().and_then(|http| http.token);
    if let Some(listen) = http {
        if token.is_none() && !listen.ip().is_loopback() {
            return Err(format!(
                "--http {listen} is reachable from other machines: set http.token in {}",
                path.display()
            ));
        }
        config.http = Some(callbot::config::HttpConfig { listen, token });
    }
    Ok(config)
}

fn contacts(path: &Path, config: Option<&Config>, dnc: &DncArg) -> Result<ContactList, String> {
    let allow = config.map_or_else(
        || {
            callbot::config::DialPolicy::new(vec![
                callbot::config::DialPattern::parse("*").expect("pattern"),
            ])
        },
        |c| c.bots[0].allow_dial.clone(),
    );
    let dnc = dnc.load()?;
    let screen = Screen {
        allow: &allow,
        dnc: dnc.as_ref(),
    };
    let list = campaign::load_contacts(path, screen)?;
    for skipped in &list.skipped {
        eprintln!(
            "{}:{}: {} skipped: {}",
            path.display(),
            skipped.line,
            if skipped.number.is_empty() {
                "row"
            } else {
                &skipped.number
            },
            skipped.problem
        );
    }
    Ok(list)
}

async fn local(args: RunArgs) -> Result<ExitCode, String> {
    let bot = args.bot.ok_or("--bot NAME is needed")?;
    let contacts_path = args.contacts.ok_or("--contacts FILE is needed")?;
    let config = config_for(&args.config, &bot, Some(args.dialling.cps), args.http)?;
    let list = contacts(&contacts_path, Some(&config), &args.dnc)?;
    let journal_path = args
        .journal
        .unwrap_or_else(|| args.results.with_extension("journal"));
    let (mut journal, recovered) = Journal::open(
        &journal_path,
        &list.contacts,
        &campaign::fingerprint(&list.contacts),
    )
    .map_err(|e| e.to_string())?;
    if recovered > 0 {
        eprintln!(
            "resuming: {recovered} call(s) were in progress when the campaign stopped; they are not dialled again"
        );
    }
    let daemon = Daemon::start(config, Limits::default())
        .await
        .map_err(|e| e.to_string())?;
    let pace = Pace {
        concurrency: args.dialling.concurrency.max(1),
        cps: args.dialling.cps,
        retry: args.dialling.retry(),
        window: args.window,
        ring_timeout: Some(args.dialling.ring_timeout),
        per_day: args.max_attempts_per_day,
    };
    let summary = campaign::run(&daemon, &bot, &mut journal, &pace, super::shutdown_signal())
        .await
        .map_err(|e| e.to_string())?;
    daemon.shutdown(Duration::from_secs(10)).await;
    let mut rows: Vec<Row> = journal
        .entries()
        .map_err(|e| e.to_string())?
        .iter()
        .map(Row::from_entry)
        .chain(list.skipped.iter().map(Row::from_skipped))
        .collect();
    campaign::write_results(&args.results, &mut rows)?;
    let states: Vec<String> = summary
        .by_state
        .iter()
        .map(|(state, n)| format!("{n} {state}"))
        .collect();
    println!(
        "{} attempt(s) this run; {}; {} skipped; {} still pending; results in {}",
        summary.attempts,
        if states.is_empty() {
            "nothing finished".into()
        } else {
            states.join(", ")
        },
        list.skipped.len(),
        summary.pending,
        args.results.display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn publish(args: PublishArgs) -> Result<ExitCode, String> {
    let config = match (&args.config, &args.bot) {
        (Some(path), Some(bot)) => Some(config_for(path, bot, None, None)?),
        _ => None,
    };
    let list = contacts(&args.contacts, config.as_ref(), &args.dnc)?;
    let queue = Queue::connect(&args.queue, &args.campaign)
        .await
        .map_err(|e| format!("NATS {}: {e}", args.queue))?;
    let count = queue
        .publish_contacts(&list.contacts)
        .await
        .map_err(|e| e.to_string())?;
    println!("published {count} contact(s) to campaign {}", args.campaign);
    Ok(ExitCode::SUCCESS)
}

async fn work(args: WorkArgs) -> Result<ExitCode, String> {
    let config = config_for(&args.config, &args.bot, Some(args.dialling.cps), None)?;
    let queue = Queue::connect(&args.queue, &args.campaign)
        .await
        .map_err(|e| format!("NATS {}: {e}", args.queue))?;
    let daemon = Arc::new(
        Daemon::start(config, Limits::default())
            .await
            .map_err(|e| e.to_string())?,
    );
    let settings = WorkSettings {
        concurrency: args.dialling.concurrency.max(1),
        cps: args.dialling.cps,
        retry: args.dialling.retry(),
        ack_wait: Duration::from_secs(args.ack_wait.max(1)),
        idle: args.idle_exit.map(Duration::from_secs),
        worker: format!("{}-{}", args.bot, std::process::id()),
        ring_timeout: Some(args.dialling.ring_timeout),
    };
    let work = queue.work(
        daemon.clone(),
        &args.bot,
        settings,
        super::shutdown_signal(),
    );
    let finished = work.await.map_err(|e| e.to_string());
    // `work` has dropped every task and its handle on the daemon.
    if let Ok(daemon) = Arc::try_unwrap(daemon) {
        daemon.shutdown(Duration::from_secs(10)).await;
    }
    println!("worker finished {} contact(s)", finished?);
    Ok(ExitCode::SUCCESS)
}

async fn results(args: ResultsArgs) -> Result<ExitCode, String> {
    let queue = Queue::connect(&args.queue, &args.campaign)
        .await
        .map_err(|e| format!("NATS {}: {e}", args.queue))?;
    let mut rows = queue.results().await.map_err(|e| e.to_string())?;
    campaign::write_results(&args.results, &mut rows)?;
    println!(
        "{} result(s) written to {}",
        rows.len(),
        args.results.display()
    );
    Ok(ExitCode::SUCCESS)
}
