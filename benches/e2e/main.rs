//! What the guard costs a whole request over HTTP: requests per second through
//! `examples/resource_server` on loopback, each protected scenario as a ratio to the same
//! server's unguarded `GET /health`.
//!
//! ```text
//! scripts/bench-e2e                  # 3 rounds of 5 s per scenario, about 75 s
//! scripts/bench-e2e --quick          # 1 round of 0.5 s: a smoke test, its ratios mean little
//! scripts/bench-e2e --connections 4 --seconds 3
//! ```
//!
//! `scripts/bench-e2e` builds the server and this load generator in the release profile and
//! runs it with `--server PATH` (by hand: `cargo build --release --example resource_server`,
//! then `cargo bench --bench e2e -- --server target/release/examples/resource_server`). It
//! writes the issuer's JWK Set to a file, starts the server on an ephemeral loopback port with
//! `--dpop allowed`, a fixed `--public-url` and `RUST_LOG=warn` (the trace layer then logs
//! nothing, on either route), and stops it at the end, on error too. Every token and proof is
//! signed before the timed window it is used in, so that signing never competes with the
//! server for the cores.
//!
//! Four scenarios, each for `--seconds` in every round, on `--connections` keep-alive HTTP/1.1
//! connections (one request in flight on each, all from one client thread, which leaves the
//! server at least one of two cores). Within a round they take turns in slices of about a
//! second, in this order, so that a change in the machine's other load hits all of them alike:
//!
//! - `unprotected`: `GET /health`, outside the guard but behind the same CORS and trace layers;
//! - `bearer cached`: `GET /api/whoami` with the same ES256 bearer token every time, so the
//!   guard's token cache answers after the first request;
//! - `bearer cold`: a new token on every request: one ES256 verification each, and a token
//!   cache insertion;
//! - `dpop fresh proof`: one DPoP-bound token (`cnf.jkt`) per client key and a new proof on
//!   every request (unique `jti`, `htm`, `htu`, `iat`, `ath`): one ES256 verification of the
//!   proof, the key's thumbprint, the replay store. A client key signs at most 2 000 proofs,
//!   a fifth of the replay store's share per key.
//!
//! How to read it: `ratio` is the scenario's requests per second divided by `unprotected`'s
//! over the same round, the median over the rounds (the rounds' own ratios in brackets); 1.00
//! would mean the guard costs nothing end to end. The target for `bearer cached` is at least
//! 0.90. The rest is context, which depends on the machine: requests per second (median
//! round), latency p50/p99 (every request of the scenario), `server CPU/req` (the server
//! process's CPU time per request, from `/proc`, and its ratio to `unprotected`'s: what a
//! request costs the server, whoever limits the rate) and `client CPU` (how busy the load
//! generator's thread was: near 100 % the client limits the rate, and the ratios understate
//! what the guard costs). Any answer but `200` fails the run (exit 1): a refused request is
//! cheaper than an admitted one and would flatter the figures.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

mod credentials;
mod load;
mod server;

use credentials::Issuer;
use load::{Window, probe, window};
use server::Server;

type Error = Box<dyn std::error::Error + Send + Sync>;

const ISSUER: &str = "https://issuer.e2e.example";
const AUDIENCE: &str = "https://api.e2e.example";
/// The server's `--public-url`, which every proof's `htu` names; a fixed name rather than the
/// loopback address, as behind a proxy, so that the port can be an ephemeral one.
const PUBLIC_URL: &str = "https://api.e2e.example";
const PROTECTED: &str = "/api/whoami";
const UNPROTECTED: &str = "/health";

const TARGET_CACHED_RATIO: f64 = 0.9;
const ROUNDS: usize = 3;
const QUICK_ROUNDS: usize = 1;
const SECONDS: f64 = 5.0;
const QUICK_SECONDS: f64 = 0.5;
/// A proof is signed before its window and must still be fresh at its end: the guard accepts
/// an `iat` up to 60 s old by default.
const MAX_SECONDS: f64 = 30.0;
const MAX_CONNECTIONS: u64 = 64;
/// A pool holds what the last slice of its scenario managed in the same time, times this
/// margin, plus [`POOL_SLACK`]; a pool that runs out ends its slice early, which is shown.
const POOL_MARGIN: f64 = 1.5;
const POOL_SLACK: usize = 500;
/// The length of a slice: in every round, each scenario runs for about this long in turn until
/// it has had `--seconds`.
const SLICE: Duration = Duration::from_secs(1);
/// The pool of a warm-up window (its rate sizes the first timed pool).
const WARM_UP_POOL: usize = 2_000;
/// No pool is larger, whatever the estimate (about 700 bytes a request).
const MAX_POOL: usize = 2_000_000;

