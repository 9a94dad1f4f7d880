//! `cojobs exec NAME|FILE.wasm ...`: run one job right now, without the
//! queue or the database, for plugin authors trying a component.
//!
//! What the plugin does as it runs goes to stderr as it happens: progress
//! (a live bar on a terminal, `progress 50% <status>` lines otherwise), its
//! log lines (`[info] ...`) and history records (`history OK <key>
//! <comment>`); then whatever else it wrote to stdout or stderr, under a
//! `--- plugin output ---` header. How the job ended goes to stdout:
//!
//! ```text
//! OK: hello, Ada
//! fuel used: 1234567 of 10000000000, elapsed 0.004 s
//! ```
//!
//! A contract 0.2 plugin's result and child jobs follow: `result: <json>`,
//! `child 1: hello {"name":"x"}`, `retry after: 42 s`.
//!
//! `cojobs exec --replay ID` runs a stored job again, now, the same way:
//! its type, mode, params and limits (limit options given override its
//! limits), against the installed plugin, writing nothing to the database.
//! It first says on stdout whether the installed component is the one the
//! job ran with (`component: <sha256> matches job 7`), and refuses (exit 2,
//! nothing run) when it is not, unless `--force`.
//!
//! Exit 0 when the job ended OK, 1 when it failed or was interrupted
//! (Ctrl-C), 2 when `--mode`/`--params` do not fit the plugin, or a replay
//! is refused (nothing run).

use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::{Error, Global, printable, runtime};
use crate::sandbox::{
    FailKind, History, HostEvents, Interrupt, JobInput, LimitOverrides, LoadedPlugin, LogLevel,
    RawLimits, RunEnd, RunReport, SandboxError,
};
use crate::store::JobId;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The plugin: a name in the plugins folder, or a component file (an
    /// argument ending in .wasm or containing '/').
    #[arg(value_name = "NAME|FILE.wasm", required_unless_present = "replay")]
    plugin: Option<String>,
    /// Parameters for the plugin, a JSON object.
    #[arg(long, value_name = "JSON")]
    params: Option<String>,
    /// The job mode (passed to the plugin).
    #[arg(long, value_name = "M")]
    mode: Option<String>,
    // Limits of this run (default: the plugin's side file, else the runner's).
    #[command(flatten)]
    limits: super::run::LimitArgs,
    /// Do not check the mode and params against what the plugin declares.
    #[arg(long)]
    no_check: bool,
    /// Run stored job ID again: its type, mode, params and limits (limit
    /// options override them), against the installed plugin; refused when
    /// the component is not the one the job ran with, unless --force.
    /// Nothing is written to the database.
    #[arg(
        long,
        value_name = "ID",
        conflicts_with_all = ["plugin", "params", "mode", "no_check"]
    )]
    replay: Option<i64>,
    /// With --replay: run even when the component changed.
    #[arg(long, requires = "replay")]
    force: bool,
}

/// What to run: from the arguments, or from a stored job (`--replay`).
struct Target {
    /// A plugin name, or a component file.
    plugin: String,
    mode: Option<String>,
    params: serde_json::Map<String, Value>,
    overrides: LimitOverrides,
    /// Check mode and params against the plugin's description.
    check: bool,
    /// The job's id, CO, retry count and origin as the plugin sees them.
    id: i64,
    co_id: i64,
    retry_count: u32,
    requeued_from: Option<i64>,
    /// A replay: the stored job's component hash and whether to run
    /// whatever it is.
    replay: Option<(Option<String>, bool)>,
}

impl Target {
    fn of_args(args: &Args, overrides: LimitOverrides) -> Result<Target, Error> {
        let params = match &args.params {
            Some(text) => crate::store::parse_params(text)?,
            None => serde_json::Map::new(),
        };
        Ok(Target {
            plugin: args.plugin.clone().unwrap_or_default(),
            mode: args.mode.clone(),
            params,
            overrides,
            check: !args.no_check,
            id: 0,
            co_id: 1,
            retry_count: 0,
            requeued_from: None,
            replay: None,
        })
    }

