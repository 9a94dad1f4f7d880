//! `cojobs schedule add|list|show|pause|resume|remove`: cron schedules,
//! kept in the database; every runner queues their due ticks
//! (`docs/design.md#schedules`).

use std::io::Write;

use chrono::Utc;

use super::queue::{JobArgs, check_params};
use super::{Error, Global, cell, write_table};
use crate::schedule::{CatchUp, Schedule};
use crate::store::{NewSchedule, ScheduleRow};

/// How many upcoming ticks `schedule show` prints.
const SHOW_NEXT: usize = 5;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Add a schedule: queue a job of TYPE at every tick of a cron
    /// expression; prints its id.
    Add(Box<AddArgs>),
    /// List the schedules.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Show a schedule and its next 5 ticks.
    Show {
        name: String,
        /// One JSON object: the schedule and "next_ticks".
        #[arg(long)]
        json: bool,
    },
    /// Stop queueing a schedule's ticks (jobs already queued stay).
    Pause { name: String },
    /// Queue a paused schedule's ticks again, from the first after now.
    Resume { name: String },
    /// Remove a schedule (the jobs it queued stay).
    Remove { name: String },
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The schedule's name, [A-Za-z0-9][A-Za-z0-9_.-]{0,63}, unique.
    name: String,
    /// When: 5 fields (minute hour day-of-month month day-of-week), or 6
    /// with seconds first, or @hourly, @daily, @weekly, @monthly, @yearly.
    #[arg(long, value_name = "EXPR")]
    cron: String,
    /// The time zone the expression is read in (tz database name).
    #[arg(long, value_name = "ZONE", default_value = "UTC")]
    tz: String,
    /// Ticks missed while no runner was up: none (dropped), latest (one
    /// job, for the latest), all (one each, at most 1000 a pass).
    #[arg(long, value_name = "POLICY", default_value = "latest")]
    catch_up: String,
    /// The job type: the plugin's name.
    #[arg(value_name = "TYPE")]
    job_type: String,
    #[command(flatten)]
    job: JobArgs,
}

pub fn run(g: &Global, cmd: Command, out: &mut dyn Write) -> Result<(), Error> {
    match cmd {
        Command::Add(args) => add(g, *args, out),
        Command::List { json } => list(g, json, out),
        Command::Show { name, json } => show(g, &name, json, out),
        Command::Pause { name } => {
            let db = g.open_store()?;
            db.wait(db.set_schedule_paused(&name, true))
        }
        Command::Resume { name } => {
            let db = g.open_store()?;
            db.wait(db.set_schedule_paused(&name, false))
        }
        Command::Remove { name } => {
            let db = g.open_store()?;
            db.wait(db.remove_schedule(&name))
        }
    }
}

/// Check everything the command line can get wrong (the expression, zone,
/// policy, numbers, the plugin's params) before the database is opened;
/// the store checks the rest (name in use, CO) before writing.
fn add(g: &Global, args: AddArgs, out: &mut dyn Write) -> Result<(), Error> {
    let bad = |e: crate::schedule::ScheduleError| Error::Input(e.to_string());
    crate::schedule::validate_name(&args.name).map_err(bad)?;
    Schedule::parse(&args.cron, &args.tz).map_err(bad)?;
    let catch_up: CatchUp = args.catch_up.parse().map_err(bad)?;
    args.job.check()?;
    let mut job = args.job.new_job(args.job_type);
    if !args.job.no_check {
        check_params(g, &mut job)?;
    }
    let db = g.open_store()?;
    let id = db.wait(db.add_schedule(&NewSchedule {
        name: args.name,
        cron: args.cron,
        timezone: args.tz,
        catch_up,
        job,
    }))?;
    writeln!(out, "{id}")?;
    Ok(())
}

fn list(g: &Global, json: bool, out: &mut dyn Write) -> Result<(), Error> {
    let db = g.open_reader()?;
    let schedules = db.wait(db.schedules())?;
    if json {
        for s in &schedules {
            serde_json::to_writer(&mut *out, s)?;
            writeln!(out)?;
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = schedules
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.cron.clone(),
                s.timezone.clone(),
                s.co_id.to_string(),
                s.job_type.clone(),
                s.catch_up.to_string(),
                state(s).to_string(),
                cell(s.next_tick.as_deref()),
            ]
        })
        .collect();
    write_table(
        out,
        &[
            "NAME",
            "CRON",
            "TZ",
            "CO",
            "TYPE",
            "CATCH-UP",
            "STATE",
            "NEXT TICK (UTC)",
        ],
        &rows,
    )?;
    Ok(())
}

fn state(s: &ScheduleRow) -> &'static str {
    if s.paused { "paused" } else { "active" }
}

fn show(g: &Global, name: &str, json: bool, out: &mut dyn Write) -> Result<(), Error> {
    let db = g.open_reader()?;
    let row = db
        .wait(db.schedule(name))?
        .ok_or_else(|| crate::store::StoreError::NoSchedule(name.to_string()))?;
    let schedule = row.schedule()?;
    let next = schedule.upcoming(Utc::now(), SHOW_NEXT);
    if json {
        let value = serde_json::json!({
            "schedule": row,
            "next_ticks": next.iter().map(|t| crate::store::format_time(*t)).collect::<Vec<_>>(),
        });
        serde_json::to_writer(&mut *out, &value)?;
        writeln!(out)?;
        return Ok(());
    }
    let fields: [(&str, Option<String>); 17] = [
        ("name", Some(row.name.clone())),
        ("cron", Some(row.cron.clone())),
        ("timezone", Some(row.timezone.clone())),
        ("catch_up", Some(row.catch_up.to_string())),
        ("state", Some(state(&row).to_string())),
        ("next_tick", row.next_tick.clone()),
        ("co_id", Some(row.co_id.to_string())),
        ("job_type", Some(row.job_type.clone())),
        ("job_mode", row.job_mode.clone()),
        ("job_params", row.job_params.clone()),
        ("priority", Some(row.priority.to_string())),
        ("retry_interval", row.retry_interval.map(|v| v.to_string())),
        ("max_retry", row.max_retry.map(|v| v.to_string())),
        (
            "requeue_interval",
            row.requeue_interval.map(|v| v.to_string()),
        ),
        ("register_summary", row.register_summary.clone()),
        ("created_by", row.created_by.clone()),
        ("created", row.created.clone()),
    ];
    for (k, v) in fields {
        writeln!(out, "{k:<17} {}", cell(v.as_deref()))?;
    }
    writeln!(out, "\nnext ticks:")?;
    let zone: chrono_tz::Tz = row.timezone.parse().unwrap_or(chrono_tz::UTC);
    for t in next {
        writeln!(
            out,
            "  {} UTC  ({} {})",
            crate::store::format_time(t),
            t.with_timezone(&zone).format("%Y-%m-%d %H:%M:%S"),
            row.timezone
        )?;
    }
    Ok(())
}