/// End-to-end loopback benchmark of tower-oauth-guard (see the file's documentation).
#[derive(Debug, Parser)]
struct Cli {
    /// The `resource_server` example's executable (`scripts/bench-e2e` builds it).
    #[arg(long, value_name = "PATH")]
    server: Option<PathBuf>,
    /// Keep-alive HTTP/1.1 connections, one request in flight on each.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=MAX_CONNECTIONS))]
    connections: u64,
    /// Seconds each scenario runs per round [default: 5, with --quick 0.5].
    #[arg(long, value_parser = parse_seconds)]
    seconds: Option<f64>,
    /// One short round: checks that everything is answered 200, measures little.
    #[arg(long)]
    quick: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.1..=MAX_SECONDS).contains(&v) => Ok(v),
        _ => Err(format!("a number of seconds from 0.1 to {MAX_SECONDS}")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Unprotected,
    BearerCached,
    BearerCold,
    DpopFresh,
}

/// The order within a round; the baseline first.
const SCENARIOS: [Scenario; 4] = [
    Scenario::Unprotected,
    Scenario::BearerCached,
    Scenario::BearerCold,
    Scenario::DpopFresh,
];

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Unprotected => "unprotected",
            Scenario::BearerCached => "bearer cached",
            Scenario::BearerCold => "bearer cold",
            Scenario::DpopFresh => "dpop fresh proof",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Scenario::Unprotected => UNPROTECTED,
            _ => PROTECTED,
        }
    }

    /// What the server answers a request of this scenario with; checked once before timing.
    fn expected_answer(self) -> &'static str {
        match self {
            Scenario::Unprotected => "ok",
            Scenario::BearerCached | Scenario::BearerCold => "bearer",
            Scenario::DpopFresh => "dpop",
        }
    }
}

struct Settings {
    connections: u64,
    length: Duration,
    rounds: usize,
}

/// Every window of every scenario, by scenario (in [`SCENARIOS`] order), then by round.
struct Results {
    windows: Vec<Vec<Window>>,
}

async fn run(server: &mut Server, issuer: &Issuer, settings: &Settings) -> Result<Results, Error> {
    for scenario in SCENARIOS {
        probe(server.addr, issuer, scenario).await?;
    }
    // Warm-up, untimed: the allocators, the connections' code paths, the caches. The pooled
    // scenarios' warm-up rates size their first pools; each window's rate sizes the next.
    let warm_up = (settings.length / 5).clamp(Duration::from_millis(200), Duration::from_secs(1));
    let mut estimate = [0.0_f64; SCENARIOS.len()];
    for (i, scenario) in SCENARIOS.into_iter().enumerate() {
        estimate[i] = measure(server, issuer, settings, scenario, WARM_UP_POOL, warm_up)
            .await?
            .rate();
    }
    // Each round, the scenarios take turns in slices, so that a change in the machine's
    // other load hits them alike.
    let slices = (settings.length.as_secs_f64() / SLICE.as_secs_f64())
        .round()
        .max(1.0) as u32;
    let slice = settings.length / slices;
    let mut windows: Vec<Vec<Window>> = SCENARIOS.iter().map(|_| Vec::new()).collect();
    for round in 0..settings.rounds {
        let mut this_round: Vec<Window> = SCENARIOS.iter().map(|_| Window::default()).collect();
        for _ in 0..slices {
            for (i, scenario) in SCENARIOS.into_iter().enumerate() {
                let wanted = estimate[i] * slice.as_secs_f64() * POOL_MARGIN;
                let n = (wanted as usize + POOL_SLACK).min(MAX_POOL);
                let w = measure(server, issuer, settings, scenario, n, slice).await?;
                estimate[i] = w.rate();
                this_round[i].merge(w);
            }
        }
        let mut line = format!("round {}/{}:", round + 1, settings.rounds);
        for (i, (scenario, w)) in SCENARIOS.into_iter().zip(&this_round).enumerate() {
            line += &format!(" {} {:.0}/s", scenario.name(), w.rate());
            if i > 0 {
                line += &format!(" ({:.2})", w.rate() / this_round[0].rate());
            }
            line += if w.ran_out { " [a pool ran out]," } else { "," };
        }
        println!("{}", line.trim_end_matches(','));
        for (all, w) in windows.iter_mut().zip(this_round) {
            all.push(w);
        }
    }
    Ok(Results { windows })
}