    /// Stored job `id`, its limits overridden by `overrides`' options.
    fn of_job(
        g: &Global,
        id: i64,
        overrides: LimitOverrides,
        force: bool,
    ) -> Result<Target, Error> {
        let job = g.open_reader()?.require(JobId(id))?;
        let params = job
            .params()
            .map_err(|e| Error::Input(format!("job {id} cannot be replayed: {e}")))?;
        let stored = RawLimits {
            fuel: job.fuel_limit,
            memory_mib: job.memory_limit_mib,
            timeout_secs: job.timeout_secs,
        }
        .clamped(format_args!("job {id}"));
        Ok(Target {
            plugin: job.job_type,
            mode: job.job_mode,
            params,
            overrides: LimitOverrides {
                fuel: overrides.fuel.or(stored.fuel),
                memory_mib: overrides.memory_mib.or(stored.memory_mib),
                timeout_secs: overrides.timeout_secs.or(stored.timeout_secs),
            },
            check: false,
            id,
            co_id: job.co_id,
            retry_count: u32::try_from(job.max_retry_count.unwrap_or(0).max(0)).unwrap_or(u32::MAX),
            requeued_from: job.requeued_from_co_job_id.map(|j| j.0),
            replay: Some((job.plugin_sha256, force)),
        })
    }

    /// For a replay: say whether `plugin` is the component the job ran
    /// with; refuse a different one unless forced.
    fn compare(&self, plugin: &LoadedPlugin, out: &mut dyn Write) -> Result<(), Error> {
        let Some((recorded, force)) = &self.replay else {
            return Ok(());
        };
        let (id, now) = (self.id, &plugin.sha256);
        match recorded.as_deref().map(str::trim) {
            Some(was) if was == now => {
                writeln!(out, "component: {now} matches job {id}")?;
            }
            Some(was) if *force => {
                writeln!(
                    out,
                    "component: {now} differs from job {id}'s {was}; running it anyway (--force)"
                )?;
            }
            Some(was) => {
                return Err(Error::Input(format!(
                    "job {id} ran component {was}, but {} is now {now}: replay refused \
                     (--force runs it anyway)",
                    plugin.path.display()
                )));
            }
            None => {
                writeln!(
                    out,
                    "component: {now}; job {id} records none (it never ran, or ran before \
                     cojobs recorded components)"
                )?;
            }
        }
        Ok(())
    }
}

/// Is the argument a file rather than a plugin name?
fn is_file(arg: &str) -> bool {
    arg.ends_with(".wasm") || arg.contains('/')
}

pub fn run(g: &Global, args: Args, out: &mut dyn Write) -> Result<(), Error> {
    super::run::init_tracing("warn");
    let overrides = args.limits.check()?;
    let target = match args.replay {
        Some(id) => Target::of_job(g, id, overrides, args.force)?,
        None => Target::of_args(&args, overrides)?,
    };
    let sandbox = Arc::new(g.sandbox()?);
    let rt = runtime()?;
    let report = rt.block_on(async {
        let plugin = if target.replay.is_none() && is_file(&target.plugin) {
            let sb = Arc::clone(&sandbox);
            let path = target.plugin.clone();
            tokio::task::spawn_blocking(move || sb.plugin_from_file(Path::new(&path)))
                .await
                .map_err(|e| SandboxError::Engine(format!("plugin loader stopped: {e}")))??
        } else {
            sandbox.plugin_async(&target.plugin).await?
        };
        target.compare(&plugin, &mut *out)?;
        let params = if target.check {
            let desc = sandbox.describe(&plugin).await?;
            desc.check(target.mode.as_deref(), &target.params)
                .map_err(|e| Error::Input(e.to_string()))?
        } else {
            target.params.clone()
        };
        let limits = sandbox.limits_for(&plugin, &target.overrides);
        let job = JobInput {
            id: target.id,
            co_id: target.co_id,
            job_type: plugin.name.clone(),
            mode: target.mode.clone(),
            params: Value::Object(params).to_string(),
            retry_count: target.retry_count,
            requeued_from: target.requeued_from,
        };
        let interrupt = Interrupt::new();
        // Registered only now, so Ctrl-C during a long compile still kills
        // the process the ordinary way.
        let on_ctrl_c = {
            let interrupt = interrupt.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    interrupt.fire("interrupted by Ctrl-C");
                }
            })
        };
        let console = Console::new(io::IsTerminal::is_terminal(&io::stderr()));
        let report = sandbox
            .run(&plugin, &job, limits, Box::new(console.clone()), &interrupt)
            .await;
        on_ctrl_c.abort();
        console.finish(&report);
        Ok::<_, Error>((report, limits.fuel))
    })?;
    let (report, fuel_limit) = report;
    write_outcome(out, &report, fuel_limit)?;
    match report.end {
        RunEnd::Ok(_) => Ok(()),
        _ => Err(Error::JobFailed),
    }
}

