//! `callbot agent-echo`: a voice agent to point a bot's `call.stream(url)` at while trying
//! streams out: it speaks the Twilio Media Streams protocol and echoes the caller.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use callbot::voice::echo::EchoAgent;

/// Serve a Twilio Media Streams echo agent: each caller hears themselves after a delay; the
/// `*` key clears what is queued (barge-in), `#` ends the stream.
///
/// Point a bot at it with `call.stream("ws://127.0.0.1:9300/")` (scripts/agent.rhai with
/// `vars: { agent_url: "ws://127.0.0.1:9300/" }`). Runs until Ctrl-C.
#[derive(clap::Args)]
pub struct AgentEchoArgs {
    /// Address and port to listen on (plain ws://).
    #[arg(long, default_value = "127.0.0.1:9300")]
    listen: SocketAddr,
    /// How much later the caller hears the echo, in milliseconds (at most 9000).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(0..=9000))]
    delay_ms: u64,
}

pub async fn run(args: AgentEchoArgs) -> ExitCode {
    match EchoAgent::start(args.listen, Duration::from_millis(args.delay_ms)).await {
        Ok(agent) => {
            println!("echo agent listening on {}", agent.url());
            super::shutdown_signal().await;
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "callbot agent-echo: cannot listen on {}: {e} (choose another --listen)",
                args.listen
            );
            ExitCode::FAILURE
        }
    }
}
