//! `cojobs run`: the daemon. Claims due jobs and runs them in the sandbox
//! until SIGINT/SIGTERM (or, with `--once`, until nothing is due).

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::log::LogGuard;
use super::{Error, Global};
use crate::bounds::{self, Bound};
use crate::runner::{Runner, RunnerConfig};
use crate::sandbox::{LimitOverrides, Sandbox, SandboxConfig};

/// Where `--metrics` alone serves: loopback only.
const DEFAULT_METRICS: &str = "127.0.0.1:9464";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Jobs run at once [default: the number of cores].
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Run the jobs due now (and their retries falling due within a
    /// minute, at most 5 per chain; never requeued copies), then exit: the
    /// cron mode.
    #[arg(long)]
    once: bool,
    /// Look for due jobs at least this often (newly queued jobs are
    /// noticed within ~20 ms anyway).
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    poll_interval: f64,
    /// A running job's row stays this runner's this long without a
    /// heartbeat; a runner that died is detected after it.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 30,
        allow_negative_numbers = true
    )]
    lease: i64,
    /// After SIGINT/SIGTERM, running jobs get this long to finish before
    /// they are interrupted and put back in the queue.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 30,
        allow_negative_numbers = true
    )]
    grace: i64,
    /// At most this many jobs of one CO run at once in this process.
    #[arg(long, value_name = "N")]
    per_co: Option<usize>,
    /// Serve this runner's Prometheus metrics at http://ADDR/metrics
    /// (`--metrics` alone: 127.0.0.1:9464; port 0: any free port, logged).
    #[arg(
        long,
        value_name = "ADDR",
        num_args = 0..=1,
        default_missing_value = DEFAULT_METRICS
    )]
    metrics: Option<SocketAddr>,
    #[command(flatten)]
    limits: LimitArgs,
}

/// `value` of the option `bound` names, refused (exit 2, naming the option
/// and its range) outside that range.
pub(crate) fn check_option(bound: Bound, value: Option<i64>) -> Result<Option<i64>, Error> {
    bound.check_opt(value).map_err(|e| {
        Error::Input(format!(
            "{} {} is out of range: {}",
            bound.option(),
            e.value,
            bound.range()
        ))
    })
}

/// The limit options every command that runs plugins takes (`queue`:
/// this job's; `exec`: this run's; `run`: the default of every job), declared
/// once and flattened into each command's arguments.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LimitArgs {
    /// Fuel budget per job, 1 to 10^15 [run's default: 10000000000].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub fuel: Option<i64>,
    /// Memory limit per job, MiB, at most 4096 [run's default: 256].
    #[arg(long, value_name = "MIB", allow_negative_numbers = true)]
    pub memory: Option<i64>,
    /// Wall-clock limit per job, seconds, at most 7 days [run's default: 300].
    #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
    pub timeout: Option<i64>,
}

impl LimitArgs {
    /// Check each option given against its range.
    pub fn check(&self) -> Result<LimitOverrides, Error> {
        let unsigned = |bound, v| Ok::<_, Error>(check_option(bound, v)?.map(i64::unsigned_abs));
        Ok(LimitOverrides {
            fuel: unsigned(bounds::FUEL, self.fuel)?,
            memory_mib: unsigned(bounds::MEMORY_MIB, self.memory)?,
            timeout_secs: unsigned(bounds::TIMEOUT_SECS, self.timeout)?,
        })
    }
}

/// Send the log to stderr; `RUST_LOG` sets the level (`default`: `warn`
/// for commands that load plugins once, so a clamped limit or an unusable
/// cache is said). Lines are written as they come, in order with what the
/// command itself prints to stderr (progress bars).
pub(crate) fn init_tracing(default: &str) {
    subscribe(default, std::io::stderr);
}

/// The daemons' log (`run`, `serve`; `default`: `info`): to stderr through
/// a writer that never makes a job's thread wait on stderr
/// ([`super::log`]). Hold the guard until the command ends: dropping it
/// writes out what is left.
pub(crate) fn init_daemon_tracing(default: &str) -> LogGuard {
    let (writer, guard) = super::log::non_blocking();
    subscribe(default, writer);
    guard
}

fn subscribe<W>(default: &str, writer: W)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

pub fn run(g: &Global, args: Args, _out: &mut dyn Write) -> Result<(), Error> {
    let overrides = args.limits.check()?;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let workers = args.workers.unwrap_or(cores);
    if workers == 0 {
        return Err(Error::Input("--workers must be at least 1".into()));
    }
    let poll_interval = Duration::try_from_secs_f64(args.poll_interval)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            Error::Input("--poll-interval must be a positive number of seconds".into())
        })?;
    let lease = check_option(bounds::LEASE_SECS, Some(args.lease))?.unwrap_or(30);
    let grace = check_option(bounds::GRACE_SECS, Some(args.grace))?.unwrap_or(30);
    if args.per_co == Some(0) {
        return Err(Error::Input("--per-co must be at least 1".into()));
    }
    let _log = init_daemon_tracing("info");
    let mut sandbox_config = SandboxConfig::new(&g.plugins);
    sandbox_config.defaults = overrides.apply(sandbox_config.defaults);
    sandbox_config.max_instances = u32::try_from(workers.saturating_mul(2))
        .unwrap_or(u32::MAX)
        .max(8);
    let sandbox = Arc::new(Sandbox::new(sandbox_config)?);
    let mut config = RunnerConfig::new(workers);
    config.once = args.once;
    config.poll_interval = poll_interval;
    config.lease = Duration::from_secs(lease.unsigned_abs());
    config.grace = Duration::from_secs(grace.unsigned_abs());
    config.per_co = args.per_co;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores.max(2))
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // Signal handlers first: "runner started" means a SIGTERM from now on
        // is a graceful shutdown.
        let signals = forward_signals()?;
        // Bound before the runner starts: a taken port is an error now,
        // not a log line later.
        let metrics = match args.metrics {
            Some(addr) => Some(bind_metrics(addr).await?),
            None => None,
        };
        let store = g.runner_store().await?;
        tracing::info!(
            runner = %config.runner_id,
            workers,
            pooling = sandbox.pooling(),
            plugins = %g.plugins.display(),
            db = %g.db.display(),
            "runner started"
        );
        let runner = Runner::new(config, store, sandbox);
        let served = metrics.map(|listener| {
            tokio::spawn(crate::runner::metrics::serve(listener, Arc::clone(&runner)))
        });
        let result = runner.run(signals).await;
        if let Some(task) = served {
            task.abort();
        }
        result?;
        Ok(())
    })
}

/// The listener of `--metrics ADDR`, logged with the address it bound.
async fn bind_metrics(addr: SocketAddr) -> Result<tokio::net::TcpListener, Error> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Input(format!("--metrics: cannot listen on {addr}: {e}")))?;
    let bound = listener.local_addr()?;
    if !bound.ip().is_loopback() {
        tracing::warn!(
            "metrics on {bound}, not loopback: anyone who reaches it reads this runner's job \
             types and counts"
        );
    }
    tracing::info!("metrics on http://{bound}/metrics");
    Ok(listener)
}

/// SIGINT and SIGTERM, each as one message.
fn forward_signals() -> Result<tokio::sync::mpsc::UnboundedReceiver<()>, Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if tx.send(()).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