/// How the run ended, on stdout: the outcome line, then fuel and time.
fn write_outcome(out: &mut dyn Write, report: &RunReport, fuel_limit: u64) -> io::Result<()> {
    match &report.end {
        RunEnd::Ok(summary) => writeln!(out, "OK: {}", printable(&bounded(summary), false))?,
        RunEnd::Failed { kind, message } => {
            let fate = if *kind == FailKind::Discard {
                "discarded"
            } else {
                "retryable"
            };
            writeln!(out, "X: {} ({fate})", printable(&bounded(message), false))?;
        }
        RunEnd::Interrupted(reason) => writeln!(out, "interrupted: {reason}")?,
    }
    writeln!(
        out,
        "fuel used: {} of {}, elapsed {:.3} s",
        report.fuel_used,
        fuel_limit,
        report.elapsed.as_secs_f64()
    )?;
    write_extras(out, report)
}

/// What a contract 0.2 run left beside its end: result, children, delay.
fn write_extras(out: &mut dyn Write, report: &RunReport) -> io::Result<()> {
    if let Some(r) = &report.result {
        writeln!(out, "result: {}", printable(&bounded(r), false))?;
    }
    for (i, c) in report.children.iter().enumerate() {
        let mode = c
            .mode
            .as_deref()
            .map(|m| format!(" ({m})"))
            .unwrap_or_default();
        writeln!(
            out,
            "child {}: {}{mode} {}",
            i + 1,
            printable(&c.job_type, false),
            printable(&bounded(&c.params), false)
        )?;
    }
    if let Some(secs) = report.retry_after_secs {
        writeln!(out, "retry after: {secs} s")?;
    }
    Ok(())
}

/// Most of a summary or failure message shown (a plugin may return
/// megabytes; the store keeps 256 characters of it anyway).
const MAX_SHOWN: usize = 4096;

/// `text`, cut at [`MAX_SHOWN`] bytes with a note saying so.
fn bounded(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_SHOWN {
        return text.into();
    }
    let mut end = MAX_SHOWN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... [{} bytes in all]", &text[..end], text.len()).into()
}

/// Plain progress lines printed before they are rate-limited: a chatty
/// plugin must not flood a log file.
const PLAIN_PROGRESS_LINES: u32 = 200;
/// After that, at most one progress line per this long.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Where `exec` shows the plugin's host calls: stderr, through the live
/// bar when there is one (so lines print above it, not through it).
#[derive(Clone)]
struct Console {
    bar: Option<ProgressBar>,
    /// Shared with the copy the sandbox holds (it runs on the guest's
    /// thread); a std mutex, held only to print a line or record one.
    state: Arc<Mutex<Shown>>,
}

#[derive(Default)]
struct Shown {
    /// The log lines already printed, as the captured log has them
    /// (`[level] message\n`), to leave out of the output shown at the end.
    logs: Vec<String>,
    /// The last progress shown, and one held back by the rate limit.
    last_progress: Option<(u8, Option<String>)>,
    held_progress: Option<(u8, Option<String>)>,
    progress_lines: u32,
    last_progress_at: Option<Instant>,
}

fn progress_line(percent: u8, summary: Option<&str>) -> String {
    match summary {
        Some(s) => format!("progress {percent}% {s}"),
        None => format!("progress {percent}%"),
    }
}