/// One window of `scenario` with a pool of `n` credentials (if it uses a pool), signed first.
async fn measure(
    server: &mut Server,
    issuer: &Issuer,
    settings: &Settings,
    scenario: Scenario,
    n: usize,
    length: Duration,
) -> Result<Window, Error> {
    let credentials = issuer.credentials(scenario, n);
    let connections = settings.connections;
    let w = window(server, connections, scenario.path(), credentials, length).await?;
    server.check_alive()?;
    check_answers(scenario, &w)?;
    Ok(w)
}

/// An error naming the first non-200 answer of the window, if there was one.
fn check_answers(scenario: Scenario, w: &Window) -> Result<(), Error> {
    match &w.sample {
        None => Ok(()),
        Some(answer) => Err(format!(
            "{}: {} of {} requests were not answered 200; the first: {answer}",
            scenario.name(),
            w.refused,
            w.requests,
        )
        .into()),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// The table; `quick` runs are not held to the target.
fn report(results: Results, quick: bool) {
    let per_request = |w: &Window| Some(w.server_cpu?.as_secs_f64() / w.requests as f64);
    let baseline: Vec<f64> = results.windows[0].iter().map(Window::rate).collect();
    let (mut baseline_cpu, mut target) = (None, None);
    println!();
    println!(
        "{:<17} {:>5}  {:<17} {:>7} {:>8} {:>8}  {:<16} {:>10} {:>7}",
        "scenario",
        "ratio",
        "(rounds)",
        "req/s",
        "p50",
        "p99",
        "server CPU/req",
        "client CPU",
        "non-200"
    );
    for (scenario, windows) in SCENARIOS.into_iter().zip(results.windows) {
        let ratios: Vec<f64> = (windows.iter().zip(&baseline))
            .map(|(w, b)| w.rate() / b)
            .collect();
        let rounds: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        let ratio = median(ratios);
        let rate = median(windows.iter().map(Window::rate).collect());
        let mut all = Window::default();
        windows.into_iter().for_each(|w| all.merge(w));
        all.latencies.sort();
        let cpu = per_request(&all);
        baseline_cpu = baseline_cpu.or(cpu);
        let cpu = match (cpu, baseline_cpu) {
            (Some(c), Some(b)) => format!("{:.1}µs ({:.2})", c * 1e6, c / b),
            _ => "-".to_owned(),
        };
        let client = all.client_cpu.map_or("-".to_owned(), |c| {
            format!(
                "{:.0} %",
                100.0 * c.as_secs_f64() / all.elapsed.as_secs_f64()
            )
        });
        println!(
            "{:<17} {ratio:>5.2}  {:<17} {rate:>7.0} {:>8.1?} {:>8.1?}  {cpu:<16} {client:>10} {:>7}",
            scenario.name(),
            format!("({})", rounds.join(" ")),
            percentile(&all.latencies, 50),
            percentile(&all.latencies, 99),
            all.refused,
        );
        if scenario == Scenario::BearerCached {
            let verdict = match (quick, ratio >= TARGET_CACHED_RATIO) {
                (true, _) => "not held to it in a quick run",
                (false, true) => "met",
                (false, false) => "NOT met",
            };
            target = Some(format!(
                "bearer cached / unprotected: {ratio:.2} (target >= {TARGET_CACHED_RATIO:.2}: {verdict})"
            ));
        }
    }
    if let Some(target) = target {
        println!("{target}");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(executable) = cli.server else {
        let hint = "needs --server PATH/TO/resource_server; scripts/bench-e2e builds it";
        // A plain `cargo bench` runs every bench: this one is skipped there, not failed.
        if cli.bench {
            println!("e2e: skipped, {hint}");
            return ExitCode::SUCCESS;
        }
        eprintln!("e2e: {hint}");
        return ExitCode::from(2);
    };
    let default_seconds = if cli.quick { QUICK_SECONDS } else { SECONDS };
    let settings = Settings {
        connections: cli.connections,
        length: Duration::from_secs_f64(cli.seconds.unwrap_or(default_seconds)),
        rounds: if cli.quick { QUICK_ROUNDS } else { ROUNDS },
    };
    let issuer = Issuer::new();
    // One client thread: the server keeps at least the other core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let outcome = Server::start(&executable, &issuer.jwks()).and_then(|mut server| {
        // Others' load on the machine is part of the figures.
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "e2e: {} on {} (RUST_LOG=warn), {} connection(s), {} round(s) of {:?} per scenario; \
             load average {}",
            executable.display(),
            server.addr,
            settings.connections,
            settings.rounds,
            settings.length,
            load.split_whitespace().next().unwrap_or("unknown"),
        );
        runtime.block_on(run(&mut server, &issuer, &settings))
        // The server is killed here, before the report.
    });
    match outcome {
        Ok(results) => {
            report(results, cli.quick);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("e2e: FAILED: {error}");
            ExitCode::FAILURE
        }
    }
}