impl Console {
    fn new(terminal: bool) -> Self {
        let bar = terminal.then(|| {
            let bar = ProgressBar::new(100);
            if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos:>3}% {wide_msg}") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Console {
            bar,
            state: Arc::new(Mutex::new(Shown::default())),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Shown> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Print one line of the plugin's doing, [`printable`].
    fn line(&self, text: &str) {
        let text = printable(text, false);
        match &self.bar {
            Some(bar) => bar.println(text.as_ref()),
            // A closed stderr is no reason to fail the job.
            None => {
                let _ = writeln!(io::stderr(), "{text}");
            }
        }
    }

    /// End of the run: clear the bar, print the last progress held back,
    /// then what the plugin wrote beyond the log lines already shown.
    fn finish(&self, report: &RunReport) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let (held, logs) = {
            let mut s = self.state();
            (s.held_progress.take(), std::mem::take(&mut s.logs))
        };
        if let Some((percent, summary)) = held {
            self.line(&progress_line(percent, summary.as_deref()));
        }
        let rest = unshown_output(&report.log, &logs);
        if !rest.trim().is_empty() {
            let mut err = io::stderr().lock();
            let _ = writeln!(err, "--- plugin output ---");
            let _ = write!(err, "{}", printable(&rest, true));
            if !rest.ends_with('\n') {
                let _ = writeln!(err);
            }
        }
    }
}

/// The captured log without the log lines already printed (each removed
/// once, in order): what the plugin wrote to stdout and stderr, and any
/// note the host added.
fn unshown_output(log: &str, shown: &[String]) -> String {
    let mut rest = String::with_capacity(log.len());
    let mut from = 0;
    for block in shown {
        if let Some(at) = log[from..].find(block.as_str()) {
            rest.push_str(&log[from..from + at]);
            from += at + block.len();
        }
    }
    rest.push_str(&log[from..]);
    rest
}

impl HostEvents for Console {
    fn progress(&mut self, percent: u8, summary: Option<String>) {
        if let Some(bar) = &self.bar {
            bar.set_position(u64::from(percent));
            if let Some(s) = summary {
                bar.set_message(printable(&s, false).into_owned());
            }
            return;
        }
        let now = Instant::now();
        let print = {
            let mut s = self.state();
            let new = (percent, summary);
            if s.last_progress.as_ref() == Some(&new) {
                return;
            }
            let limited = s.progress_lines >= PLAIN_PROGRESS_LINES
                && s.last_progress_at
                    .is_some_and(|t| now.duration_since(t) < PLAIN_PROGRESS_EVERY);
            if limited {
                s.held_progress = Some(new);
                return;
            }
            s.progress_lines = s.progress_lines.saturating_add(1);
            s.last_progress_at = Some(now);
            s.held_progress = None;
            s.last_progress = Some(new.clone());
            new
        };
        self.line(&progress_line(print.0, print.1.as_deref()));
    }

    fn log(&mut self, level: LogLevel, message: String) {
        let line = format!("[{}] {}", level.as_str(), message);
        self.line(&line);
        self.state().logs.push(line + "\n");
    }

    fn cancel_requested(&mut self) -> bool {
        false
    }

    fn record_history(&mut self, r: History) {
        let mut ids = String::new();
        if let Some(p) = r.co_person_id {
            ids.push_str(&format!(" co_person_id={p}"));
        }
        if let Some(o) = r.org_identity_id {
            ids.push_str(&format!(" org_identity_id={o}"));
        }
        self.line(&format!(
            "history {} {} {}{ids}",
            r.status.code(),
            r.key.as_deref().unwrap_or("-"),
            r.comment
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_or_name() {
        assert!(is_file("hello.wasm"));
        assert!(is_file("./hello"));
        assert!(is_file("/tmp/x/hello.wasm"));
        assert!(!is_file("hello"));
        assert!(!is_file("python-hello"));
    }

    #[test]
    fn long_summaries_are_cut() {
        assert_eq!(bounded("short"), "short");
        let long = "ü".repeat(3000);
        let shown = bounded(&long);
        assert!(shown.len() < MAX_SHOWN + 40, "{}", shown.len());
        assert!(shown.ends_with("... [6000 bytes in all]"), "{shown}");
    }

    #[test]
    fn shown_log_lines_are_left_out_once() {
        let log = "[info] a\nprinted\n[info] a\n[warn] b\ntail";
        let shown = vec!["[info] a\n".to_string(), "[warn] b\n".to_string()];
        assert_eq!(unshown_output(log, &shown), "printed\n[info] a\ntail");
        assert_eq!(unshown_output("x\n", &[]), "x\n");
    }
}
